"""Learner platforms: every lesson runs where PyTorch's only quantized engine is qnnpack (an ARM laptop).

Each lesson is executed top to bottom in a kernel whose ``torch.backends.quantized`` behaves as an
ARM build's does (``tests/platforms/qnnpack_only.py``: supported engines ``qnnpack`` and ``none``,
the engine set to ``qnnpack``, any other engine refused). A lesson passes when no cell raises: it
runs the part on qnnpack, or prints in the cell why that part needs an engine this platform lacks.
Outputs are not compared (they are the x86 run's); the numbers here are checked by the notebook
items and the portability check.
"""

from __future__ import annotations

import pathlib
import shutil

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = pathlib.Path(__file__).resolve().parent.parent
STARTUP = ROOT / "tests" / "platforms" / "qnnpack_only.py"
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.platforms
@pytest.mark.parametrize("notebook", LESSONS)
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
