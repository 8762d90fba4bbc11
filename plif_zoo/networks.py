"""The general network of paper Fig. 4 and the six networks of Table 1 (Sec. 3.5).

A network is ``N_down`` down-sampling stages of ``N_conv`` Conv-BN-SN layers, each
stage ending in a 2x2 spike pooling, then ``N_fc`` bias-free Linear-SN layers whose
last one holds ``population`` neurons per class, then voting (the mean over each
population). The layers follow the authors' ``codes/models.py``: bias-free convs
each followed by BatchNorm, dropout before FC layers with one mask per sample for
all T steps, and for static images the first Conv+BN computed once and fed to the
first spiking layer at every step.

Shapes: stateless layers run on ``[T*N, ...]`` views of ``[T, N, ...]`` sequences;
neurons and pooling are multi-step modules. One difference from the authors' loop over
t: event-frame nets normalise each conv's BatchNorm over all T*N frames of a batch, not
over the N frames of each step (same parameters, same inference given the statistics).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import base, functional, layer, surrogate
from torch import nn

from . import backends
from .neurons import LIFNode, PLIFNode
from .pooling import SpikeAvgPool2d, SpikeMaxPool2d

__all__ = [
    "NetworkConfig",
    "SpikingConvNet",
    "PAPER_NETWORKS",
    "paper_config",
    "count_parameters",
]

NEURONS = ("plif", "lif")
POOLINGS = ("max", "avg")


@dataclass
class NetworkConfig:
    """Everything needed to rebuild a network; ``to_dict``/``from_dict`` round-trip through JSON."""

    in_channels: int  # input channels: 1 (MNIST), 3 (CIFAR-10), 2 (event polarities)
    input_size: tuple[int, int]  # (H, W) of the input image or event frame
    num_classes: int  # classes; the output layer has num_classes * population neurons
    T: int  # default number of time steps (event nets: frames per sample)
    static: (
        bool  # True: image [N, C, H, W], first Conv+BN computed once; False: frames [N, T, C, H, W]
    )
    channels: int  # width of every conv layer (the paper uses one width per network)
    stages: tuple[int, ...]  # conv layers per down-sampling stage (N_conv per stage, N_down stages)
    fc_hidden: tuple[int, ...]  # widths of the hidden FC layers (N_fc - 1 of them)
    fc_dropout: tuple[bool, ...]  # dropout before each FC layer (len(fc_hidden) + 1 flags)
    neuron: str = "plif"  # "plif" (learnable tau, paper eq. 6) or "lif" (fixed tau)
    init_tau: float = 2.0  # initial tau of PLIF layers, fixed tau of LIF layers
    pooling: str = "max"  # "max" (spike max-pooling) or "avg" (the Table 5 ablation)
    population: int = 10  # output neurons per class, averaged by the voting layer
    dropout: float = 0.5  # dropout probability before FC layers
    v_threshold: float = 1.0
    v_reset: float | None = 0.0  # None = soft reset
    detach_reset: bool = True
    surrogate_alpha: float = 2.0  # ATan surrogate alpha
    mean: tuple[float, ...] | None = None  # per-channel input normalisation (static images only)
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name, cast in (
            ("input_size", int),
            ("stages", int),
            ("fc_hidden", int),
            ("fc_dropout", bool),
            ("mean", float),
            ("std", float),
        ):
            value = getattr(self, name)
            if value is None and name in ("mean", "std"):
                continue
            try:
                setattr(self, name, tuple(cast(v) for v in value))
            except (TypeError, ValueError):
                raise ValueError(
                    f"NetworkConfig.{name} must be a sequence of {cast.__name__}, got {value!r}"
                ) from None
        for name in ("in_channels", "num_classes", "T", "channels", "population"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"NetworkConfig.{name} must be a positive int, got {value!r}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"NetworkConfig.input_size must be (H, W), got {self.input_size!r}")
        if not self.stages or min(self.stages) < 1:
            raise ValueError(f"NetworkConfig.stages needs >= 1 conv per stage, got {self.stages!r}")
        if min(self.input_size) >> len(self.stages) < 1:
            raise ValueError(
                f"{len(self.stages)} 2x2 poolings shrink input_size {self.input_size} to nothing; "
                f"use fewer stages or a larger input"
            )
        if len(self.fc_dropout) != len(self.fc_hidden) + 1:
            raise ValueError(
                f"NetworkConfig.fc_dropout needs one flag per FC layer "
                f"({len(self.fc_hidden) + 1}), "
                f"got {self.fc_dropout!r}"
            )
        if self.neuron not in NEURONS:
            raise ValueError(f"NetworkConfig.neuron must be one of {NEURONS}, got {self.neuron!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"NetworkConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"NetworkConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("NetworkConfig.mean and std must be given together")
        if self.mean is not None and not (len(self.mean) == len(self.std) == self.in_channels):
            raise ValueError(
                f"NetworkConfig.mean/std need {self.in_channels} values (one per input channel), "
                f"got {self.mean!r} / {self.std!r}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) for images, (T, C, H, W) for event frames."""
        chw = (self.in_channels, *self.input_size)
        return chw if self.static else (self.T, *chw)

    @property
    def flat_features(self) -> int:
        """Inputs of the first FC layer: channels x H x W after all poolings."""
        h, w = self.input_size
        for _ in self.stages:
            h, w = h // 2, w // 2
        return self.channels * h * w

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        """Rebuild from ``to_dict`` output; unknown keys are an error, not silently dropped."""
        if not isinstance(data, dict):
            raise TypeError(f"a network config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown network config keys {unknown}; expected a subset of {sorted(known)} "
                f"(was the file written by a newer plif-zoo?)"
            )
        return cls(**data)

    def replace(self, **changes) -> NetworkConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


class Encoder(nn.Module):
    """The first Conv+BN. Static images: normalise, compute once on [N, C, H, W], repeat over T
    without copying. Event frames: [T, N, C, H, W] run as one [T*N, C, H, W] batch."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.conv = nn.Conv2d(cfg.in_channels, cfg.channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cfg.channels)
        self.static = cfg.static
        self.T = cfg.T
        if cfg.mean is not None:
            self.register_buffer("mean", torch.tensor(cfg.mean).view(-1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(cfg.std).view(-1, 1, 1), persistent=False)
        else:
            self.mean = self.std = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.static:
            if self.mean is not None:
                x = (x - self.mean) / self.std
            y = self.bn(self.conv(x))
            return y.unsqueeze(0).expand(self.T, *y.shape)
        y = self.bn(self.conv(x.flatten(0, 1)))
        return y.unflatten(0, x.shape[:2])


class Vote(nn.Module):
    """Voting layer: mean over each group of ``population`` output neurons,
    [..., K*P] -> [..., K]."""

    def __init__(self, population: int):
        super().__init__()
        self.population = population

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (-1, self.population)).mean(-1)

    def extra_repr(self) -> str:
        return f"population={self.population}"


def _neuron(cfg: NetworkConfig, backend: str) -> nn.Module:
    kw = dict(
        v_threshold=cfg.v_threshold,
        v_reset=cfg.v_reset,
        detach_reset=cfg.detach_reset,
        surrogate_function=surrogate.ATan(alpha=cfg.surrogate_alpha),
        step_mode="m",
        backend=backend,
    )
    if cfg.neuron == "plif":
        return PLIFNode(init_tau=cfg.init_tau, **kw)
    return LIFNode(tau=cfg.init_tau, **kw)


def _pool(cfg: NetworkConfig, backend: str) -> nn.Module:
    cls = SpikeMaxPool2d if cfg.pooling == "max" else SpikeAvgPool2d
    return cls(2, 2, step_mode="m", backend=backend)


# Images further outside [0, 1] than this are on another scale ([0, 255], or already
# normalised), not the overshoot of a resize or an interpolation.
_IMAGE_SLACK = 0.5


def _check_values(x: torch.Tensor, image: bool) -> None:
    """ValueError for NaN / inf anywhere, or (images) values clearly outside [0, 1]."""
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f"the input holds NaN or infinite values (min {lo}, max {hi}); the network would "
            f"still answer with confidence: clean or drop those samples first"
        )
    if image and (lo < -_IMAGE_SLACK or hi > 1 + _IMAGE_SLACK):
        hint = (
            "it looks like [0, 255] pixels: divide by 255"
            if lo >= 0 and hi > 2
            else "pass raw images: the model normalises them with its own mean/std"
        )
        raise ValueError(f"expected images in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; {hint}")


class SpikingConvNet(nn.Module):
    """A zoo network: raw input -> class firing rates ``[N, num_classes]`` in [0, 1].

    Input: static images ``[N, C, H, W]`` in [0, 1] (normalised inside), or event frames
    ``[N, T, C, H, W]`` of raw counts (any number of frames). Every call starts from a
    fresh neuron state. ``features`` is the conv part (freeze it to fine-tune the FC
    part), ``classifier`` the FC part ending in the output population, ``vote`` the voting.
    """

    def __init__(self, config: NetworkConfig, backend: str = "auto"):
        super().__init__()
        if not isinstance(config, NetworkConfig):
            raise TypeError(f"config must be a NetworkConfig, got {type(config).__name__}")
        self.config = config.replace()
        cfg = self.config
        features: list[nn.Module] = [Encoder(cfg)]
        first = True
        for n_conv in cfg.stages:
            for _ in range(n_conv):
                if not first:
                    features.append(
                        layer.SeqToANNContainer(
                            nn.Conv2d(cfg.channels, cfg.channels, 3, padding=1, bias=False),
                            nn.BatchNorm2d(cfg.channels),
                        )
                    )
                first = False
                features.append(_neuron(cfg, backend))
            features.append(_pool(cfg, backend))
        self.features = nn.Sequential(*features)

        widths = [cfg.flat_features, *cfg.fc_hidden, cfg.num_classes * cfg.population]
        classifier: list[nn.Module] = [nn.Flatten(2)]
        for i, drop in enumerate(cfg.fc_dropout):
            if drop:
                classifier.append(layer.Dropout(cfg.dropout, step_mode="m"))
            classifier.append(nn.Linear(widths[i], widths[i + 1], bias=False))
            classifier.append(_neuron(cfg, backend))
        self.classifier = nn.Sequential(*classifier)
        self.vote = Vote(cfg.population)

    @property
    def T(self) -> int:
        """Time steps per forward for static images (event nets take T from the input)."""
        return self.config.T

    @T.setter
    def T(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"T must be a positive int, got {value!r}")
        self.config.T = value
        self.features[0].T = value

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def output_layer(self) -> nn.Linear:
        """The last Linear layer (num_classes * population outputs)."""
        return [m for m in self.classifier if isinstance(m, nn.Linear)][-1]

    def reset_classifier(self, num_classes: int) -> list[str]:
        """Replace the output layer with a fresh one for ``num_classes`` classes.

        Returns the state-dict keys that were re-initialised.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        old = self.output_layer
        index = next(i for i, m in enumerate(self.classifier) if m is old)
        self.classifier[index] = nn.Linear(
            old.in_features,
            num_classes * self.config.population,
            bias=False,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )
        self.config.num_classes = num_classes
        functional.invalidate_reset_cache(self)
        return [f"classifier.{index}.weight"]

    def spiking_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, node) of every PLIF/LIF layer in forward order; hook them for firing rates."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, (PLIFNode, LIFNode))]

    def taus(self) -> dict[str, float]:
        """Current membrane time constant of every spiking layer (learned for PLIF)."""
        return {name: node.tau for name, node in self.spiking_layers()}

    def set_backend(self, backend: str) -> SpikingConvNet:
        """Select the kernel backend ("auto", "torch", "cpu", "cupy") of every neuron and
        pooling."""
        backends.set_backend(self, backends.check_name(backend))
        return self

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input contract: dtype and shape, then finite values (and [0, 1] for images).

        float64 is cast to the weights' dtype. The value checks read the data once (well under
        1% of a forward pass, see tests/test_networks.py) and are skipped while torch.compile
        or torch.export trace the model, whose graphs hold no data-dependent branches.
        """
        cfg = self.config
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            advice = (
                "convert with .float() / 255 (images are expected in [0, 1])"
                if cfg.static
                else "convert with .float() (event counts)"
            )
            raise TypeError(f"expected a floating-point tensor, got {got}; {advice}")
        chw = (cfg.in_channels, *cfg.input_size)
        if cfg.static:
            ok = x.dim() == 4 and tuple(x.shape[1:]) == chw
            expected = f"[N, {', '.join(map(str, chw))}] images in [0, 1]"
        else:
            ok = x.dim() == 5 and tuple(x.shape[2:]) == chw and x.shape[1] >= 1
            expected = f"[N, T, {', '.join(map(str, chw))}] event frames"
        if not ok:
            raise ValueError(f"expected {expected}, got a tensor of shape {tuple(x.shape)}")
        if x.dtype == torch.float64:  # a numpy array's default dtype: cast rather than fail in conv
            x = x.to(self.features[0].conv.weight.dtype)
        if x.numel() and not torch.compiler.is_compiling():
            _check_values(x, cfg.static)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] (static) or [N, T, C, H, W] (events) -> rates [N, num_classes]."""
        x = self._check_input(x)
        # functional.reset_net's work, without its per-network cache, which torch.compile would
        # guard on (and which changes whenever another network is reset or freed).
        for m in self.modules():
            if isinstance(m, base.MemoryModule):
                m.reset()
        if not self.config.static:
            x = x.transpose(0, 1)  # [T, N, C, H, W]
        spikes = self.classifier(self.features(x))  # [T, N, num_classes * population]
        return self.vote(spikes.mean(0))


# The six networks of Table 1, as the authors' code builds them.
_DIGITS = dict(
    in_channels=1,
    input_size=(28, 28),
    num_classes=10,
    T=8,
    static=True,
    channels=128,
    stages=(1, 1),
    fc_hidden=(2048,),
    fc_dropout=(True, True),
)
PAPER_NETWORKS: dict[str, NetworkConfig] = {
    "mnist": NetworkConfig(**_DIGITS, mean=(0.1307,), std=(0.3081,)),
    "fashion-mnist": NetworkConfig(**_DIGITS, mean=(0.2860,), std=(0.3530,)),
    "cifar10": NetworkConfig(
        in_channels=3,
        input_size=(32, 32),
        num_classes=10,
        T=8,
        static=True,
        channels=256,
        stages=(3, 3),
        fc_hidden=(2048,),
        fc_dropout=(True, False),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
    ),
    "nmnist": NetworkConfig(
        in_channels=2,
        input_size=(34, 34),
        num_classes=10,
        T=10,
        static=False,
        channels=128,
        stages=(1, 1),
        fc_hidden=(2048,),
        fc_dropout=(True, True),
    ),
    "cifar10-dvs": NetworkConfig(
        in_channels=2,
        input_size=(128, 128),
        num_classes=10,
        T=20,
        static=False,
        channels=128,
        stages=(1, 1, 1, 1),
        fc_hidden=(2048,),
        fc_dropout=(True, True),
    ),
    "dvs128-gesture": NetworkConfig(
        in_channels=2,
        input_size=(128, 128),
        num_classes=11,
        T=20,
        static=False,
        channels=128,
        stages=(1, 1, 1, 1, 1),
        fc_hidden=(512,),
        fc_dropout=(True, True),
    ),
}


def paper_config(dataset: str, **changes) -> NetworkConfig:
    """The Table 1 network for ``dataset`` with some fields changed (neuron, init_tau, pooling,
    T...)."""
    if dataset not in PAPER_NETWORKS:
        raise KeyError(
            f"no paper network for dataset {dataset!r}; choose one of {list(PAPER_NETWORKS)}"
        )
    return PAPER_NETWORKS[dataset].replace(**changes)


def count_parameters(config: NetworkConfig) -> int:
    """Trainable parameters of the network ``config`` builds (built on the meta device, no
    memory)."""
    with torch.device("meta"):
        model = SpikingConvNet(config, backend="torch")
    return sum(p.numel() for p in model.parameters())
