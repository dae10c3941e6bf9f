"""Browser dashboards in tests: a server started on a free localhost port, and a page of it
rendered by headless Chromium (Debian's `chromium` package; .ci/run installs it)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 10) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serving(command: list[str], ready_url: str, log: Path, timeout: float = 60) -> Iterator[None]:
    """Runs `command` (a dashboard server) until the block ends; waits until `ready_url`
    answers, failing with the server's log if it never does."""
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{command[0]} did not serve {ready_url}:\n" + log.read_text()[-3000:]
                    ) from None
                time.sleep(0.3)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _chromium(url: str, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `url` once the page's scripts have run (virtual time)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for the dashboard tests: apt-get install chromium"
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # as root (CI)
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=20000",
            *flags,
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def screenshot(url: str, png: Path, *, width: int = 1400, height: int = 1000) -> Path:
    """`url` as headless Chromium renders it, saved as a PNG."""
    _chromium(url, f"--window-size={width},{height}", f"--screenshot={png}")
    assert png.is_file() and png.stat().st_size > 0, f"chromium wrote no screenshot of {url}"
    return png


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts have rendered it (what the user's browser shows)."""
    return _chromium(url, "--dump-dom").stdout
