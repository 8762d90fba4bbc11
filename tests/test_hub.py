"""Weights from a Hub-protocol server on 127.0.0.1 through the real huggingface_hub client."""

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
from hubserver import HubServer

import plif_zoo
from plif_zoo import hub, registry
from plif_zoo._io import sha256_file
from plif_zoo.errors import ChecksumError, HubDownloadError

# the smallest zoo network (1.7M parameters) keeps the files small
MODEL_ID = "dvs128-gesture-plif"
REPO = "plif-zoo/dvs128-gesture-plif"


@pytest.fixture
def folder(tmp_path_factory):
    """A real model folder: dvs128-gesture-plif with random weights."""
    torch.manual_seed(3)
    model = plif_zoo.create_model(MODEL_ID, T=2, backend="torch")
    return plif_zoo.save_pretrained(
        model,
        tmp_path_factory.mktemp("saved") / MODEL_ID,
        model_id=MODEL_ID,
        metrics={"accuracy_b": 12.5},
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def server():
    with HubServer() as srv:
        yield srv


@pytest.fixture
def hf_env(monkeypatch, tmp_path, server):
    """HF_ENDPOINT at the test server, an empty HF_HOME, no local weights folder, online."""
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(registry, "weights_dirs", lambda: [tmp_path / "no-local-weights"])
    return tmp_path / "hf-home" / "hub"


def publish(monkeypatch, sha256: str, revision: str, model_id: str = MODEL_ID, repo: str = REPO):
    """What one PUBLISHED_WEIGHTS line does, for this test only."""
    info = registry.model_info(model_id)
    source = registry.WeightSource(hf_repo=repo, revision=revision, sha256=sha256)
    monkeypatch.setitem(registry._REGISTRY, model_id, dataclasses.replace(info, weights=source))


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_download_and_load_then_offline_from_cache_with_server_stopped(
    server, hf_env, folder, monkeypatch
):
    sha = server.commit(REPO, _files(folder))
    digest = sha256_file(folder / "model.safetensors")
    publish(monkeypatch, digest, sha)
    assert plif_zoo.list_models(MODEL_ID, pretrained=True) == [MODEL_ID]

    model = plif_zoo.load(MODEL_ID, backend="torch")
    assert _same_weights(model, plif_zoo.load(f"local-dir:{folder}"))
    snapshot = hf_env / "models--plif-zoo--dvs128-gesture-plif" / "snapshots" / sha
    assert (snapshot / "model.safetensors").is_file() and (snapshot / "README.md").is_file()
    assert not list(hf_env.rglob("*.incomplete"))

    server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = plif_zoo.load(MODEL_ID, backend="torch", T=3)
    assert _same_weights(model, again) and again.T == 3


def test_cache_dir_argument_is_honoured(server, hf_env, folder, monkeypatch, tmp_path):
    sha = server.commit(REPO, _files(folder))
    publish(monkeypatch, sha256_file(folder / "model.safetensors"), sha)
    plif_zoo.load(MODEL_ID, cache_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "models--plif-zoo--dvs128-gesture-plif").is_dir()
    assert not hf_env.exists()


def test_pinned_revision_gets_that_commit_not_the_branch_head(server, hf_env, folder, monkeypatch):
    old = server.commit(REPO, _files(folder))
    torch.manual_seed(99)
    newer = plif_zoo.save_pretrained(
        plif_zoo.create_model(MODEL_ID, T=2), folder.parent / "newer", model_id=MODEL_ID
    )
    new = server.commit(REPO, _files(newer))
    assert old != new

    pinned = plif_zoo.load(f"hf-hub:{REPO}@{old}")
    head = plif_zoo.load(f"hf-hub:{REPO}")
    assert _same_weights(pinned, plif_zoo.load(f"local-dir:{folder}"))
    assert _same_weights(head, plif_zoo.load(f"local-dir:{newer}"))

    publish(monkeypatch, sha256_file(folder / "model.safetensors"), old)
    assert _same_weights(plif_zoo.load(MODEL_ID), pinned)  # the registry pins `old`
    assert _same_weights(plif_zoo.load(MODEL_ID, revision=new), head)


def test_missing_repo_names_it(hf_env):
    with pytest.raises(HubDownloadError, match="plif-zoo/nothing-here.*not found"):
        plif_zoo.load("hf-hub:plif-zoo/nothing-here")


def test_missing_revision_names_it(server, hf_env, folder):
    server.commit(REPO, _files(folder))
    with pytest.raises(HubDownloadError, match="revision 'v9'.*not found"):
        plif_zoo.load(f"hf-hub:{REPO}@v9")


def test_missing_file_says_repo_is_not_a_model_folder(server, hf_env):
    server.commit(REPO, {"config.json": b"{}"})
    with pytest.raises(HubDownloadError, match="no file 'model.safetensors'"):
        plif_zoo.load(f"hf-hub:{REPO}")


def test_tampered_file_fails_checksum_and_is_removed_from_cache(
    server, hf_env, folder, monkeypatch
):
    files = _files(folder)
    good = sha256_file(folder / "model.safetensors")
    bad = bytearray(files["model.safetensors"])
    bad[-1] ^= 0xFF
    sha = server.commit(REPO, {**files, "model.safetensors": bytes(bad)})
    publish(monkeypatch, good, sha)

    with pytest.raises(ChecksumError, match=r"model\.safetensors.*removed from the cache"):
        plif_zoo.load(MODEL_ID)
    cached = (
        hf_env / "models--plif-zoo--dvs128-gesture-plif" / "snapshots" / sha / "model.safetensors"
    )
    assert not cached.exists()
    blobs = hf_env / "models--plif-zoo--dvs128-gesture-plif" / "blobs"
    assert hashlib.sha256(bytes(bad)).hexdigest() not in {sha256_file(b) for b in blobs.iterdir()}


def test_hf_hub_name_checks_against_the_config_it_ships(server, hf_env, folder):
    files = _files(folder)
    bad = bytearray(files["model.safetensors"])
    bad[100] ^= 0x01
    server.commit(REPO, {**files, "model.safetensors": bytes(bad)})
    with pytest.raises(ChecksumError):
        plif_zoo.load(f"hf-hub:{REPO}")


def test_eval_takes_the_dataset_and_hold_out_of_a_hub_model_from_its_card(server, hf_env, folder):
    from plif_zoo.training.evaluation import _dataset_name_of_model, _val_fraction_of_model

    server.commit(REPO, _files(folder))
    plif_zoo.load(f"hf-hub:{REPO}", backend="torch")  # as evaluate does, before asking
    assert _dataset_name_of_model(f"hf-hub:{REPO}") == registry.model_info(MODEL_ID).dataset
    assert _val_fraction_of_model(f"hf-hub:{REPO}") == 0.15  # no recipe in the card


def test_network_failure_names_repo_and_suggests_offline_or_endpoint(
    server, hf_env, folder, monkeypatch
):
    sha = server.commit(REPO, _files(folder))
    publish(monkeypatch, sha256_file(folder / "model.safetensors"), sha)
    server.stop()  # nothing listens on HF_ENDPOINT now
    # The client retries network errors with backoff for ~23 s; skip the waiting, not the path.
    from huggingface_hub import file_download

    if hasattr(file_download, "_DEFAULT_RETRY_ON_EXCEPTIONS"):
        monkeypatch.setattr(file_download, "_DEFAULT_RETRY_ON_EXCEPTIONS", ())
    with pytest.raises(HubDownloadError) as err:
        plif_zoo.load(MODEL_ID)
    message = str(err.value)
    assert REPO in message and "HF_HUB_OFFLINE=1" in message and "HF_ENDPOINT" in message


def test_offline_without_cache_says_it_is_not_cached(server, hf_env, folder, monkeypatch):
    sha = server.commit(REPO, _files(folder))
    publish(monkeypatch, sha256_file(folder / "model.safetensors"), sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubDownloadError, match="not in the Hugging Face cache"):
        plif_zoo.load(MODEL_ID)
    assert not [r for r in server.requests if "/resolve/" in r[1]]  # offline means no requests
    with pytest.raises(HubDownloadError, match="local_files_only"):
        monkeypatch.delenv("HF_HUB_OFFLINE")
        plif_zoo.load(MODEL_ID, local_files_only=True)


def test_push_then_download_round_trip(server, hf_env, tmp_path):
    torch.manual_seed(5)
    model = plif_zoo.create_model("dvs128-gesture-lif", T=2, backend="torch").eval()
    info = plif_zoo.push_to_hub(
        model, "someone/gesture-lif", token="test-token", metrics={"accuracy_b": 10.0}
    )
    assert len(info.oid) == 40
    assert set(server.repos["someone/gesture-lif"].commits[info.oid]) >= {
        "config.json",
        "model.safetensors",
        "README.md",
    }

    card = server.repos["someone/gesture-lif"].commits[info.oid]["README.md"].decode()
    assert 'plif_zoo.load("hf-hub:someone/gesture-lif")' in card  # not the registry's id
    again = plif_zoo.load(f"hf-hub:someone/gesture-lif@{info.oid}", backend="torch").eval()
    assert _same_weights(model, again) and again.T == 2
    x = torch.rand(1, 1, 2, 128, 128)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_push_a_folder_to_a_new_branch(server, hf_env, folder):
    info = plif_zoo.push_to_hub(folder, "someone/fm", revision="v1", token="test-token")
    repo = server.repos["someone/fm"]
    assert repo.refs["v1"] == info.oid and repo.refs["main"] != info.oid
    loaded = plif_zoo.load("hf-hub:someone/fm@v1")
    assert _same_weights(loaded, plif_zoo.load(f"local-dir:{folder}"))


def test_push_private_makes_new_and_existing_repos_private(server, hf_env, folder):
    """The client's create_repo ignores private= for a repo that exists: push sets it after."""
    plif_zoo.push_to_hub(folder, "someone/new", private=True, token="test-token")
    assert server.repos["someone/new"].private
    plif_zoo.push_to_hub(folder, "someone/shared", token="test-token")
    assert not server.repos["someone/shared"].private
    plif_zoo.push_to_hub(folder, "someone/shared", private=True, token="test-token")
    assert server.repos["someone/shared"].private
    plif_zoo.push_to_hub(folder, "someone/shared", token="test-token")  # never made public
    assert server.repos["someone/shared"].private


def test_push_rejects_bad_repo_ids(hf_env, folder):
    with pytest.raises(ValueError, match="invalid Hub repo id"):
        plif_zoo.push_to_hub(folder, "../escape")


def test_cli_push_prints_the_registry_line_that_makes_the_id_loadable(
    server, hf_env, folder, monkeypatch, capsys
):
    from plif_zoo.cli import main

    monkeypatch.setenv("HF_TOKEN", "test-token")
    assert main(["push", str(folder)]) == 0
    out = capsys.readouterr().out
    commit = server.repos[REPO].refs["main"]
    assert f"at commit {commit}" in out
    line = out.strip().splitlines()[-1]
    table = eval("{" + line + "}")  # the line goes into PUBLISHED_WEIGHTS as written
    assert table[MODEL_ID]["revision"] == commit and table[MODEL_ID]["accuracy"] == 12.5
    publish(monkeypatch, table[MODEL_ID]["sha256"], table[MODEL_ID]["revision"])
    assert _same_weights(plif_zoo.load(MODEL_ID), plif_zoo.load(f"local-dir:{folder}"))


def test_branch_name_follows_new_pushes_while_pinned_commit_stays(server, hf_env, folder):
    first = server.commit(REPO, _files(folder))
    assert _same_weights(plif_zoo.load(f"hf-hub:{REPO}"), plif_zoo.load(f"local-dir:{folder}"))
    torch.manual_seed(7)
    newer = plif_zoo.save_pretrained(
        plif_zoo.create_model(MODEL_ID, T=2), folder.parent / "n2", model_id=MODEL_ID
    )
    server.commit(REPO, _files(newer))
    assert _same_weights(plif_zoo.load(f"hf-hub:{REPO}"), plif_zoo.load(f"local-dir:{newer}"))
    before = len(server.requests)
    assert _same_weights(
        plif_zoo.load(f"hf-hub:{REPO}@{first}"), plif_zoo.load(f"local-dir:{folder}")
    )
    assert len(server.requests) == before  # a cached commit needs no request


def test_a_push_during_the_download_does_not_split_the_folder(server, hf_env, folder, monkeypatch):
    """Each file of a branch is asked for separately: all of them come from the first one's
    commit, even when the owner pushes (here: edits the card) in between."""
    import huggingface_hub

    first = server.commit(REPO, _files(folder))
    real = huggingface_hub.hf_hub_download

    def push_after_the_first_file(**kw):
        path = real(**kw)
        if len(server.repos[REPO].commits) == 1:
            server.commit(REPO, {"README.md": b"---\nlicense: mit\n---\n# edited card\n"})
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", push_after_the_first_file)
    got = hub.download(REPO)
    assert got.name == first and (got / "config.json").is_file()
    assert _same_weights(plif_zoo.load(f"local-dir:{got}"), plif_zoo.load(f"local-dir:{folder}"))


def test_downloads_and_uploads_say_they_come_from_plif_zoo(server, hf_env, folder):
    # library_name / library_version as timm passes them: the Hub counts downloads per library
    info = plif_zoo.push_to_hub(folder, "someone/ua", token="test-token")
    plif_zoo.load(f"hf-hub:someone/ua@{info.oid}")
    assert server.user_agents and all(
        f"plif-zoo/{plif_zoo.__version__}" in ua for ua in server.user_agents
    )


@pytest.mark.parametrize("good", ["plif-zoo/fashion-mnist-plif", "Org_1/x.y-z", "a/b"])
def test_check_repo_id_accepts_org_slash_name(good):
    assert hub.check_repo_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "no-namespace",
        "a/b/c",
        "org/na..me",
        "org--x/y",
        "org/name.git",
        "-org/x",
        "org/ünïcode",
        "",
        None,
        "o/" + "x" * 97,
    ],
)
def test_check_repo_id_rejects_what_the_hub_would(bad):
    with pytest.raises(ValueError, match="invalid Hub repo id"):
        hub.check_repo_id(bad)


def _closed_port_url() -> str:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connections are refused


def _timed_cli_download(capsys, caplog) -> tuple[float, str]:
    import logging
    import time

    from plif_zoo.cli import main

    caplog.set_level(logging.INFO, logger="huggingface_hub")
    start = time.monotonic()
    code = main(["download", f"hf-hub:{REPO}"])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert (
        err.startswith("plif-zoo download: error: could not download config.json") and REPO in err
    )
    assert "HF_HUB_OFFLINE=1" in err and "HF_ENDPOINT" in err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], (
        caplog.text
    )  # no retry log
    return elapsed, err


@pytest.mark.parametrize("etag_timeout", [None, "1"])
def test_a_hub_that_never_answers_fails_in_the_etag_timeout(
    hf_env, monkeypatch, capsys, caplog, etag_timeout
):
    # The client alone waits 217-397 s (10 s, then 6 tries of 60 s): issue 12.
    from hubserver import SilentServer

    if etag_timeout is None:
        monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", etag_timeout)
    bound = hub.hub_timeouts()[0]
    assert bound == (hub.ETAG_TIMEOUT if etag_timeout is None else 1.0)
    with SilentServer(give_up_after=bound + 15) as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        elapsed, err = _timed_cli_download(capsys, caplog)
    assert silent.connections >= 1 and bound - 0.5 < elapsed < bound + 3
    assert f"no answer within {bound:g} s" in err


def test_a_closed_port_fails_at_once_without_retry_logging(hf_env, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())  # the client alone: 27 s of retries
    elapsed, _ = _timed_cli_download(capsys, caplog)
    assert elapsed < 3


def test_a_cached_branch_is_used_when_the_hub_does_not_answer(server, hf_env, folder, monkeypatch):
    from hubserver import SilentServer

    server.commit(REPO, _files(folder))
    first = plif_zoo.load(f"hf-hub:{REPO}")  # cached now
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    with SilentServer(give_up_after=20) as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        assert _same_weights(plif_zoo.load(f"hf-hub:{REPO}"), first)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "2.5"])
def test_bad_timeout_settings_are_named(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", value)
    with pytest.raises(ValueError, match="HF_HUB_DOWNLOAD_TIMEOUT"):
        hub.hub_timeouts()


def test_download_timeout_is_restored_after_overlapping_downloads():
    """Two threads' downloads overlap and the first one in leaves first: the client's own
    timeout is back once both are done (a save/restore per call left the override in place)."""
    import threading

    from huggingface_hub import constants

    original = constants.HF_HUB_DOWNLOAD_TIMEOUT
    first_in, second_in, first_out = (threading.Event() for _ in range(3))
    seen = []

    def first():
        with hub._download_timeout(7.0):
            first_in.set()
            second_in.wait(timeout=10)
        first_out.set()

    def second():
        first_in.wait(timeout=10)
        with hub._download_timeout(7.0):
            second_in.set()
            first_out.wait(timeout=10)
            seen.append(constants.HF_HUB_DOWNLOAD_TIMEOUT)

    threads = [threading.Thread(target=f) for f in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert seen == [7.0]  # still set for the download that is still running
    assert constants.HF_HUB_DOWNLOAD_TIMEOUT == original


def test_a_download_cut_off_midway_is_one_line_from_the_cli(server, hf_env, folder, capsys, caplog):
    """The transport's own errors (httpx2's, not OSError) become a HubDownloadError too."""
    import logging

    from plif_zoo.cli import main

    # The client's "Trying to resume download..." warnings are not errors; in a full test run
    # its log handler may hold an earlier test's closed stderr, so keep them out of it.
    caplog.set_level(logging.ERROR, logger="huggingface_hub")
    server.commit(REPO, _files(folder))
    server.truncate_after = 3
    assert main(["download", f"hf-hub:{REPO}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("plif-zoo download: error: downloading config.json of Hub repo")
    assert REPO in err and "Retry" in err
    with pytest.raises(HubDownloadError) as info:
        hub.download(REPO)
    assert info.value.__cause__ is not None  # PLIF_ZOO_DEBUG=1 shows the transport's error


def test_a_failed_push_is_one_line_from_the_cli(hf_env, folder, monkeypatch, capsys):
    from plif_zoo.cli import main
    from plif_zoo.errors import HubUploadError

    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())
    monkeypatch.setenv("HF_TOKEN", "test-token")
    assert main(["push", str(folder), "--repo", "someone/x"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("plif-zoo push: error: uploading") and "someone/x" in err
    with pytest.raises(HubUploadError, match="hf auth login"):
        plif_zoo.push_to_hub(folder, "someone/x")


def test_cli_push_of_a_model_outside_the_registry_prints_its_hub_name(
    server, hf_env, tmp_path, monkeypatch, capsys
):
    from plif_zoo.cli import main

    torch.manual_seed(4)
    mine = plif_zoo.save_pretrained(
        plif_zoo.create_model(MODEL_ID, T=2, num_classes=3), tmp_path / "my-gestures"
    )
    monkeypatch.setenv("HF_TOKEN", "test-token")
    assert main(["push", str(mine), "--repo", "someone/my-gestures"]) == 0
    out = capsys.readouterr().out
    commit = server.repos["someone/my-gestures"].refs["main"]
    assert out.strip().splitlines()[-1].endswith(f"load it as hf-hub:someone/my-gestures@{commit}")
    loaded = plif_zoo.load(f"hf-hub:someone/my-gestures@{commit}")
    assert _same_weights(loaded, plif_zoo.load(f"local-dir:{mine}"))


def test_a_decimal_timeout_does_not_break_import_and_is_named(tmp_path):
    """huggingface_hub reads these with int() at its import: plif_zoo imports it lazily and
    checks the value first."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_ETAG_TIMEOUT="2.5", HF_ENDPOINT=_closed_port_url())
    code = (
        "import plif_zoo, sys; assert 'huggingface_hub' not in sys.modules; "
        "print(len(plif_zoo.list_models()))"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and int(run.stdout) > 0, run.stderr
    cli = [sys.executable, "-m", "plif_zoo.cli", "download", f"hf-hub:{REPO}"]
    run = subprocess.run(cli, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "HF_HUB_ETAG_TIMEOUT='2.5' must be a whole number of seconds" in run.stderr


def test_a_revision_does_not_apply_to_a_local_folder(folder):
    with pytest.raises(ValueError, match="local folder has no revisions"):
        plif_zoo.load(f"local-dir:{folder}", revision="abc")


def test_the_registry_pin_given_as_revision_keeps_the_registry_checksum(
    server, hf_env, folder, monkeypatch
):
    commit = server.commit(REPO, _files(folder))
    publish(monkeypatch, "0" * 64, commit)  # the registry expects other weights than the repo's
    with pytest.raises(ChecksumError):
        plif_zoo.load(MODEL_ID, revision=commit)


def test_a_cached_commit_of_a_repo_without_a_card_needs_no_request(server, hf_env, folder):
    files = {k: v for k, v in _files(folder).items() if k != "README.md"}
    commit = server.commit("someone/no-card", files)
    first = plif_zoo.load(f"hf-hub:someone/no-card@{commit}")
    before = len(server.requests)
    again = plif_zoo.load(f"hf-hub:someone/no-card@{commit}")
    assert len(server.requests) == before, server.requests[before:]
    assert _same_weights(first, again)
