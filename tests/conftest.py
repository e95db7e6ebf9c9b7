"""Shared pytest setup: a fixed thread count, a non-interactive matplotlib backend, seeded torch."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# In CI (CI=true) hypothesis draws the same examples on every run, so a landing never depends on
# luck; locally it keeps exploring new examples each run.
if os.environ.get("CI"):
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None)
    settings.load_profile("ci")


def pytest_terminal_summary(terminalreporter):
    """Say which numeric environments the notebooks were checked under (the portability check)."""
    import sys

    portability = sys.modules.get("test_portability")
    if portability is not None and portability.RAN:
        terminalreporter.section("portability: strict nbval of every notebook under")
        ran_native = any(
            str(getattr(r, "fspath", "")).endswith(".ipynb") for r in terminalreporter.stats.get("passed", [])
        )
        if ran_native:
            terminalreporter.write_line(portability.native_description())
        for line in portability.RAN:
            terminalreporter.write_line(line)
