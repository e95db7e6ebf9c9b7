"""The deck/export builder itself (no browser): cell selection, offline URLs, clear errors."""

from __future__ import annotations

import re

import nbformat
import pytest

from helpers import slides


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, slide_type in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        if slide_type is not None:
            cell.metadata["slideshow"] = {"slide_type": slide_type}
        nb.cells.append(cell)
    return nb


def test_deck_notebook_drops_skip_cells_and_test_markers():
    nb = _nb(
        ("md", "# Title", "slide"),
        ("code", "import secret_setup", "skip"),
        ("code", "# NBVAL_IGNORE_OUTPUT\nbox = make_widget()\nbox", "slide"),
        ("md", "say this", "notes"),
        ("code", "x = 1", None),
    )
    deck = slides.deck_notebook(nb)
    assert [c.source for c in deck.cells] == ["# Title", "box = make_widget()\nbox", "say this", "x = 1"]
    assert len(nb.cells) == 5 and "NBVAL" in nb.cells[2].source  # the input is not modified


def test_deck_notebook_rejects_unknown_slide_type_and_non_notebooks():
    with pytest.raises(ValueError, match="slide_type"):
        slides.deck_notebook(_nb(("md", "# T", "slides")))
    with pytest.raises(TypeError, match="nb"):
        slides.deck_notebook({"cells": []})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("$$q = \\mathrm{round}(x/S)$$", True),
        ("inline $S = 4/255$ here", True),
        ("\\(x\\) and \\[y\\]", True),
        ("costs $5 per hour", False),
        ("no maths at all", False),
    ],
)
def test_has_math(source, expected):
    assert slides.has_math(_nb(("md", source, "slide"))) is expected


def test_has_math_ignores_code_cells():
    assert not slides.has_math(_nb(("code", "s = '$x$'", "slide")))


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(ValueError, match="notebook_dir"):
        slides.lesson_notebooks(tmp_path / "missing")
    with pytest.raises(ValueError, match="notebooks"):
        slides.build_decks([tmp_path / "missing.ipynb"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="npm ci --prefix slides"):
        slides.copy_assets(tmp_path / "out", node_modules=tmp_path / "no_node_modules")
    assert slides.main(["--out", str(tmp_path / "o"), str(tmp_path / "missing.ipynb")]) == 1


def test_pages_load_nothing_from_a_cdn(tmp_path):
    """Every script/style URL in a built deck and export page is relative (served from _static/)."""
    try:
        slides._require_node_modules(slides.NODE_MODULES)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    nb = _nb(("md", "# T\n\n$$x$$", "slide"), ("code", "1 + 1", "-"))
    path = tmp_path / "01_t.ipynb"
    nbformat.write(nb, path)
    pages = slides.build_decks([path], tmp_path / "decks") + slides.build_html([path], tmp_path / "html")
    for page in pages:
        text = page.read_text(encoding="utf-8")
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", text)
        urls += re.findall(r"""require\(\s*\{[^}]*\}\s*,\s*\[([^\]]*)\]""", text)
        urls += re.findall(r"""import\s+\w+\s+from\s+['"]([^'"]+)['"]""", text)
        remote = [u for u in urls if re.search(r"(https?:)?//", u)]
        assert not remote, f"{page.name} loads {remote}"
        assert (page.parent / "_static" / "mathjax" / "MathJax.js").is_file()
        assert (page.parent / "index.html").is_file()
