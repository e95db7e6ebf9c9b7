"""Browser-test fixtures: one headless chromium per session, fresh pages with a PageWatch, built decks/export."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from browser_support import CHROMIUM_ARGS, NOTEBOOKS, VIEWPORT, unavailable, watch


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        unavailable("Debian's chromium is not installed (apt-get install chromium, or `make install-browser`)")
    return path


@pytest.fixture(scope="session")
def browser_context(chromium_path):
    """One headless chromium for the session (fresh profile), viewport 1280x720."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is pinned in requirements.txt
        unavailable("the playwright package is not installed")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_path,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            service_workers="block",
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context):
    """A fresh page with a ``.watch`` record of errors and blocked requests."""
    page = browser_context.new_page()
    page.watch = watch(page)
    yield page
    page.close()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    from tools import slides

    try:
        slides._require_node_modules(slides.NODE_MODULES)
    except FileNotFoundError as e:
        unavailable(str(e))
    return slides.NODE_MODULES


@pytest.fixture(scope="session")
def built_decks(node_modules, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Every lesson's deck, built fresh into a temp folder: stem -> (deck, the notebook snapshot it was built from)."""
    from tools import slides

    snapshots = tmp_path_factory.mktemp("notebooks")
    copies = [Path(shutil.copy2(p, snapshots / p.name)) for p in NOTEBOOKS]
    out = tmp_path_factory.mktemp("decks")
    decks = slides.build_decks(copies, out, node_modules)
    return {c.stem: (d, c) for c, d in zip(copies, decks, strict=True)}


@pytest.fixture(scope="session")
def built_html(node_modules, tmp_path_factory) -> dict[str, Path]:
    """The static HTML export of every lesson, built fresh into a temp folder."""
    from tools import slides

    out = tmp_path_factory.mktemp("html")
    return {p.stem: p for p in slides.build_html(NOTEBOOKS, out, node_modules)}
