"""The models around the recurrent core (lstm_jax.nn), one module each: the core factory
and the `model` config group (core.py), the sequence head of the classification and
per-step tasks (sequence_head.py), the language model (language_model.py) and the
forecasters (forecasters.py). Models import neither tasks nor data: a task builds its model
from its config node and the sizes only its data knows."""

from lstm_jax.models.core import make_core, model_config
from lstm_jax.models.forecasters import (
    DirectForecaster,
    Forecaster,
    RevIN,
    SegmentForecaster,
    Seq2SeqForecaster,
)
from lstm_jax.models.language_model import LanguageModel, reinit_uniform
from lstm_jax.models.sequence_head import SequenceHead

__all__ = [
    "DirectForecaster",
    "Forecaster",
    "LanguageModel",
    "RevIN",
    "Seq2SeqForecaster",
    "SegmentForecaster",
    "SequenceHead",
    "make_core",
    "model_config",
    "reinit_uniform",
]
