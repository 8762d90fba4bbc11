"""`plif-zoo list / info / download / demo` and the shipped demo samples."""

import dataclasses
import json

import pytest
import torch

import plif_zoo
from plif_zoo import demo, registry
from plif_zoo.cli import main


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No local weights folder and no published weights, whatever the registry holds today."""
    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "none"])
    for model_id, info in list(registry._REGISTRY.items()):
        if info.weights is not None:
            monkeypatch.setitem(
                registry._REGISTRY, model_id, dataclasses.replace(info, weights=None)
            )


@pytest.fixture
def local_weights(no_weights, monkeypatch, tmp_path):
    """fashion-mnist-plif with random weights as a local weights folder (registry checksums off)."""
    torch.manual_seed(0)
    model = plif_zoo.create_model("fashion-mnist-plif", T=4, backend="torch")
    plif_zoo.save_pretrained(
        model, tmp_path / "w" / "fashion-mnist-plif", model_id="fashion-mnist-plif"
    )
    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "w"])
    return tmp_path


def test_list_prints_matching_ids_with_params(capsys):
    assert main(["list", "dvs128*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "input", "T"]
    ids = [line.split()[0] for line in out[1:]]
    assert ids == plif_zoo.list_models("dvs128*")
    assert "1.70M" in out[1 + ids.index("dvs128-gesture-plif")]


def test_list_pretrained_with_no_weights_is_an_error(capsys, no_weights):
    assert main(["list", "--pretrained"]) == 1
    assert "with weights" in capsys.readouterr().err


def test_info_is_a_readable_table_and_json(capsys):
    assert main(["info", "cifar10-plif"]) == 0
    table = capsys.readouterr().out
    assert "num_params" in table and "36,718,344" in table and "93.5" in table
    assert main(["info", "cifar10-plif", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paper_accuracy_b"] == 92.58


def test_unknown_model_is_a_clean_error_with_suggestions(capsys):
    assert main(["info", "cifar10-plfi"]) == 1
    err = capsys.readouterr().err
    assert "did you mean cifar10-plif" in err and "Traceback" not in err


def test_download_without_published_weights_explains(capsys, no_weights):
    assert main(["download", "mnist-plif"]) == 1
    assert "pretrained=False" in capsys.readouterr().err


def test_download_of_weights_shipped_locally_says_where_they_are(capsys, tmp_path):
    """fashion-mnist-plif's weights ship in weights/: verified there, nothing fetched or cached."""
    from plif_zoo.registry import local_folder

    folder = local_folder("fashion-mnist-plif")
    if folder is None:
        pytest.skip("no weights/fashion-mnist-plif/ in this checkout")
    assert main(["download", "fashion-mnist-plif", "--cache-dir", str(tmp_path / "hub")]) == 0
    out = capsys.readouterr().out
    assert f"verified (sha256) in {folder}; nothing downloaded" in out
    assert not (tmp_path / "hub").exists()


def test_demo_without_weights_says_which_model_and_why_not(capsys, no_weights):
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert (
        "would use fashion-mnist-plif" in err and "no model with sample images has weights" in err
    )


def test_shipped_samples_are_eight_labelled_fashion_mnist_images():
    images, labels = demo.load_samples("fashion-mnist")
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0.1
    assert len(set(labels.tolist())) == 8


def test_demo_with_local_weights_prints_predictions_and_writes_png(capsys, local_weights):
    import matplotlib

    out = local_weights / "demo.png"
    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # as a notebook's inline backend: the demo must not switch it
    try:
        assert main(["demo", "--out", str(out), "--backend", "torch", "--T", "2"]) == 0
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(before)
    text = capsys.readouterr().out
    assert text.startswith("fashion-mnist-plif: 8 sample images")
    assert text.count("(true: ") == 8 and "tau per layer" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_demo_on_cuda_without_cuda_is_one_line(capsys, local_weights):
    assert main(["demo", "--device", "cuda", "--out", str(local_weights / "d.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("plif-zoo demo: error: ") and len(err.splitlines()) == 1, err
    assert "CUDA is not available here" in err and not (local_weights / "d.png").exists()


def test_run_demo_reports_rates_and_taus(local_weights):
    result = demo.run_demo(out=None, backend="torch", T=2)
    assert result.model_id == "fashion-mnist-plif" and result.png is None
    assert result.rates.shape == (8, 10) and len(result.taus) == 4
    assert all(0.0 <= c <= 1.0 for c in result.confidence)
