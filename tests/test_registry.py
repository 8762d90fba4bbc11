"""Registry ids, metadata, load/create_model and model folders (save_pretrained, local weights)."""

import dataclasses
import json
import re
import warnings

import pytest
import torch

import plif_zoo
from plif_zoo import registry
from plif_zoo._io import sha256_file
from plif_zoo.errors import (
    ChecksumError,
    ModelFolderError,
    NoPretrainedWeightsError,
    UnknownModelError,
)

DATASETS = ["mnist", "fashion-mnist", "cifar10", "nmnist", "cifar10-dvs", "dvs128-gesture"]
VARIANTS = ["plif", "lif", "plif-tau16", "lif-tau16", "plif-avgpool"]


@pytest.fixture
def no_local_weights(monkeypatch, tmp_path):
    """Point weight lookup at an empty folder so a repository weights/ folder does not interfere."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setattr(registry, "weights_dirs", lambda: [empty])
    return empty


def test_every_dataset_has_the_papers_variants():
    ids = plif_zoo.list_models()
    for dataset in DATASETS:
        for variant in VARIANTS:
            assert f"{dataset}-{variant}" in ids


def test_list_models_matches_shell_wildcards():
    assert plif_zoo.list_models("cifar10-dvs-*") == sorted(
        f"cifar10-dvs-{v}" for v in VARIANTS + ["lif-avgpool"]
    )
    assert plif_zoo.list_models("*-tau16") == sorted(
        f"{d}-{n}-tau16" for d in DATASETS for n in ("plif", "lif")
    )
    assert plif_zoo.list_models("nothing*") == []


def test_list_pretrained_is_empty_until_weights_exist(no_local_weights):
    on_hub = sorted(i for i, entry in registry.PUBLISHED_WEIGHTS.items() if entry.get("revision"))
    assert plif_zoo.list_models(pretrained=True) == on_hub


def test_model_info_holds_everything_known():
    info = plif_zoo.model_info("cifar10-dvs-plif")
    assert info.dataset == "cifar10-dvs"
    assert info.input_shape == (20, 2, 128, 128) and info.T == 20
    assert info.num_classes == 10 and info.label_names[0] == "airplane"
    assert (info.neuron, info.init_tau, info.pooling) == ("plif", 2.0, "max")
    assert (info.paper_accuracy_a, info.paper_accuracy_b) == (74.80, 69.00)
    assert info.num_params == sum(p.numel() for p in _meta("cifar10-dvs-plif").parameters())
    row = info.as_dict()
    for key in (
        "hf_repo",
        "revision",
        "filename",
        "sha256",
        "license",
        "accuracy",
        "accuracy_protocol",
        "label_names",
        "num_params",
    ):
        assert key in row
    json.dumps(row)


@pytest.mark.parametrize(
    "model_id, a, source",
    [
        ("fashion-mnist-lif", 94.17, "Table 4"),
        ("cifar10-lif-tau16", 47.50, "Table 4"),
        ("dvs128-gesture-plif-tau16", 92.01, "Table 4"),
        ("cifar10-dvs-plif-avgpool", 72.70, "Table 5"),
        ("mnist-lif", None, None),
    ],
)
def test_ablation_accuracies_come_from_tables_4_and_5(model_id, a, source):
    info = plif_zoo.model_info(model_id)
    assert (info.paper_accuracy_a, info.paper_accuracy_b, info.paper_source) == (a, None, source)


def test_dvs128_gesture_has_eleven_labels():
    info = plif_zoo.model_info("dvs128-gesture-lif")
    assert info.num_classes == len(info.label_names) == 11


def _meta(name):
    with torch.device("meta"):
        return plif_zoo.create_model(name)


def test_unknown_id_lists_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean fashion-mnist-plif"):
        plif_zoo.model_info("fashion-mnist-plfi")
    with pytest.raises(KeyError):
        plif_zoo.load("cifar100-plif", pretrained=False)


@pytest.mark.parametrize("bad", ["../cifar10-plif", "cifar10/plif", "CIFAR10-PLIF", ""])
def test_ids_with_path_parts_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid model id"):
        plif_zoo.load(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "hf-hub:../x",
        "hf-hub:org/../x",
        "hf-hub:a/b/c",
        "hf-hub:org/name@../../x",
        "hf-hub:org--x/y",
    ],
)
def test_hub_names_with_path_traversal_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid"):
        plif_zoo.load(bad)


def test_no_published_weights_says_so_and_shows_pretrained_false(no_local_weights):
    with pytest.raises(NoPretrainedWeightsError, match=r"pretrained=False"):
        plif_zoo.load("cifar10-lif-tau16")


def test_create_model_equals_load_without_weights():
    torch.manual_seed(0)
    a = plif_zoo.create_model("mnist-plif", T=3, num_classes=7)
    torch.manual_seed(0)
    b = plif_zoo.load("mnist-plif", pretrained=False, T=3, num_classes=7)
    assert a.config == b.config and a.T == 3 and a.num_classes == 7
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_untrained_models_accept_architecture_changes_pretrained_do_not():
    model = plif_zoo.create_model("fashion-mnist-plif", init_tau=4.0)
    assert all(abs(t - 4.0) < 1e-4 for t in model.taus().values())
    with pytest.raises(TypeError, match="unknown arguments"):
        plif_zoo.create_model("fashion-mnist-plif", colour="red")
    with pytest.raises(TypeError, match="pretrained=False"):
        plif_zoo.load("fashion-mnist-plif", init_tau=4.0)


def _saved(tmp_path, name="fashion-mnist-plif", **card):
    torch.manual_seed(1)
    model = plif_zoo.create_model(name, T=2, backend="torch")
    folder = plif_zoo.save_pretrained(model, tmp_path / name, model_id=name, **card)
    return model.eval(), folder


def test_a_card_claims_the_registry_only_for_the_registry_network(tmp_path):
    _, same = _saved(tmp_path)
    card = json.loads((same / "config.json").read_text())["card"]
    assert card["paper_metrics"]["accuracy_b"] == 93.85 and len(card["label_names"]) == 10
    assert 'plif_zoo.load("fashion-mnist-plif")' in (same / "README.md").read_text()
    five = plif_zoo.create_model("fashion-mnist-plif", num_classes=5)  # e.g. fine-tuned
    other = plif_zoo.save_pretrained(five, tmp_path / "five", model_id="fashion-mnist-plif")
    card = json.loads((other / "config.json").read_text())["card"]
    assert not {"paper_metrics", "label_names", "dataset"} & set(card)
    assert 'plif_zoo.load("local-dir:PATH")' in (other / "README.md").read_text()


def test_save_pretrained_writes_a_hub_model_folder(tmp_path):
    model, folder = _saved(
        tmp_path, metrics={"accuracy_b": 91.5}, hardware="2-core CPU", protocol="accuracy-B"
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["files"]["model.safetensors"]["sha256"] == sha256_file(
        folder / "model.safetensors"
    )
    assert config["architecture"]["T"] == 2
    assert config["card"]["metrics"] == {"accuracy_b": 91.5}
    assert set(config["card"]["taus"]) == {n for n, _ in model.spiking_layers()}
    assert config["card"]["label_names"][0] == "T-shirt/top"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "model-index:" in card and "value: 91.5" in card
    assert b"pickle" not in (folder / "model.safetensors").read_bytes()[:200]


def test_save_pretrained_rejects_non_json_card_fields(tmp_path):
    model = plif_zoo.create_model("mnist-lif", T=1)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        plif_zoo.save_pretrained(model, tmp_path, recipe=object())
    with pytest.raises(TypeError, match="metrics must be a dict"):
        plif_zoo.save_pretrained(model, tmp_path, metrics=[93.0])


def test_local_dir_loads_the_same_model(tmp_path):
    model, folder = _saved(tmp_path)
    again = plif_zoo.load(f"local-dir:{folder}", backend="torch").eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert again.T == 2


def test_registered_checksum_rejects_other_weights_in_plif_zoo_weights(tmp_path, monkeypatch):
    _saved(tmp_path)
    monkeypatch.setenv("PLIF_ZOO_WEIGHTS", str(tmp_path))
    monkeypatch.setitem(
        registry._REGISTRY,
        "fashion-mnist-plif",
        dataclasses.replace(
            registry.model_info("fashion-mnist-plif"),
            weights=registry.WeightSource(
                hf_repo="plif-zoo/fashion-mnist-plif", revision=None, sha256="0" * 64, license="MIT"
            ),
        ),
    )
    with pytest.raises(ChecksumError, match="other weights than the registered ones"):
        plif_zoo.load("fashion-mnist-plif", backend="torch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "device, message",
    [("cuda", "CUDA is not available here"), ("gpu", "use 'cpu', 'cuda' or 'cuda:N'")],
)
def test_load_on_a_device_this_machine_lacks_says_so(tmp_path, device, message):
    _, folder = _saved(tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)):
        plif_zoo.load(f"local-dir:{folder}", device=device)


def test_registry_id_loads_from_plif_zoo_weights_folder(tmp_path, monkeypatch):
    model, folder = _saved(tmp_path)
    monkeypatch.setenv("PLIF_ZOO_WEIGHTS", str(tmp_path))
    # Random weights: switch off the registered checksum of the published model.
    monkeypatch.setitem(
        registry._REGISTRY,
        "fashion-mnist-plif",
        dataclasses.replace(registry.model_info("fashion-mnist-plif"), weights=None),
    )
    assert registry.weights_dirs()[0] == tmp_path
    assert "fashion-mnist-plif" in plif_zoo.list_models(pretrained=True)
    again = plif_zoo.load("fashion-mnist-plif", T=4, backend="torch")
    assert again.T == 4
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_tampered_local_weights_fail_the_checksum(tmp_path):
    _, folder = _saved(tmp_path)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="model.safetensors"):
        plif_zoo.load(f"local-dir:{folder}")


def test_new_class_count_rebuilds_only_the_output_layer(tmp_path):
    model, folder = _saved(tmp_path)
    with pytest.warns(UserWarning, match="classifier.5.weight"):
        tuned = plif_zoo.load(f"local-dir:{folder}", num_classes=3, backend="torch")
    kept = {k: v for k, v in tuned.state_dict().items() if k != "classifier.5.weight"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in kept.items())
    assert tuned.num_classes == 3 and tuned(torch.rand(1, 1, 28, 28)).shape == (1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plif_zoo.load(f"local-dir:{folder}", num_classes=10)


def test_folder_without_config_says_what_a_model_folder_holds(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        plif_zoo.load(f"local-dir:{tmp_path}")


def _readme_table_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "readme_table.py"
    spec = importlib.util.spec_from_file_location("readme_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_table_has_one_row_per_id_in_paper_order():
    rows = registry.markdown_table().splitlines()[2:]
    ids = [row.split("`")[1] for row in rows]
    assert sorted(ids) == plif_zoo.list_models() and ids[0] == "mnist-plif"
    assert "| `cifar10-plif` | cifar10 | 3x32x32 | 8 | 36.72M | 93.50% | 92.58% | - | no |" in rows


def test_readme_table_script_replaces_between_markers(tmp_path):
    script = _readme_table_script()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{script.START}\nold\n{script.END}\nrest\n")
    assert script.main(["--check", "--readme", str(readme)]) == 1
    assert script.main(["--write", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "| `mnist-plif` |" in text
    assert script.main(["--check", "--readme", str(readme)]) == 0


def test_readme_zoo_table_is_current():
    script = _readme_table_script()
    if script.START not in script.README.read_text():
        pytest.skip("README.md has no zoo-table markers yet")
    assert script.main(["--check"]) == 0, "run python scripts/readme_table.py --write"


def test_one_published_weights_line_registers_a_weights_folder(tmp_path, monkeypatch):
    model, folder = _saved(
        tmp_path / "weights", metrics={"accuracy_b": 91.25}, protocol="accuracy-B, test"
    )
    line = registry.published_entry(folder, None)
    entry = eval("{" + line + "}")  # the line as it would be pasted into PUBLISHED_WEIGHTS
    monkeypatch.setattr(registry, "PUBLISHED_WEIGHTS", entry)
    monkeypatch.setattr(registry, "_REGISTRY", registry._build_registry())
    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "weights"])

    info = plif_zoo.model_info("fashion-mnist-plif")
    assert (info.accuracy, info.accuracy_protocol) == (91.25, "accuracy-B, test")
    assert info.weights.sha256 == sha256_file(folder / "model.safetensors")
    assert info.weights.revision is None and info.has_weights
    assert plif_zoo.list_models("fashion*", pretrained=True) == ["fashion-mnist-plif"]
    assert (
        "| 91.25% (accuracy-B, test) | yes (`weights/fashion-mnist-plif/`) |"
        in registry.markdown_table()
    )
    loaded = plif_zoo.load("fashion-mnist-plif", backend="torch")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )

    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "elsewhere"])
    assert plif_zoo.list_models("fashion*", pretrained=True) == []
    with pytest.raises(FileNotFoundError, match="not on the Hub yet.*weights/fashion-mnist-plif/"):
        plif_zoo.load("fashion-mnist-plif")


def test_registered_sha256_rejects_other_weights_in_the_folder(tmp_path, monkeypatch):
    _, folder = _saved(tmp_path / "weights")
    info = registry.model_info("fashion-mnist-plif")
    monkeypatch.setitem(
        registry._REGISTRY,
        "fashion-mnist-plif",
        dataclasses.replace(
            info,
            weights=registry.WeightSource(
                hf_repo="plif-zoo/fashion-mnist-plif", revision=None, sha256="0" * 64
            ),
        ),
    )
    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "weights"])
    with pytest.raises(ChecksumError, match="other weights than the registered ones"):
        plif_zoo.load("fashion-mnist-plif")


# The zoo modules import plif_zoo modules at module level only (what they may import, the
# layers, is pyproject.toml's import-linter contract, checked below and by scripts/test.sh).
ZOO_MODULES = ["errors", "model_folder", "registry", "hub", "factory", "demo"]


def _plif_zoo_imports(tree) -> list[tuple[str, bool]]:
    """(imported plif_zoo module, at module level?) for each import in a module's AST."""
    import ast

    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plif_zoo"):
            names = [node.module.partition(".")[2] or "__init__"]
        elif isinstance(node, ast.Import):
            names = [
                a.name.partition(".")[2] or "__init__"
                for a in node.names
                if a.name.startswith("plif_zoo")
            ]
        else:
            continue
        found += [(name.split(".")[0], id(node) in top) for name in names]
    return found


@pytest.mark.parametrize("module", ZOO_MODULES)
def test_zoo_modules_import_plif_zoo_at_module_level(module):
    import ast
    from pathlib import Path

    source = Path(plif_zoo.__file__).with_name(f"{module}.py").read_text()
    imports = _plif_zoo_imports(ast.parse(source))
    assert all(top for _, top in imports), f"{module}: a plif_zoo import inside a function"


def test_import_layers_contract_is_kept():
    # pyproject.toml [tool.importlinter]: imports point down the layers (function-level ones
    # too), no cycle between siblings, no `import plif_zoo` from inside the package.
    import subprocess
    import sys
    from pathlib import Path

    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter not installed (pip install -e '.[test]')")
    root = Path(__file__).resolve().parents[1]
    cmd = [str(lint), "--no-cache"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert " kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    "field, value",
    [("mean", [0.5]), ("std", [1.0]), ("v_threshold", 0.5), ("pooling", "avg"), ("init_tau", 3.0)],
)
def test_edited_config_of_a_registry_id_names_the_differing_field(
    tmp_path, monkeypatch, field, value
):
    # Issue 12, item 2: intact weights (sha256 pinned) with an edited config.json must not load
    # as the registry's model; the folder still loads as what it is (local-dir:).
    _, folder = _saved(tmp_path / "weights")
    info = registry.model_info("fashion-mnist-plif")
    monkeypatch.setitem(
        registry._REGISTRY,
        "fashion-mnist-plif",
        dataclasses.replace(
            info,
            weights=registry.WeightSource(
                hf_repo="plif-zoo/fashion-mnist-plif",
                revision=None,
                sha256=sha256_file(folder / "model.safetensors"),
            ),
        ),
    )
    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "weights"])
    plif_zoo.load("fashion-mnist-plif")  # intact: loads
    config = json.loads((folder / "config.json").read_text())
    config["architecture"][field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelFolderError, match="registry's architecture.*" + re.escape(f"{field}: {value!r}")
    ):
        plif_zoo.load("fashion-mnist-plif")
    assert plif_zoo.load(f"local-dir:{folder}").config.to_dict()[field] == value


def test_readme_says_what_is_verified():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "every file's sha256 is checked" not in readme
    assert "config.json" in readme and "architecture" in readme
