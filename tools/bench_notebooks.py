"""Benchmark: execution time of every lesson notebook and of the whole course, plus peak memory.

Each notebook runs top to bottom in a fresh ``python3`` kernel of the current environment
(the same kernel setup as the strict-nbval tests), from the ``notebooks/`` folder. Goals:
each notebook <= 45 s (lesson 08: <= 60 s), the course <= 180 s.
"""

from __future__ import annotations

import resource
import sys
import time

import nbformat
from nbclient import NotebookClient

from helpers.data import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def time_notebook(path) -> float:
    """Seconds to execute ``path`` top to bottom in a fresh kernel."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def run() -> dict:
    out: dict = {"seconds": {}}
    total = 0.0
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        seconds = time_notebook(path)
        total += seconds
        budget = 60 if path.name.startswith("08") else 45
        flag = "ok" if seconds <= budget else f"OVER the {budget} s budget"
        print(f"{path.name:<36s} {seconds:6.1f} s   ({flag})", flush=True)
        out["seconds"][path.stem] = round(seconds, 2)
    # ru_maxrss of children: the largest resident set of any kernel this process started (KiB on Linux).
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 if sys.platform != "darwin" else 1 / 1024
    peak_mb = peak_kib * scale / 1024
    print(f"{'course total':<36s} {total:6.1f} s   ({'ok' if total <= 180 else 'OVER the 180 s budget'})")
    print(f"{'peak kernel memory (max RSS)':<36s} {peak_mb:6.0f} MiB")
    out["total_seconds"] = round(total, 2)
    out["peak_kernel_rss_mib"] = round(peak_mb, 1)
    return out
