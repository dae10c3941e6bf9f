"""lstm_jax: JAX/Flax research framework for long-dependency sequence experiments."""

__version__ = "0.1.0"
