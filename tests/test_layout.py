"""The course layout (CONTRIBUTING.md, "One name per lesson"): pictures and controls never compute.

For every lesson key listed in ``LESSONS``, ``helpers/plotting/<key>.py`` takes arrays and returns
Figures, and ``helpers/widgets/<key>.py`` only wires controls to a ``helpers.<key>`` view function
and a plotting function. Checked on the source (``ast``), without importing anything:

* a plotting module imports from the lesson library (any ``helpers`` module other than
  ``helpers.plotting`` and ``helpers._validate``) only the constants and record types listed for
  its lesson under ``"plotting"``;
* a widget module imports from it only ``*_view`` functions and the names listed under ``"widgets"``
  (it may also import ``helpers.widgets``, its own ``helpers.plotting.<key>`` and ``helpers._validate``);
* neither imports a whole lesson module (``from helpers import affine``, ``import helpers.affine``)
  nor calls anything whose name says it quantizes, rounds or decodes.

To bring another lesson under the rule, add its key and its allowed names to ``LESSONS``.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: lesson key -> names its plotting / widget modules may import from the lesson library.
#: Widgets may also import any ``*_view`` function. Only constants and record types belong here.
LESSONS: dict[str, dict[str, frozenset[str]]] = {
    "float_bits": {
        "plotting": frozenset({"FORMATS", "FloatBits"}),
        "widgets": frozenset({"FORMATS"}),
    },
    "affine": {
        "plotting": frozenset({"DISTRIBUTIONS", "SCHEMES"}),
        "widgets": frozenset({"DISTRIBUTIONS", "SCHEMES"}),
    },
    "nonuniform": {
        "plotting": frozenset({"METHODS", "METHOD_LABELS"}),
        "widgets": frozenset({"METHODS", "METHOD_LABELS"}),
    },
    "dynamic": {"plotting": frozenset(), "widgets": frozenset()},
    "static": {"plotting": frozenset(), "widgets": frozenset({"METHODS", "DIGITS_OBSERVED"})},
    "qat": {"plotting": frozenset(), "widgets": frozenset()},
    "bnb": {"plotting": frozenset(), "widgets": frozenset()},
    "recipes": {"plotting": frozenset({"Result"}), "widgets": frozenset({"Result"})},
    # allowed_group_sizes lists a dropdown's options (the divisors of a row), it quantizes nothing
    "llm": {"plotting": frozenset(), "widgets": frozenset({"LAYER_VIEW_METHODS", "allowed_group_sizes"})},
    "block_formats": {"plotting": frozenset(), "widgets": frozenset({"FORMATS", "BLOCK_SIZES"})},
}

#: helpers modules every plotting / widget module may import freely (shared glue, no computation).
SHARED = {
    "plotting": ("helpers.plotting", "helpers._validate"),
    "widgets": ("helpers.widgets", "helpers._validate"),
}

#: A call to a function with such a name computes what a view should have computed.
COMPUTING_CALL = re.compile(
    r"quantiz|dequantiz|decode|encode|round_to_format|kmeans|^ulp$|^float_bits$"  # quantizes a tensor
    r"|perplexity|^evaluate$|^embed$|calibrat|^train|^load_",  # runs (or loads) a model
    re.I,
)


def _called_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def violations(source: str, kind: str, key: str, allowed: frozenset[str]) -> list[str]:
    """Why the module ``source`` (a ``kind`` = "plotting" or "widgets" module of lesson ``key``) breaks the layout."""
    shared = SHARED[kind] + ((f"helpers.plotting.{key}",) if kind == "widgets" else ())
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helpers.") and alias.name not in shared:
                    problems.append(f"line {node.lineno}: import {alias.name} (a whole lesson module)")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                problems.append(f"line {node.lineno}: relative import from {'.' * node.level}{module}")
                continue
            if module == "helpers":
                for alias in node.names:
                    if f"helpers.{alias.name}" not in shared:
                        problems.append(f"line {node.lineno}: from helpers import {alias.name} (a whole lesson module)")
                continue
            if not module.startswith("helpers.") or module in shared:
                continue
            for alias in node.names:
                ok = alias.name in allowed or (kind == "widgets" and alias.name.endswith("_view"))
                if not ok:
                    problems.append(f"line {node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Call):
            name = _called_name(node)
            if name and not name.endswith("_view") and COMPUTING_CALL.search(name):
                problems.append(f"line {node.lineno}: calls {name}()")
    return problems


CASES = [(kind, key) for key in LESSONS for kind in ("plotting", "widgets")]


@pytest.mark.parametrize(("kind", "key"), CASES, ids=[f"{kind}/{key}" for kind, key in CASES])
def test_plotting_and_widget_modules_do_not_compute(kind, key):
    path = ROOT / "helpers" / kind / f"{key}.py"
    assert path.exists(), f"lesson {key!r} has no {path.relative_to(ROOT)}"
    assert (ROOT / "helpers" / f"{key}.py").exists(), f"lesson {key!r} has no library module helpers/{key}.py"
    problems = violations(path.read_text(encoding="utf-8"), kind, key, LESSONS[key][kind])
    assert not problems, f"{path.relative_to(ROOT)} computes instead of drawing/wiring:\n" + "\n".join(problems)


def test_the_check_catches_computation():
    plotting = (
        "from helpers.plotting import new_figure\n"
        "from helpers.affine import SCHEMES, fake_quantize\n"
        "from helpers import nonuniform\n"
        "import helpers.float_bits\n"
        "def f(x):\n    return torch.quantize_per_tensor(x, 0.1, 0, torch.qint8)\n"
    )
    problems = violations(plotting, "plotting", "affine", LESSONS["affine"]["plotting"])
    assert len(problems) == 4, problems
    assert any("fake_quantize" in p for p in problems) and any("quantize_per_tensor" in p for p in problems)
    widget = (
        "from helpers.affine import DISTRIBUTIONS, playground_view, quant_view\n"
        "from helpers.plotting.affine import playground_figure\n"
        "from helpers.plotting.nonuniform import codebook_figure\n"
        "from helpers.widgets import panel\n"
    )
    problems = violations(widget, "widgets", "affine", LESSONS["affine"]["widgets"])
    assert problems == ["line 3: from helpers.plotting.nonuniform import codebook_figure"], problems


def _lesson_keys() -> list[str]:
    """Keys of the numbered lessons: ``notebooks/NN_<key>.ipynb`` (the start page 00 is not a lesson)."""
    keys = []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        number, _, key = nb.stem.partition("_")
        if number != "00":
            keys.append(key)
    return keys


def test_every_lesson_has_one_name_everywhere():
    """Each lesson key names its library, plotting and widget modules and its tests, and is under the rule above."""
    keys = _lesson_keys()
    assert len(keys) >= 10, keys
    for key in keys:
        for path in (
            f"helpers/{key}.py",
            f"helpers/plotting/{key}.py",
            f"helpers/widgets/{key}.py",
            f"tests/test_{key}.py",
        ):
            assert (ROOT / path).is_file(), f"lesson {key!r} has no {path}"
        assert key in LESSONS, f"lesson {key!r} is not checked by test_plotting_and_widget_modules_do_not_compute"
    for bench in sorted((ROOT / "tools").glob("bench_*.py")):
        key = bench.stem.removeprefix("bench_")
        assert key in keys or key == "notebooks", f"{bench.name} names no lesson"
