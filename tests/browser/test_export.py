"""The static HTML export: every lesson reads without a kernel, offline.

Two checks on the notebooks themselves (no browser): each widget's view is backed by the widget
state saved in the notebook (so the export can draw it), and each widget is followed by a static
figure. Then each exported page is opened in headless chromium with no network: no console
errors, no failed or off-machine requests, the embedded widgets render with their picture,
formulas are typeset and every image loads.
"""

from __future__ import annotations

import nbformat
import pytest
from browser_support import ARTIFACTS, NOTEBOOKS

from tools import slides

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
FIGURE_WITHIN = 3  # the static figure comes within this many cells after the widget cell


def _widget_cells(nb):
    return [
        (i, o["data"][WIDGET_VIEW]["model_id"])
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if WIDGET_VIEW in o.get("data", {})
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_widgets_have_saved_state_and_a_static_figure(notebook):
    nb = nbformat.read(notebook, as_version=4)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    problems = []
    for i, model_id in _widget_cells(nb):
        if model_id not in state:
            problems.append(
                f"cell {i}: widget {model_id} has no saved state (execute with nbconvert/nbclient, which stores it)"
            )
        after = nb.cells[i + 1 : i + 1 + FIGURE_WITHIN]
        if not any("image/png" in o.get("data", {}) for c in after for o in c.get("outputs", [])):
            problems.append(
                f"cell {i}: no static figure within {FIGURE_WITHIN} cells after the widget (the export must read without a kernel)"
            )
    assert not problems, f"{notebook.name}:\n  " + "\n  ".join(problems)


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_export_page_offline(notebook, built_html, page):
    exported = built_html[notebook.stem]
    nb = nbformat.read(notebook, as_version=4)
    page.goto(exported.as_uri(), wait_until="load")
    page.wait_for_function("!!(window.MathJax && MathJax.Hub && MathJax.Hub.Queue)", timeout=30_000)
    page.evaluate("new Promise(resolve => MathJax.Hub.Queue(() => resolve(true)))")
    problems = []
    views = page.locator(f'script[type="{WIDGET_VIEW}"]').count()
    if views:
        try:
            page.wait_for_function(
                "n => document.querySelectorAll('.jupyter-widgets.widget-container, .jupyter-widgets.widget-inline-hbox,"
                " .jupyter-widgets.widget-image, .jupyter-widgets.widget-html, .jupyter-widgets.widget-inline-vbox').length >= n",
                arg=views,
                timeout=30_000,
            )
        except Exception:
            problems.append(f"{views} widget view(s) in the page, but the HTML manager rendered fewer")
        errors = page.locator(".widget-error").count()
        if errors:
            problems.append(f"{errors} widget(s) rendered as an error (missing state?)")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=30_000)
    broken = page.evaluate("[...document.images].filter(i => !i.naturalWidth).map(i => i.src.slice(0, 60))")
    problems += [f"image did not load: {src}" for src in broken]
    if slides.has_math(nb):
        if not page.locator(".MathJax_CHTML, .MathJax, mjx-container").count():
            problems.append("the lesson has formulas but MathJax rendered none")
        problems += [f"MathJax error: {t}" for t in page.locator(".MathJax_Error, merror").all_inner_texts()]
    shots = ARTIFACTS / "html"
    shots.mkdir(parents=True, exist_ok=True)
    first_widget = page.locator(".jupyter-widgets.widget-image").first
    if views and first_widget.count():
        first_widget.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / f"{notebook.stem}-widget.png"))
    problems += page.watch.problems()
    assert not problems, f"{exported.name}:\n  " + "\n  ".join(problems)
