"""Every published model shipped in weights/: its checksum, and its accuracy on the fixed test
slice that its model card records (the full-test figure is `plif-zoo eval MODEL`)."""

from pathlib import Path

import pytest
import yaml

import plif_zoo
from plif_zoo import training
from plif_zoo._io import sha256_file
from plif_zoo.model_folder import model_card, read_config
from plif_zoo.registry import PUBLISHED_WEIGHTS, model_info

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
FOLDERS = (
    sorted(p.name for p in WEIGHTS.iterdir() if (p / "config.json").is_file())
    if WEIGHTS.is_dir()
    else []
)
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def test_every_weights_folder_is_registered():
    assert set(FOLDERS) <= set(PUBLISHED_WEIGHTS)


@pytest.mark.parametrize("model_id", FOLDERS)
def test_checksum_matches_the_registry(model_id):
    folder = WEIGHTS / model_id
    digest = sha256_file(folder / "model.safetensors")
    assert digest == PUBLISHED_WEIGHTS[model_id]["sha256"]
    assert digest == read_config(folder)["files"]["model.safetensors"]["sha256"]
    assert model_info(model_id).has_weights


@pytest.mark.parametrize("model_id", FOLDERS)
def test_accuracy_on_the_cards_test_slice(model_id):
    card = read_config(WEIGHTS / model_id)["card"]
    if model_info(model_id).dataset == "fashion-mnist" and not FASHION_MNIST.is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist (scripts/setup.sh installs it)")
    check = card["slice_check"]
    model = plif_zoo.load(model_id)  # through the registry: sha256 checked before loading
    result = training.evaluate(
        model, model_info(model_id).dataset, split=check["split"], max_samples=check["samples"]
    )
    assert result["samples"] == check["samples"]
    # One image of slack for float summation order across thread counts.
    assert abs(result["top1"] - check["top1"]) <= 1.0 / check["samples"] + 1e-9
    assert card["metrics"]["accuracy_b"] == PUBLISHED_WEIGHTS[model_id]["accuracy"]


def _metadata(card_text: str) -> dict:
    return yaml.safe_load(card_text.split("---\n")[1])


@pytest.mark.parametrize("model_id", FOLDERS)
def test_model_card_rebuilt_from_config_matches_the_shipped_card(model_id):
    # The shipped README.md files are pinned (never rewritten); the card writer must still
    # produce the same metadata (model-index metrics included) and the same body from config.json.
    folder = WEIGHTS / model_id
    shipped = (folder / "README.md").read_text()
    rebuilt = model_card(read_config(folder))
    assert _metadata(rebuilt) == _metadata(shipped)
    assert _metadata(rebuilt)["model-index"][0]["results"][0]["metrics"][0]["name"] == "accuracy_b"
    assert rebuilt.split("---\n", 2)[2] == shipped.split("---\n", 2)[2]
