"""Browser-test support: Debian's chromium driven by Playwright, headless, with every off-machine request blocked.

Each page gets a ``PageWatch`` that records console errors, uncaught exceptions, failed
requests, and any request that tries to leave the machine (anything other than ``file:``,
``data:``, ``blob:`` and the loopback addresses). Such a request is aborted and reported as a
failure. Outside CI the tests skip, with a clear message, when chromium or the npm packages are
missing; under CI (``CI`` set) they fail instead, since CI must run them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
# COURSE_NOTEBOOKS points the tests at another notebooks folder (for developing the build itself).
NOTEBOOK_DIR = Path(os.environ.get("COURSE_NOTEBOOKS", ROOT / "notebooks"))
# the lessons (00_start_here is the lab's start page, not a deck)
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb") if not p.name.startswith("00_"))
ARTIFACTS = ROOT / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 720}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome-error"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def unavailable(reason: str):
    """Skip outside CI; fail under CI, where the browser tests must run."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


def is_local(url: str) -> bool:
    """Whether ``url`` stays on this machine (file/data/blob or a loopback host)."""
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.hostname or "") in LOCAL_HOSTS


@dataclass
class PageWatch:
    """What went wrong while a page was open: console errors, page errors, failed and off-machine requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    offsite_requests: list[str] = field(default_factory=list)

    def problems(self, *, ignore_failed: tuple[str, ...] = ()) -> list[str]:
        failed = [r for r in self.failed_requests if not any(s in r for s in ignore_failed)]
        return (
            [f"off-machine request: {u}" for u in self.offsite_requests]
            + [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"failed request: {r}" for r in failed]
        )


def watch(page) -> PageWatch:
    """Attach listeners to ``page`` (and a route that aborts off-machine requests) and return the record."""
    record = PageWatch()

    def route(r):
        url = r.request.url
        if is_local(url):
            r.continue_()
        else:
            record.offsite_requests.append(url)
            r.abort("blockedbyclient")

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and record.console_errors.append(f"{m.text} @ {m.location}"))
    page.on("pageerror", lambda e: record.page_errors.append(str(e)))
    page.on(
        "requestfailed",
        lambda r: is_local(r.url) and record.failed_requests.append(f"{r.url} ({r.failure})"),
    )
    page.on("websocket", lambda ws: is_local(ws.url) or record.offsite_requests.append(ws.url))
    return record
