"""The deck/export builder itself (no browser): cell selection, offline URLs, clear errors."""

from __future__ import annotations

import re

import nbformat
import pytest

from tools import slides


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


def _png_b64(width: int, height: int) -> str:
    """A base64 PNG header of the given size (enough for the size estimate; never rendered)."""
    import base64
    import struct

    head = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + struct.pack(">II", width, height)
        + b"\x08\x06\x00\x00\x00"
    )
    return base64.b64encode(head + b"\x00" * 16).decode()


def _types(deck):
    return [c.metadata.get("slideshow", {}).get("slide_type", "-") for c in deck.cells]


def test_overfull_slide_is_split_into_subslides_in_the_copy_only():
    ten = "\n".join(f"y = {i}" for i in range(10))
    nb = _nb(("md", "## Many cells", "slide"), *[("code", ten, "fragment" if i % 2 else "-") for i in range(6)])
    nb.cells.append(nbformat.v4.new_markdown_cell("## Next", metadata={"slideshow": {"slide_type": "slide"}}))
    deck = slides.deck_notebook(nb)
    types = _types(deck)
    assert types[0] == "slide" and types[-1] == "slide"  # the author's breaks stay
    assert "subslide" in types[1:-1]  # breaks were added where the code no longer fits
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells[1:7]] == ["-", "fragment"] * 3  # input untouched
    heights = [slides.estimate_cell_height(c) for c in deck.cells]
    used = 0.0  # every slide of the copy fits the budget by the estimate
    for kind, h in zip(types, heights, strict=True):
        used = h if kind in ("slide", "subslide") else used + h
        assert used <= slides.SLIDE_BUDGET
    assert _types(slides.deck_notebook(nb, split=False)) == ["slide"] + ["-", "fragment"] * 3 + ["slide"]


def test_short_slides_are_not_split():
    nb = _nb(
        ("md", "# T\n\nOne line.", "slide"), ("code", "x = 1", "-"), ("md", "note", "notes"), ("code", "y", "fragment")
    )
    assert _types(slides.deck_notebook(nb)) == ["slide", "-", "notes", "fragment"]


def test_height_estimate_grows_with_content_and_caps_figures():
    short, long = _nb(("code", "x = 1", "-"), ("code", "\n".join("x = 1" for _ in range(20)), "-")).cells
    assert slides.estimate_cell_height(long) > slides.estimate_cell_height(short) + 300
    wrapped = _nb(("code", "x" * (3 * slides.CODE_CPL), "-")).cells[0]  # one source line, shown on three
    assert slides.estimate_cell_height(wrapped) == pytest.approx(
        slides.estimate_cell_height(short) + 2 * slides.CODE_LINE
    )
    md_short, md_long = _nb(("md", "## H\n\nshort", "-"), ("md", "## H\n\n" + "word " * 200, "-")).cells
    assert slides.estimate_cell_height(md_long) > slides.estimate_cell_height(md_short) + 3 * slides.PROSE_LINE
    fig = _nb(("code", "plot()", "-")).cells[0]
    fig.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png_b64(800, 300), "text/plain": "F"})]
    h_small = slides.estimate_cell_height(fig)
    fig.outputs[0].data["image/png"] = _png_b64(2400, 2400)  # scaled to the width, then capped in height
    h_big = slides.estimate_cell_height(fig)
    assert h_small < h_big <= slides.estimate_cell_height(short) + 9 + slides.IMAGE_MAX_HEIGHT + 55
    assert slides.estimate_cell_height(_nb(("md", "long speaker notes " * 50, "notes")).cells[0]) == 0.0


def test_a_code_cell_taller_than_a_slide_is_tagged_for_the_css():
    nb = _nb(("md", "# T", "slide"), ("code", "\n".join(f"x{i} = {i}" for i in range(60)), "-"))
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(map(str, range(60))))]
    deck = slides.deck_notebook(nb)
    assert _types(deck) == ["slide", "subslide"]
    assert slides.TALL_TAG in deck.cells[1].metadata["tags"] and "tags" not in nb.cells[1].metadata


def test_split_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget"):
        slides.split_overfull_slides(_nb(("md", "# T", "slide")), budget=0)
