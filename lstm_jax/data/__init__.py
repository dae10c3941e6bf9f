"""Shared data-root helpers: find a dataset file under the data root, download it (with a
checksum) where the network allows, and otherwise fail with a message that says how to get it."""

from lstm_jax.data.files import DATA_ENV, data_root, resolve_data_file, sha256_of

__all__ = ["DATA_ENV", "data_root", "resolve_data_file", "sha256_of"]
