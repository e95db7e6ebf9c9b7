# %% [markdown] slideshow={"slide_type": "slide"}
# # 00 · Start here
#
# **Quantization, hands-on**: from the bits of a float to the 4-bit formats language models ship in.
# Every lesson builds a method by hand, then as a small reference implementation in `helpers/` that the
# tests prove equal to the real kernels (PyTorch, torchao, bitsandbytes, ONNX Runtime, gguf), lets you move
# sliders and watch the quantization error change, and measures it on a real model.

# %% [markdown]
# ## How a lesson works
#
# - **Run it top to bottom**: *Run ▸ Run All Cells*, or <kbd>Shift</kbd>+<kbd>Enter</kbd> cell by cell. Each lesson runs in
#   well under a minute on a 2-core laptop CPU, offline.
# - **Widgets need a live kernel.** A saved notebook shows *"Interactive panel: run this cell … to get the controls"*
#   where a panel of sliders will appear; after the cell runs, move a control and the plot redraws. Right after each
#   panel a static figure shows fixed settings, so the lesson also reads on paper and in the slides.
# - **Every number is computed by the cell above it**, and CI re-runs every notebook (strict nbval) on several CPU
#   code paths. Timings are the one exception: they depend on your machine, so those cells say so and print ratios.
# - **Exercises** end each lesson: write your answer in the stub (`my_…` / `your_…`), run the checker cell; it grades
#   your function and gives a hint. A separate solution cell follows.
# - The arc is always the same: Goals → Idea → By hand → Reference implementation (checked against the library) →
#   Play (widget) → Real model → Pitfalls (triggered for real) → Summary → Exercises.

# %% [markdown]
# ## Check your setup
#
# This cell only reports; what it prints depends on your machine.

# %%
# NBVAL_IGNORE_OUTPUT
# What this machine offers the course (differs between laptops; nothing below is a lesson result).
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))
import torch

torch.set_num_threads(2)
print(f"torch {torch.__version__}; {torch.get_num_threads()} threads (every lesson pins 2)")
print("CPU kernels:", torch.backends.cpu.get_cpu_capability())
print("quantized engines:", ", ".join(torch.backends.quantized.supported_engines))
print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (not needed)")

# %% [markdown]
# ## The course map
#
# Lessons build on each other in this order; the table says what each one needs first.
# *Study time* is estimated from the lesson itself (about 200 words a minute of reading plus a minute per code cell),
# *run time* comes from the benchmark's last measurement of each notebook on a 2-core CPU
# (`bench/results.json`; "not measured" until the benchmark has run it).

# %%
import json
import re

from IPython.display import Markdown, display

NEEDS = {  # lesson number -> the lessons it builds on
    "00": [], "01": [], "02": ["01"], "03": ["02"], "04": ["02"], "05": ["02", "04"], "06": ["05"],
    "07": ["03", "04"], "08": ["04", "05", "06", "07"], "09": ["02", "03", "07"], "10": ["01", "03", "09"],
}
root = pathlib.Path.cwd()
bench = json.loads((root.parent / "bench" / "results.json").read_text())
run_seconds = bench["sections"].get("notebooks", {}).get("seconds", {})


def study_minutes(nb: dict) -> int:
    words = sum(len(re.findall(r"\w+", "".join(c["source"]))) for c in nb["cells"] if c["cell_type"] == "markdown")
    code_cells = sum(c["cell_type"] == "code" for c in nb["cells"])
    return 5 * max(1, round((words / 200 + code_cells) / 5))


rows = ["| # | lesson | builds on | study time | run time |", "|---|---|---|---|---|"]
for path in sorted(root.glob("[0-9][0-9]_*.ipynb"))[1:]:
    nb = json.loads(path.read_text())
    title = "".join(nb["cells"][0]["source"]).splitlines()[0].lstrip("# ").split("·", 1)[-1].strip()
    num = path.stem[:2]
    run = f"{run_seconds[path.stem]:.0f} s" if path.stem in run_seconds else "not measured"
    needs = ", ".join(NEEDS.get(num, [])) or "—"
    rows.append(f"| {num} | [{title}]({path.name}) | {needs} | ≈ {study_minutes(nb)} min | {run} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## What you need to know first
#
# - Python and the basics of PyTorch: tensors, `nn.Module`, a training loop.
# - A little linear algebra (matrix products) and the idea of a histogram.
# - Nothing about quantization: lesson 01 starts from the bits of a float.
#
# No GPU is needed; lessons 07 and 10 show what a GPU would run differently, and say so where they cannot run it.

# %% [markdown]
# ## Where things live
#
# - `notebooks/NN_key.ipynb` — the lessons, with `notebooks/NN_key.py`, the same lesson as plain text (jupytext), for
#   reading diffs.
# - `helpers/key.py` — the reference implementation each lesson builds (its docstrings name the lesson);
#   `helpers/plotting/key.py` draws, `helpers/widgets/key.py` wires the controls.
# - `tests/test_key*.py` — the proofs that each helper equals the real kernel.
# - `make slides` builds a reveal.js deck per lesson from these notebooks; `make test` runs everything CI runs.
#
# Start with [lesson 01](01_float_bits.ipynb).
