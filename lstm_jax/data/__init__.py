"""Data, never importing a task or a model: `files` (find a dataset file under the data root,
download it with a checksum where the network allows, otherwise fail saying how to get it),
`batching` (the epoch sampler, padding, the padded evaluation loop), `audio` (speech
features, their cache, augmentation), `fsdd`, `text` (corpora), `series` (CSV time series),
`fashion_mnist` and `synthetic` (the memory-task generators)."""

from lstm_jax.data.files import DATA_ENV, data_root, resolve_data_file, sha256_of

__all__ = ["DATA_ENV", "data_root", "resolve_data_file", "sha256_of"]
