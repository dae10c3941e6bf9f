"""The optimiser-setup grid (issue 27): `sweep=setup_grid` crosses {RMSProp, Adam} x {no
clipping, clipping at 1} x {forget bias 1, chrono} x 3 seeds over any long-dependency preset,
each job a run dir named by its setup, resumable by the same command."""

from __future__ import annotations

import itertools

import pytest
from cli_runner import REPO, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import lstm_jax.config  # noqa: F401  (the resolvers of a stored config)

CONFIGS = str(REPO / "configs")
TINY = [
    "task.seq_len=6",
    "trainer.max_steps=2",
    "trainer.log_every=1",
    "trainer.eval_every=2",
    "trainer.checkpoint_every=1",
    "trainer.batch_size=8",
    "model.hidden_size=8",
    "task.val_size=16",
    "task.test_size=16",
    "task.eval_batch_size=16",
    "logger.diagnostics_every=null",
    "trainer.progress_bar=false",
    "logger=none",
]
LONG_DEPENDENCY_PRESETS = sorted(
    p.stem
    for p in (REPO / "configs" / "experiment").glob("*.yaml")
    if p.stem.startswith(("adding_T", "copy_T", "variable_copy_T"))
)


def compose_train(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base=None):
        return compose(
            "train", overrides=[*overrides, "paths.data_dir=/tmp"], return_hydra_config=True
        )


def grid_jobs(cfg) -> list[dict[str, str]]:
    params = cfg.hydra.sweeper.params
    keys = list(params)
    values = [str(params[k]).split(",") for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def test_the_grid_crosses_optimiser_clipping_init_and_seed():
    jobs = grid_jobs(compose_train("experiment=adding_T400", "sweep=setup_grid"))
    assert len(jobs) == 2 * 2 * 2 * 3
    assert {(j["optim"], j["optim.clip_grad_norm"], j["init"]) for j in jobs} == set(
        itertools.product(["rmsprop", "adam"], ["null", "1.0"], ["forget_bias", "chrono"])
    )
    assert {j["seed"] for j in jobs} == {"0", "1", "2"}


@pytest.mark.parametrize("experiment", LONG_DEPENDENCY_PRESETS)
def test_every_long_dependency_preset_gives_each_init_its_setup(experiment):
    """init=chrono reads the preset's chrono_T_max (T, or 3T/2 for copy); forget_bias is
    chrono off; the swept optimiser keeps the preset's lr; clipping at 1 reaches optim."""
    cfg = compose_train(
        f"experiment={experiment}", "init=chrono", "optim=adam", "optim.clip_grad_norm=1.0"
    )
    seq_len = cfg.task.seq_len
    rule = 3 * seq_len // 2 if experiment.startswith("copy_T") else seq_len
    assert cfg.model.chrono_max_steps == cfg.chrono_T_max == rule
    assert cfg.optim.optimizer._target_ == "optax.adam" and cfg.optim.lr == 1e-3
    assert cfg.optim.clip_grad_norm == 1.0
    if experiment != "copy_T500_chrono":  # that preset is chrono by name
        standard = compose_train(f"experiment={experiment}", "init=forget_bias")
        assert standard.model.chrono_max_steps is None and standard.model.forget_bias == 1.0


def test_chrono_without_a_T_max_is_refused_in_one_line(tmp_path):
    tiny = [o for o in TINY if not o.startswith("task.")]  # char LM: no seq_len to guess T from
    result = run_cli(
        "experiment=shakespeare_char", "init=chrono", "debug=fdr", *tiny, cwd=tmp_path, check=False
    )
    assert result.returncode != 0
    assert "chrono_T_max is required and not set" in result.stderr
    assert not list(tmp_path.glob("outputs/*/*/metrics.jsonl"))


@pytest.mark.slow  # four real runs of the sweep; .ci/run's -m slow step
def test_a_narrowed_grid_runs_named_dirs_and_the_same_command_resumes_them(tmp_path):
    """One seed, one optimiser, no clipping: the two inits, each in a dir named by its setup;
    the same command with trainer.resume=true continues those dirs and makes no new one."""
    command = [
        "experiment=adding_T400",
        "sweep=setup_grid",
        "optim=rmsprop",
        "seed=0",
        "optim.clip_grad_norm=null",
        *TINY,
    ]
    run_cli(*command, cwd=tmp_path)
    grid = tmp_path / "multirun" / "adding_T400" / "setup_grid"
    runs = sorted(p.parent for p in grid.glob("*/*/summary.json"))
    names = [str(p.relative_to(grid)) for p in runs]
    assert names == ["rmsprop_clipNone_chrono/seed0", "rmsprop_clipNone_forget_bias/seed0"]
    for run in runs:
        config = OmegaConf.load(run / ".hydra" / "config.yaml")  # as compare reads it
        expected = 6 if "chrono" in run.parent.name else None  # T_max follows task.seq_len=6
        assert config.model.chrono_max_steps == expected
        assert config.optim.optimizer.eps_in_sqrt is False  # PyTorch's RMSprop
    before = set(grid.glob("*/*"))
    run_cli(*command, "trainer.resume=true", cwd=tmp_path)
    assert set(grid.glob("*/*")) == before
