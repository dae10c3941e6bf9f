"""lstm_jax's Hydra sweeper on current Optuna (ask and tell): `hydra/sweeper=optuna`, used by
the configs/hparams_search presets. Hydra finds it by scanning the `hydra_plugins` namespace
package; optuna itself is imported only when a search runs (pip install "lstm_jax[sweep]")."""
