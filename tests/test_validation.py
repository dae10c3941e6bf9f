"""Bad input is refused before any work starts, in one line naming the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_cli
from hydra import compose, initialize_config_dir

import lstm_jax.cli  # noqa: F401  (registers the config resolvers)
from lstm_jax.config import CONFIG_DIR
from lstm_jax.nn.registry import CELLS
from lstm_jax.schema import ConfigError, check_model_overrides, validate


def compose_train(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("train", overrides=[*overrides, "paths.data_dir=/tmp"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.hidden_size=0"],
            "model.hidden_size=0: Input should be greater than or equal to 1.",
        ),
        (["optim.lr=-1"], "optim.lr=-1: Input should be greater than 0."),
        (["optim.lr=nan"], "optim.lr=nan: Input should be greater than 0."),
        (["model.dropout=1.0"], "model.dropout=1.0: Input should be less than 1."),
        (
            ["model.cell=lstmm"],
            "model.cell='lstmm' is not a known cell; choose "
            + ", ".join(f"model={cell}" for cell in CELLS)
            + ".",
        ),
        (
            # The cell is named once (model.cell); set alone it keeps the LSTM's own keys.
            # The command line refuses it earlier, with the fix (test below).
            ["model.cell=gru"],
            (
                "model.forget_bias is not a setting of GRU (it takes bidirectional, dropout, "
                "dtype, hidden_size, num_layers, param_dtype, use_bias); forget_bias belongs "
                "to model=lstm: choose that cell, or drop the key."
            ),
        ),
        (
            ["model=gru", "+model.forget_bias=0.5"],
            (
                "model.forget_bias is not a setting of GRU (it takes bidirectional, dropout, "
                "dtype, hidden_size, num_layers, param_dtype, use_bias); forget_bias belongs "
                "to model=lstm: choose that cell, or drop the key."
            ),
        ),
        (
            ["trainer.batch_size=0"],
            "trainer.batch_size=0: Input should be greater than or equal to 1.",
        ),
        (
            ["trainer.early_stopping_patience=0"],
            "trainer.early_stopping_patience=0: Input should be greater than or equal to 1.",
        ),
        (["optim.clip_grad_norm=0"], "optim.clip_grad_norm=0: Input should be greater than 0."),
        (["task.seq_len=0"], "task.seq_len=0: Input should be greater than or equal to 1."),
        (
            ["+optim.optimizer.b3=0.9"],
            "optim.optimizer.b3 is not a setting of adam (it takes b1, b2, eps, eps_root, "
            "mu_dtype, nesterov).",
        ),
        (
            ["+optim.optimizer.learning_rate=0.1"],
            "optim.optimizer.learning_rate is set by lstm-jax; set optim.lr (and "
            "optim.schedule) instead.",
        ),
        (
            ["~optim.optimizer._target_"],
            "optim.optimizer has no _target_: choose a preset with optim=adam|adamw|sgd|rmsprop"
            " or name an optax constructor (optim.optimizer._target_=optax.lion).",
        ),
        (
            ["optim.optimizer._target_=optax.adamm"],
            "optim.optimizer._target_='optax.adamm' cannot be imported (module 'optax' has "
            "no attribute 'adamm').",
        ),
        (["task.val_size=-3"], "task.val_size=-3: Input should be greater than or equal to 1."),
        (
            ["experiment=fsdd_bilstm", "task.augment.crop_fraction=1.5"],
            "task.augment.crop_fraction=1.5: Input should be less than 1.",
        ),
        (
            ["experiment=fsdd_bilstm", "task.features.n_mels=0"],
            "task.features.n_mels=0: Input should be greater than or equal to 1.",
        ),
        (
            ["experiment=shakespeare_char", "task.dropout=-0.1"],
            "task.dropout=-0.1: Input should be greater than or equal to 0.",
        ),
        (
            ["experiment=csv_forecast"],
            "task.path is required and not set: add task.path=VALUE to the command line.",
        ),
        (
            ["optim.schedule.name=warmup_cosine", "optim.schedule.warmup_steps=2000"],
            (
                "optim.schedule: Value error, decay_steps=800 must exceed warmup_steps=2000 "
                "(decay_steps counts the warmup; it defaults to trainer.max_steps)."
            ),
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key_and_value(overrides, message):
    cfg = compose_train(*overrides)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert str(error.value) == message


@pytest.mark.parametrize("overrides", [["model.cell=gru"], ["model=rnn", "model.cell=gru"]])
def test_a_cell_set_by_model_cell_is_refused_with_the_group_to_use(overrides):
    with pytest.raises(ConfigError) as error:
        check_model_overrides(overrides)
    assert str(error.value) == (
        "model.cell=gru: switch the cell with model=gru, not model.cell=gru (the group brings "
        "the cell's own settings)."
    )


def test_every_preset_passes_the_schema():
    # A new task needs no table of its own: ranges come from its parameter names.
    from test_presets import EXPERIMENTS

    for experiment in EXPERIMENTS:
        extra = ["task.path=my.csv", "task.target=load"] if experiment == "csv_forecast" else []
        validate(compose_train(f"experiment={experiment}", *extra))
        # debug=fdr's six steps are shorter than some presets' warmups.
        validate(compose_train(f"experiment={experiment}", "debug=fdr", *extra))


def test_bad_value_on_the_command_line_is_one_line_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("model.hidden_size=0", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "lstm-jax: error: model.hidden_size=0: Input should be greater than or equal to 1."
    )
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_a_key_of_another_cell_is_one_line_naming_the_key_and_the_fix(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "model=gru", "model.forget_bias=1", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "lstm-jax: error: model.forget_bias is not a setting of GRU (model=gru; it takes "
        "bidirectional, dropout, dtype, hidden_size, num_layers, param_dtype, use_bias); "
        "forget_bias belongs to model=lstm: choose that cell, or drop the key."
    )
    assert not run_dir.exists() or not any(run_dir.iterdir())


def test_error_building_the_task_is_one_line_with_the_traceback_on_request(tmp_path):
    overrides = ("task._target_=fault_tasks.BrokenTask", "logger=none")
    result = run_cli(*overrides, cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "lstm-jax: error: building the task fault_tasks.BrokenTask or its model failed: "
        "ZeroDivisionError: division by zero (HYDRA_FULL_ERROR=1 shows the traceback)"
    )
    verbose = run_cli(*overrides, cwd=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "1"})
    assert "Traceback" in verbose.stderr and "ZeroDivisionError" in verbose.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.max_step=10"],
            "trainer.max_step is not a key of the config: did you mean trainer.max_steps? "
            "(lstm-jax --cfg job lists them all).",
        ),
        (  # Hydra's own advice for a missing key is the '+': it gets the same answer
            ["+trainer.max_step=10"],
            "trainer.max_step is not a key of the config: did you mean trainer.max_steps? "
            "(lstm-jax --cfg job lists them all).",
        ),
        (
            ["experiment=copy_T200", "trainer.stop_when=val/solvd"],
            "trainer.stop_when=val/solvd is not a validation metric of CopyTask: did you mean "
            "val/solved? it reports val/loss, val/baseline_loss, val/acc, val/seq_acc, "
            "val/solved.",
        ),
    ],
)
def test_a_misspelt_key_or_metric_names_the_nearest_before_training(overrides, message, tmp_path):
    result = run_cli(
        *overrides, "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"lstm-jax: error: {message}"
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_help_offers_only_choices_that_are_runs():
    result = run_cli("--help", cwd=Path(__file__).parent)
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    (optim,) = [line for line in groups.splitlines() if line.startswith("optim:")]
    assert optim == "optim: adam, adamw, rmsprop, sgd"
