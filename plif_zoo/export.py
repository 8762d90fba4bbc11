"""Export zoo networks to NIR, the Neuromorphic Intermediate Representation
(``pip install plif-zoo[nir]``).

NIR states neurons in continuous time and stores no time step; a consumer integrates each
node with its own ``dt`` (norse, SpikingJelly's ``import_from_nir``). The mapping below makes
one Euler step of length ``dt`` equal to one plif-zoo step, so give the importer the ``dt``
recorded in the graph's metadata:

    plif-zoo                                  NIR node
    Conv (no bias) + BatchNorm                Conv2d, BatchNorm folded into weight and bias
    input normalisation (x - mean) / std      Conv2d 1x1 (kept apart: folding it into the
                                              zero-padded 3x3 conv would change the borders)
    PLIF / LIF, H = V + k (X - (V - V_r))     LIF: tau = dt / k, r = 1, v_leak = v_reset = V_r
      (decay_input=False: H = V - k(V - V_r) + X)   the same with r = 1 / k
    spike max-pool (binary spikes)            SumPool2d, then IF (threshold 0.5, r = 1 / dt,
                                              v_reset 0): 1 where any spike is in the window
    spike avg-pool                            AvgPool2d
    Flatten(2) of [T, N, C, H, W]             Flatten(start_dim=0) of one sample [C, H, W]
    dropout                                   nothing (inference)
    Linear (no bias)                          Linear
    voting, mean over each population         Linear, a block matrix of 1 / population

k is sigmoid(w) for PLIF and 1 / tau for LIF. The graph runs one step per call: a static
image is fed unchanged at every one of T steps, an event net gets frame t at step t; class
rates are the mean over T of the output. plif-zoo fires on ``V >= V_th``, NIR on ``V > V_th``;
both agree unless a potential equals the threshold exactly. Soft reset has no NIR form and is
refused, as is any module this mapping does not know.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._io import atomic_write, library_version
from .errors import import_extra
from .networks import NetworkConfig, SpikingConvNet
from .neurons import LIFNode, PLIFNode
from .pooling import SpikeAvgPool2d, SpikeMaxPool2d

__all__ = [
    "to_nir",
    "from_nir",
    "write_nir",
    "read_nir",
    "nir_metadata",
    "NIRExportError",
    "EXPORT_FORMAT",
    "require_nir",
]

EXPORT_FORMAT = "plif-zoo-nir/1"  # metadata["format"]; from_nir reads only graphs with this tag

# What a consumer needs to reproduce plif-zoo's forward pass; stored in every graph.
READOUT = (
    "class rates = mean over the T steps of the output node (the voting layer); class = argmax"
)
THRESHOLD_RULE = (
    "plif-zoo fires on v >= v_threshold, NIR's LIF and IF on v > v_threshold; "
    "the two differ only when a membrane potential equals the threshold exactly"
)
NEURON_RULE = (
    "nir.LIF with tau = dt / k (k = sigmoid(w) for PLIF, 1 / tau for LIF), r = 1 "
    "(r = 1 / k for decay_input=False), v_leak = v_reset: one Euler step of length dt "
    "is one plif-zoo step, so integrate with the dt given here"
)
MAXPOOL_RULE = (
    "spike max-pooling of binary spikes = SumPool2d followed by IF (v_threshold 0.5, "
    "r = 1 / dt, v_reset 0), the OR over each window"
)


class NIRExportError(ValueError):
    """The model holds something that NIR cannot express exactly; nothing was exported."""


def require_nir():
    """The ``nir`` module, or MissingExtraError saying how to install it."""
    return import_extra("nir", "nir", "NIR export")


def _np(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().astype(dtype)


class _Chain:
    """Nodes joined in a line: each ``add`` connects the previous node to the new one."""

    def __init__(self, nir, input_shape: tuple[int, ...]):
        self.nodes = {"input": nir.Input(input_type=np.array(input_shape))}
        self.edges: list[tuple[str, str]] = []
        self.last = "input"

    def add(self, name: str, node) -> None:
        self.nodes[name] = node
        self.edges.append((self.last, name))
        self.last = name


def _neuron_node(nir, node: nn.Module, name: str, shape: tuple[int, ...], dt: float):
    """nir.LIF for one PLIF/LIF layer of ``shape`` (C, H, W) or (features,)."""
    if node.v_reset is None:
        raise NIRExportError(
            f"{name}: soft reset (v_reset=None) has no NIR form (NIR neurons reset to v_reset); "
            f"only hard-reset networks can be exported"
        )
    if node.step_mode != "m" or getattr(node, "store_v_seq", False):
        raise NIRExportError(f"{name}: export a network as built by SpikingConvNet (step_mode 'm')")
    # k exactly as the forward pass uses it (LIF's decay is a float32 tensor)
    k = float(node.decay().detach().to(torch.float64))
    params = dict(
        tau=dt / k,
        r=1.0 if node.decay_input else 1.0 / k,
        v_leak=node.v_reset,
        v_threshold=node.v_threshold,
        v_reset=node.v_reset,
    )
    return nir.LIF(
        **{key: np.full(shape, value, dtype=np.float64) for key, value in params.items()}
    )


def _conv_node(nir, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, hw, dtype):
    """nir.Conv2d of a conv followed by an (inference-mode) BatchNorm, folded in float64."""
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise NIRExportError(f"conv {conv} is not a plain zero-padded ungrouped conv")
    w = conv.weight.detach().to(torch.float64)
    b = (
        conv.bias.detach().to(torch.float64)
        if conv.bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64)
    )
    if bn is not None:
        if bn.running_mean is None:
            raise NIRExportError("BatchNorm without running statistics cannot be folded")
        scale = bn.weight.detach().to(torch.float64) / torch.sqrt(
            bn.running_var.to(torch.float64) + bn.eps
        )
        w = w * scale.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.to(torch.float64)) * scale + bn.bias.detach().to(torch.float64)
    return nir.Conv2d(
        input_shape=tuple(hw),
        weight=_np(w, dtype),
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=1,
        bias=_np(b, dtype),
    )


def _pool(nir, chain: _Chain, pool: nn.Module, name: str, shape, dt: float) -> tuple[int, ...]:
    """Add the pooling nodes of ``pool``; returns the output shape (C, H', W')."""
    kernel, stride = np.array(pool.kernel_size), np.array(pool.stride)
    c, h, w = shape
    out = (c, (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1)
    if isinstance(pool, SpikeAvgPool2d):
        chain.add(name, nir.AvgPool2d(kernel_size=kernel, stride=stride, padding=np.array([0, 0])))
        return out
    chain.add(name, nir.SumPool2d(kernel_size=kernel, stride=stride, padding=np.array([0, 0])))
    chain.add(
        f"{name}_or",
        nir.IF(r=np.full(out, 1.0 / dt), v_threshold=np.full(out, 0.5), v_reset=np.zeros(out)),
    )
    return out


def _is_conv_bn(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Sequential)
        and len(module) == 2
        and isinstance(module[0], nn.Conv2d)
        and isinstance(module[1], nn.BatchNorm2d)
    )


def _features(nir, chain: _Chain, model: SpikingConvNet, dt: float, dtype) -> tuple[int, ...]:
    """Encoder, conv layers, neurons and pooling; returns the shape (C, H, W) they end with."""
    cfg = model.config
    encoder = model.features[0]
    shape: tuple[int, ...] = (cfg.in_channels, *cfg.input_size)
    if getattr(encoder, "mean", None) is not None:
        std = encoder.std.detach().to(torch.float64).flatten()
        mean = encoder.mean.detach().to(torch.float64).flatten()
        norm = nn.Conv2d(cfg.in_channels, cfg.in_channels, 1, dtype=torch.float64)
        norm.weight.data = torch.diag(1.0 / std).view(cfg.in_channels, cfg.in_channels, 1, 1)
        norm.bias.data = -mean / std
        chain.add("normalise", _conv_node(nir, norm, None, shape[1:], dtype))
    chain.add("features_0", _conv_node(nir, encoder.conv, encoder.bn, shape[1:], dtype))
    shape = (encoder.conv.out_channels, *shape[1:])
    for i, module in list(enumerate(model.features))[1:]:  # [0] is the encoder, done above
        name = f"features_{i}"
        if isinstance(module, (PLIFNode, LIFNode)):
            chain.add(name, _neuron_node(nir, module, name, shape, dt))
        elif isinstance(module, (SpikeMaxPool2d, SpikeAvgPool2d)):
            shape = _pool(nir, chain, module, name, shape, dt)
        elif _is_conv_bn(module):
            chain.add(name, _conv_node(nir, module[0], module[1], shape[1:], dtype))
            shape = (module[0].out_channels, *shape[1:])
        else:
            raise NIRExportError(f"{name}: no exact NIR form for {type(module).__name__}")
    return shape


def _classifier(nir, chain: _Chain, model: SpikingConvNet, shape, dt: float, dtype) -> None:
    """Flatten, FC layers and their neurons, then the voting layer as a Linear node."""
    width = int(np.prod(shape))
    for i, module in enumerate(model.classifier):
        name = f"classifier_{i}"
        if isinstance(module, nn.Flatten):
            chain.add(
                name, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            )
        elif type(module).__name__ == "Dropout":
            continue  # identity at inference
        elif isinstance(module, nn.Linear) and module.bias is None:
            chain.add(name, nir.Linear(weight=_np(module.weight, dtype)))
            width = module.out_features
        elif isinstance(module, (PLIFNode, LIFNode)):
            chain.add(name, _neuron_node(nir, module, name, (width,), dt))
        else:
            raise NIRExportError(f"{name}: no exact NIR form for {type(module).__name__}")
    population = model.vote.population
    vote = np.kron(np.eye(width // population), np.full((1, population), 1.0 / population))
    chain.add("vote", nir.Linear(weight=vote.astype(dtype)))


def _metadata(model: SpikingConvNet, dt: float, T: int, model_id, weights_sha256) -> dict:
    cfg = model.config
    chw = "x".join(map(str, (cfg.in_channels, *cfg.input_size)))
    if cfg.static:
        contract = (
            f"static image [{chw}] with values in [0, 1] (not normalised: the 'normalise' "
            f"node does it), the same image fed at each of the T steps"
        )
    else:
        contract = f"event frames: frame t [{chw}] of raw event counts fed at step t, T frames"
    version = library_version()
    meta = {
        "format": EXPORT_FORMAT,
        "dt": float(dt),
        "T": int(T),
        "input": contract,
        "readout": READOUT,
        "threshold_comparison": THRESHOLD_RULE,
        "neuron_mapping": NEURON_RULE,
        "max_pooling": MAXPOOL_RULE,
        "plif_zoo_version": version,
        "architecture": json.dumps(cfg.replace(T=T).to_dict()),  # from_nir runs T steps too
        "model_id": model_id,
        "weights_sha256": weights_sha256,
    }
    return {k: v for k, v in meta.items() if v is not None}  # HDF5 cannot store None


def to_nir(
    model: SpikingConvNet,
    dt: float = 1e-3,
    *,
    T: int | None = None,
    model_id: str | None = None,
    weights_sha256: str | None = None,
):
    """A ``nir.NIRGraph`` computing one step of ``model`` per call (exact, see the module doc).

    ``dt``: the time step (seconds) the consumer must integrate with; any positive value is
    exact. ``T``: steps per sample recorded in the metadata (default ``model.T``).
    ``model_id`` / ``weights_sha256``: provenance recorded in the metadata when known.
    Weights are stored in the model's dtype (BatchNorm folded in float64 first).
    Raises NIRExportError for what has no exact NIR form (soft reset, unknown modules).
    """
    nir = require_nir()
    if not isinstance(model, SpikingConvNet):
        raise TypeError(f"to_nir exports a plif_zoo SpikingConvNet, got {type(model).__name__}")
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    T = model.T if T is None else T
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    dtype = np.float64 if model.output_layer.weight.dtype == torch.float64 else np.float32
    cfg = model.config
    chain = _Chain(nir, (cfg.in_channels, *cfg.input_size))
    with torch.no_grad():
        shape = _features(nir, chain, model, float(dt), dtype)
        _classifier(nir, chain, model, shape, float(dt), dtype)
    chain.add("output", nir.Output(output_type={"output": np.array([cfg.num_classes])}))
    meta = _metadata(model, float(dt), T, model_id, weights_sha256)
    return nir.NIRGraph(nodes=chain.nodes, edges=chain.edges, metadata=meta)


def write_nir(graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` (HDF5, gzip) atomically: the old file or the new one, never
    half."""
    nir = require_nir()
    return atomic_write(path, lambda tmp: nir.write(tmp, graph))


def read_nir(path: str | os.PathLike):
    """``nir.read`` with the missing-extra error of this module."""
    return require_nir().read(path)


def nir_metadata(graph) -> dict:
    """The graph's metadata as plain Python values (a file read back holds bytes and numpy
    scalars)."""
    out = {}
    for key, value in graph.metadata.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _assign(param: torch.Tensor, array: np.ndarray, name: str) -> None:
    if tuple(param.shape) != tuple(array.shape):
        raise ValueError(
            f"NIR node {name!r} holds shape {array.shape}, the model expects {tuple(param.shape)}"
        )
    param.data.copy_(torch.from_numpy(np.asarray(array)))


def _load_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, node, name: str) -> None:
    """Folded weights into conv, BatchNorm set to the identity plus the folded bias."""
    _assign(conv.weight, node.weight, name)
    bn.weight.data.fill_(1.0)
    _assign(bn.bias, node.bias, name)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


def _load_neuron(module: nn.Module, node, name: str, dt: float) -> None:
    k = dt / float(np.asarray(node.tau).flat[0])
    if not np.allclose(np.asarray(node.r), 1.0):
        raise NIRExportError(
            f"{name}: r != 1 (decay_input=False) cannot be read into a zoo network"
        )
    if isinstance(module, PLIFNode):
        module.w.data.fill_(float(np.log(k / (1.0 - k))))  # sigmoid(w) = k
    elif not np.isclose(1.0 / k, module.tau, rtol=1e-6):  # k was stored in float32
        raise ValueError(
            f"{name}: tau {1.0 / k} differs from the architecture's LIF tau {module.tau}"
        )


def _read_from_a_node(module: nn.Module) -> bool:
    """A module from_nir must read from a node: neurons, Linear, Conv+BN."""
    return isinstance(module, (PLIFNode, LIFNode, nn.Linear, nn.Sequential))


def from_nir(graph_or_path, backend: str = "auto") -> SpikingConvNet:
    """Rebuild the zoo network of a graph that :func:`to_nir` wrote (a ``NIRGraph`` or a path).

    BatchNorm stays folded (the conv holds the folded weights, BatchNorm is the identity with
    the bias), so outputs equal the original's up to rounding. Float64 graphs give float64 models.
    """
    graph = graph_or_path
    if isinstance(graph_or_path, (str, os.PathLike)):
        graph = read_nir(graph_or_path)
    meta = nir_metadata(graph)
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"not a plif-zoo export (metadata format {meta.get('format')!r}, "
            f"expected {EXPORT_FORMAT!r}); from_nir reads only graphs written by to_nir"
        )
    model = SpikingConvNet(
        NetworkConfig.from_dict(json.loads(meta["architecture"])), backend=backend
    )
    if graph.nodes["vote"].weight.dtype == np.float64:
        model.double()
    encoder, dt = model.features[0], float(meta["dt"])
    with torch.no_grad():
        _load_conv(encoder.conv, encoder.bn, graph.nodes["features_0"], "features_0")
        for prefix, seq in (("features", model.features), ("classifier", model.classifier)):
            for i, module in enumerate(seq):
                name = f"{prefix}_{i}"
                if (prefix, i) == ("features", 0) or not _read_from_a_node(module):
                    continue
                if name not in graph.nodes:
                    raise ValueError(
                        f"the graph has no node {name!r} for the model's "
                        f"{type(module).__name__}; was the file written by to_nir and not edited?"
                    )
                node = graph.nodes[name]
                if isinstance(module, (PLIFNode, LIFNode)):
                    _load_neuron(module, node, name, dt)
                elif isinstance(module, nn.Linear):
                    _assign(module.weight, node.weight, name)
                elif isinstance(module, nn.Sequential):
                    _load_conv(module[0], module[1], node, name)
    model.eval()
    return model
