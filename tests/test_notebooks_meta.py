"""Checks of the committed notebooks themselves (their outputs are re-run by strict nbval)."""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
START_PAGE = ROOT / "notebooks" / "00_start_here.ipynb"
LESSONS = [p for p in NOTEBOOKS if p != START_PAGE]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|root|opt|home/\w+)/")


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_lessons_exist():
    assert NOTEBOOKS, "no lesson notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_ran_in_order(path):
    counts = [c.get("execution_count") for c in _code_cells(_load(path))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..N; commit outputs of a fresh top-to-bottom run"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_committed_errors_or_machine_paths(path):
    for i, cell in enumerate(_load(path)["cells"]):
        src = "".join(cell["source"])
        outputs = cell.get("outputs", [])
        if "NBVAL_RAISES_EXCEPTION" not in src:
            assert not any(o["output_type"] == "error" for o in outputs), f"{path.name} cell {i} committed an error"
        text = src + json.dumps(outputs)
        assert not MACHINE_PATH.search(text), f"{path.name} cell {i} contains a machine-specific path"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_kernelspec_and_structure(path):
    nb = _load(path)
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    headings = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for section in ("Goals", "Summary", "Exercises", "Pitfalls"):
        assert section in headings, f"{path.name} has no '{section}' section"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_widget_cells_are_nbval_ignored(path):
    for i, cell in enumerate(_code_cells(_load(path))):
        has_widget_view = any(
            "application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.get("outputs", [])
        )
        if has_widget_view:
            src = "".join(cell["source"])
            assert "NBVAL_IGNORE_OUTPUT" in src, (
                f"{path.name} code cell {i + 1} shows a widget without NBVAL_IGNORE_OUTPUT"
            )


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_lesson_has_a_widget(path):
    src = " ".join("".join(c["source"]) for c in _code_cells(_load(path)))
    assert "helpers.widgets" in src, f"{path.name} has no widget from helpers.widgets"
