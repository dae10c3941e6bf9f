"""Finding dataset files under the data root.

Every real dataset is read from a *data root*: the task's `data_dir` argument (the
`paths.data_dir` setting, which defaults to the environment variable `LSTM_JAX_DATA`). A
loader asks for a file by its path relative to that root:

    path = resolve_data_file(data_dir, "fashion-mnist/train-images-idx3-ubyte.gz",
                             url="https://.../train-images-idx3-ubyte.gz", sha256="b056...")

If the file is there and its SHA-256 is known, the copy is verified the first time it is
used (a truncated or damaged copy is an error naming the file and the fix); the result is
cached by size and mtime under ~/.cache/lstm_jax/checksums, so reruns pay nothing.
`LSTM_JAX_VERIFY_CHECKSUMS=0` turns the check off (the test suite's fake copies).
If the file is missing and a `url` is given, pooch downloads it (a progress bar, up to
`DOWNLOAD_RETRIES` retries, into a temporary file next to its destination), checks its
SHA-256 and moves it into place. If the download fails
(no network, as on cluster nodes) or no url is known, a `FileNotFoundError` names the file,
where it was looked for, where to get it, and the setting that points at the data root.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pooch
import requests

DATA_ENV = "LSTM_JAX_DATA"
"""Environment variable read by `paths.data_dir` (configs/paths/default.yaml)."""

_DEFAULT_TIMEOUT_S = 30.0
DOWNLOAD_RETRIES = 3


def data_root(data_dir: str | os.PathLike | None) -> Path | None:
    """The data root: `data_dir` if given, else $LSTM_JAX_DATA, else None."""
    if data_dir not in (None, ""):
        return Path(os.path.expanduser(str(data_dir)))
    env = os.environ.get(DATA_ENV)
    return Path(os.path.expanduser(env)) if env else None


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


VERIFY_ENV = "LSTM_JAX_VERIFY_CHECKSUMS"


def _checksum_cache(path: Path) -> Path:
    from lstm_jax.config import user_cache

    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return Path(user_cache("checksums")) / f"{key}.json"


def verify_checksum(path: Path, sha256: str, url: str | None = None) -> None:
    """Raises ValueError when `path`'s SHA-256 is not `sha256`; a verified (size, mtime) is
    remembered, so the next run does not read the file again."""
    if os.environ.get(VERIFY_ENV, "1") == "0":
        return
    stat = path.stat()
    entry = {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sha256.lower(),
    }
    cache = _checksum_cache(path)
    try:
        if json.loads(cache.read_text()) == entry:
            return
    except (OSError, ValueError):
        pass
    got = sha256_of(path)
    if got != sha256.lower():
        source = f"download it again from {url}" if url else "get a fresh copy"
        raise ValueError(
            f"Data file {path} is damaged or not the known copy ({stat.st_size} bytes, sha256 "
            f"{got[:16]}..., expected {sha256[:16]}...). Delete it and {source} (a download "
            f"happens on the next run where the network allows)."
        )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, cache)
    except OSError:
        pass  # an unwritable cache only costs the check again next time


def _download(url: str, dest: Path, sha256: str | None, timeout: float) -> None:
    """`url` to `dest` through pooch: retried, with a progress bar, its SHA-256 checked before
    the file takes its name (a failed or mismatched download leaves nothing behind)."""
    fetcher = pooch.create(
        path=dest.parent,
        base_url="",
        registry={dest.name: f"sha256:{sha256}" if sha256 else None},
        urls={dest.name: url},
        retry_if_failed=DOWNLOAD_RETRIES,
    )
    fetcher.fetch(dest.name, downloader=pooch.HTTPDownloader(progressbar=True, timeout=timeout))


def resolve_data_file(
    data_dir: str | os.PathLike | None,
    relative_path: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    setting: str = "paths.data_dir",
    download: bool = True,
    timeout: float = _DEFAULT_TIMEOUT_S,
) -> Path:
    """The path of `relative_path` under the data root, downloading it if needed.

    Args:
      data_dir: the data root (a task's `data_dir`); None falls back to $LSTM_JAX_DATA.
      relative_path: the file's path under the root, e.g. "fashion-mnist/t10k-labels-idx1-ubyte.gz".
      url: its public home, downloaded from when the file is missing (None: never download).
      sha256: expected hex digest of a downloaded file; a mismatch is an error.
      setting: the config key that sets the root, named in the error message.
      download: set False to only look (e.g. in tests).
      timeout: seconds for the network connection.

    Raises:
      FileNotFoundError: the file is absent and could not be downloaded; the message names
        the file, where it was looked for, where to get it, `setting` and $LSTM_JAX_DATA.
    """
    root = data_root(data_dir)
    if root is not None:
        path = root / relative_path
        if path.is_file():
            if sha256 is not None:
                verify_checksum(path, sha256, url)
            return path
    else:
        path = None

    reason = ""
    if path is not None and url is not None and download:
        try:
            _download(url, path, sha256, timeout)
            return path
        except (requests.RequestException, OSError, ValueError) as e:
            reason = f" Downloading it from {url} failed: {str(e).splitlines()[0]}."

    where = (
        f"looked for {path}" if path is not None else f"no data root is set (${DATA_ENV} is unset)"
    )
    source = f"Get it from {url}" if url else "Get it from the dataset's public home"
    checksum = f" (sha256 {sha256})" if sha256 else ""
    raise FileNotFoundError(
        f"Data file {relative_path!r} not found: {where}.{reason} {source}{checksum} and place "
        f"it at <data root>/{relative_path}, then point the data root at that folder with "
        f"{setting}=/path/to/data (or the environment variable {DATA_ENV})."
    )
