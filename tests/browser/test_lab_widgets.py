"""Lesson 02's widget in a real JupyterLab: run all cells, move the "bits" slider, see the plot change.

The test copies the course (notebooks/, helpers/, data/) into a temp folder, starts
``jupyter lab`` on 127.0.0.1 with a random token there, opens lesson 02 in headless chromium,
runs every cell through the Run menu, presses an arrow key on the handle of the slider labelled
"bits", and checks that the kernel redrew the panel: the PNG bytes behind the plot image and
the readout text both changed. Then it shuts the server down through ``POST /api/shutdown``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser_support import ARTIFACTS, NOTEBOOK_DIR, ROOT

pytestmark = pytest.mark.browser

LESSON_02 = sorted(NOTEBOOK_DIR.glob("02_*.ipynb"))
RUN_TIMEOUT_MS = 300_000  # lesson 02 runs in < 45 s alone; CI machines are slower and busier

LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

# The panel around the first slider labelled "bits": marks it so Playwright can find its parts.
MARK_PANEL = """() => {
  const label = [...document.querySelectorAll('.jp-OutputArea .widget-slider .widget-label')]
      .find(l => l.textContent.trim() === 'bits');
  if (!label) return false;
  let el = label.closest('.widget-slider');
  while (el && !el.querySelector('.widget-image')) el = el.parentElement;
  if (!el) return false;
  el.setAttribute('data-test-panel', 'bits');
  label.closest('.widget-slider').setAttribute('data-test-slider', 'bits');
  return true;
}"""

# SHA-256 of the bytes behind the panel's <img> (a blob: URL the Image widget view creates).
IMAGE_DIGEST = """async () => {
  const img = document.querySelector('[data-test-panel] .widget-image');
  if (!img || !img.src || !img.complete || !img.naturalWidth) return null;
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('') + ':' + bytes.byteLength;
}"""

READOUT = "() => { const r = document.querySelector('[data-test-panel] .widget-html'); return r ? r.innerText : null; }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_course(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc")
    shutil.copytree(NOTEBOOK_DIR, dest / "notebooks", ignore=ignore)
    shutil.copytree(ROOT / "helpers", dest / "helpers", ignore=ignore)
    shutil.copytree(ROOT / "data", dest / "data", ignore=ignore)


def _request(url: str, token: str, method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - a loopback URL we built
        return r.status


@pytest.fixture
def lab_server(tmp_path):
    """A JupyterLab on 127.0.0.1 serving a temp copy of the course; yields (base_url, token, course_dir)."""
    course = tmp_path / "course"
    _copy_course(course)
    home = tmp_path / "home"
    for sub in ("config", "runtime", "settings", "workspaces"):
        (home / sub).mkdir(parents=True)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    env.pop("MPLBACKEND", None)
    # A fresh user: start the notebook's kernel without asking, never fetch news from the web.
    for name, value in LAB_SETTINGS.items():
        target = home / "settings" / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            json.dumps(value), encoding="utf-8"
        )  # tests/conftest.py sets Agg for pytest; the kernel uses the notebook's own
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
            try:
                if _request(f"{base}/api/status", token) == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("jupyter lab did not answer /api/status within 90 s")
            time.sleep(0.5)
        yield base, token, course
    finally:
        try:
            _request(f"{base}/api/shutdown", token, method="POST")
            proc.wait(timeout=30)
        except Exception:  # the clean path failed: stop it the blunt way, then report nothing more here
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _accept_dialog(page) -> None:
    """Accept a dialog JupyterLab may raise (e.g. "Select Kernel" for a fresh user)."""
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    if accept.count() and accept.first.is_visible():
        accept.first.click()


def _menu(page, top: str, item: str) -> None:
    """Click ``top`` in JupyterLab's menu bar, then ``item`` in the menu that opens."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).first.click()


def _wait_kernel_idle(page, timeout_ms: int) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jp-main-statusbar *')].some(e => /\\|\\s*Idle\\s*$/.test(e.textContent))",
        timeout=timeout_ms,
        polling=250,
    )


def _clear_and_run_all(page) -> None:
    """Edit > Clear Outputs of All Cells (so only fresh outputs count), then Run > Run All Cells."""
    _accept_dialog(page)
    _menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].every(p => !/\\d/.test(p.textContent))"
    )
    _menu(page, "Run", "Run All Cells")


def _wait_run_finished(page, timeout_ms: int) -> None:
    """Wait until Run All has started (a prompt shows ``[*]`` or a count) and no prompt shows ``[*]`` any more.

    A cell that raises on purpose stops Run All; the cells after it go back to ``[ ]``, which
    also ends the wait (the widget cell must come before such a cell to be tested).
    """
    prompts = "[...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent)"
    page.wait_for_function(f"() => {prompts}.some(t => /\\[(\\*|\\d+)\\]/.test(t))", timeout=60_000, polling=250)
    page.wait_for_function(f"() => !{prompts}.some(t => t.includes('[*]'))", timeout=timeout_ms, polling=500)


@pytest.mark.skipif(not LESSON_02, reason="lesson 02 (notebooks/02_*.ipynb) does not exist yet")
def test_bits_slider_redraws_plot_in_jupyterlab(lab_server, page):
    base, token, _course = lab_server
    nb_name = LESSON_02[0].name
    shots = ARTIFACTS / "lab"
    shots.mkdir(parents=True, exist_ok=True)

    try:
        page.goto(f"{base}/lab/tree/notebooks/{nb_name}?token={token}", wait_until="domcontentloaded")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=90_000)
        _accept_dialog(page)
        _wait_kernel_idle(page, 90_000)
        _clear_and_run_all(page)
        _wait_run_finished(page, RUN_TIMEOUT_MS)
        _wait_kernel_idle(page, RUN_TIMEOUT_MS)
        page.wait_for_function(MARK_PANEL, timeout=60_000)
        slider = page.locator("[data-test-slider]")
        slider.scroll_into_view_if_needed()
        page.wait_for_function(IMAGE_DIGEST, timeout=30_000)
        before_img, before_text = page.evaluate(IMAGE_DIGEST), page.evaluate(READOUT)
        handle = slider.locator(".noUi-handle")
        now, top = int(handle.get_attribute("aria-valuenow").split(".")[0]), handle.get_attribute("aria-valuemax")
        key = "ArrowLeft" if str(now) == str(top).split(".")[0] else "ArrowRight"
        slider.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "lesson02-before.png"))

        handle.focus()
        page.keyboard.press(key)
        deadline = time.monotonic() + 60
        while True:  # the kernel redraws, then the view swaps the image: poll both
            after_img, after_text = page.evaluate(IMAGE_DIGEST), page.evaluate(READOUT)
            if (after_img not in (None, before_img) and after_text != before_text) or time.monotonic() > deadline:
                break
            page.wait_for_timeout(250)
        moved_to = handle.get_attribute("aria-valuenow")
        page.screenshot(path=str(shots / "lesson02-after.png"))

    except Exception:
        page.screenshot(path=str(shots / "lesson02-failure.png"))
        raise
    assert moved_to.split(".")[0] != str(now), f"the bits slider did not move with {key}"
    assert after_img != before_img, "moving the bits slider did not change the plot image"
    assert after_text != before_text, "moving the bits slider did not change the readout"
    assert not page.watch.offsite_requests, f"JupyterLab requested off the machine: {page.watch.offsite_requests}"
