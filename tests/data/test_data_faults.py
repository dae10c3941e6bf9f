"""A damaged or undecodable data file is named in one line, before any training."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lstm_jax.data import files
from lstm_jax.data.audio import load_wav
from lstm_jax.data.series import read_csv
from lstm_jax.data.text import load_char_corpus


@pytest.fixture
def verified(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_JAX_VERIFY_CHECKSUMS", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_truncated_copy_of_a_known_file_is_refused_naming_it(verified, tmp_path):
    content = b"0123456789" * 1000
    sha = hashlib.sha256(content).hexdigest()
    target = tmp_path / "data" / "set" / "train.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(content[:5000])
    with pytest.raises(ValueError) as error:
        files.resolve_data_file(
            tmp_path / "data", "set/train.bin", url="https://x/train.bin", sha256=sha
        )
    assert str(error.value) == (
        f"Data file {target} is damaged or not the known copy (5000 bytes, sha256 "
        f"{hashlib.sha256(content[:5000]).hexdigest()[:16]}..., expected {sha[:16]}...). "
        "Delete it and download it again from https://x/train.bin (a download happens on the "
        "next run where the network allows)."
    )


def test_a_verified_file_is_not_read_again_until_it_changes(verified, tmp_path, monkeypatch):
    content = b"abc" * 100
    target = tmp_path / "data" / "f.txt"
    target.parent.mkdir()
    target.write_bytes(content)
    calls = []
    real = files.sha256_of
    monkeypatch.setattr(files, "sha256_of", lambda p: calls.append(p) or real(p))
    sha = hashlib.sha256(content).hexdigest()
    for _ in range(3):
        assert files.resolve_data_file(tmp_path / "data", "f.txt", sha256=sha) == target
    assert len(calls) == 1
    target.write_bytes(content[:-1])  # another size: checked again, and refused
    with pytest.raises(ValueError, match="is damaged"):
        files.resolve_data_file(tmp_path / "data", "f.txt", sha256=sha)
    assert len(calls) == 2


def test_undecodable_text_audio_and_csv_are_named(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"hello \xff\xfe world" * 10)
    with pytest.raises(ValueError) as error:
        load_char_corpus(None, str(text))
    assert str(error.value) == (
        f"{text} cannot be decoded as UTF-8 text (byte 6: invalid start byte); convert it to "
        "UTF-8 or replace it with a good copy."
    )
    wav = tmp_path / "0_theo_1.wav"
    wav.write_bytes(b"RIFF\x00\x00not really audio")
    with pytest.raises(ValueError, match=f"^{wav} cannot be decoded as audio "):
        load_wav(wav, 8000)
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"date,a\n2016-01-01 00:00:00,\xff\n")
    with pytest.raises(ValueError, match=f"^{csv} cannot be read as a UTF-8 CSV"):
        read_csv(csv)


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_csv_cell_is_refused_with_row_and_column(tmp_path, cell):
    path = tmp_path / "s.csv"
    path.write_text(f"date,a,b\n2016-01-01 00:00:00,1,2\n2016-01-01 01:00:00,3,{cell}\n")
    with pytest.raises(ValueError) as error:
        read_csv(path)
    assert str(error.value).startswith(
        f"{path}: data row 2, column 'b': {cell!r} is not a finite value. Fix the file, or set "
        "task.missing=ffill"
    )


def test_missing_policy_ffill_carries_the_previous_row(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "date,a,b\n2016-01-01 00:00:00,1,2\n2016-01-01 01:00:00,,nan\n2016-01-01 02:00:00,5,6\n"
    )
    table = read_csv(path, missing="ffill")
    np.testing.assert_array_equal(table.values, [[1, 2], [1, 2], [5, 6]])
