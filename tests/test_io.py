"""plif_zoo._io: the one atomic write, sha256, cache folder layout."""

import hashlib
import os
import stat

import pytest
import torch

from plif_zoo._io import atomic_write, cache_dir, sha256_file


def test_atomic_write_bytes_str_and_writer(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "c.pt", lambda p: torch.save({"x": 1}, p))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert torch.load(tmp_path / "c.pt", weights_only=True) == {"x": 1}
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.pt"]  # no temporary left


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "ckpt.pt"
    atomic_write(target, b"old")

    def broken_writer(path):
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, broken_writer)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_atomic_write_gives_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_sha256_file(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_cache_dir_one_layout(monkeypatch, tmp_path):
    monkeypatch.setenv("PLIF_ZOO_CACHE", str(tmp_path))
    assert cache_dir("cpu") == tmp_path / "cpu" and cache_dir("cuda") == tmp_path / "cuda"
    monkeypatch.delenv("PLIF_ZOO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir("cpu") == tmp_path / "x" / "plif_zoo" / "cpu"
