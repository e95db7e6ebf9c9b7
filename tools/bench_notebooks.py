"""Benchmark: execution time of every lesson notebook and of the whole course, plus peak memory.

Each notebook runs top to bottom in a fresh ``python3`` kernel of the current environment
(the same kernel setup as the strict-nbval tests), from the ``notebooks/`` folder. Goals
(DESIGN.md, performance budget): lessons 01-08 each <= 45 s and <= 150 s together; lesson 09
<= 120 s; lesson 10 <= 60 s.
"""

from __future__ import annotations

import resource
import sys
import time

import nbformat
from nbclient import NotebookClient

from helpers.data import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
#: seconds allowed per lesson number (the others: EACH_BUDGET), and for lessons 01-08 together
BUDGETS = {"09": 120.0, "10": 60.0}
EACH_BUDGET = 45.0
CORE_BUDGET = 150.0


def time_notebook(path) -> float:
    """Seconds to execute ``path`` top to bottom in a fresh kernel."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def run() -> dict:
    out: dict = {"seconds": {}, "failed": {}}
    total = core = 0.0
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        start = time.perf_counter()
        try:
            seconds = time_notebook(path)
        except Exception as exc:  # noqa: BLE001 - a failing lesson is reported, the other timings still count
            seconds = time.perf_counter() - start
            reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
            out["failed"][path.stem] = f"{type(exc).__name__} after {seconds:.1f} s: {reason}"
            print(f"{path.name:<36s} FAILED after {seconds:6.1f} s ({type(exc).__name__}); its time is not counted")
            continue
        number = path.name[:2]
        total += seconds
        core += seconds if "01" <= number <= "08" else 0.0
        budget = BUDGETS.get(number, EACH_BUDGET)
        flag = "ok" if seconds <= budget else f"OVER the {budget:.0f} s budget"
        print(f"{path.name:<36s} {seconds:6.1f} s   ({flag})", flush=True)
        out["seconds"][path.stem] = round(seconds, 2)
    print(
        f"{'lessons 01-08':<36s} {core:6.1f} s   ({'ok' if core <= CORE_BUDGET else f'OVER the {CORE_BUDGET:.0f} s budget'})"
    )
    out["core_seconds"] = round(core, 2)
    if out["failed"]:
        print(f"FAILED notebooks (not counted in the totals): {', '.join(out['failed'])}")
    # ru_maxrss of children: the largest resident set of any kernel this process started (KiB on Linux).
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 if sys.platform != "darwin" else 1 / 1024
    peak_mb = peak_kib * scale / 1024
    print(f"{'course total':<36s} {total:6.1f} s")
    print(f"{'peak kernel memory (max RSS)':<36s} {peak_mb:6.0f} MiB")
    out["total_seconds"] = round(total, 2)
    out["peak_kernel_rss_mib"] = round(peak_mb, 1)
    return out
