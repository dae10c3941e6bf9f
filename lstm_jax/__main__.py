"""`python -m lstm_jax` runs the `lstm-jax` CLI."""

from lstm_jax.cli import main

main()
