"""lstm-jax-sample: argument parsing, and text generated from a trained run's checkpoint."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_runner import run_cli, tree_hashes

from lstm_jax import sample as sample_cli


def test_parse_args_defaults_and_values():
    run_dir, opts = sample_cli.parse_args(["RUN"])
    assert run_dir == "RUN"
    assert opts == {
        "prompt": "",
        "length": 500,
        "temperature": 0.8,
        "top_k": None,
        "seed": 0,
        "which": "best",
    }
    _, opts = sample_cli.parse_args(
        ["RUN", "prompt=ROMEO:\\n", "length=7", "temperature=0", "top_k=5", "which=last"]
    )
    assert opts["prompt"] == "ROMEO:\n" and opts["length"] == 7 and opts["top_k"] == 5
    assert opts["temperature"] == 0.0 and opts["which"] == "last"


@pytest.mark.parametrize("bad", ["lenght=5", "length=abc", "which=first", "length=0", "x"])
def test_parse_args_rejects_bad_arguments_in_one_line(bad, capsys):
    with pytest.raises(SystemExit) as e:
        sample_cli.parse_args(["RUN", bad])
    assert e.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lstm-jax-sample: error: ") and "--help" in line


def test_help_is_argparse_usage_and_exits_zero(capsys):
    """It used to print the raw docstring and exit 1 (issue 30)."""
    with pytest.raises(SystemExit) as e:
        sample_cli.parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lstm-jax-sample") and "--temperature" in out
    # The options also come as flags, and a flag and its KEY=VALUE form agree.
    assert sample_cli.parse_args(["RUN", "--length", "7", "--top_k", "3"]) == sample_cli.parse_args(
        ["RUN", "length=7", "top_k=3"]
    )


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    """A tiny character LM trained for a few steps by the real CLI."""
    root = tmp_path_factory.mktemp("sample")
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcd efg\n"), size=4000))
    (root / "text.txt").write_text(text)
    run_dir = root / "run"
    run_cli(
        "task=char_lm",
        f"task.path={root / 'text.txt'}",
        "task.seq_len=16",
        "model.hidden_size=16",
        "trainer.batch_size=4",
        "trainer.max_steps=4",
        "trainer.eval_every=2",
        "trainer.log_every=2",
        "trainer.checkpoint_every=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        cwd=root,
    )
    return run_dir


def test_sample_generates_from_a_checkpoint(char_run):
    a = sample_cli.sample(str(char_run), prompt="ab", length=40, temperature=1.0, seed=1)
    b = sample_cli.sample(str(char_run), prompt="ab", length=40, temperature=1.0, seed=1)
    assert a == b and a.startswith("ab") and len(a) == 42
    assert set(a) <= set("abcd efg\n")
    last = sample_cli.sample(str(char_run), prompt="", length=10, temperature=0.0, which="last")
    assert len(last) == 10


def test_sample_accepts_a_relative_run_dir(char_run, monkeypatch):
    # orbax rejects relative checkpoint paths; the run dir a user types usually is one
    monkeypatch.chdir(char_run.parent)
    relative = sample_cli.sample(char_run.name, prompt="ab", length=20, temperature=1.0, seed=1)
    absolute = sample_cli.sample(str(char_run), prompt="ab", length=20, temperature=1.0, seed=1)
    assert relative == absolute


def test_sample_console_script(char_run, capsys):
    sample_cli.main([str(char_run), "prompt=a", "length=12", "temperature=0.5"])
    out = capsys.readouterr().out
    assert out.startswith("a") and len(out.rstrip("\n")) >= 1
    # an unknown prompt character is a clear error, not a stack trace
    result = subprocess.run(
        [sys.executable, "-m", "lstm_jax.sample", str(char_run), "prompt=XYZ", "length=3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "not in the vocabulary" in result.stderr


def test_a_damaged_best_checkpoint_falls_back_to_the_next_best_then_the_newest_intact_one(
    char_run, tmp_path
):
    # char_run evaluates at steps 2 and 4 and both improved: both carry metrics, 4 ranks first.
    run_dir = tmp_path / "run"
    shutil.copytree(char_run, run_dir)
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.parent.name for p in checkpoints.glob("*/metrics")) == ["2", "4"]
    (checkpoints / "4" / "meta" / "metadata").unlink()

    def sample() -> str:
        before = tree_hashes(run_dir)
        result = subprocess.run(
            [sys.executable, "-m", "lstm_jax.sample", str(run_dir), "prompt=ab", "length=5"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.startswith("ab")
        assert tree_hashes(run_dir) == before  # a reader moves nothing
        assert not (checkpoints / "corrupt").exists()
        return result.stderr

    # the next best intact checkpoint
    stderr = sample()
    assert f"Skipped unreadable checkpoint {checkpoints / '4'}" in stderr
    assert f"restored {checkpoints / '2'}" in stderr
    # with no best intact (2 a periodic save only), the newest intact one, saying so
    shutil.rmtree(checkpoints / "2" / "metrics")
    assert "No intact best checkpoint" in (stderr := sample())
    assert "using the newest intact one, of step 2" in stderr


_TEMPERATURE = (
    "must be a finite number >= 0 (0: the most likely token; 1: the model's own distribution)"
)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("temperature=-0.5", f"lstm-jax-sample: error: temperature=-0.5: {_TEMPERATURE}"),
        ("temperature=nan", f"lstm-jax-sample: error: temperature=nan: {_TEMPERATURE}"),
        (
            "top_k=0",
            "lstm-jax-sample: error: top_k=0: must be at least 1 (or none for every token)",
        ),
    ],
)
def test_bad_sampling_options_are_refused(arg, message, capsys):
    from lstm_jax.sample import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["some/run", arg])
    assert exit_info.value.code == 2
    option = arg.partition("=")[0]
    reason = message.removeprefix("lstm-jax-sample: error: ")
    assert capsys.readouterr().err.strip() == (
        f"lstm-jax-sample: error: argument --{option}: {reason} "
        "(lstm-jax-sample --help lists the options)"
    )
