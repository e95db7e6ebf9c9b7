"""Portability: strict nbval of every notebook, from the same committed outputs, under other CPU code paths.

The ordinary notebook items of this suite re-run every lesson on this machine's native kernels. Here
the same committed outputs are checked again with PyTorch forced onto other instruction sets, as a
learner's laptop would run them: ATen's AVX2 kernels with oneDNN capped at AVX2 (no AVX-512, no VNNI),
and ATen's portable scalar kernels. A lesson passes only if it prints the same text under all of them.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent

# name -> environment variables set before torch starts in the notebook kernels
ENVIRONMENTS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default"},
}
VARIABLES = sorted({k for env in ENVIRONMENTS.values() for k in env})

# what each run reported, printed at the end of the session by conftest's terminal summary
RAN: list[str] = []


def native_description() -> str:
    """The native environment: what ATen picked on this CPU, with none of the variables set."""
    return f"native (ATen {torch.backends.cpu.get_cpu_capability()}, no overrides)"


@pytest.mark.portability
@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_notebooks_reproduce_under(name):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(ENVIRONMENTS[name])
    cmd = [sys.executable, "-m", "pytest", "notebooks", "-q", "--no-header", "-p", "no:cacheprovider", "-p", "no:xdist"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "(no output)"
    setting = " ".join(f"{k}={v}" for k, v in ENVIRONMENTS[name].items())
    RAN.append(f"{name} ({setting}): {summary}")
    assert proc.returncode == 0, (
        f"strict nbval under {setting} failed: {summary}\n"
        + "\n".join(proc.stdout.splitlines()[-60:])
        + proc.stderr[-2000:]
    )
