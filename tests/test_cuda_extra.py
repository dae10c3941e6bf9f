"""The [cuda] install extra brings a CUDA JAX that fits: its plugin pinned to the jaxlib
[dev] installs, and the whole extra resolving from the package index together with the
torch of [dev] (the parity check's PyTorch side) on one CUDA major. Slow: pip reads the
index (a dry run: package metadata only, nothing installed)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"
CUDA_MAJOR = re.compile(r"^(?:jax-cuda(\d+)-.*|nvidia-.*-cu(\d+))$")


def _extra(name: str) -> list[Requirement]:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    return [Requirement(line) for line in extras[name]]


def _pinned_version(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"{requirement} is not pinned to one version"
    return spec.version


def _cuda_majors(names) -> set[str]:
    return {next(g for g in m.groups() if g) for n in names if (m := CUDA_MAJOR.match(n))}


def test_cuda_extra_pins_jax_and_its_plugin_to_the_installed_jaxlib():
    installed = importlib.metadata.version("jaxlib")
    pins = {r.name: _pinned_version(r) for r in _extra("cuda")}
    assert {"jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt"} <= set(pins)
    assert set(pins.values()) == {installed}, (
        f"the cuda extra pins {pins}, but [dev] installed jaxlib {installed}: bump the pins "
        "in pyproject.toml together"
    )


def test_cuda_extra_resolves_with_the_parity_checks_torch_on_one_cuda_major(tmp_path):
    torch = next(r for r in _extra("dev") if r.name == "torch")
    report = tmp_path / "report.json"
    # --isolated and no PIP_* variables: the index as a user's pip sees it, not this
    # machine's local wheel folders (which hold a CPU build of torch).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    command = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run"]
    command += ["--ignore-installed", "--quiet", "--report", str(report)]
    command += [str(r) for r in _extra("cuda")] + [str(torch)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    resolved = {
        item["metadata"]["name"].lower(): item["metadata"]
        for item in json.loads(report.read_text())["install"]
    }
    for requirement in _extra("cuda") + [torch]:
        assert resolved[requirement.name]["version"] == _pinned_version(requirement)
    torch_needs = [Requirement(r).name for r in resolved["torch"].get("requires_dist", [])]
    assert _cuda_majors(torch_needs) == {"13"}, "torch is not the CUDA 13 build"
    assert _cuda_majors(resolved) == {"13"}  # the plugin and every CUDA library
