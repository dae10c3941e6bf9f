"""`python -m lstm_jax.compare`: the same as `lstm-jax-compare`."""

from lstm_jax.compare.cli import main

raise SystemExit(main())
