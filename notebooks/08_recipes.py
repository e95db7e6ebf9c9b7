# %% [markdown] slideshow={"slide_type": "slide"}
# # 08 · Recipes: every method on the same two models
#
# After seven lessons the real question is *which one should I use?* This capstone answers it the
# only honest way: every method of the course, applied to the same two models, measured in the
# same run, on this machine — then a decision guide **derived from the table**, not written before it.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - Apply every method that fits to the **digits CNN** (vision, conv-heavy) and to **MiniLM**
#   (a real pretrained transformer, Linear-heavy).
# - Measure each one the same way: quality (test accuracy, or embedding cosine and top-5 retrieval
#   agreement with fp32), **serialized size**, **speed-up vs fp32** (median after warm-up, 2 threads,
#   baseline timed in the same cell) and **time to quantize**.
# - Find the **Pareto front** (quality vs size) and let the numbers pick a method for a given budget.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import copy
import pathlib
import sys
import warnings
sys.path.insert(0, str(pathlib.Path.cwd().parent))
import logging
warnings.filterwarnings("ignore")  # torch.ao deprecation notes; lessons 04-05 show them on purpose
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # one notice per fp32->fp16 cast; lesson 07 shows it

import torch
from torch import nn
from IPython.display import Markdown, display

from helpers.models import seed_everything, load_digits_cnn, evaluate, train_epochs
from helpers.data import load_digits_split
from helpers.measure import serialized_size, measure_latency
from helpers.recipes import Result, timed, pareto_front, recommend, format_table

torch.set_num_threads(2)
seed_everything(0)
print("threads:", torch.get_num_threads(), "| quantized engine:", torch.backends.quantized.engine)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea: one yardstick for every method
#
# | axis | CNN | MiniLM |
# |---|---|---|
# | quality | test accuracy (%) on the 450 held-out digits | mean cosine to fp32 embeddings; top-5 neighbour agreement |
# | size | bytes of the saved `state_dict` (packed codes + scales where a method has no PyTorch module) | same |
# | speed | fp32 median ÷ method median, same inputs, same cell | same |
# | cost | wall time to produce the quantized model (calibration, fine-tuning, packing) | same |
#
# A method is **on the Pareto front** if no other method is both smaller and better. Everything
# off the front is dominated: never the right choice on these two axes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The digits CNN: nine recipes
#
# One cell per recipe; each returns a model (or fake-quantized copy) and what a file would store.
# Latency uses the whole test set as one batch.

# %% slideshow={"slide_type": "skip"}
split = load_digits_split()
fp32_cnn = load_digits_cnn()
x_calib = split.x_train[:256]          # calibration images (from the training split)
cnn = {}                               # method -> (model for accuracy/latency or None, state to size, seconds, note)

def add_cnn(method, model, state, seconds, note="", has_kernel=True):
    # has_kernel=False marks fake-quant models: their speed would only measure fp32 kernels
    cnn[method] = dict(model=model, state=state, seconds=seconds, note=note, has_kernel=has_kernel)

add_cnn("fp32", fp32_cnn, fp32_cnn.state_dict(), 0.0, "baseline")

# %% slideshow={"slide_type": "-"}
from helpers.affine import fake_quantize_tensor
from helpers.recipes import packed_state_dict, affine_codes

def weight_only(model, bits):
    q = copy.deepcopy(model)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(fake_quantize_tensor(m.weight, bits, scheme="symmetric", granularity="channel", axis=0))
    return q

model, s = timed(lambda: weight_only(fp32_cnn, 8))
add_cnn("W8 weight-only", model, packed_state_dict(fp32_cnn, lambda w: affine_codes(w, 8)), s,
        "int8 per-channel codes, dequantized at load", has_kernel=False)

# %% slideshow={"slide_type": "-"}
from torch.ao.quantization import quantize_dynamic
from helpers.static import quantize_digits_cnn

model, s = timed(lambda: quantize_dynamic(copy.deepcopy(fp32_cnn), {nn.Linear}, dtype=torch.qint8))
add_cnn("dynamic int8 (classic)", model, model.state_dict(), s, "Linear only: the convs stay fp32")
for per_channel in (False, True):
    model, s = timed(lambda pc=per_channel: quantize_digits_cnn(fp32_cnn, calib=x_calib, per_channel=pc))
    add_cnn(f"static int8 per-{'channel' if per_channel else 'tensor'}", model, model.state_dict(), s, f"eager {torch.backends.quantized.engine}, 256 calibration images")

# %% slideshow={"slide_type": "-"}
from helpers.qat import make_qat_model, calibrate, freeze_observers

def qat(bits, epochs=1):
    seed_everything(0)
    # float64 QAT (lesson 06): the same fine-tuning run, to the last bit, on every CPU
    q = calibrate(make_qat_model(fp32_cnn, bits, act_bits=8, dtype=torch.float64), x_calib)
    train_epochs(q, epochs, lr=1e-3, seed=0)
    return freeze_observers(q).eval()

for bits in (8, 4):
    model, s = timed(lambda b=bits: qat(b))
    add_cnn(f"QAT W{bits}A8", model, packed_state_dict(fp32_cnn, lambda w, b=bits: affine_codes(w, b)), s,
            "1 fine-tuning epoch; fake-quant model", has_kernel=False)

# %% slideshow={"slide_type": "-"}
from helpers.nonuniform import nonuniform_fake_quantize, nf4_levels
from helpers.recipes import codebook_codes

def codebook_model(method, block_size):
    q, stores = copy.deepcopy(fp32_cnn), {}
    with torch.no_grad():
        for name, m in q.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                r = nonuniform_fake_quantize(m.weight, method, 4, block_size)
                stores[name] = r.levels
                m.weight.copy_(r.x_hat)
    return q, stores

(model, levels), s = timed(lambda: codebook_model("nf", 64))
add_cnn("NF4 (block 64)", model, packed_state_dict(fp32_cnn, lambda w: codebook_codes(w, nf4_levels(), 4, 64, store_levels=False)), s,
        "fake-quant weights; 4-bit codes + fp32 absmax per 64", has_kernel=False)
(model, levels), s = timed(lambda: codebook_model("kmeans", None))
it = iter(levels.values())
add_cnn("k-means 4-bit", model, packed_state_dict(fp32_cnn, lambda w: codebook_codes(w, next(it), 4, None, store_levels=True)), s,
        "one 16-level codebook per tensor (stored)", has_kernel=False)

# %% slideshow={"slide_type": "slide"}
cnn_rows = [Result("digits CNN", m, evaluate(v["model"], split.x_test, split.y_test), serialized_size(v["state"]),
                   None, v["seconds"], note=v["note"], has_kernel=v["has_kernel"]) for m, v in cnn.items()]
display(Markdown(format_table(cnn_rows, "test accuracy (%)", quality_fmt="{:.2f}")))
fp32_acc = cnn_rows[0].quality
best_static = max((r for r in cnn_rows if r.method.startswith("static")), key=lambda r: r.quality)
assert fp32_acc - best_static.quality <= 1.0, "static int8 should stay within 1 point of fp32 on the digits CNN"

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# Latency: the whole test set as one batch; fp32 timed in the same loop. Fake-quant rows have no kernel of their own.
xb = split.x_test
base = measure_latency(lambda: fp32_cnn(xb), warmup=3, repeats=15)
speed = {"fp32": 1.0}
for method, v in cnn.items():
    if method != "fp32" and v["has_kernel"]:
        speed[method] = base.median_ms / measure_latency(lambda m=v["model"]: m(xb), warmup=3, repeats=15).median_ms
cnn_rows = [r._replace(speedup=speed.get(r.method)) for r in cnn_rows]
print(f"fp32 median {base.median_ms:.2f} ms on {base.threads} threads (batch {len(xb)})")
display(Markdown(format_table(cnn_rows, "test accuracy (%)", timings=True, quality_fmt="{:.2f}")))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## MiniLM: nine recipes on a real transformer
#
# all-MiniLM-L6-v2, loaded offline. Most of its parameters sit in the token-embedding table,
# which none of these recipes touch (counted below). Quality is measured on the course's sentence set.

# %% slideshow={"slide_type": "-"}
from helpers.language import load_minilm, load_sentences, embed, cosine_to_reference, retrieval_agreement
from helpers.dynamic import mixed_precision, linear_names, capture_linear_inputs, outlier_ratio
from helpers.bnb import swap_linears, bnb_int8, bnb_4bit, storage_bytes
from torchao.quantization import quantize_, Int8WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig

fp32_lm, tok = load_minilm()
sentences, topics = load_sentences()
# Quality is measured with MiniLM's float parts in float64 (lessons 04 and 07): every quantizer then sees the
# same input on every CPU, so the table measures the quantizers, not the CPU's float32 summation order.
ref = embed(fp32_lm, tok, sentences, float64=True)
fp64_lm = copy.deepcopy(fp32_lm).double()  # the same float32 weights, float64 arithmetic
lm = {"fp32": (fp32_lm, 0.0, "baseline")}
n_all = sum(p.numel() for p in fp32_lm.parameters())
n_emb = fp32_lm.embeddings.word_embeddings.weight.numel()
n_lin = sum(fp32_lm.get_submodule(n).weight.numel() for n in linear_names(fp32_lm))
print(f"{n_all / 1e6:.2f}M parameters: token embeddings {n_emb / 1e6:.2f}M ({n_emb / n_all:.0%}), "
      f"Linear weights {n_lin / 1e6:.2f}M ({n_lin / n_all:.0%}), over {len(linear_names(fp32_lm))} Linear layers")

def torchao(config):
    q = copy.deepcopy(fp32_lm)
    quantize_(q, config)
    return q


# %% slideshow={"slide_type": "-"}
model, s = timed(lambda: torchao(Int8WeightOnlyConfig()))
lm["W8 weight-only (torchao)"] = (model, s, "int8 weights, fp32 activations")
model, s = timed(lambda: quantize_dynamic(copy.deepcopy(fp32_lm), {nn.Linear}, dtype=torch.qint8))
lm["dynamic int8 (classic)"] = (model, s, f"per-tensor weights, {torch.backends.quantized.engine}")
model, s = timed(lambda: torchao(Int8DynamicActivationInt8WeightConfig()))
lm["dynamic int8 (torchao)"] = (model, s, "per-token activations")

# %% slideshow={"slide_type": "-"}
# Mixed precision, derived here: keep float the Linear layers whose inputs carry outliers (max/median > 50).
encoder_linears = [n for n in linear_names(fp32_lm) if n.startswith("encoder.")]
inputs = capture_linear_inputs(fp32_lm, tok, sentences, encoder_linears, float64=True)
keep = [name for name, x in inputs.items() if outlier_ratio(x) > 50]
print(f"{len(keep)} of {len(inputs)} encoder Linear layers kept in float:", *keep, sep="\n  ")
model, s = timed(lambda: mixed_precision(fp32_lm, keep, per_channel=True))
lm["mixed dynamic int8"] = (model, s, f"{len(keep)} outlier layers kept fp32")

# %% slideshow={"slide_type": "-"}
model, s = timed(lambda: swap_linears(fp32_lm, lambda lin: bnb_int8(lin, threshold=6.0)).eval())
lm["LLM.int8 (t=6)"] = (model, s, "bitsandbytes, eval mode")
model, s = timed(lambda: swap_linears(fp32_lm, lambda lin: bnb_4bit(lin, "nf4", 64, double_quant=False)).eval())
lm["NF4"] = (model, s, "bitsandbytes, block 64")
model, s = timed(lambda: swap_linears(fp32_lm, lambda lin: bnb_4bit(lin, "nf4", 64, double_quant=True)).eval())
lm["NF4 + double quant"] = (model, s, "bitsandbytes, block 64")
# their quality twins: the same bitsandbytes layers built on the float64 copy (float64 in and out, as in lesson 07)
quality_twin = {
    "LLM.int8 (t=6)": swap_linears(fp64_lm, lambda lin: bnb_int8(lin, threshold=6.0)).eval(),
    "NF4": swap_linears(fp64_lm, lambda lin: bnb_4bit(lin, "nf4", 64, double_quant=False)).eval(),
    "NF4 + double quant": swap_linears(fp64_lm, lambda lin: bnb_4bit(lin, "nf4", 64, double_quant=True)).eval(),
}

# %% slideshow={"slide_type": "-"}
from helpers.nonuniform import kmeans_levels, codebook_fake_quantize

def kmeans_lm(sample=32768):
    # 16 k-means levels per Linear weight, fitted on a seeded sample of its absmax-normalised values
    q, stores, g = copy.deepcopy(fp32_lm), {}, torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in linear_names(q):
            w = q.get_submodule(name).weight
            absmax = w.abs().max()
            flat = (w / absmax).reshape(-1)
            levels = kmeans_levels(flat[torch.randint(flat.numel(), (sample,), generator=g)], 4)
            stores[name] = codebook_codes(w, levels, 4, None, store_levels=True)
            w.copy_(codebook_fake_quantize(w / absmax, levels) * absmax)
    return q, stores

(model, stores), s = timed(kmeans_lm)
lm["k-means 4-bit"] = (model, s, "fake-quant; 16 levels per tensor, fitted on 32k samples")
kmeans_state = {k: v for k, v in fp32_lm.state_dict().items() if not (k.endswith(".weight") and k[:-7] in stores)}
kmeans_state.update({f"{n}.weight.{k}": t for n, d in stores.items() for k, t in d.items()})


# %% slideshow={"slide_type": "slide"}
def lm_size(method, model):
    return serialized_size(kmeans_state) if method == "k-means 4-bit" else serialized_size(model)

lm_rows = []
for method, (model, s, note) in lm.items():
    if method in quality_twin:
        emb = embed(quality_twin[method], tok, sentences).double()
    else:
        emb = embed(model, tok, sentences, float64=True)
    lm_rows.append(Result("MiniLM", method, float(cosine_to_reference(emb, ref).mean()), lm_size(method, model),
                          None, s, retrieval=retrieval_agreement(emb, ref, k=5), note=note,
                          has_kernel=method != "k-means 4-bit"))
display(Markdown(format_table(lm_rows, "mean cosine to fp32")))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
batch = tok(sentences[::3], padding=True, truncation=True, max_length=128, return_tensors="pt")
base_lm = measure_latency(lambda: fp32_lm(**batch), warmup=2, repeats=5)
speed_lm = {"fp32": 1.0}
for method, (model, _, _) in lm.items():
    if method not in ("fp32", "k-means 4-bit"):
        speed_lm[method] = base_lm.median_ms / measure_latency(lambda m=model: m(**batch), warmup=1, repeats=3).median_ms
lm_rows = [r._replace(speedup=speed_lm.get(r.method)) for r in lm_rows]
print(f"fp32 median {base_lm.median_ms:.1f} ms for a batch of {len(batch['input_ids'])} sentences on {base_lm.threads} threads")
display(Markdown(format_table(lm_rows, "mean cosine to fp32", timings=True)))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The Pareto front
#
# Quality against size (log scale). Orange points are on the front; blue ones are dominated — some
# other recipe is both at least as small and at least as good.

# %% slideshow={"slide_type": "-"}
from helpers.plotting.recipes import plot_pareto
from helpers.plotting import new_figure

fig, axes = new_figure(11, 4, ncols=2)
plot_pareto(cnn_rows, pareto_front(cnn_rows), quality_name="test accuracy (%)", title="digits CNN", ax=axes[0])
plot_pareto(lm_rows, pareto_front(lm_rows), quality_name="mean cosine to fp32", title="MiniLM", ax=axes[1])
fig

# %% slideshow={"slide_type": "-"}
for name, rows in (("digits CNN", cnn_rows), ("MiniLM", lm_rows)):
    print(f"{name} front, smallest first:", ", ".join(r.method for r in pareto_front(rows)))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Decision guide, derived from the tables above
#
# The guide below is generated from the measured rows: for each model, the budget is the quality
# drop a deployment could accept (1 accuracy point for the CNN, 0.01 cosine for MiniLM).

# %% slideshow={"slide_type": "-"}
def guide(name, rows, max_drop, unit):
    base = next(r for r in rows if r.method == "fp32")
    lines = [f"**{name}** (fp32: {base.quality:.4g} {unit}, {base.size_bytes / 1e6:.2f} MB; budget: drop ≤ {max_drop:g})"]
    small = recommend(rows, max_drop=max_drop, goal="size")
    best = recommend(rows, max_drop=max_drop, goal="quality")
    lost = [r.method for r in rows if base.quality - r.quality > max_drop]
    real = recommend(rows, max_drop=max_drop, goal="size", require_kernel=True)
    for label, pick in (("smallest within budget", small), ("smallest that runs with a real kernel here", real)):
        if pick is not None:
            sim = "" if pick.has_kernel else " (simulated: no CPU kernel runs this format)"
            lines.append(f"- {label}: **{pick.method}**{sim} — {pick.quality:.4g} {unit}, "
                         f"{base.size_bytes / pick.size_bytes:.2f}× smaller than fp32")
    if best is not None:
        lines.append(f"- most faithful quantized: **{best.method}** — {best.quality:.4g} {unit}")
    lines.append("- outside the budget: " + (", ".join(lost) if lost else "none"))
    return "\n".join(lines)

display(Markdown(guide("digits CNN", cnn_rows, 1.0, "% accuracy") + "\n\n" + guide("MiniLM", lm_rows, 0.01, "cosine")))

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# Speed depends on this machine and this run, so the speed picks live in an unchecked cell.
for name, rows, drop in (("digits CNN", cnn_rows, 1.0), ("MiniLM", lm_rows, 0.01)):
    fast = recommend(rows, max_drop=drop, goal="speed", require_kernel=True)
    print(f"{name}: fastest within budget in this run -> {fast.method} ({fast.speedup:.2f}x vs fp32)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: your budget, your goal
#
# Choose a model, the quality drop you can accept and what you optimise for; the widget rings the
# method the measured table recommends. (Static render: see the figure above.)

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.recipes import decision_widget

decision_widget({"digits CNN": (cnn_rows, "test accuracy (%)", 5.0), "MiniLM": (lm_rows, "mean cosine to fp32", 0.05)})

# %% slideshow={"slide_type": "-"}
fig, axes = new_figure(11, 3.6, ncols=3)
for ax, (drop, goal) in zip(axes, [(0.002, "size"), (0.01, "size"), (0.05, "size")]):
    plot_pareto(lm_rows, pareto_front(lm_rows), quality_name="mean cosine", title=f"MiniLM, drop ≤ {drop}", ax=ax,
                highlight=recommend(lm_rows, max_drop=drop, goal=goal))
fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls
#
# Counting parameters instead of bytes: bitsandbytes packs two 4-bit codes per byte, so a 4-bit
# weight reports **half** its logical `numel()`, and the scales live in a separate quantization
# state that `parameters()` does not list.

# %% slideshow={"slide_type": "-"}
nf4 = lm["NF4"][0]
naive = sum(p.numel() * p.element_size() for p in nf4.parameters())
print(f"numel x element_size over parameters(): {naive / 1e6:.2f} MB")
print(f"every parameter, buffer and quant state: {storage_bytes(nf4) / 1e6:.2f} MB")
print(f"serialized state_dict:                   {serialized_size(nf4) / 1e6:.2f} MB")
assert storage_bytes(nf4) > naive

# %% [markdown] slideshow={"slide_type": "-"}
# A model-level "× smaller" hides where the bytes are: MiniLM's embedding table stays fp32 in every
# recipe here, so whole-model ratios are far below the 4× (int8) or 8× (4-bit) of the Linear weights.

# %% slideshow={"slide_type": "-"}
emb_bytes = n_emb * 4
for r in lm_rows:
    lin = r.size_bytes - (lm_rows[0].size_bytes - n_lin * 4)
    print(f"{r.method:<26s} whole model {lm_rows[0].size_bytes / r.size_bytes:5.2f}x smaller | "
          f"Linear part {n_lin * 4 / max(lin, 1):5.2f}x smaller")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - The tables above are the answer for these two models on this machine; the guide cell turns
#   them into picks, so if a library update changes a number, the recommendation changes with it.
# - On a conv net, PyTorch's eager **static int8** is the recipe with real kernels for every layer;
#   dynamic quantization leaves the convs in float.
# - On a transformer, weight-only and dynamic int8 keep fidelity when outlier layers are handled
#   (mixed precision, LLM.int8, per-token activations); **4-bit** recipes buy size with fidelity.
# - Always read size from bytes on disk and speed as a ratio measured in the same run.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# 1. Write `front(points)` returning the non-dominated `(size, quality)` pairs of a list, smallest
#    first, and check it against `pareto_front` on the CNN rows.
# 2. Which MiniLM recipe would you ship if the budget were 0.001 cosine? Use `recommend` and check
#    your answer with the self-check cell.

# %% slideshow={"slide_type": "skip"}
def front(points):
    # your code here: return the non-dominated (size, quality) pairs, smallest size first
    raise NotImplementedError


# %% slideshow={"slide_type": "skip"}
# Solution (one of many)
def front(points):
    keep = [p for p in points if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(keep)

pts = [(r.size_bytes, r.quality) for r in cnn_rows]
assert front(pts) == sorted((r.size_bytes, r.quality) for r in pareto_front(cnn_rows))
pick = recommend(lm_rows, max_drop=0.001, goal="size")
print("self-check passed; with a 0.001 budget the table picks:", pick.method if pick else "no quantized recipe")
