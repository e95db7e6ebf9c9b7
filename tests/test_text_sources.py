"""Every notebook has a reviewable text source (jupytext percent format) that says exactly what the notebook says."""

import pathlib

import jupytext
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG = jupytext.config.load_jupytext_configuration_file(str(ROOT / "notebooks" / "jupytext.toml"))


def _text_of(notebook: pathlib.Path) -> str:
    nb = jupytext.read(notebook)
    return jupytext.writes(nb, fmt="py:percent", config=CONFIG)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_text_source_is_in_sync(notebook):
    source = notebook.with_suffix(".py")
    assert source.exists(), f"{source.name} is missing: run `make sync` (jupytext --sync notebooks/*.ipynb)"
    assert source.read_text(encoding="utf-8") == _text_of(notebook), (
        f"{source.name} and {notebook.name} differ: run `make sync` after editing either, then re-execute the notebook"
    )


def test_one_markdown_sentence_is_one_line_of_the_source(tmp_path):
    # editing one Markdown sentence of a lesson changes one line of its text source
    notebook = NOTEBOOKS[1]
    nb = jupytext.read(notebook)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and "\n" in c.source)
    before = _text_of(notebook).splitlines()
    cell.source = cell.source.replace(
        cell.source.splitlines()[0], cell.source.splitlines()[0] + " An added sentence.", 1
    )
    edited = tmp_path / notebook.name
    jupytext.write(nb, edited)
    after = _text_of(edited).splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after)) == 1
