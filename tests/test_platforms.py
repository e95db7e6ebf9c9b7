"""Learner platforms: every lesson runs where PyTorch's only quantized engine is qnnpack (an ARM laptop).

Each lesson is executed top to bottom in a kernel whose ``torch.backends.quantized`` behaves as an
ARM build's does (``tests/platforms/qnnpack_only.py``: supported engines ``qnnpack`` and ``none``,
the engine set to ``qnnpack``, any other engine refused). A lesson passes when no cell raises: it
runs the part on qnnpack, or prints in the cell why that part needs an engine this platform lacks.
Outputs are not compared (they are the x86 run's); the numbers here are checked by the notebook
items and the portability check. Only lessons that can reach a quantized engine are executed: the
notebook's text source, or a ``helpers`` module it imports (followed transitively), names
``torch.ao``, ``torch.backends.quantized``, ``quantize_dynamic`` or a default qconfig. The others
(float formats, LLM weights, block formats) compute with plain tensors and run the same anywhere;
``test_the_scan_finds_the_engine_lessons`` keeps the scan honest.
"""

from __future__ import annotations

import pathlib
import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = pathlib.Path(__file__).resolve().parent.parent
STARTUP = ROOT / "tests" / "platforms" / "qnnpack_only.py"
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: names whose presence means the code can reach PyTorch's quantized engine
ENGINE_API = re.compile(
    r"torch\.ao\.|quantize_dynamic|backends\.quantized|torch\.ops\.quantized|get_default_q(at_)?config|\btq\."
)
_IMPORT = re.compile(r"^\s*from (helpers(?:\.\w+)*) import \(?([\w\s,]+)\)?|^\s*import (helpers(?:\.\w+)*)", re.M)


def _module_file(dotted: str) -> pathlib.Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(text: str) -> set[pathlib.Path]:
    found = set()
    for m in _IMPORT.finditer(text):
        base = m.group(1) or m.group(3)
        names = [f"{base}.{n}" for n in re.split(r"[\s,]+", m.group(2) or "") if n]
        found |= {f for f in map(_module_file, [base, *names]) if f is not None}
    return found


def reaches_quantized_engine(notebook: str) -> bool:
    """Whether the lesson's text source, or any helpers module it imports (transitively), names the engine's APIs."""
    text = (ROOT / "notebooks" / notebook).with_suffix(".py").read_text(encoding="utf-8")
    if ENGINE_API.search(text):
        return True
    seen: set[pathlib.Path] = set()
    todo = list(_imported_files(text))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        source = path.read_text(encoding="utf-8")
        if ENGINE_API.search(source):
            return True
        todo += _imported_files(source)
    return False


ENGINE_LESSONS = [nb for nb in LESSONS if reaches_quantized_engine(nb)]


@pytest.mark.platforms
@pytest.mark.parametrize("notebook", ENGINE_LESSONS)
def test_lesson_runs_with_qnnpack_only(notebook, tmp_path, monkeypatch):
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    shutil.copy(STARTUP, startup / "00-qnnpack-only.py")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{notebook} fails with qnnpack as the only quantized engine:\n{str(err)[-3000:]}")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, f"{notebook} produced no output"


def test_the_scan_finds_the_engine_lessons():
    """Every lesson that quantizes with torch.ao is executed above; the plain-tensor lessons are the ones left out."""
    names = {nb.split("_")[0] for nb in ENGINE_LESSONS}
    assert {"02", "03", "04", "05", "06", "07", "08"} <= names, ENGINE_LESSONS
    assert not ENGINE_API.search((ROOT / "helpers" / "block_formats.py").read_text(encoding="utf-8"))
    assert reaches_quantized_engine("04_dynamic.ipynb") and not reaches_quantized_engine("01_float_bits.ipynb")


def test_the_emulation_refuses_other_engines():
    """The startup file really leaves qnnpack only (run in a fresh interpreter so this process keeps x86)."""
    import subprocess
    import sys

    code = (
        f"exec(open({str(STARTUP)!r}).read())\n"
        "import torch\n"
        "assert torch.backends.quantized.supported_engines == ['qnnpack', 'none']\n"
        "assert torch.backends.quantized.engine == 'qnnpack'\n"
        "try:\n    torch.backends.quantized.engine = 'x86'\nexcept RuntimeError as e:\n    print(e)\n"
        "else:\n    raise SystemExit('x86 accepted')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "x86 is not supported" in out.stdout
