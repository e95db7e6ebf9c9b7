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
# - Measure each one the same way: quality (test accuracy with a continuous fidelity measure beside
#   it, or embedding cosine and top-5 retrieval agreement with fp32), **serialized size**, **speed
#   against the best fp32 path** — eager PyTorch is not the only float baseline: ONNX Runtime fuses a
#   transformer's attention — and **time to quantize**.
# - Put the runtime a CPU user deploys with, **ONNX Runtime**, beside the PyTorch recipes.
# - Find the **Pareto front** (quality vs size) and let the numbers pick a method for a given budget,
#   treating differences within the measured noise as ties.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import copy
import os
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
from helpers.measure import serialized_size
from helpers.recipes import Result, timed, pareto_front, recommend, choose, format_table
from helpers import runtimes

torch.set_num_threads(2)
seed_everything(0)
print("threads:", torch.get_num_threads(), "| quantized engine:", torch.backends.quantized.engine)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea: one yardstick for every method
#
# | axis | CNN | MiniLM |
# |---|---|---|
# | quality | test accuracy (%) on the held-out digits, ± its standard error | mean cosine to fp32 embeddings ± its standard error; top-5 neighbour agreement |
# | fidelity | KL divergence of the predicted class distribution from fp32's (mean over the test images) | the cosine is already continuous |
# | size | bytes of the saved `state_dict` (packed codes + scales where a method has no PyTorch module) | same; an ONNX file's bytes for ONNX Runtime |
# | speed | best fp32 path's median ÷ method median (and eager fp32's), every path interleaved in one timing loop; spread min–p90 | same |
# | cost | wall time to produce the quantized model (calibration, fine-tuning, packing) | same |
#
# A method is **on the Pareto front** if no other method is both smaller and better. Everything
# off the front is dominated: never the right choice on these two axes.
#
# Accuracy on a few hundred images moves in steps of one image, so recipes often tie on it; the
# KL divergence moves with every logit and separates them. And a difference smaller than the
# measurement's own noise is no difference: the guide below treats such rows as **ties** and lets
# the next criterion decide.

# %% slideshow={"slide_type": "-"}
# The budgets and the tie rules every pick below uses
CNN_DROP, LM_DROP = 1.0, 0.01      # quality drop a deployment accepts: accuracy points, cosine
SIZE_REL = 0.01                    # sizes within 1 % tie
TARGET_COSINE, TARGET_SPEEDUP = 0.99, 1.5   # the MiniLM CPU goal: this fidelity at this speed-up vs the best fp32 path
display(Markdown(
    f"Ties: sizes within {SIZE_REL:.0%}; qualities whose difference is at most their combined standard error "
    f"over the test items (what another draw of test images or sentences would move them by); speeds whose "
    f"min–p90 spreads overlap. Budgets: a drop of {CNN_DROP:g} accuracy point for the CNN, {LM_DROP:g} cosine for "
    f"MiniLM. The MiniLM CPU goal: cosine ≥ {TARGET_COSINE:g} at ≥ {TARGET_SPEEDUP:g}× the best fp32 path, batch 1."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The digits CNN: every recipe of the course that fits
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
from helpers.dynamic import float64_model
from helpers.recipes import logit_kl, accuracy_se, quality_tie

def cnn_logits(model):
    # Eager static int8 models take float32 images (their first op quantizes them) and run integer kernels;
    # every other model runs its float parts in float64 (lesson 04's float64_model), the same on every CPU.
    with torch.no_grad():
        if any(isinstance(m, torch.ao.nn.quantized.Quantize) for m in model.modules()):
            return model(split.x_test)
        return float64_model(model)(split.x_test.double())

ref_logits = cnn_logits(fp32_cnn)
n_test = len(split.y_test)
cnn_rows = []
for m, v in cnn.items():
    logits = cnn_logits(v["model"])
    acc = 100.0 * int((logits.argmax(1) == split.y_test).sum()) / n_test
    assert acc == evaluate(v["model"], split.x_test, split.y_test)  # the same accuracy as the lessons' evaluate()
    cnn_rows.append(Result("digits CNN", m, acc, serialized_size(v["state"]), None, v["seconds"], note=v["note"],
                           has_kernel=v["has_kernel"], divergence=logit_kl(ref_logits, logits),
                           quality_se=accuracy_se(acc, n_test)))
display(Markdown(format_table(cnn_rows, "test accuracy (%)", quality_fmt="{:.2f}")))
fp32_row = cnn_rows[0]
by = {r.method: r for r in cnn_rows}
best_static = max((r for r in cnn_rows if r.method.startswith("static")), key=lambda r: r.quality)
assert fp32_row.quality - best_static.quality <= CNN_DROP, "static int8 should stay within 1 point of fp32 on the digits CNN"

# %% slideshow={"slide_type": "subslide"}
same_acc = [r for r in cnn_rows if r.quality == fp32_row.quality]
ties = [r for r in cnn_rows if quality_tie(fp32_row, r)]
ranked = sorted(ties, key=lambda r: r.divergence)
display(Markdown(
    f"**{len(same_acc)} of {len(cnn_rows)} rows score exactly {fp32_row.quality:.2f} %** (fp32 included): on "
    f"{n_test} images one image is {100 / n_test:.2f} points, and the standard error of that accuracy is "
    f"{fp32_row.quality_se:.2f} points, so {len(ties) - 1} quantized rows tie with fp32 within it. The KL divergence ranks them "
    "(most faithful first): " + ", ".join(f"{r.method} ({r.divergence:.3g})" for r in ranked) + ". "
    f"Per-channel static int8 moves the outputs {by['static int8 per-tensor'].divergence / by['static int8 per-channel'].divergence:.1f}× "
    "less than per-tensor, as lesson 05 predicts. QAT's outputs are the farthest from fp32's "
    f"({by['QAT W8A8'].divergence:.3g} for W8A8): fine-tuning on the labels moves the model away from the fp32 "
    "model it started from while keeping its accuracy — fidelity to fp32 is not the task's quality."))
assert len([r for r in ties if r.method != "fp32"]) >= 4   # accuracy alone cannot rank these recipes
assert len({r.divergence for r in ties if r.method != "fp32"}) == len(ties) - 1  # ... the divergence can
assert by["static int8 per-channel"].divergence < by["static int8 per-tensor"].divergence
assert min(by[m].divergence for m in ("QAT W8A8", "QAT W4A8")) > max(by[m].divergence for m in ("static int8 per-tensor", "static int8 per-channel"))

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# Latency (this machine, this run): the whole test set as one batch, every path interleaved in one loop.
# Fp32 paths: eager PyTorch and ONNX Runtime (exported once, cached). Fake-quant rows have no kernel of their own.
from helpers.recipes import speed_fields

xb = split.x_test
cnn_onnx = runtimes.export_onnx(fp32_cnn, (xb,), "digits-cnn", input_names=["x"], output_names=["logits"],
                                dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
cnn_ort = runtimes.ort_session(cnn_onnx)
ort_logits = torch.from_numpy(cnn_ort.run(None, {"x": xb.numpy()})[0])
ort_acc = 100.0 * int((ort_logits.argmax(1) == split.y_test).sum()) / n_test
ort_cnn_row = Result("digits CNN", "ORT fp32", ort_acc, cnn_onnx.stat().st_size, None, 0.0, note="ONNX Runtime, fp32",
                     divergence=logit_kl(ref_logits, ort_logits), quality_se=accuracy_se(ort_acc, n_test), fp32=True)
paths = {"fp32": lambda: fp32_cnn(xb), "ORT fp32": lambda: cnn_ort.run(None, {"x": xb.numpy()})}
paths.update({m: (lambda mm=v["model"]: mm(xb)) for m, v in cnn.items() if m != "fp32" and v["has_kernel"]})
load = os.getloadavg()[0]   # other work on the machine slows PyTorch's threads far more than ONNX Runtime's
cnn_t = runtimes.time_interleaved(paths, rounds=10, calls_per_round=3)
best_cnn = min(("fp32", "ORT fp32"), key=lambda k: cnn_t[k].median_ms)
cnn_speed = {m: speed_fields(t.median_ms, t.min_ms, t.p90_ms, best_fp32_ms=cnn_t[best_cnn].median_ms,
                             eager_ms=cnn_t["fp32"].median_ms) for m, t in cnn_t.items()}
cnn_rows = [r._replace(**cnn_speed.get(r.method, {})) for r in cnn_rows]
ort_cnn_row = ort_cnn_row._replace(**cnn_speed["ORT fp32"])
print(f"batch {len(xb)}, {cnn_t['fp32'].threads} threads, {cnn_t['fp32'].samples} samples per path, load average {load:.1f} "
      f"on {os.cpu_count()} CPUs before timing; "
      f"best fp32 path: {best_cnn} ({cnn_t[best_cnn].median_ms:.2f} ms), eager fp32 {cnn_t['fp32'].median_ms:.2f} ms")
display(Markdown(format_table(cnn_rows + [ort_cnn_row], "test accuracy (%)", timings=True, quality_fmt="{:.2f}")))
by = {r.method: r for r in cnn_rows}
assert ort_cnn_row.divergence < 1e-6 and ort_acc == fp32_row.quality   # the same fp32 model in another runtime
vnni = torch.cpu._is_vnni_supported()   # int8 dot products in one instruction (vpdpbusd), or three without it
print(f"this CPU: VNNI {vnni}; static int8 per-channel {by['static int8 per-channel'].speedup_eager:.2f}x eager fp32, "
      f"dynamic int8 (classic) {by['dynamic int8 (classic)'].speedup_eager:.2f}x")
if torch.backends.quantized.engine in ("x86", "fbgemm"):   # the claim is about the x86 engine's int8 conv kernels
    assert by["static int8 per-channel"].speedup_eager > (1.5 if vnni else 1.0)   # int8 convs beat eager fp32
    assert by["dynamic int8 (classic)"].speedup_eager < by["static int8 per-channel"].speedup_eager  # convs stay fp32
else:
    print(f"engine {torch.backends.quantized.engine}: the int8 speed-up band above is asserted for the x86 engine only")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## MiniLM: the course's recipes and ONNX Runtime on a real transformer
#
# all-MiniLM-L6-v2, loaded offline. Most of its parameters sit in the token-embedding table,
# which none of the PyTorch recipes touch (counted below). Quality is measured on the course's sentence set.

# %% slideshow={"slide_type": "-"}
from helpers.language import load_minilm, load_sentences, embed, cosine_to_reference, retrieval_agreement
from helpers.recipes import mean_and_se
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
    cos, cos_se = mean_and_se(cosine_to_reference(emb, ref))
    lm_rows.append(Result("MiniLM", method, cos, lm_size(method, model), None, s,
                          retrieval=retrieval_agreement(emb, ref, k=5), note=note,
                          has_kernel=method != "k-means 4-bit", quality_se=cos_se))
display(Markdown(format_table(lm_rows, "mean cosine to fp32")))
lm_by = {r.method: r for r in lm_rows}
assert lm_by["dynamic int8 (classic)"].quality < 1 - LM_DROP < lm_by["mixed dynamic int8"].quality  # outliers decide

# %% [markdown] slideshow={"slide_type": "slide"}
# ## ONNX Runtime: the deployment peer
#
# Exported once with `torch.onnx` (cached on disk), then two candidates: **fp32 with ONNX Runtime's
# transformer fusion** (attention, LayerNorm and GELU become single kernels) and **dynamic int8 with
# per-channel weights** (`onnxruntime.quantization.quantize_dynamic`: every MatMul's weight, and the
# embedding table, stored as int8 with a scale per output channel; activations quantized per call to
# uint8 over their full range, no `reduce_range`). Their quality is measured the same way as above — but
# ONNX Runtime picks its own kernels for the CPU it runs on (its int8 kernels differ between AVX2 and
# AVX-512 VNNI machines), so this cell's output is this machine's and its asserts are bands.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.recipes import ort_embed

lm_onnx, s_export = timed(lambda: runtimes.export_encoder(fp32_lm, tok(sentences[:2], padding=True, return_tensors="pt"), "minilm"))
fused, s_fuse = timed(lambda: runtimes.optimize_transformer(lm_onnx, num_heads=fp32_lm.config.num_attention_heads,
                                                            hidden_size=fp32_lm.config.hidden_size))
int8_onnx, s_q = timed(lambda: runtimes.quantize_dynamic_onnx(fused, per_channel=True))
ort = {"ORT fp32 (fused)": (runtimes.ort_session(fused), fused, s_export + s_fuse, "attention/LayerNorm/GELU fused", True),
       "ORT dynamic int8 per-channel": (runtimes.ort_session(int8_onnx), int8_onnx, s_export + s_fuse + s_q,
                                        "fused graph; every MatMul + embeddings int8, uint8 activations", False)}
ort_rows = []
for method, (sess, path, s, note, is_fp32) in ort.items():
    emb = ort_embed(sess, tok, sentences)
    cos, cos_se = mean_and_se(cosine_to_reference(emb, ref))
    ort_rows.append(Result("MiniLM", method, cos, path.stat().st_size, None, s, retrieval=retrieval_agreement(emb, ref, k=5),
                           note=note, quality_se=cos_se, fp32=is_fp32))
display(Markdown(format_table(lm_rows[:1] + ort_rows, "mean cosine to fp32")))
ort_by = {r.method: r for r in ort_rows}
assert ort_by["ORT fp32 (fused)"].quality > 0.9999   # the same fp32 model: fusion reorders sums, nothing more
assert ort_by["ORT dynamic int8 per-channel"].quality >= TARGET_COSINE  # every layer int8, still within the budget
assert ort_by["ORT dynamic int8 per-channel"].size_bytes < min(r.size_bytes for r in lm_rows)  # embeddings int8 too

# %% [markdown] slideshow={"slide_type": "subslide"}
# Speed for **one sentence at a time** — the latency a search box or a chat turn sees — with every path
# interleaved in one loop (shuffled order, a few calls in a row, ONNX Runtime's threads told not to spin).
# Ratios are against the **best fp32 path** and against eager PyTorch fp32. This machine, this run:
# the cell's output is not checked; its asserts are bands that hold on every CPU path tried.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
one = tok(sentences[0], padding="max_length", max_length=16, truncation=True, return_tensors="pt")
one_np = {k: one[k].numpy() for k in runtimes.ENCODER_INPUTS}
paths = {"fp32": lambda: fp32_lm(**one)}
paths.update({m: (lambda mm=model: mm(**one)) for m, (model, _, _) in lm.items() if m not in ("fp32", "k-means 4-bit")})
paths.update({m: (lambda ss=sess: ss.run(None, one_np)) for m, (sess, *_rest) in ort.items()})
load = os.getloadavg()[0]
lm_t = runtimes.time_interleaved(paths, rounds=10, calls_per_round=3)
fp32_paths = ("fp32", "ORT fp32 (fused)")
best_lm = min(fp32_paths, key=lambda k: lm_t[k].median_ms)
lm_speed = {m: speed_fields(t.median_ms, t.min_ms, t.p90_ms, best_fp32_ms=lm_t[best_lm].median_ms,
                            eager_ms=lm_t["fp32"].median_ms) for m, t in lm_t.items()}
lm_rows = [r._replace(**lm_speed.get(r.method, {})) for r in lm_rows]
ort_rows = [r._replace(**lm_speed[r.method]) for r in ort_rows]
print(f"batch 1, {one['input_ids'].shape[1]} tokens, {lm_t['fp32'].threads} threads, {lm_t['fp32'].samples} samples per path, "
      f"load average {load:.1f} on {os.cpu_count()} CPUs before timing; "
      f"best fp32 path: {best_lm} ({lm_t[best_lm].median_ms:.2f} ms), eager fp32 {lm_t['fp32'].median_ms:.2f} ms")
display(Markdown(format_table(lm_rows + ort_rows, "mean cosine to fp32", timings=True)))
lm_by = {r.method: r for r in lm_rows + ort_rows}
assert lm_by["ORT dynamic int8 per-channel"].speedup > 1.0   # faster than the best fp32 path
assert lm_by["mixed dynamic int8"].speedup < lm_by["ORT dynamic int8 per-channel"].speedup

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
# The guide below is generated from the measured rows (the budgets and tie rules of the cell at the
# top): for each model, the smallest recipe within the quality budget, the smallest that runs with a
# real kernel here, and the most faithful — each time saying which tie the next criterion decided.
# These picks use the PyTorch rows, whose numbers are the same on every CPU.

# %% slideshow={"slide_type": "-"}
def guide(name, rows, max_drop, unit, fmt):
    rows = [r._replace(speedup=None, speed_band=None) for r in rows]  # speed is this machine's: not used here
    base = next(r for r in rows if r.method == "fp32")
    lines = [f"**{name}** (fp32: {fmt.format(base.quality)} {unit}, {base.size_bytes / 1e6:.2f} MB; budget: drop ≤ {max_drop:g})"]
    lost = [r.method for r in rows if base.quality - r.quality > max_drop]
    picks = (("smallest within budget", dict(goal="size")),
             ("smallest that runs with a real kernel here", dict(goal="size", require_kernel=True)),
             ("most faithful quantized", dict(goal="quality")))
    for label, kw in picks:
        pick, why = choose(rows, max_drop=max_drop, size_rel=SIZE_REL, **kw)
        if pick is None:
            lines.append(f"- {label}: none")
            continue
        sim = "" if pick.has_kernel else " (simulated: no CPU kernel runs this format)"
        div = "" if pick.divergence is None else f", KL {pick.divergence:.3g}"
        lines.append(f"- {label}: **{pick.method}**{sim} — {fmt.format(pick.quality)} {unit}{div}, "
                     f"{base.size_bytes / pick.size_bytes:.2f}× smaller than fp32 ({why})")
    lines.append("- outside the budget: " + (", ".join(lost) if lost else "none"))
    return "\n".join(lines)

display(Markdown(guide("digits CNN", cnn_rows, CNN_DROP, "% accuracy", "{:.2f}") + "\n\n"
                 + guide("MiniLM", lm_rows, LM_DROP, "cosine", "{:.4f}")))
faithful_cnn, why_cnn = choose(cnn_rows, max_drop=CNN_DROP, goal="quality")
assert "tie on quality" in why_cnn and why_cnn.endswith("decided by divergence")  # accuracy ties; KL ranks

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The CPU recipe for MiniLM, from this machine's timings
#
# The pick that matters for a CPU deployment: the **fastest** recipe within the cosine budget that runs
# on a real kernel, ONNX Runtime included, measured against the best fp32 path. It depends on this
# machine (and its ONNX Runtime int8 kernels), so the cell's output is this run's.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
for name, rows, drop in (("digits CNN", cnn_rows, CNN_DROP), ("MiniLM", lm_rows + ort_rows, LM_DROP)):
    fast, why = choose(rows, max_drop=drop, goal="speed", require_kernel=True, size_rel=SIZE_REL)
    lo, hi = fast.speed_band
    print(f"{name}: fastest within budget -> {fast.method}: {fast.speedup:.2f}x the best fp32 path (spread {lo:.2f}-{hi:.2f}), "
          f"{fast.speedup_eager:.2f}x eager fp32 ({why})")
cpu_pick, _ = choose(lm_rows + ort_rows, max_drop=LM_DROP, goal="speed", require_kernel=True, size_rel=SIZE_REL)
meets = [r for r in lm_rows + ort_rows if not r.fp32 and r.method != "fp32" and r.quality >= TARGET_COSINE
         and r.speedup is not None and r.speedup >= TARGET_SPEEDUP]
print(f"MiniLM goal (cosine >= {TARGET_COSINE:g} at >= {TARGET_SPEEDUP:g}x the best fp32 path, batch 1): "
      + (f"met by {', '.join(r.method for r in meets)}" if meets else
         f"no recipe meets it here; the closest is {cpu_pick.method} at {cpu_pick.speedup:.2f}x"))
for r in sorted((r for r in lm_rows + ort_rows if r.speedup is not None and r.method != "fp32"), key=lambda r: -r.speedup):
    print(f"  {r.method:<30s} {r.speedup:5.2f}x best fp32   cosine {r.quality:.4f}")
mp, clas, ortq = lm_by["mixed dynamic int8"], lm_by["dynamic int8 (classic)"], lm_by["ORT dynamic int8 per-channel"]
from helpers.dynamic import default_reduce_range
acts = "7-bit activations (reduce_range)" if default_reduce_range() else "8-bit activations"
print(f"Why: the course's mixed recipe keeps {len(keep)} of {len(inputs)} encoder Linear layers in fp32 and runs eager "
      f"PyTorch, op by op ({mp.speedup:.2f}x); classic dynamic int8 quantizes them all but with one weight scale per "
      f"tensor and {acts} on {torch.backends.quantized.engine}, cosine {clas.quality:.4f}; ONNX Runtime quantizes them "
      f"all with a scale per output channel and full 8-bit activations, on the fused graph: cosine {ortq.quality:.4f} "
      f"at {ortq.speedup:.2f}x.")
assert cpu_pick.quality >= TARGET_COSINE and cpu_pick.speedup > 1.0   # the recommended CPU recipe beats fp32 at budget

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: your budget, your goal
#
# Choose a model, the quality drop you can accept and what you optimise for; the widget rings the
# method the measured table recommends. (Static render: see the figure above.)

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.recipes import decision_widget

decision_widget({"digits CNN": (cnn_rows, "test accuracy (%)", 5.0),
                 "MiniLM": (lm_rows + ort_rows, "mean cosine to fp32", 0.05)})

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
lin0 = fp32_lm.encoder.layer[0].attention.self.query
packed = nf4.encoder.layer[0].attention.self.query.weight
naive = sum(p.numel() * p.element_size() for p in nf4.parameters())
print(f"one 4-bit weight: numel() {packed.numel()} for a {lin0.out_features}x{lin0.in_features} matrix "
      f"({lin0.weight.numel()} weights), dtype {packed.dtype}")
print(f"numel x element_size over parameters(): {naive / 1e6:.2f} MB")
print(f"every parameter, buffer and quant state: {storage_bytes(nf4) / 1e6:.2f} MB")
print(f"serialized state_dict:                   {serialized_size(nf4) / 1e6:.2f} MB")
assert packed.numel() * 2 == lin0.weight.numel()            # numel() counts bytes of packed pairs, not weights
assert serialized_size(nf4) - naive > 0.01 * naive           # the naive count misses more than 1 % of the file ...
assert abs(serialized_size(nf4) - storage_bytes(nf4)) < 0.01 * serialized_size(nf4)  # ... the storage count does not

# %% [markdown] slideshow={"slide_type": "-"}
# A model-level "× smaller" hides where the bytes are: MiniLM's embedding table stays fp32 in every
# PyTorch recipe here, so the whole-model ratios stay far below the ratios of the Linear weights.

# %% slideshow={"slide_type": "-"}
rest = lm_rows[0].size_bytes - n_lin * 4   # every byte that is not a Linear weight: the same in every recipe
for r in lm_rows:
    print(f"{r.method:<26s} whole model {lm_rows[0].size_bytes / r.size_bytes:5.2f}x smaller | "
          f"Linear part {n_lin * 4 / max(r.size_bytes - rest, 1):5.2f}x smaller")
w8, nf4_row = lm_by["W8 weight-only (torchao)"], lm_by["NF4"]
assert lm_rows[0].size_bytes / w8.size_bytes < 0.5 * (n_lin * 4 / (w8.size_bytes - rest))  # int8: < half its Linear ratio
assert lm_rows[0].size_bytes / nf4_row.size_bytes < 0.3 * (n_lin * 4 / (nf4_row.size_bytes - rest))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary

# %% slideshow={"slide_type": "-"}
static_pc, dyn = by["static int8 per-channel"], by["dynamic int8 (classic)"]
mp, clas = lm_by["mixed dynamic int8"], lm_by["dynamic int8 (classic)"]
display(Markdown("\n".join([
    "- The tables above are the answer for these two models on this machine; the guide cells turn them into "
    "picks, so if a library update changes a number, the recommendation changes with it.",
    f"- Accuracy ties: {len(same_acc)} of the CNN's {len(cnn_rows)} rows score exactly {fp32_row.quality:.2f} %. The "
    f"KL divergence from fp32 separates them (static int8 per-channel {static_pc.divergence:.3g}, per-tensor "
    f"{by['static int8 per-tensor'].divergence:.3g}) — fidelity to fp32, not accuracy.",
    f"- On the conv net, eager **static int8** ({static_pc.size_bytes / fp32_row.size_bytes:.0%} of fp32's bytes) "
    "is the recipe with real kernels for every layer; dynamic quantization leaves the convs in float "
    f"({dyn.size_bytes / fp32_row.size_bytes:.0%} of the bytes).",
    f"- On MiniLM, per-tensor dynamic int8 loses fidelity to the outlier layers (cosine {clas.quality:.4f}); "
    f"keeping the outlier layers in float recovers it ({mp.quality:.4f}), and 4-bit recipes buy size with "
    f"fidelity (NF4 {lm_by['NF4'].quality:.4f}).",
    "- Speed is a ratio against the **best** fp32 path timed in the same loop — eager PyTorch or ONNX Runtime's "
    "fused graph, whichever is faster on this machine — and the CPU pick above is measured against it.",
    "- Always read size from bytes on disk, and treat differences within the measurement's noise as ties.",
])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **1. The front by hand.** Write `my_front(points)` that returns the non-dominated `(size, quality)`
# pairs of a list, smallest size first (smaller size and higher quality are better; a point is
# dominated by another that is at least as good on both and strictly better on one).
# `check_front` compares with `pareto_front` on small lists chosen to catch the usual slips.

# %% slideshow={"slide_type": "skip"}
from helpers.recipes import check_front, check_budget_pick


def my_front(points):
    # YOUR CODE: keep the points no other point dominates, sorted by size
    raise NotImplementedError


_ = check_front(my_front)


# %% slideshow={"slide_type": "skip"}
# Solution (one of many)
def solution_front(points):
    def dominates(q, p):
        return q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1])

    return sorted(p for p in points if not any(dominates(q, p) for q in points))


assert check_front(solution_front)
pts = [(r.size_bytes, r.quality) for r in cnn_rows]
assert solution_front(pts) == [(r.size_bytes, r.quality) for r in pareto_front(cnn_rows)]

# %% [markdown] slideshow={"slide_type": "-"}
# **2. A tighter budget.** Which MiniLM method would you ship if the budget were 0.001 cosine
# (goal: the smallest)? Put its name in `my_budget_pick`; `check_budget_pick` asks the table
# itself with `recommend`.

# %% slideshow={"slide_type": "skip"}
my_budget_pick = None  # YOUR ANSWER: a method name from the MiniLM table (a str)
_ = check_budget_pick(my_budget_pick, lm_rows)

# %% slideshow={"slide_type": "skip"}
# Solution
_pick = recommend(lm_rows, max_drop=0.001, goal="size")
solution_budget_pick = _pick.method if _pick is not None else "none"
assert check_budget_pick(solution_budget_pick, lm_rows)
print("with a 0.001 budget the table picks:", solution_budget_pick)
