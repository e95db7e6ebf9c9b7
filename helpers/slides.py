"""Build the seminar decks (reveal.js) and the static HTML export of the course, offline.

Both are rendered by nbconvert from the committed notebooks, with their committed outputs:
nothing is executed at build time. Every script a page loads (reveal.js, MathJax 2, RequireJS,
jQuery and the Jupyter widgets HTML manager) comes from ``slides/node_modules`` (installed by
``npm ci --prefix slides``) and is copied into a ``_static/`` folder next to the pages, so a
deck opens from ``file://`` or any local HTTP server with no network.

    python -m helpers.slides            # one deck per notebook -> slides/build/NN_topic.slides.html
    python -m helpers.slides --html     # the whole course as static HTML -> build/html/index.html

Decks keep only cells whose ``slideshow.slide_type`` is not ``"skip"``; "notes" cells become
speaker notes (press ``s`` in the deck). Test markers such as ``# NBVAL_IGNORE_OUTPUT`` are
dropped from the shown code. The static export keeps every cell and embeds the widget state
that the executed notebook saved, so its sliders show their last picture without a kernel.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import re
import shutil
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
    return sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def _slide_type(cell) -> str:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")


def _strip_markers(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _TEST_MARKER.sub("", cell.source)


def deck_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with only the cells that belong on slides (``slide_type`` not ``"skip"``).

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
    return deck


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
    parser = argparse.ArgumentParser(prog="python -m helpers.slides", description=__doc__.splitlines()[0])
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
