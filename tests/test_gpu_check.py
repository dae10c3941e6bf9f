"""experiments/gpu_check.sh and its parts, on a machine without a GPU: the check stops at
once in one line; the parity check's tolerance follows each array's scale and its two
precision passes run (on tests/fake_cuda.py's stand-in); the benchmark's workers do not
preallocate GPU memory."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_cuda import install

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_parity():
    return _load("gpu_parity")


def test_gpu_check_without_a_gpu_stops_at_once_in_one_line(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    check = subprocess.Popen(
        ["bash", str(EXPERIMENTS / "gpu_check.sh"), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, ended whole if it runs on
    )
    try:
        stdout, stderr = check.communicate(timeout=60)  # the whole check takes far longer
    except subprocess.TimeoutExpired:
        os.killpg(check.pid, signal.SIGKILL)
        check.communicate()
        pytest.fail("gpu_check.sh did not stop at once on a machine without a GPU")
    assert check.returncode == 1
    assert stdout.startswith("gpu_check: JAX sees no CUDA GPU (default backend 'cpu'")
    assert stdout.count("\n") == 1 and stderr == ""
    assert "Nothing was run." in stdout
    assert not out.exists()  # no log, no benchmark


def test_tolerance_is_relative_to_each_arrays_scale(gpu_parity):
    rtol = gpu_parity.RTOL["highest"]
    bias_grad = np.linspace(-1e3, 1e3, 64, dtype=np.float32)
    # Four float32 rounding steps at 1e3 (4.9e-4): past the old absolute 2e-4, yet float32
    # agreement for an array of this scale.
    off = bias_grad + np.float32(4 * 2.0**-23 * 1e3)
    assert gpu_parity.relative_error(off, bias_grad) < rtol
    # The same absolute difference on an output of scale 1e-2 is a 5 % error.
    small = bias_grad * 1e-5
    assert gpu_parity.relative_error(small + 4.9e-4, small) > gpu_parity.RTOL["default"]
    assert gpu_parity.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gpu_parity.relative_error(np.ones(3), np.zeros(3)) == float("inf")


def test_parity_refuses_in_one_line_without_a_gpu(gpu_parity, capsys):
    assert gpu_parity.main() == 1
    assert capsys.readouterr().out == "gpu_parity: no CUDA GPU (JAX's default backend is 'cpu')\n"


@pytest.mark.slow  # 14 s on CPU: .ci/run's slow step
def test_parity_reports_both_precisions_relative_to_scale(gpu_parity, monkeypatch, capsys):
    install(monkeypatch)
    for name, value in {"B": 4, "T": 6, "D": 3, "H": 5}.items():
        monkeypatch.setattr(gpu_parity, name, value)  # small shapes: fast on CPU
    assert gpu_parity.main() == 0
    out = capsys.readouterr().out
    for precision in ("highest", "default"):
        assert f"precision {precision}: cuDNN vs the scan kernel" in out
        assert f"precision {precision}: worst " in out
    assert "  grad layer_1/w_hh " in out and "  grad x " in out and " of its scale " in out
    assert out.rstrip().endswith("parity: highest ok, default ok")


def test_benchmark_workers_take_gpu_memory_as_needed(monkeypatch):
    bench = _load("bench_lstm")
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    monkeypatch.setenv("XLA_FLAGS", "--a")
    assert bench.worker_env(None)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    env = bench.worker_env(("xla", "--b"))
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["XLA_FLAGS"] == "--a --b"
