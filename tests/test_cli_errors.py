"""Issue 12: a wrong flag, a damaged model folder or a closed pipe is one line
`plif-zoo CMD: error: ...` and a non-zero exit, never a traceback, and nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import plif_zoo
from plif_zoo.cli import BACKENDS, main
from plif_zoo.model_folder import WEIGHTS_NAME

MODEL_ID = "mnist-lif"


def one_line_error(capsys, argv: list[str], command: str, *needles: str) -> str:
    """Run the CLI in-process; assert a non-zero exit and one `plif-zoo CMD: error:` line."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's exit on a bad flag
        code = stop.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code not in (0, None), err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"plif-zoo {command}: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", MODEL_ID, "--device", "bogus"], "unknown device 'bogus'"),
        (["train", MODEL_ID, "--threads", "-1"], "--threads: expected a positive integer"),
        (["train", MODEL_ID, "--dataset", "bogus"], "unknown dataset 'bogus'"),
        (["train", MODEL_ID, "--lr", "inf"], "--lr: expected a finite number > 0"),
        (["train", MODEL_ID, "--lr", "nan"], "--lr: expected a finite number > 0"),
        (["train", MODEL_ID, "--lr", "0"], "--lr: expected a finite number > 0"),
        (
            ["train", MODEL_ID, "--checkpoint-every", "-1"],
            "--checkpoint-every: expected an integer >= 0",
        ),
        (["train", MODEL_ID, "--epochs", "0"], "--epochs"),
        (["train", MODEL_ID, "--batch-size", "-3"], "--batch-size"),
        (["train", MODEL_ID, "--t-max", "0"], "--t-max"),
        (["train", MODEL_ID, "--seed", "-1"], "--seed"),
        (["train", MODEL_ID, "--T", "0"], "--T"),
        (
            ["train", MODEL_ID, "--val-fraction", "1.0"],
            "--val-fraction: expected a fraction in [0, 1)",
        ),
        (["train", MODEL_ID, "--val-fraction", "nan"], "--val-fraction"),
        (["train", MODEL_ID, "--max-train-samples", "0"], "--max-train-samples"),
        (["train", MODEL_ID, "--max-eval-samples", "-5"], "--max-eval-samples"),
        (["train", MODEL_ID, "--eval-batch-size", "0"], "--eval-batch-size"),
        (["train", MODEL_ID, "--num-workers", "-1"], "--num-workers"),
        (["train", MODEL_ID, "--backend", "gpu"], "--backend"),
        (["finetune", MODEL_ID, "--num-classes", "0"], "--num-classes"),
        (["finetune", MODEL_ID, "--num-classes", "3", "--lr", "-inf"], "--lr"),
        (["finetune", MODEL_ID, "--num-classes", "3"], "required: --data-dir"),
        (
            ["eval", MODEL_ID, "--batch-size", "0"],
            "--batch-size: expected a positive integer, got 0",
        ),
        (["eval", MODEL_ID, "--max-eval-samples", "-5"], "--max-eval-samples"),
        (["eval", MODEL_ID, "--device", "bogus"], "unknown device"),
        (["eval", MODEL_ID, "--val-fraction", "0.2"], "--val-fraction applies to --split val"),
        (["demo", "--T", "0"], "--T"),
        (["export", MODEL_ID, "-o", "x.nir", "--dt", "inf"], "--dt"),
    ],
)
def test_bad_flag_values_are_one_line_errors(capsys, argv, needle):
    one_line_error(capsys, argv, argv[0], needle)


def test_yaml_config_with_a_syntax_error_names_the_file(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: mnist-lif\nlr: [1, 2\n")
    one_line_error(
        capsys,
        ["train", str(config), "--out", str(tmp_path / "run")],
        "train",
        f"{config} is not valid YAML",
        "line 2",
    )
    assert not (tmp_path / "run").exists()


def test_eval_of_a_path_that_does_not_exist_says_so(capsys, tmp_path):
    missing = tmp_path / "no" / "such-model"
    err = one_line_error(capsys, ["eval", str(missing)], "eval", f"{missing} does not exist")
    assert "invalid model id" not in err


def test_cli_backends_are_the_packages():
    from plif_zoo import backends

    assert BACKENDS == backends.NAMES


def test_list_into_a_closed_pipe_ends_quietly():
    plif_zoo_bin = Path(sys.executable).with_name("plif-zoo")
    proc = subprocess.run(
        f"'{plif_zoo_bin}' list | head -2",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        executable="/bin/bash",
    )
    assert len(proc.stdout.splitlines()) == 2
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- damaged model folders


@pytest.fixture
def folder(tmp_path) -> Path:
    torch.manual_seed(0)
    model = plif_zoo.create_model(MODEL_ID, T=1, backend="torch")
    return plif_zoo.save_pretrained(model, tmp_path / MODEL_ID, model_id=MODEL_ID)


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _eval_folder(capsys, folder: Path, *needles: str) -> str:
    before = sorted(p.name for p in folder.iterdir())
    err = one_line_error(capsys, ["eval", str(folder), "--pretrained", "true"], "eval", *needles)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written or removed
    return err


def test_config_with_other_layer_sizes_than_the_weights(capsys, folder):
    _edit_config(folder, lambda c: c["architecture"].update(channels=64))
    _eval_folder(capsys, folder, "config.json does not fit", "size mismatch")


def test_config_with_more_layers_than_the_weights(capsys, folder):
    _edit_config(folder, lambda c: c["architecture"].update(fc_hidden=[], fc_dropout=[True]))
    _eval_folder(capsys, folder, "config.json does not fit", "Unexpected key(s)")


def test_architecture_a_list(capsys, folder):
    _edit_config(folder, lambda c: c.update(architecture=[1, 2]))
    _eval_folder(capsys, folder, "not a plif-zoo config", "'architecture' (an object)")


def test_files_a_string(capsys, folder):
    _edit_config(folder, lambda c: c.update(files="model.safetensors"))
    _eval_folder(capsys, folder, "not a plif-zoo config", "'files'")


@pytest.mark.parametrize("sha256", [None, "", "abc", 5])
def test_a_weights_entry_without_a_sha256_is_refused(capsys, folder, sha256):
    def edit(c):
        entry = c["files"]["model.safetensors"]
        entry.pop("sha256") if sha256 is None else entry.update(sha256=sha256)

    _edit_config(folder, edit)
    _eval_folder(capsys, folder, "not a plif-zoo config", "'sha256' (64 hex digits)")
    one_line_error(capsys, ["export", str(folder), "-o", str(folder.parent / "x.nir")], "export")


def test_create_model_with_a_wrong_value_says_which_field():
    with pytest.raises(ValueError, match="NetworkConfig.input_size must be a sequence of int"):
        plif_zoo.create_model(MODEL_ID, input_size=32)


def test_architecture_with_a_bad_value(capsys, folder):
    _edit_config(folder, lambda c: c["architecture"].update(stages="abc"))
    _eval_folder(capsys, folder, "bad 'architecture'")


def test_non_utf8_config_names_the_file(capsys, folder):
    (folder / "config.json").write_bytes(b'{"library": "\xff\xfe"}')
    _eval_folder(capsys, folder, f"{folder / 'config.json'} is not UTF-8")


@pytest.mark.parametrize("size", ["empty", "half"])
def test_truncated_weights_whose_recorded_sha256_matches(capsys, folder, size):
    weights = folder / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(b"" if size == "empty" else data[: len(data) // 2])
    from plif_zoo._io import sha256_file

    _edit_config(folder, lambda c: c["files"][WEIGHTS_NAME].update(sha256=sha256_file(weights)))
    _eval_folder(capsys, folder, f"{weights} cannot be read as safetensors", "truncated or damaged")


def test_plif_zoo_weights_folder_without_config_is_skipped_with_a_warning(
    folder, tmp_path, monkeypatch
):
    from plif_zoo import registry

    broken = tmp_path / "first" / MODEL_ID
    broken.mkdir(parents=True)
    (broken / WEIGHTS_NAME).write_bytes((folder / WEIGHTS_NAME).read_bytes())
    monkeypatch.setenv(
        "PLIF_ZOO_WEIGHTS", os.pathsep.join([str(tmp_path / "first"), str(tmp_path)])
    )
    with pytest.warns(UserWarning, match=rf"skipped {broken}: it has no config.json"):
        assert registry.local_folder(MODEL_ID) == folder


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--out", "{tmp}/demo.png"], "the demo's figure needs matplotlib"),
        (["plot", "{tmp}"], "plotting needs matplotlib"),
    ],
)
def test_a_missing_optional_package_names_its_extra(capsys, monkeypatch, tmp_path, argv, needle):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    one_line_error(capsys, argv, argv[0], needle, "pip install 'plif-zoo[train]'")
    assert list(tmp_path.iterdir()) == []
