"""Every lesson's reveal.js deck in headless chromium, offline: loads cleanly, every slide fits 1280x720.

For each deck: no console errors, no failed request, nothing requested off the machine; the
test walks every slide (and fragment) with ``Reveal.next()``, checks that the formulas were
typeset by MathJax (when the lesson has any), that every figure loaded, that no slide's content
is taller or wider than the 1280x720 slide and no code block needs a horizontal scrollbar, and
saves screenshots of the title slide and of the first figure slide under
``test-artifacts/slides/``.
"""

from __future__ import annotations

import nbformat
import pytest
from browser_support import ARTIFACTS, NOTEBOOKS

from tools import slides

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "slides"
TOLERANCE_PX = 4  # sub-pixel rounding of reveal's layout; a real overflow is a text line (>= 20 px)

# Runs in the page on the current slide: what does not fit, and whether its images loaded.
INSPECT_SLIDE = """(tol) => {
  const s = Reveal.getCurrentSlide();
  const cfg = Reveal.getConfig();
  const idx = Reveal.getIndices();
  const heading = (s.querySelector('h1, h2, h3, h4') || {}).textContent || '';
  const firstText = (s.innerText || '').trim().split('\\n')[0] || '';
  const longest = p => (p.textContent || '').split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '');
  const wideCode = [...s.querySelectorAll('pre')]
      .filter(p => p.scrollWidth > p.clientWidth + tol)
      .map(p => { const l = longest(p); return `${l.length} chars: ${l.trim().slice(0, 50)}`; });
  const imgs = [...s.querySelectorAll('img')];
  const blankMath = [...s.querySelectorAll('.MathJax_CHTML')]
      .filter(m => !m.closest('aside.notes') && m.getBoundingClientRect().width === 0).length;
  return {
    h: idx.h, v: idx.v, f: idx.f === undefined ? -1 : idx.f,
    label: (heading || firstText).replace(/\u00b6/g, '').trim().slice(0, 70),
    cells: [...s.querySelectorAll('.jp-Cell')].map(c => (c.id || '').replace('cell-id=', '')),
    height: s.scrollHeight, width: s.scrollWidth, maxHeight: cfg.height, maxWidth: cfg.width,
    wideCode: wideCode,
    images: imgs.length,
    blankMath: blankMath,
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 60)),
  };
}"""


def _deck_notebook(path):
    return slides.deck_notebook(nbformat.read(path, as_version=4))


def _cells(ids, index) -> str:
    """'cells 12-14' for the notebook cells (0-based, as in nbformat) shown on a slide."""
    found = sorted(index[i] for i in ids if i in index)
    if not found:
        return "no cells"
    return f"cell {found[0]}" if len(found) == 1 else f"cells {found[0]}-{found[-1]}"


def _has_png(nb) -> bool:
    return any(
        "image/png" in o.get("data", {}) or "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def _open_deck(page, deck) -> list[str]:
    """Load the deck and wait for reveal.js, MathJax, the widget views and the images; return what failed."""
    page.goto(deck.as_uri(), wait_until="load")
    waits = [
        ("reveal.js did not start (Reveal.isReady())", "window.Reveal && Reveal.isReady()", None),
        ("MathJax did not load", "!!(window.MathJax && MathJax.Hub && MathJax.Hub.Queue)", None),
    ]
    # Widget views (from the saved widget state) render asynchronously; wait for each to appear.
    n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if n_views:
        waits.append(
            (
                f"the widgets HTML manager did not render the deck's {n_views} widget view(s)",
                "n => document.querySelectorAll('.jupyter-widgets.widget-container, .jupyter-widgets.widget-inline-hbox,"
                " .jupyter-widgets.widget-image, .jupyter-widgets.widget-html').length >= n",
                n_views,
            )
        )
    waits.append(("images did not finish loading", "[...document.images].every(i => i.complete)", None))
    for message, condition, arg in waits:
        try:
            page.wait_for_function(condition, arg=arg, timeout=30_000)
        except Exception:
            return [message] + page.watch.problems()
        if message.startswith("MathJax"):
            page.evaluate("new Promise(resolve => MathJax.Hub.Queue(() => resolve(true)))")
    page.evaluate("Reveal.configure({transition: 'none', backgroundTransition: 'none'}); Reveal.slide(0, 0, -1)")
    return []


def _walk(page, stem: str, index: dict) -> tuple[list[str], int, int, bool]:
    """Step through every slide and fragment; return (problems, slides seen, total, whether a figure showed).

    Measures each slide's own box (``scrollHeight``/``scrollWidth`` of the reveal.js section, in
    the deck's 1280x720 coordinates): what a presenter sees. Content inside a scroll box does not
    count; content that spills out of the slide does.
    """
    problems: list[str] = []
    seen, figure_shot, steps = set(), None, 0
    while True:
        info = page.evaluate(INSPECT_SLIDE, TOLERANCE_PX)
        key = (info["h"], info["v"])
        if key not in seen:
            seen.add(key)
            where = f"slide {info['h'] + 1}.{info['v'] + 1} ({info['label']!r}, {_cells(info['cells'], index)})"
            if info["height"] > info["maxHeight"] + TOLERANCE_PX:
                problems.append(f"{where} is {info['height']} px tall, the slide is {info['maxHeight']} px")
            if info["width"] > info["maxWidth"] + TOLERANCE_PX:
                problems.append(f"{where} is {info['width']} px wide, the slide is {info['maxWidth']} px")
            problems += [f"{where}: code/output line cut off ({line})" for line in info["wideCode"]]
            problems += [f"{where}: image did not load: {src}" for src in info["brokenImages"]]
            if info["blankMath"]:
                problems.append(f"{where}: {info['blankMath']} formula(s) typeset but not shown (zero width)")
            if figure_shot is None and info["images"] and not info["brokenImages"]:
                figure_shot = SHOTS / f"{stem}-figure.png"
                page.screenshot(path=str(figure_shot))
        before = (info["h"], info["v"], info["f"])
        # The deck re-typesets the math of each slide it shows; let MathJax finish before measuring.
        page.evaluate("new Promise(resolve => { Reveal.next(); MathJax.Hub.Queue(() => resolve(true)); })")
        after = page.evaluate(
            "(() => { const i = Reveal.getIndices(); return [i.h, i.v, i.f === undefined ? -1 : i.f]; })()"
        )
        steps += 1
        if tuple(after) == before or steps > 2000:
            break
    total = page.evaluate("Reveal.getTotalSlides()")
    return problems, len(seen), total, figure_shot is not None


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_deck_offline_complete_and_fits(notebook, built_decks, page):
    deck, snapshot = built_decks[notebook.stem]
    nb = _deck_notebook(snapshot)
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    index = {c.get("id"): i for i, c in enumerate(nbformat.read(snapshot, as_version=4).cells)}

    failed = _open_deck(page, deck)
    assert not failed, f"{deck.name}:\n  " + "\n  ".join(failed)
    total = page.evaluate("Reveal.getTotalSlides()")
    assert total >= 2, f"{deck.name}: only {total} slide(s); mark the lesson's key cells with slide_type 'slide'"
    page.screenshot(path=str(SHOTS / f"{notebook.stem}-title.png"))

    # Formulas: MathJax must have turned every $...$ into rendered math, with no TeX errors.
    if slides.has_math(nb):
        math = page.evaluate(
            """() => ({
              rendered: document.querySelectorAll('.MathJax_CHTML, .MathJax, mjx-container').length,
              errors: [...document.querySelectorAll('.MathJax_Error, merror, .mjx-merror')].map(e => e.textContent),
              raw: [...document.querySelectorAll('.jp-RenderedMarkdown')]
                     .map(e => e.innerText).filter(t => /\\$\\$|\\\\\\(|\\\\\\[/.test(t)).map(t => t.slice(0, 80)),
            })"""
        )
        if not math["rendered"]:
            problems.append("the lesson has formulas but MathJax rendered none")
        problems += [f"MathJax error: {e}" for e in math["errors"]]
        problems += [f"formula left as raw TeX: {t!r}" for t in math["raw"]]

    walked, n_seen, total, figure_shown = _walk(page, notebook.stem, index)
    problems += walked
    if n_seen != total:
        problems.append(f"navigated {n_seen} slides with Reveal.next(), Reveal.getTotalSlides() says {total}")
    if _has_png(nb) and not figure_shown:
        problems.append("the deck's cells have figures but no slide showed a loaded image")
    if not _has_png(nb):
        problems.append("the deck has no figure: give the lesson's key figure a slide (slide_type 'slide')")
    problems += page.watch.problems()
    assert not problems, f"{deck.name}:\n  " + "\n  ".join(problems)


def _synthetic(path, cells) -> tuple:
    nb = nbformat.v4.new_notebook()
    for i, (kind, source, slide_type, outputs) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        cell.id = f"c{i}"
        if kind == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in outputs]
        cell.metadata["slideshow"] = {"slide_type": slide_type}
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path, {c.id: i for i, c in enumerate(nb.cells)}


def test_deck_check_catches_a_slide_that_overflows(node_modules, tmp_path, page):
    """The fit check can fail: one Markdown cell of 40 paragraphs cannot be split and must be reported.

    In the same deck, a 60-line code cell with a 60-line output fits (its code and output scroll
    inside boxes), and six 10-line code cells on one slide are split by the builder so they fit.
    """
    long_text = "\n\n".join(f"Paragraph {i}: this line is here to make the slide too tall." for i in range(40))
    code = "\n".join(f"x{i} = {i}" for i in range(60))
    ten = "\n".join(f"y = {i}" for i in range(10))
    path, index = _synthetic(
        tmp_path / "99_overflow.ipynb",
        [("md", "# Overflow check", "slide", None), ("md", long_text, "slide", None)]
        + [("code", code, "slide", ["\n".join(str(i) for i in range(60))])]
        + [("md", "## Many cells", "slide", None)]
        + [("code", ten, "fragment" if i % 2 else "-", ["done"]) for i in range(6)],
    )
    (deck,) = slides.build_decks([path], tmp_path / "deck", node_modules)
    assert not _open_deck(page, deck)
    problems, n_seen, total, _ = _walk(page, "99_overflow", index)
    tall = [p for p in problems if "px tall" in p]
    assert len(tall) == 1 and "slide 2.1" in tall[0] and "cell 1" in tall[0], problems
    assert problems == tall, problems
    assert n_seen == total >= 5  # the six code cells were split over several subslides
