"""ruff must be clean on the helpers, the tests and the notebooks."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_ruff_check_clean():
    ruff = shutil.which("ruff") or f"{sys.executable} -m ruff"
    result = subprocess.run(
        [*ruff.split(), "check", "helpers", "tests", "notebooks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
