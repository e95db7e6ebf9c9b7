"""The course benchmark: ``python -m helpers.bench`` prints every performance figure and saves them as JSON.

Sections live in ``helpers/benchmarks/`` (one module per lesson topic, each with a
``run() -> dict`` that prints its figures and returns them); they are discovered
automatically and run in name order. Timings are medians after warm-up with the thread count
fixed, and are reported as ratios against a baseline measured in the same run. Tests never time
anything: this script is where the performance goals of the course are checked.

    python -m helpers.bench                      # everything
    python -m helpers.bench --only core notebooks
    python -m helpers.bench --list
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import pkgutil
import platform
import sys
import time

import torch

import helpers.benchmarks as sections_pkg
from helpers.data import REPO_ROOT

DEFAULT_JSON = REPO_ROOT / "bench" / "results.json"


def available_sections() -> list[str]:
    """Names of the benchmark sections in ``helpers/benchmarks``, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(sections_pkg.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections")
    parser.add_argument("--skip", nargs="+", metavar="SECTION", default=[], help="skip these sections")
    parser.add_argument("--json", type=pathlib.Path, default=DEFAULT_JSON, help="where to write the figures")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)

    names = available_sections()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = [n for n in (args.only or []) + args.skip if n not in names]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {names}")
    chosen = [n for n in (args.only or names) if n not in args.skip]

    torch.set_num_threads(2)
    report: dict = {
        "meta": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpu_count": __import__("os").cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "sections": {},
    }
    start = time.perf_counter()
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        module = importlib.import_module(f"helpers.benchmarks.{name}")
        figures = module.run()
        figures["section_seconds"] = round(time.perf_counter() - t0, 2)
        report["sections"][name] = figures
    report["meta"]["total_seconds"] = round(time.perf_counter() - start, 1)
    print(f"\nbenchmark finished in {report['meta']['total_seconds']:.0f} s")
    if args.only is None and not args.skip:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    else:
        print("(partial run: JSON not written; run without --only/--skip to save the figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
