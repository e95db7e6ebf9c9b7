"""Build the seminar decks (reveal.js) and the static HTML export of the course, offline.

Both are rendered by nbconvert from the committed notebooks, with their committed outputs:
nothing is executed at build time. Every script a page loads (reveal.js, MathJax 2, RequireJS,
jQuery and the Jupyter widgets HTML manager) comes from ``slides/node_modules`` (installed by
``npm ci --prefix slides``) and is copied into a ``_static/`` folder next to the pages, so a
deck opens from ``file://`` or any local HTTP server with no network.

    python -m tools.slides            # one deck per notebook -> slides/build/NN_topic.slides.html
    python -m tools.slides --html     # the whole course as static HTML -> build/html/index.html

Decks keep only cells whose ``slideshow.slide_type`` is not ``"skip"``; "notes" cells become
speaker notes (press ``s`` in the deck). Test markers such as ``# NBVAL_IGNORE_OUTPUT`` are
dropped from the shown code. The static export keeps every cell and embeds the widget state
that the executed notebook saved, so its sliders show their last picture without a kernel.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import html
import json
import math
import re
import shutil
import struct
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import nbformat

__all__ = [
    "ROOT",
    "NOTEBOOK_DIR",
    "DECK_DIR",
    "HTML_DIR",
    "NODE_MODULES",
    "lesson_notebooks",
    "deck_notebook",
    "split_overfull_slides",
    "estimate_cell_height",
    "has_math",
    "copy_assets",
    "build_decks",
    "build_html",
    "main",
]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
DECK_DIR = ROOT / "slides" / "build"
HTML_DIR = ROOT / "build" / "html"
NODE_MODULES = ROOT / "slides" / "node_modules"
TEMPLATE_DIR = ROOT / "slides" / "templates"
STATIC = "_static"

#: What each page needs from node_modules: package -> (sub-paths to copy, glob patterns to leave out).
ASSETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "reveal.js": (("dist", "plugin/notes"), ("*.map", "*.esm.js")),
    "mathjax": (
        (
            "MathJax.js",
            "config",
            "extensions",
            "jax/input/TeX",
            "jax/output/CommonHTML",
            "jax/element",
            "fonts/HTML-CSS/TeX/woff",
            "localization/en",
        ),
        (),
    ),
    "requirejs": (("require.js",), ()),
    "jquery": (("dist/jquery.min.js",), ()),
    "@jupyter-widgets/html-manager": (("dist",), ("*.map", "embed.js", "embed.js.LICENSE.txt")),
}

#: The URLs nbconvert writes into a page, relative to the page (pages sit next to _static/).
URLS = {
    "mathjax_url": f"{STATIC}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    "require_js_url": f"{STATIC}/requirejs/require.js",
    "jquery_url": f"{STATIC}/jquery/dist/jquery.min.js",
    "widget_renderer_url": f"{STATIC}/@jupyter-widgets/html-manager/dist/embed-amd.js",
    "reveal_url_prefix": f"{STATIC}/reveal.js",
}

SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "skip", "notes")
_TEST_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+.*$\n?", re.MULTILINE)
_MATH = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$|\\\(.+?\\\)|\\\[.+?\\\]|\\begin\{", re.DOTALL)


def lesson_notebooks(notebook_dir: Path | str = NOTEBOOK_DIR) -> list[Path]:
    """The lesson notebooks ``NN_topic.ipynb`` in ``notebook_dir``, in lesson order."""
    notebook_dir = Path(notebook_dir)
    if not notebook_dir.is_dir():
        raise ValueError(f"notebook_dir must be an existing folder, got {str(notebook_dir)!r}")
    # the lessons; 00_start_here is the lab's start page, not a seminar deck
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00_"))


def _slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


def _strip_markers(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _TEST_MARKER.sub("", cell.source)


def deck_notebook(nb: nbformat.NotebookNode, *, split: bool = True) -> nbformat.NotebookNode:
    """A copy of ``nb`` with only the cells that belong on slides (``slide_type`` not ``"skip"``).

    With ``split`` (the default) a slide whose cells would not fit 1280x720 is split into
    subslides (``split_overfull_slides``); the notebook itself is never changed.

    Raises ``ValueError`` for an unknown ``slide_type`` (a typo would silently merge slides).
    """
    if not isinstance(nb, nbformat.NotebookNode):
        raise TypeError(f"nb must be an nbformat NotebookNode, got {type(nb).__name__}")
    deck = copy.deepcopy(nb)
    for i, cell in enumerate(deck.cells):
        kind = _slide_type(cell)
        if kind not in SLIDE_TYPES:
            raise ValueError(f"cell {i} has slideshow.slide_type {kind!r}; allowed: {', '.join(SLIDE_TYPES)}")
    deck.cells = [c for c in deck.cells if _slide_type(c) != "skip"]
    _strip_markers(deck)
    if split:
        split_overfull_slides(deck)
    return deck


# --- Automatic slide splitting ------------------------------------------------------------------
# Layout of the deck (see slides/templates/course-reveal): 1280x720 slides, 20 px prose, 16 px code
# at line-height 1.2. The constants below were fitted to heights measured in chromium on the course's
# decks (per cell, px); the estimate is a little generous so that a slide it accepts really fits.
SLIDE_HEIGHT = 720
SLIDE_BUDGET = 680  #: px of estimated content per slide (the estimate's error is ~10 px per cell)
CONTENT_WIDTH = 1180  #: px available to an image on a slide
IMAGE_MAX_HEIGHT = 560  #: px, figures are capped to this height by the deck's CSS
SCROLL_MAX_HEIGHT = 600  #: px, a code block or text output taller than this scrolls (deck CSS)
TALL_TAG = "deck-tall"  #: tag (CSS class celltag_deck-tall) on a code cell that alone would not fit a slide
CODE_CPL = 126  #: characters per code line before it wraps (16 px monospace)
OUTPUT_CPL = 110  #: characters per text-output line before it wraps (the output area is narrower)
CODE_LINE = 19.2
PROSE_CPL = 118  #: characters per prose line (20 px sans)
PROSE_LINE = 26.3
_MD_BLOCK = 35.0
_MD_HEADING = {1: (27.0, 1.9), 2: (19.0, 1.45), 3: (13.0, 1.2)}  #: level -> (px per line beyond the block, em)
_WIDGET_LEAF = 36.0
_INLINE_NOISE = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\\(?:mathrm|text|operatorname|mathbf|textbf)\{([^}]*)\}"), r"\1"),
    (re.compile(r"\\[a-zA-Z]+"), "x"),
    (re.compile(r"<[^>]+>"), ""),
    (re.compile(r"[*`$_{}^]"), ""),
]


def _visible(text: str) -> str:
    for pattern, repl in _INLINE_NOISE:
        text = pattern.sub(repl, text)
    return text


def _wrapped(text: str, cpl: float) -> int:
    """Display lines of one source line (or joined paragraph) wrapped at ``cpl`` characters."""
    return max(1, math.ceil(len(text.expandtabs(4)) / max(cpl, 1)))


def _flush_paragraph(para: list[str]) -> float:
    """Estimated px of the paragraph collected in ``para`` (which is emptied)."""
    if not para:
        return 0.0
    text = _visible(" ".join(para))
    para.clear()
    return PROSE_LINE * _wrapped(text, PROSE_CPL) - 3.5


def _markdown_height(source: str) -> float:
    """Estimated px of rendered Markdown: headings, paragraphs, list items, table rows, display maths, code fences."""
    source = source.strip()
    if not source:
        return 0.0
    height = 2.0
    for block in re.split(r"\n\s*\n", source):
        lines = block.splitlines()
        height += _MD_BLOCK
        if block.lstrip().startswith("```"):
            height += CODE_LINE * sum(_wrapped(line, CODE_CPL) for line in lines[1:-1])
            continue
        if block.lstrip().startswith("$$") or block.lstrip().startswith("\\["):
            height += 27.0 + 20.0 * block.count("\\\\") + (14.0 if re.search(r"\\(frac|sum|int|prod)", block) else 0.0)
            continue
        if lines[0].lstrip().startswith("|"):
            rows = [line for line in lines if not re.match(r"^\s*\|?\s*:?-{2,}", line)]
            for row in rows:  # 0.8 em table text; a row longer than the slide wraps
                text = " ".join(c.strip() for c in row.strip().strip("|").split("|"))
                height += 25.5 * _wrapped(_visible(text), PROSE_CPL * 1.25)
            continue
        para: list[str] = []
        in_list = False

        for line in lines:
            heading = re.match(r"^(#{1,6})\s+(.*)", line)
            item = re.match(r"^\s*(?:[-*+]|\d+\.)\s+(.*)", line)
            if heading:
                height += _flush_paragraph(para)
                per_line, em = _MD_HEADING.get(len(heading.group(1)), _MD_HEADING[3])
                height += per_line * _wrapped(_visible(heading.group(2)), PROSE_CPL / em)
            elif item:
                height += _flush_paragraph(para)
                in_list = True
                height += 8.0 + 26.1 * _wrapped(_visible(item.group(1)), PROSE_CPL - 3)
            elif in_list and line.startswith(" ") and not para:
                height += 26.1 * _wrapped(_visible(line.strip()), PROSE_CPL - 3) - 13.0
            else:
                para.append(line)
        height += _flush_paragraph(para)
    return height


def _text_height(text: str, cpl: float = OUTPUT_CPL) -> float:
    """Estimated px of a monospace block (code or a text output), wrapped, capped at the scroll box's height."""
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    n = sum(_wrapped(line, cpl) for line in lines)
    return min(13.0 + CODE_LINE * n, SCROLL_MAX_HEIGHT + 13.0)


def _png_size(data: str) -> tuple[int, int] | None:
    """(width, height) in px from the header of a base64 PNG, or None when it is not one."""
    try:
        head = base64.b64decode(re.sub(r"\s+", "", data)[:64])
    except (binascii.Error, ValueError):
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def _image_height(width: float, height: float) -> float:
    """Displayed px of an image: scaled down to the slide's width, then capped to IMAGE_MAX_HEIGHT."""
    if width > CONTENT_WIDTH:
        height *= CONTENT_WIDTH / width
    return min(height, IMAGE_MAX_HEIGHT)


def _widget_height(model_id: str, state: dict, depth: int = 0) -> float:
    """Estimated px of a saved widget view: boxes stack (VBox) or sit side by side (HBox), images by PNG size."""
    model = state.get(model_id)
    if model is None or depth > 20:
        return 0.0
    name, st = model.get("model_name", ""), model.get("state", {})
    children = [c.removeprefix("IPY_MODEL_") for c in st.get("children", [])]
    if name in ("VBoxModel", "BoxModel", "GridBoxModel", "AccordionModel", "TabModel"):
        return sum(_widget_height(c, state, depth + 1) for c in children) + 4.0
    if name == "HBoxModel":
        return max((_widget_height(c, state, depth + 1) for c in children), default=0.0) + 4.0
    if name == "ImageModel":
        for buf in model.get("buffers", []):
            size = _png_size(buf.get("data", ""))
            if size:
                return _image_height(*size) + 8.0
        return 300.0
    if name in ("HTMLModel", "HTMLMathModel", "LabelModel"):
        text = re.sub(r"<[^>]+>", "", str(st.get("value", "")))
        return 10.0 + 18.5 * max(1, len(text.splitlines()))
    if name == "OutputModel":
        return sum(_output_height(o, {}) for o in st.get("outputs", []))
    return _WIDGET_LEAF


def _output_height(output, widget_state: dict) -> float:
    kind = output.get("output_type")
    if kind == "stream":
        return _text_height(output.get("text", ""))
    if kind == "error":
        return _text_height("\n".join(output.get("traceback", [])))
    data = output.get("data", {})
    view = data.get("application/vnd.jupyter.widget-view+json")
    if view and view.get("model_id") in widget_state:
        return _widget_height(view["model_id"], widget_state) + 10.0
    if "image/png" in data:
        size = _png_size(data["image/png"])
        meta = output.get("metadata", {}).get("image/png", {})
        if size:
            width, height = (
                meta.get("width", size[0]),
                meta.get("height", size[1] * meta.get("width", size[0]) / size[0]),
            )
            return _image_height(float(width), float(height)) + 55.0
        return IMAGE_MAX_HEIGHT + 55.0
    if "text/markdown" in data:
        return _markdown_height(data["text/markdown"]) + 26.0
    if "text/html" in data:
        text = re.sub(r"<(br|tr|p|div|li|h\d)\b[^>]*>", "\n", data["text/html"])
        return _text_height(re.sub(r"<[^>]+>", "", text))
    if "text/latex" in data:
        return 60.0
    if "text/plain" in data:
        return _text_height(data["text/plain"])
    return 0.0


def estimate_cell_height(cell, widget_state: dict | None = None) -> float:
    """Estimated rendered height (px) of one cell on a 1280x720 slide of the course's deck.

    Markdown: headings, paragraphs and list items wrapped at the slide's width, table rows, display
    maths. Code: source lines wrapped at the code font, plus each output (text lines, capped at the
    scroll box's height; images from their PNG size scaled to the slide's width and capped; widget
    views from their saved state). "notes" cells take no room. Taught in the slides README.
    """
    if _slide_type(cell) == "notes":
        return 0.0
    if cell.cell_type == "markdown":
        return _markdown_height(cell.source) + 4.0
    if cell.cell_type != "code":
        return 0.0
    height = 4.0
    if cell.source.strip():
        height += 7.0 + _text_height(cell.source, CODE_CPL)
    outputs = cell.get("outputs", [])
    if outputs:
        height += 9.0 + sum(_output_height(o, widget_state or {}) for o in outputs)
    return height


def _widget_state(nb) -> dict:
    return (
        nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    )


def split_overfull_slides(deck: nbformat.NotebookNode, budget: float = SLIDE_BUDGET) -> list[int]:
    """Start a new subslide wherever the cells of a slide would not fit in ``budget`` px; return those cells.

    Walks the deck's cells (after "skip" cells are gone), adds up ``estimate_cell_height`` per
    slide, and when the next cell would push the slide past ``budget`` sets that cell's
    ``slide_type`` to "subslide" (a "fragment" or "-" cell alike). The author's breaks are kept;
    only breaks are added, and only in ``deck`` (the caller's copy), never in the notebook file.
    A code cell that is alone taller than a slide gets the tag ``TALL_TAG``: the deck's CSS then
    shows its code and text outputs in short scroll boxes and its figures smaller, so it fits.
    """
    check_budget = float(budget)
    if not check_budget > 0:
        raise ValueError(f"budget must be a positive number of px, got {budget!r}")
    state = _widget_state(deck)
    used, added = 0.0, []
    for i, cell in enumerate(deck.cells):
        kind = _slide_type(cell)
        height = estimate_cell_height(cell, state)
        if height > check_budget and cell.cell_type == "code":
            # Alone taller than a slide: the deck's CSS shrinks its scroll boxes and figures to fit.
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if TALL_TAG not in tags:
                tags.append(TALL_TAG)
            height = check_budget
        if kind in ("slide", "subslide"):
            used = height
            continue
        if kind == "notes" or height == 0.0:
            continue
        if used > 0.0 and used + height > check_budget:
            cell.setdefault("metadata", {})["slideshow"] = {"slide_type": "subslide"}
            added.append(i)
            used = height
        else:
            used += height
    return added


def has_math(nb: nbformat.NotebookNode) -> bool:
    """Whether any markdown cell of ``nb`` holds TeX (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``)."""
    return any(c.cell_type == "markdown" and _MATH.search(c.source) for c in nb.cells)


def _require_node_modules(node_modules: Path) -> None:
    missing = [pkg for pkg in ASSETS if not (node_modules / pkg / "package.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"slides/node_modules lacks {', '.join(missing)}; install them with `npm ci --prefix slides` "
            "(or `make install-browser`)"
        )


def _version(node_modules: Path, pkg: str) -> str:
    return json.loads((node_modules / pkg / "package.json").read_text(encoding="utf-8"))["version"]


def copy_assets(out_dir: Path | str, node_modules: Path | str = NODE_MODULES) -> Path:
    """Copy the scripts, styles and fonts the pages load from ``node_modules`` into ``out_dir/_static``.

    A package already copied at the same version is left alone. Returns the ``_static`` folder.
    """
    node_modules = Path(node_modules)
    _require_node_modules(node_modules)
    static = Path(out_dir) / STATIC
    for pkg, (parts, leave_out) in ASSETS.items():
        version = _version(node_modules, pkg)
        dest = static / pkg
        stamp = dest / ".version"
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == version:
            continue
        if dest.exists():
            shutil.rmtree(dest)
        for part in parts:
            src = node_modules / pkg / part
            if src.is_dir():
                shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns(*leave_out))
            else:
                (dest / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / part)
        stamp.write_text(version, encoding="utf-8")
    return static


def _exporter(kind: str):
    from nbconvert import HTMLExporter, SlidesExporter
    from traitlets.config import Config

    c = Config()
    name = "SlidesExporter" if kind == "slides" else "HTMLExporter"
    for key in ("mathjax_url", "require_js_url", "jquery_url", "widget_renderer_url"):
        c[name][key] = URLS[key]
    c[name].extra_template_basedirs = [str(TEMPLATE_DIR)]
    if kind == "slides":
        c[name].template_name = "course-reveal"
        c[name].reveal_url_prefix = URLS["reveal_url_prefix"]
        c[name].reveal_theme = "white"
        c[name].reveal_transition = "fade"
        c[name].reveal_number = "c/t"
        c[name].reveal_width = "1280"
        c[name].reveal_height = "720"
        c[name].exclude_input_prompt = True
        c[name].exclude_output_prompt = True
        return SlidesExporter(config=c)
    c[name].template_name = "course-lab"
    return HTMLExporter(config=c)


def _resolve(notebooks: Iterable[Path | str] | None) -> list[Path]:
    paths = lesson_notebooks() if notebooks is None else [Path(p) for p in notebooks]
    for p in paths:
        if p.suffix != ".ipynb" or not p.is_file():
            raise ValueError(f"notebooks must be existing .ipynb files, got {str(p)!r}")
    return paths


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _write_index(out_dir: Path, entries: Sequence[tuple[str, str]], heading: str) -> Path:
    items = "\n".join(f'  <li><a href="{html.escape(href)}">{html.escape(title)}</a></li>' for href, title in entries)
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"/>'
        f"<title>{html.escape(heading)}</title>\n"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.6}</style></head>\n"
        f'<body>\n<h1>{html.escape(heading)}</h1>\n<ul style="list-style:none;padding:0">\n{items}\n</ul>\n</body>\n</html>\n'
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def build_decks(
    notebooks: Iterable[Path | str] | None = None,
    out_dir: Path | str = DECK_DIR,
    node_modules: Path | str = NODE_MODULES,
) -> list[Path]:
    """Render one reveal.js deck per notebook into ``out_dir`` (``NN_topic.slides.html``) and return the paths.

    Uses the committed outputs (executes nothing) and only the cells whose slide_type is not "skip".
    """
    out_dir = Path(out_dir)
    paths = _resolve(notebooks)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_assets(out_dir, node_modules)
    exporter = _exporter("slides")
    built, entries = [], []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(deck_notebook(nb), resources={"metadata": {"name": path.stem}})
        target = out_dir / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        built.append(target)
        entries.append((target.name, _title(nb, path.stem)))
    _write_index(out_dir, entries, "Quantization, hands-on: seminar decks")
    return built


def build_html(
    notebooks: Iterable[Path | str] | None = None,
    out_dir: Path | str = HTML_DIR,
    node_modules: Path | str = NODE_MODULES,
) -> list[Path]:
    """Render every notebook to static HTML in ``out_dir`` (widget state embedded) plus an ``index.html``."""
    out_dir = Path(out_dir)
    paths = _resolve(notebooks)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_assets(out_dir, node_modules)
    exporter = _exporter("html")
    built, entries = [], []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        shown = copy.deepcopy(nb)
        _strip_markers(shown)
        body, _ = exporter.from_notebook_node(shown, resources={"metadata": {"name": path.stem}})
        target = out_dir / f"{path.stem}.html"
        target.write_text(body, encoding="utf-8")
        built.append(target)
        entries.append((target.name, _title(nb, path.stem)))
    _write_index(out_dir, entries, "Quantization, hands-on")
    return built


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the decks (default) or, with ``--html``, the static export."""
    parser = argparse.ArgumentParser(prog="python -m tools.slides", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to render (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--html", action="store_true", help="render the static HTML export instead of the decks")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: slides/build or build/html)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or None
    try:
        if args.html:
            built = build_html(notebooks, args.out or HTML_DIR)
        else:
            built = build_decks(notebooks, args.out or DECK_DIR)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not built:
        print("no lesson notebooks found in notebooks/", file=sys.stderr)
        return 1
    for path in built:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
