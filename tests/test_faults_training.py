"""Issue 12, training: every state a kill leaves resumes, one training per run folder, verified
checkpoints (old ones without a record still resume), non-finite values stop a run, read-only
and full disks give one line and lose nothing, class counts are checked against the data."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from itertools import product
from pathlib import Path

import pytest
import torch
from test_faults_data import _png_folder
from test_training import TINY, assert_same_weights, run, weights

import plif_zoo
from plif_zoo import cli, training
from plif_zoo.errors import CheckpointError, NonFiniteError, RunFolderError, RunLockedError
from plif_zoo.training import checkpoint as ckpt_mod
from plif_zoo.training import run_dir

pytestmark = pytest.mark.fashion_mnist


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """A finished 1-epoch run; tests copy it before changing anything."""
    tmp = tmp_path_factory.mktemp("base")
    run(tmp, "run")
    return tmp / "run"


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def main(capsys, *argv: str) -> tuple[int, str]:
    """``plif-zoo ARGV`` in this process: (exit code, stderr)."""
    os.environ.pop("PLIF_ZOO_DEBUG", None)
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(err: str, command: str) -> None:
    assert (
        err.startswith(f"plif-zoo {command}: error: ")
        and err.count("\n") == 1
        and "Traceback" not in err
    )


def no_temp_files(folder: Path) -> bool:
    return not [
        p
        for p in folder.rglob("*")
        if p.name.endswith(".tmp") or p.name in ("best.tmp", "best.old")
    ]


def force_new_best(out: Path) -> None:
    """Rewrite the checkpoint (in the old format, without a sha256 record) so that the next
    epoch is a new best/ whatever its accuracy: the next save_best runs for sure."""
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt["best_val"] = -1.0
    torch.save(ckpt, out / "checkpoint.pt")
    (out / "checkpoint.pt.sha256").unlink(missing_ok=True)


# --------------------------------------------------------------------------- item 4: kill states


def _partial(folder: Path) -> None:
    """What a kill halfway through writing or removing a model folder leaves."""
    (folder / "model.safetensors").unlink()


@pytest.mark.parametrize(
    "has_best,tmp,old",
    list(product([True, False], ["none", "partial", "complete"], ["none", "partial", "complete"])),
)
def test_recover_best_leaves_one_complete_best_folder(one_epoch, tmp_path, has_best, tmp, old):
    out = copy_run(one_epoch, tmp_path / "run")
    good = out / "best"
    for name, kind in (("best.tmp", tmp), ("best.old", old)):
        if kind != "none":
            shutil.copytree(good, out / name)
            if kind == "partial":
                _partial(out / name)
    if not has_best:
        shutil.rmtree(good)
    run_dir.recover_best(out)
    assert not (out / "best.tmp").exists() and not (out / "best.old").exists()
    if has_best or old == "complete":
        assert plif_zoo.load(f"local-dir:{out / 'best'}", backend="torch").num_classes == 10
    else:  # best.old is only ever partial while best/ exists; without both there was no best yet
        assert not (out / "best").exists()


def _newer_best(out: Path) -> None:
    """What a kill after best/ is swapped but before the epoch's checkpoint leaves: best/ of an
    epoch the checkpoint never saw (here: 2, other weights), best.old of the one it did."""
    shutil.copytree(out / "best", out / "best.old")
    torch.manual_seed(9)
    model = plif_zoo.create_model(TINY["model"], T=TINY["T"], **TINY["model_kwargs"])
    config = json.loads((out / "best" / "config.json").read_text())
    shutil.rmtree(out / "best")
    plif_zoo.save_pretrained(model, out / "best", **{**config["card"], "best_epoch": 2})


def test_a_kill_between_a_new_best_and_its_checkpoint_puts_the_checkpoints_best_back(
    one_epoch, tmp_path
):
    out = copy_run(one_epoch, tmp_path / "run")
    before = (out / "best" / "model.safetensors").read_bytes()
    _newer_best(out)
    run(out.parent, "run", epochs=1, resume=True)  # takes the folder; nothing left to train
    assert (out / "best" / "model.safetensors").read_bytes() == before
    assert json.loads((out / "best" / "config.json").read_text())["card"]["best_epoch"] == 1
    assert no_temp_files(out)


def test_a_failed_checkpoint_after_a_new_best_puts_the_previous_best_back(
    one_epoch, tmp_path, monkeypatch
):
    from plif_zoo.training import loop

    out = copy_run(one_epoch, tmp_path / "run")
    force_new_best(out)  # epoch 2 replaces best/
    before = (out / "best" / "model.safetensors").read_bytes()

    def interrupted(run_, state):
        raise KeyboardInterrupt  # Ctrl-C while the epoch's checkpoint is written

    monkeypatch.setattr(loop, "_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(out.parent, "run", epochs=2, resume=True)
    assert (out / "best" / "model.safetensors").read_bytes() == before
    assert no_temp_files(out)


KILL_STATES = {
    "best + partial best.old (issue 12)": dict(old="partial"),
    "best.old + complete best.tmp, no best": dict(old="complete", tmp="complete", best=False),
    "best + partial best.tmp": dict(tmp="partial"),
    "checkpoint temp files": dict(ckpt_tmp=True),
    "all four": dict(old="partial", tmp="partial", ckpt_tmp=True),
}


@pytest.mark.parametrize("state", KILL_STATES)
def test_a_run_resumes_from_every_state_a_kill_leaves(one_epoch, tmp_path, state):
    spec = KILL_STATES[state]
    out = copy_run(one_epoch, tmp_path / "run")
    force_new_best(out)
    for name in ("tmp", "old"):
        if name in spec:
            shutil.copytree(out / "best", out / f"best.{name}")
            if spec[name] == "partial":
                _partial(out / f"best.{name}")
    if spec.get("best", True) is False:
        shutil.rmtree(out / "best")
    if spec.get("ckpt_tmp"):
        (out / "checkpoint.pt.tmp").write_bytes(b"\0" * 1000)
        (out / ".checkpoint.pt.x1y2.tmp").write_bytes(b"\0" * 1000)
    result = run(tmp_path, "run", epochs=2, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
    card = json.loads((out / "best" / "config.json").read_text())["card"]
    assert card["best_epoch"] == 2
    plif_zoo.load(f"local-dir:{out / 'best'}", backend="torch")
    assert no_temp_files(out)


# ----------------------------------------------------------------- item 5: one run per folder


HOLD = textwrap.dedent("""
    import sys, time
    from plif_zoo.training.run_lock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_training_into_the_same_folder_refuses_and_names_the_holder(
    tmp_path, tiny_config, capsys, monkeypatch
):
    out = tmp_path / "run"
    holder = _holder(out)
    try:
        monkeypatch.setattr(
            training.datasets.data_mod, "get_dataset", lambda *a, **k: pytest.fail("data was read")
        )
        with pytest.raises(
            RunLockedError, match=rf"{out} is in use by another training \(pid {holder.pid} on "
        ):
            run(tmp_path, "run")
        config = tiny_config
        code, err = main(capsys, "train", str(config), "--out", str(out), "--epochs", "1")
        assert code == 1 and f"pid {holder.pid}" in err
        assert_one_line_error(err, "train")
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "checkpoint.pt").exists() and not (out / "config.json").exists()


def test_a_killed_training_does_not_leave_its_folder_locked(tmp_path):
    out = tmp_path / "run"
    holder = _holder(out)
    holder.kill()  # SIGKILL: no clean-up ran
    holder.wait()
    assert f"pid {holder.pid}" in (out / "train.lock").read_text()
    result = run(tmp_path, "run")
    assert result.epochs == 1
    with training.run_lock.RunLock(out):  # released at the end of the run
        pass


# ------------------------------------------------------------- item 6: verified checkpoints


def _flip_middle_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("legacy", [False, True], ids=["recorded", "old-format"])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_checkpoint_is_refused_naming_the_file(
    one_epoch, tmp_path, tiny_config, capsys, damage, legacy
):
    out = copy_run(one_epoch, tmp_path / "run")
    path = out / "checkpoint.pt"
    assert (out / "checkpoint.pt.sha256").read_text().split() == [
        ckpt_mod.sha256_file(path),
        "checkpoint.pt",
    ]
    if legacy:
        (out / "checkpoint.pt.sha256").unlink()
    if damage == "flip":
        _flip_middle_byte(path)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"{path} (is damaged|cannot be loaded)") as err:
        training.load_checkpoint(out)
    assert "\n" not in str(err.value)
    config = tiny_config
    code, err = main(capsys, "train", str(config), "--out", str(out), "--epochs", "2", "--resume")
    assert code == 1 and str(path) in err
    assert_one_line_error(err, "train")


def test_a_checkpoint_in_the_old_format_without_a_record_resumes(one_epoch, tmp_path):
    """Runs in progress (checkpoint format 1, no sha256 record) resume and end bit-identical."""
    straight = run(tmp_path, "straight", epochs=2)
    out = copy_run(one_epoch, tmp_path / "old")
    (out / "checkpoint.pt.sha256").unlink()
    resumed = run(tmp_path, "old", epochs=2, resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert_same_weights(weights(tmp_path / "straight"), weights(out))
    assert straight.history[-1]["test_top1"] == resumed.history[-1]["test_top1"]
    record = (out / "checkpoint.pt.sha256").read_text().splitlines()
    assert record == [f"{ckpt_mod.sha256_file(out / 'checkpoint.pt')}  checkpoint.pt"]


def test_a_kill_between_record_and_rename_leaves_a_matching_pair(one_epoch, tmp_path, monkeypatch):
    out = copy_run(one_epoch, tmp_path / "run")
    ckpt = training.load_checkpoint(out)
    real_replace = os.replace

    def killed(src, dst):
        if Path(dst).name == "checkpoint.pt":
            raise KeyboardInterrupt  # the process dies after the record named both files
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    cfg = training.TrainConfig(**{k: v for k, v in ckpt["config"].items()})
    state = training.RunState()
    state.load_state_dict(ckpt)
    state.epoch = 7
    model = torch.nn.Linear(2, 2)
    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.save_checkpoint(out / "checkpoint.pt", cfg, state, {"model": model}, ckpt["rng"])
    monkeypatch.setattr(os, "replace", real_replace)
    assert len((out / "checkpoint.pt.sha256").read_text().splitlines()) == 2  # old and new accepted
    assert training.load_checkpoint(out)["epoch"] == 1  # the old file, verified
    assert no_temp_files(out)


# --------------------------------------------------------------- item 7: non-finite values


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr", float("inf")),
        ("lr", float("nan")),
        ("lr", 0.0),
        ("weight_decay", float("nan")),
        ("weight_decay", -1.0),
        ("checkpoint_every", -1),
        ("epochs", 0),
        ("epochs", True),
        ("batch_size", 2.5),
        ("val_fraction", float("nan")),
        ("T", 0),
        ("num_classes", 0),
        ("threads", -1),
        ("num_workers", -1),
        ("max_eval_samples", -5),
        ("seed", 2**64),
        ("image_shape", [1, 28]),
        ("eval_batch_size", 0),
    ],
)
def test_out_of_range_config_values_are_refused_in_python(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must "):
        training.TrainConfig(model="fashion-mnist-plif", **{field: value})
    with pytest.raises(ValueError, match=rf"^{field} must "):
        training.load_config("fashion-mnist-plif", **{field: value})


def test_weights_gone_non_finite_are_never_saved(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="non-finite in epoch 1 .*not saved"):
        run(tmp_path, "run", lr=1e37)  # finite, but Adam's first steps overflow the weights
    assert not (out / "best").exists() and not (out / "checkpoint.pt").exists()


def test_a_loss_gone_non_finite_stops_the_run(one_epoch, tmp_path, capsys):
    out = copy_run(one_epoch, tmp_path / "run")
    before = weights(out)
    best_before = (out / "best" / "model.safetensors").read_bytes()
    model = plif_zoo.create_model(
        "fashion-mnist-plif", backend="torch", T=4, **TINY["model_kwargs"]
    )
    calls = iter(range(10**6))
    model.register_forward_hook(lambda m, i, o: o * float("nan") if next(calls) == 2 else o)
    with pytest.raises(
        NonFiniteError, match="loss became nan at epoch 2 step 3; nothing of it was saved"
    ):
        recipe = {k: v for k, v in TINY.items() if k != "model"}
        training.train(
            "fashion-mnist-plif",
            model=model,
            progress=False,
            resume=True,
            epochs=2,
            out=str(out),
            **recipe,
        )
    assert_same_weights(before, weights(out))
    assert (out / "best" / "model.safetensors").read_bytes() == best_before


# --------------------------------------------------------------------------- class counts


@pytest.mark.parametrize("given", [2, 5])
def test_num_classes_must_match_the_class_folders(tmp_path, capsys, given):
    _png_folder(tmp_path / "images", "train", ["bag", "trouser", "tshirt"])
    _png_folder(tmp_path / "images", "test", ["bag", "trouser", "tshirt"])
    with pytest.raises(
        ValueError,
        match=rf"num_classes is {given} but .*train has 3 class folders "
        rf"\(bag, trouser, tshirt\); pass --num-classes 3",
    ):
        run(
            tmp_path,
            "ft",
            dataset="imagefolder",
            data_dir=str(tmp_path / "images"),
            num_classes=given,
        )
    code, err = main(
        capsys,
        "finetune",
        "fashion-mnist-plif",
        "--data-dir",
        str(tmp_path / "images"),
        "--num-classes",
        str(given),
        "--out",
        str(tmp_path / "ft2"),
    )
    assert code == 1 and "pass --num-classes 3" in err
    assert_one_line_error(err, "finetune")


def test_a_hold_out_with_no_sample_stops_before_the_first_epoch(tmp_path):
    _png_folder(tmp_path / "images", "train", ["bag", "tshirt"], per_class=2)  # 15% of 2: 0
    _png_folder(tmp_path / "images", "test", ["bag", "tshirt"], per_class=2)
    with pytest.raises(ValueError, match=r"0.15 holds out no sample.*--val-fraction 0"):
        run(tmp_path, dataset="imagefolder", data_dir=str(tmp_path / "images"), num_classes=2)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_fine_tuning_numbers_test_classes_like_training_ones(one_epoch, tmp_path):
    _png_folder(tmp_path / "images", "train", ["bag", "trouser", "tshirt"], per_class=4)
    _png_folder(tmp_path / "images", "test", ["bag", "tshirt"], per_class=4)
    with pytest.warns(UserWarning, match="no image of the train/ class.*trouser"):
        result = training.finetune(
            f"local-dir:{one_epoch / 'best'}",
            tmp_path / "images",
            3,
            out=str(tmp_path / "ft"),
            epochs=1,
            batch_size=4,
            T=4,
            threads=1,
            val_fraction=0.0,
            backend="torch",
            progress=False,
        )
    assert result.history[0]["test_samples"] == 8


# --------------------------------------------------------------------------- disks


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only: chmod, and (as root, whom chmod does not stop) refuse the temp
    files every write of the package starts with, as a read-only mount does."""
    folders: list[Path] = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and any(Path(dir).resolve() == f.resolve() for f in folders):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder)
        folder.chmod(0o555)
        return folder

    yield make
    for f in folders:
        f.chmod(0o755)


def test_a_read_only_out_folder_is_one_line_before_any_data_is_read(
    tmp_path, tiny_config, capsys, monkeypatch, read_only
):
    out = read_only(tmp_path / "ro")
    monkeypatch.setattr(
        training.datasets.data_mod, "get_dataset", lambda *a, **k: pytest.fail("data was read")
    )
    with pytest.raises(
        RunFolderError, match=rf"run folder {out} is not writable \(Permission denied\)"
    ):
        run(tmp_path, "ro")
    config = tiny_config
    code, err = main(capsys, "train", str(config), "--out", str(out), "--epochs", "1")
    assert code == 1 and str(out) in err
    assert_one_line_error(err, "train")
    assert list(out.iterdir()) == []


def test_resume_and_plot_in_a_read_only_run_folder_are_one_line(
    one_epoch, tmp_path, capsys, monkeypatch, read_only
):
    out = copy_run(one_epoch, tmp_path / "run")
    before = sorted(p.name for p in out.iterdir())
    read_only(out)
    monkeypatch.setattr(
        training.datasets.data_mod, "get_dataset", lambda *a, **k: pytest.fail("data was read")
    )
    with pytest.raises(RunFolderError, match="is not writable"):
        run(tmp_path, "run", epochs=2, resume=True)
    code, err = main(capsys, "plot", str(out))
    assert code == 1 and f"plot folder {out} is not writable" in err
    assert_one_line_error(err, "plot")
    assert sorted(p.name for p in out.iterdir()) == before


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    one_epoch, tmp_path, capsys, monkeypatch
):
    out = copy_run(one_epoch, tmp_path / "run")
    before = weights(out)
    real_save = torch.save

    def save_half(obj, f, *a, **k):  # writes part of the file, then the disk is full
        real_save({"x": torch.zeros(1000)}, f)
        _full_disk()

    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(
        RunFolderError,
        match=r"cannot write checkpoint .*checkpoint.pt: No space left on device; "
        r"the previous checkpoint is intact; free some space",
    ) as err:
        run(tmp_path, "run", epochs=2, resume=True)
    assert err.value.errno == errno.ENOSPC and "\n" not in str(err.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert training.load_checkpoint(out)["epoch"] == 1
    assert_same_weights(before, weights(out))
    assert no_temp_files(out)


def test_a_full_disk_while_writing_best_keeps_the_previous_best(one_epoch, tmp_path, monkeypatch):
    out = copy_run(one_epoch, tmp_path / "run")
    before = (out / "best" / "model.safetensors").read_bytes()
    model = plif_zoo.load(f"local-dir:{out / 'best'}", backend="torch")
    cfg = training.TrainConfig(**{**TINY, "out": str(out), "dataset": "fashion-mnist"})
    row = {"epoch": 2, "test_top1": 0.5, "accuracy_a": 0.5, "test_samples": 24}

    def write_then_fail(model, folder, **card):
        Path(folder).mkdir()
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * 100)
        _full_disk()

    monkeypatch.setattr(run_dir, "save_pretrained", write_then_fail)
    with pytest.raises(
        RunFolderError,
        match=r"cannot write best/ .*best.tmp: No space left on device; "
        r"the previous best/ is intact",
    ):
        run_dir.save_best(model, out, cfg, row, "cpu", 1.0)
    assert (out / "best" / "model.safetensors").read_bytes() == before
    assert no_temp_files(out)


@pytest.mark.parametrize(
    "content",
    [b"epoch,test_top1\n1,abc\n", b"\x00\xff\xfe garbage \x00\n" * 20, b"", b"a,b\n1,2\n"],
)
def test_plot_of_a_garbage_metrics_table_names_the_file(tmp_path, capsys, content):
    (tmp_path / "metrics.csv").write_bytes(content)
    with pytest.raises(
        ValueError, match=rf"{tmp_path / 'metrics.csv'} (is not a table|holds no epochs)"
    ):
        training.plot_run(tmp_path)
    code, err = main(capsys, "plot", str(tmp_path))
    assert code == 1 and str(tmp_path / "metrics.csv") in err
    assert_one_line_error(err, "plot")
    assert not (tmp_path / "accuracy.png").exists()


def test_a_run_that_fails_at_once_leaves_no_folder_behind(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(tmp_path, "fresh", resume=True)
    with pytest.raises(ValueError, match="unknown dataset"):
        run(tmp_path, "bad", dataset="bogus")
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "bad").exists()


def test_the_lock_note_is_rewritten_by_each_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with training.run_lock.RunLock(out):
        note = (out / "train.lock").read_text()
    assert note.startswith(f"pid {os.getpid()} on ") and time.strftime("%Y-") in note


def test_a_failed_start_leaves_ctrl_c_and_the_signal_handlers_as_they_were(tmp_path, monkeypatch):
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(training.run_dir.RunWriter, "write_config", _full_disk)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, "run")
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_train_without_a_config_says_what_it_needs():
    with pytest.raises(TypeError, match=r"train\(\) needs a config: a registry id"):
        training.train(epochs=1)
