"""NIR export: every architecture family, checked spike for spike by SpikingJelly's importer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import plif_zoo
from plif_zoo import cli
from plif_zoo._io import sha256_file
from plif_zoo.export import (
    EXPORT_FORMAT,
    NIRExportError,
    from_nir,
    nir_metadata,
    read_nir,
    to_nir,
    write_nir,
)
from plif_zoo.pooling import SpikeAvgPool2d, SpikeMaxPool2d

pytest.importorskip("nir")

DT = 1e-3
SMALL = dict(channels=4, fc_hidden=(16,), backend="torch")
# (registry id, changes): static/event input x max/avg pooling x PLIF/LIF, several T
FAMILIES = [
    ("fashion-mnist-plif", dict(T=3)),
    ("mnist-lif-tau16", dict(T=5)),
    ("cifar10-lif-avgpool", dict(stages=(2, 1), T=2)),
    ("nmnist-lif", dict(T=4)),
    ("dvs128-gesture-plif-avgpool", dict(input_size=(32, 32), stages=(1, 1, 1), T=3)),
]


def lively(name: str, seed: int = 0, **changes) -> plif_zoo.SpikingConvNet:
    """A small float64 network of ``name``'s family with random weights, BatchNorm statistics and
    taus, scaled so that every layer fires (a silent layer would prove nothing)."""
    torch.manual_seed(seed)
    model = plif_zoo.create_model(name, **{**SMALL, **changes})
    cfg = model.config
    gain = 4.0 if cfg.pooling == "avg" else 1.5  # avg-pooling passes weaker inputs on
    gain *= cfg.init_tau / 2 if cfg.neuron == "lif" else 1.0  # slow LIF layers need more drive
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.6)
            elif isinstance(m, torch.nn.Conv2d):
                fan = m.weight[0].numel()
                m.weight.normal_(gain / fan, 2.0 / fan**0.5)
            elif isinstance(m, torch.nn.Linear):
                m.weight.normal_(gain / m.in_features, 3.0 / m.in_features**0.5)
        for _, node in model.spiking_layers():
            if isinstance(node, plif_zoo.PLIFNode):
                node.w.uniform_(-1.0, 1.0)
    return model.double().eval()


def sample(model: plif_zoo.SpikingConvNet, n: int = 3) -> torch.Tensor:
    cfg = model.config
    x = torch.rand(n, *cfg.input_shape, dtype=torch.float64)
    return x if cfg.static else (3 * x).floor()  # event counts 0..2


def zoo_counts(model, x) -> tuple[torch.Tensor, dict[str, float]]:
    """plif-zoo's class rates and spikes per layer, keyed by the NIR node names."""
    counts, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (plif_zoo.PLIFNode, plif_zoo.LIFNode, SpikeMaxPool2d, SpikeAvgPool2d)):
            key = name.replace(".", "_") + ("_or" if isinstance(m, SpikeMaxPool2d) else "")
            hooks.append(
                m.register_forward_hook(
                    lambda _m, _i, out, key=key: counts.__setitem__(key, out.sum().item())
                )
            )
    with torch.no_grad():
        rates = model(x)
    for h in hooks:
        h.remove()
    return rates, counts


def spikingjelly_counts(path, x, T: int, static: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """The file run by SpikingJelly 2.0.0's import_from_nir in float64, single-step (its SumPool2d
    needs it), one call per step; the class rates and spikes per layer."""
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net = import_from_nir(path, dt=DT, dtype=torch.float64, step_mode="s")
    counts: dict[str, float] = {}
    for name, m in net.named_children():
        if type(m).__name__ in ("_NIRStatefulModule", "AvgPool2d"):  # neurons, IF, avg-pools
            m.register_forward_hook(
                lambda _m, _i, out, key=name: counts.__setitem__(
                    key,
                    counts.get(key, 0.0) + (out[0] if isinstance(out, tuple) else out).sum().item(),
                )
            )
    state, outs = None, []
    with torch.no_grad():
        for t in range(T):
            out, state = net(x if static else x[:, t], state)
            outs.append(out)
    return torch.stack(outs).mean(0), counts


@pytest.mark.parametrize("name,changes", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_spikingjelly_reproduces_every_spike(tmp_path, name, changes):
    model = lively(name, **changes)
    x = sample(model)
    path = write_nir(to_nir(model, dt=DT), tmp_path / "net.nir")
    ours, our_counts = zoo_counts(model, x)
    theirs, their_counts = spikingjelly_counts(path, x, model.T, model.config.static)
    assert their_counts == our_counts
    assert all(c > 0 for c in our_counts.values()), our_counts
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-12)


def test_decay_input_false_maps_to_r_equal_tau(tmp_path):
    model = lively("nmnist-plif", T=3)
    for _, node in model.spiking_layers():
        node.decay_input = False
    x = sample(model)
    graph = to_nir(model, dt=DT)
    k = model.spiking_layers()[0][1].decay().item()
    assert np.allclose(graph.nodes["features_1"].r, 1.0 / k)
    path = write_nir(graph, tmp_path / "net.nir")
    ours, our_counts = zoo_counts(model, x)
    theirs, their_counts = spikingjelly_counts(path, x, model.T, static=False)
    assert their_counts == our_counts
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-12)


def test_mapping_of_a_plif_layer_and_the_max_pool():
    model = lively("fashion-mnist-plif", T=3)
    graph = to_nir(model, dt=0.5)
    k = torch.sigmoid(model.features[1].w.detach()).item()
    lif = graph.nodes["features_1"]
    assert lif.tau.shape == (4, 28, 28)
    assert np.allclose(lif.tau, 0.5 / k) and np.all(lif.r == 1.0)
    assert (
        np.all(lif.v_leak == 0.0) and np.all(lif.v_reset == 0.0) and np.all(lif.v_threshold == 1.0)
    )
    pool_or = graph.nodes["features_2_or"]
    assert np.all(pool_or.r == 2.0) and np.all(pool_or.v_threshold == 0.5)
    assert graph.nodes["normalise"].weight.shape == (1, 1, 1, 1)
    assert graph.nodes["vote"].weight.shape == (10, 100)


def test_metadata_tells_a_consumer_what_it_needs(tmp_path):
    model = lively("nmnist-plif")
    graph = to_nir(model, dt=2e-3, T=7, model_id="nmnist-plif", weights_sha256="ab" * 32)
    meta = nir_metadata(read_nir(write_nir(graph, tmp_path / "n.nir")))
    assert meta["format"] == EXPORT_FORMAT and meta["dt"] == 2e-3 and meta["T"] == 7
    assert meta["model_id"] == "nmnist-plif" and meta["weights_sha256"] == "ab" * 32
    assert meta["plif_zoo_version"] == plif_zoo.__version__
    assert (
        "v >= v_threshold" in meta["threshold_comparison"]
        and "v > v_threshold" in meta["threshold_comparison"]
    )
    assert "event counts" in meta["input"] and "mean over the T steps" in meta["readout"]
    assert json.loads(meta["architecture"]) == model.config.replace(T=7).to_dict()  # T as run


def test_from_nir_round_trip_gives_the_same_rates(tmp_path):
    for name, changes in FAMILIES[:4]:
        model = lively(name, **changes)
        x = sample(model)
        back = from_nir(write_nir(to_nir(model, dt=DT), tmp_path / "net.nir"), backend="torch")
        assert back.config == model.config
        with torch.no_grad():
            torch.testing.assert_close(back(x), model(x), rtol=0, atol=1e-12)


def test_from_nir_reads_any_lif_tau_and_the_exported_T(tmp_path):
    # 1/tau is stored in float32: tau 3 comes back as 2.99999991, still the architecture's 3
    model = lively("mnist-lif", init_tau=3.0, T=4)
    back = from_nir(write_nir(to_nir(model, T=6), tmp_path / "net.nir"), backend="torch")
    assert back.T == 6 and back.config == model.config.replace(T=6)
    x = sample(back)
    model.T = 6
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=1e-12)


def test_from_nir_refuses_a_graph_without_one_of_the_models_layers(tmp_path):
    graph = to_nir(lively("mnist-plif"))
    del graph.nodes["classifier_3"]
    with pytest.raises(ValueError, match="no node 'classifier_3'"):
        from_nir(graph)


def test_soft_reset_is_refused():
    model = plif_zoo.create_model("mnist-plif", v_reset=None, **SMALL)
    with pytest.raises(NIRExportError, match="soft reset"):
        to_nir(model)


def test_a_module_without_nir_form_is_refused():
    model = plif_zoo.create_model("mnist-plif", **SMALL)
    model.features[2] = torch.nn.MaxPool2d(2)
    with pytest.raises(NIRExportError, match="MaxPool2d"):
        to_nir(model)


def test_from_nir_rejects_graphs_it_did_not_write():
    import nir

    graph = nir.NIRGraph.from_list(nir.Linear(weight=np.ones((2, 3))))
    with pytest.raises(ValueError, match="not a plif-zoo export"):
        from_nir(graph)


# ---------------------------------------------------------------------------- CLI


def test_cli_exports_a_model_folder(tmp_path, capsys):
    model = lively("fashion-mnist-lif", T=2).float()
    folder = plif_zoo.save_pretrained(model, tmp_path / "tiny", model_id="tiny-fmnist")
    out = tmp_path / "tiny.nir"
    assert cli.main(["export", str(folder), "--format", "nir", "-o", str(out), "--dt", "1e-4"]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = nir_metadata(read_nir(out))
    assert meta["model_id"] == "tiny-fmnist" and meta["dt"] == 1e-4 and meta["T"] == 2
    assert meta["weights_sha256"] == sha256_file(folder / "model.safetensors")


def test_cli_exports_a_local_dir_under_the_home_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    model = lively("fashion-mnist-lif", T=2).float()
    plif_zoo.save_pretrained(model, tmp_path / "m", model_id="tiny-fmnist")
    out = tmp_path / "m.nir"
    assert cli.main(["export", "local-dir:~/m", "-o", str(out)]) == 0, capsys.readouterr().err
    assert nir_metadata(read_nir(out))["model_id"] == "tiny-fmnist"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["export", "no-such-model", "-o", "{tmp}/x.nir"], "unknown model 'no-such-model'"),
        (["export", "fashion-mnist-plif", "-o", "{tmp}/missing/x.nir"], "is not a writable folder"),
        (["export", "fashion-mnist-plif", "-o", "{tmp}"], "it is a folder"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    assert cli.main([a.format(tmp=tmp_path) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plif-zoo export: error:") and message in err


def test_cli_says_how_to_install_the_missing_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "nir", None)  # import nir -> ImportError
    assert cli.main(["export", "fashion-mnist-plif", "-o", str(tmp_path / "x.nir")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'plif-zoo[nir]'" in err


# ---------------------------------------------------------------------------- norse, real data

FASHION = "/usr/share/datasets/fashion-mnist/"


def _idx(name: str, offset: int) -> np.ndarray:
    import gzip

    with gzip.open(FASHION + name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


@pytest.mark.slow
def test_published_fashion_mnist_plif_in_norse_predicts_like_plif_zoo(tmp_path):
    """The published weights, exported and run by norse (float32) on 200 evenly spaced
    Fashion-MNIST test images: the same predicted class for every image."""
    norse = pytest.importorskip("norse.torch")
    import os

    if not os.path.exists(FASHION + "t10k-images-idx3-ubyte.gz"):
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    model = plif_zoo.load("fashion-mnist-plif", backend="torch").eval()
    index = np.linspace(0, 9999, 200).astype(int)
    images = _idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[index]
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    graph = read_nir(
        write_nir(to_nir(model, dt=DT, model_id="fashion-mnist-plif"), tmp_path / "f.nir")
    )
    meta = nir_metadata(graph)
    # norse ignores r and adds the input to its IF neurons, which is r = 1 / dt here
    net = norse.from_nir(graph, dt=meta["dt"], ignore_warnings=True)
    for m in net.modules():
        if isinstance(m, torch.nn.Flatten):
            m.start_dim = (
                1  # norse reads NIR's start_dim 0 (first dim of a sample) as the batch dim
            )
    state, outs = None, []
    with torch.no_grad():
        ours = model(x)
        for _ in range(meta["T"]):
            out, state = net(x, state)
            outs.append(out)
    theirs = torch.stack(outs).mean(0)
    assert torch.equal(theirs.argmax(1), ours.argmax(1))
    labels = _idx("t10k-labels-idx1-ubyte.gz", 8)[index]
    assert (ours.argmax(1).numpy() == labels).mean() > 0.85  # the real model, not a silent one
