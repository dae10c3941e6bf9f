"""Data-root helper: finding, downloading (through pooch, from a local HTTP server) and the
missing-file error."""

import functools
import hashlib
import http.server
import threading

import pytest

from lstm_jax.data import DATA_ENV, files, resolve_data_file, sha256_of


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
    monkeypatch.setattr(files, "DOWNLOAD_RETRIES", 0)  # nothing listens there: no waits
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


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves the server's directory; fails the first `failures` requests with a 503."""

    failures = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        if type(self).failures > 0:
            type(self).failures -= 1
            self.send_error(503, "busy")
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """An HTTP server on 127.0.0.1 over tmp_path/srv: (its base URL, the handler class)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = type("Handler", (_Files,), {"failures": 0})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler, root
    server.shutdown()
    server.server_close()


def test_download_with_checksum_retries_a_failing_server(serve, tmp_path, capsys):
    base, handler, srv = serve
    (srv / "src.bin").write_bytes(b"payload")
    handler.failures = 2  # two 503s, then the file: pooch retries
    good = hashlib.sha256(b"payload").hexdigest()
    root = tmp_path / "root"
    got = resolve_data_file(root, "d/f.bin", url=f"{base}/src.bin", sha256=good)
    assert got == root / "d" / "f.bin" and got.read_bytes() == b"payload"
    assert handler.failures == 0


def test_download_checksum_mismatch_leaves_nothing(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "DOWNLOAD_RETRIES", 0)  # pooch retries a mismatch too
    base, _, srv = serve
    (srv / "src.bin").write_bytes(b"payload")
    root = tmp_path / "root"
    with pytest.raises(FileNotFoundError, match="does not match the known hash|hash"):
        resolve_data_file(root, "d/f.bin", url=f"{base}/src.bin", sha256="0" * 64)
    assert not (root / "d" / "f.bin").exists()
    assert [p.name for p in (root / "d").iterdir()] == []
