"""Data-root helper: finding, downloading (file:// urls, no network) and the missing-file error."""

import hashlib

import pytest

from lstm_jax.data import DATA_ENV, resolve_data_file, sha256_of


def test_finds_existing_file(tmp_path):
    f = tmp_path / "ds" / "a.txt"
    f.parent.mkdir()
    f.write_text("hello")
    assert resolve_data_file(tmp_path, "ds/a.txt") == f
    assert resolve_data_file(str(tmp_path), "ds/a.txt", url="http://invalid.invalid/x") == f
    assert sha256_of(f) == hashlib.sha256(b"hello").hexdigest()


def test_env_var_is_the_fallback_root(tmp_path, monkeypatch):
    (tmp_path / "b.bin").write_bytes(b"x")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_file(None, "b.bin") == tmp_path / "b.bin"


def test_missing_file_error_names_file_source_and_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as e:
        resolve_data_file(
            tmp_path,
            "fashion-mnist/t10k-labels-idx1-ubyte.gz",
            url="http://127.0.0.1:9/nothing.gz",
            sha256="ab" * 32,
            setting="paths.data_dir",
            timeout=2,
        )
    msg = str(e.value)
    assert "fashion-mnist/t10k-labels-idx1-ubyte.gz" in msg
    assert str(tmp_path) in msg
    assert "http://127.0.0.1:9/nothing.gz" in msg
    assert "paths.data_dir" in msg and DATA_ENV in msg
    assert not (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_no_root_and_no_url(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=DATA_ENV):
        resolve_data_file(None, "x/y.csv", setting="task.data_dir")


def test_download_with_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    root = tmp_path / "root"
    got = resolve_data_file(root, "d/f.bin", url=src.as_uri(), sha256=good)
    assert got == root / "d" / "f.bin" and got.read_bytes() == b"payload"


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="checksum mismatch"):
        resolve_data_file(root, "d/f.bin", url=src.as_uri(), sha256="0" * 64)
    assert list((root / "d").iterdir()) == []
