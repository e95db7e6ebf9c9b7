# %% [markdown] slideshow={"slide_type": "slide"}
# # 07 · bitsandbytes: blockwise 8-bit, LLM.int8(), NF4 and 8-bit optimizers
#
# Rebuild the ideas behind `bitsandbytes` from scratch, check them against the library to the last
# bit, and measure them on a real pretrained transformer (all-MiniLM-L6-v2) — on a CPU.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import sys
import pathlib
sys.path.insert(0, str(pathlib.Path.cwd().parent))
import copy
import inspect
import logging
import warnings
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # bnb logs a notice per fp32->fp16 cast
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F
from IPython.display import Markdown, display
from helpers import bnb as R
from helpers.language import load_minilm, load_sentences, embed
from helpers.models import DigitsCNN, seed_everything
from helpers.data import load_digits_split, digits_loader
from helpers.measure import fmt_mb
from helpers.plotting import bnb as P
torch.set_num_threads(2)
seed_everything(0)
print("torch", torch.__version__, "| bitsandbytes", bnb.__version__, "| threads", torch.get_num_threads())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - Quantize in **blocks**, each with its own absmax, and see why blocks keep an outlier's damage local.
# - Build **LLM.int8()** — row-wise int8, int32 accumulation, float path for outlier columns — and match `bnb.nn.Linear8bitLt`.
# - Find MiniLM's real **outlier features** and compare naive per-tensor int8, vector-wise int8 and LLM.int8.
# - **NF4 / FP4** 4-bit with **double quantization**: bits per parameter and memory measured from real storage.
# - **8-bit Adam**: optimizer-state bytes and the loss curve against 32-bit Adam.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea
#
# **Blockwise absmax.** Cut $x$ into blocks of $B$ values; per block $a_b = \max|x_b|$ and
# $q = \arg\min_i |c_i - x/a_b|$ for a code table $c \subset [-1, 1]$ (256 entries for 8-bit,
# 16 for NF4/FP4). An outlier only inflates $a_b$ of *its* block.
#
# **LLM.int8().** For $y = xW^\top$: one scale per token row of $x$ and per output row of $W$,
# $y \approx (x_q W_q^\top)_{\text{int32}} \cdot s_x s_w / 127^2$.
# Feature columns with any $|x| \ge \tau$ (threshold, 6.0) are removed from $x_q$ and computed in
# float: $y \mathrel{+}= x_{:,O} \hat W_{:,O}^\top$.
#
# **Double quantization.** The absmax constants (32 bits per block of $B$) are themselves quantized
# blockwise to 8 bits, with one float32 absmax per 256 constants: $4 + 32/B \to 4 + 8/B + 32/(256 B)$ bits/param
# (measured below).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand: one outlier, two block sizes
#
# 64 small weights and one outlier, quantized to NF4 (16 codes, index 7 is 0.0) in one block of 64 and in two blocks
# of 32 — the smallest block bitsandbytes' 4-bit quantizer takes.

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(0)
x = (torch.randn(64, generator=g) * 0.1).round(decimals=2)
x[40] = 8.0  # the outlier sits in the second half
on_zero, mse_by_bs = {}, {}
for blocksize in (64, 32):
    packed, absmax = R.quantize_4bit(x, blocksize, "nf4")
    q = R.unpack_nibbles(packed.flatten(), 64)
    x_hat = R.dequantize_4bit(packed, absmax, x.shape, blocksize, "nf4")
    on_zero[blocksize] = [int((q[b:b + blocksize] == 7).sum()) for b in range(0, 64, blocksize)]
    mse_by_bs[blocksize] = (x_hat - x).pow(2).mean().item()
    print(f"blocksize {blocksize}: absmax {[round(a, 3) for a in absmax.tolist()]}, values on the zero code per block "
          f"{on_zero[blocksize]}, MSE {mse_by_bs[blocksize]:.2e}")
    print("   first 8 codes", q[:8].tolist(), " x", [round(v, 2) for v in x[:8].tolist()],
          " x_hat", [round(v, 3) for v in x_hat[:8].tolist()])
packed_bnb, st = F.quantize_4bit(x, blocksize=32, quant_type="nf4", compress_statistics=False)
assert torch.equal(R.quantize_4bit(x, 32, "nf4")[0], packed_bnb)  # the same bytes as bitsandbytes
assert on_zero[32][0] < on_zero[64][0] // 2 and mse_by_bs[32] < mse_by_bs[64]

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"In one block of 64 the outlier sets the scale ({x.abs().max():.1f}) and {on_zero[64][0]} of the 64 values collapse onto "
    f"code 7 (zero). In blocks of 32 only the outlier's own block pays ({on_zero[32][1]} of 32 on zero there); the first "
    f"block keeps its own scale and {on_zero[32][0]} of its 32 values round to zero: MSE {mse_by_bs[64]:.2e} -> {mse_by_bs[32]:.2e}."))

# %% slideshow={"slide_type": "subslide"}
# LLM.int8 by hand: 2 tokens x 4 features, feature 2 is an outlier column
x = torch.tensor([[0.5, -1.0, 9.0, 0.25], [1.5, 0.5, -7.0, -0.5]])
W = torch.tensor([[0.2, -0.1, 0.05, 0.3], [-0.4, 0.2, 0.1, 0.1], [0.1, 0.1, -0.2, 0.5]])
x_q, s_x, cols = R.int8_vectorwise_quantize(x, threshold=6.0)
w_q, s_w, _ = R.int8_vectorwise_quantize(W)
print("outlier columns", cols.tolist(), "| row scales of x", s_x.tolist())
print("x_q\n", x_q)
print("int32 x_q @ w_q.T\n", (x_q.int() @ w_q.int().T))
print("LLM.int8", R.llm_int8_linear(x, W, threshold=6.0), "\nfloat   ", x @ W.T)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation

# %% [markdown] slideshow={"slide_type": "-"}
# `llm_int8_linear` quantizes the weight rows once (`int8_vectorwise_quantize`) and calls `llm_int8_matmul`, the
# part a deployed `Linear8bitLt` runs on every call. Its body, as the helper has it (argument checks cut):

# %% slideshow={"slide_type": "-"}
body = inspect.getsource(R.llm_int8_matmul).split('"""')[2]
print(body[body.index("    a = x.reshape"):])

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same steps written out with plain torch ops — outlier columns, row-wise int8, an int32 matmul, one rescale,
# the float path — and proven equal to the helper, bit for bit:

# %% slideshow={"slide_type": "-"}
def llm_int8_by_hand(x, w_q, w_absmax, threshold):
    a = x.reshape(-1, x.shape[-1])
    a16 = a.half()                                              # bitsandbytes quantizes fp16 activations
    outlier = (a16.abs() >= threshold) if threshold > 0 else torch.zeros_like(a16, dtype=torch.bool)
    cols = outlier.any(0).nonzero().flatten()                   # feature columns with any |x| >= threshold
    inliers = a16.masked_fill(outlier, 0)
    row_absmax = inliers.abs().amax(1).float()                  # one scale per token row, outliers left out
    x_q = torch.round(inliers * (127.0 / row_absmax[:, None])).to(torch.int8)
    if cols.numel() and x_q.shape[0] > 1:
        x_q[:, cols] = 0                                        # those columns run in float instead
    acc = x_q.int() @ w_q.int().t()                             # exact int32 accumulation
    y = (acc * (row_absmax[:, None] * w_absmax[None, :]) * 6.200124e-05).to(x.dtype)   # * s_x s_w / 127^2
    if cols.numel():
        w_hat = (w_q[:, cols] * w_absmax[:, None] * 7.874015718698502e-3).to(x.dtype)   # dequantized weights, * 1/127
        y = y.addmm(a[:, cols], w_hat.t())
    return y.reshape(*x.shape[:-1], w_q.shape[0])

torch.manual_seed(0)
x_demo = torch.randn(2, 24, 384)
x_demo[..., [5, 77]] *= 20
w_q_demo, w_absmax_demo, _ = R.int8_vectorwise_quantize(torch.randn(64, 384))
for t in (0.0, 6.0):
    same = torch.equal(llm_int8_by_hand(x_demo, w_q_demo, w_absmax_demo, t), R.llm_int8_matmul(x_demo, w_q_demo, w_absmax_demo, None, t))
    print(f"threshold {t}: by hand == helpers.bnb.llm_int8_matmul: {same}")
    assert same

# %% [markdown] slideshow={"slide_type": "subslide"}
# The reference against `bnb.nn.Linear8bitLt(has_fp16_weights=False)` in eval mode, same weights and inputs:

# %% slideshow={"slide_type": "-"}
torch.manual_seed(0)
linear = torch.nn.Linear(384, 256)
x = torch.randn(4, 32, 384)
x[..., [5, 77, 300]] *= torch.tensor([30.0, 12.0, 8.0])  # three outlier features
for threshold in (0.0, 6.0):
    layer = R.bnb_int8(linear, threshold).eval()
    with torch.no_grad():
        y_bnb, y_ref = layer(x), R.llm_int8_linear(x, linear.weight, linear.bias, threshold)
    diff = (y_bnb - y_ref).abs().max().item()
    print(f"threshold {threshold}: max |bnb - reference| = {diff:.3g}, bit-exact: {torch.equal(y_bnb, y_ref)}")
    assert diff <= 1e-5 * y_bnb.abs().max().item()
x_q, _, _ = R.int8_vectorwise_quantize(x.reshape(-1, 384), 6.0)
w_q, _, _ = R.int8_vectorwise_quantize(linear.weight)
bound = int((x_q.double().abs() @ w_q.double().abs().T).max())  # every partial sum of the int32 GEMM is at most this
print(f"largest sum_k |x_q| |w_q| = {bound:,} < 2^24 = {2**24:,}: a float32 GEMM of these codes is exact too")
assert bound < 2**24

# %% slideshow={"slide_type": "subslide"}
w = torch.randn(256, 384)
for quant_type in ("nf4", "fp4"):
    packed_bnb, state = F.quantize_4bit(w, blocksize=64, quant_type=quant_type, compress_statistics=False)
    packed_ref, absmax = R.quantize_4bit(w, 64, quant_type)
    same = torch.equal(R.unpack_nibbles(packed_ref), R.unpack_nibbles(packed_bnb)) and torch.equal(absmax, state.absmax)
    x_hat_same = torch.equal(R.dequantize_4bit(packed_ref, absmax, w.shape, 64, quant_type), F.dequantize_4bit(packed_bnb, state))
    print(f"{quant_type}: codes and absmax bit-exact {same}, dequantized bit-exact {x_hat_same}")
    assert same and x_hat_same
q_bnb, st8 = F.quantize_blockwise(w.flatten(), blocksize=256)
q_ref, absmax8 = R.blockwise_quantize(w.flatten(), blocksize=256)
print(f"8-bit dynamic code, block 256: codes and absmax bit-exact {torch.equal(q_ref, q_bnb) and torch.equal(absmax8, st8.absmax)}")
assert torch.equal(q_ref, q_bnb) and torch.equal(absmax8, st8.absmax)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **How bitsandbytes finds the nearest of 256 codes on a CPU.** It does not search the code per value: it rounds
# $s = x/a_b$ to the nearest of 65,536 evenly spaced grid points across $[-1, 1]$ and reads that grid point's nearest
# code from a table built once per code (`R.lookup_table`; bitsandbytes 0.50, `build_quantize_lut` in `csrc/cpu_ops.cpp`). The reference does the same, so it is bit-exact — and it
# inherits the grid's coarseness where the code is finer than the grid:

# %% slideshow={"slide_type": "-"}
code8 = R.dynamic_code()
lut = R.lookup_table(code8)
step = 2 / (R.LUT_SIZE - 1)
gaps = code8[1:] - code8[:-1]
unreachable = 256 - torch.unique(lut).numel()
scaled = (w.flatten().reshape(-1, 256) / absmax8[:, None]).flatten()
exact = (scaled[:, None] - code8[None, :]).abs().argmin(1)   # the exactly nearest code, for comparison
differ = (exact != q_ref.long()).float().mean().item()
print(f"grid step {step:.3e}; code gaps from {gaps.min():.2e} (near 0) to {gaps.max():.4f} (near +-1)")
print(f"{int((gaps < step).sum())} of 255 code gaps are narrower than the grid step; {unreachable} codes are never chosen")
print(f"on this weight {100 * differ:.2f}% of the codes differ from the exactly nearest code; code range "
      f"[{code8.min():.4f}, {code8.max():.4f}]")
assert unreachable > 0 and 0 < differ < 0.01 and code8.max() == 1.0 and code8.min() > -1.0

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"The dynamic code is dense near 0 (gaps down to {gaps.min():.1e}) and sparse near ±1 (up to {gaps.max():.3f}); "
    f"{unreachable} of its 256 codes own no grid point (their stretch of [-1, 1] is narrower than the grid step "
    f"{step:.1e}), so a CPU never produces them. "
    f"It holds +1.0 but its most negative code is {code8.min():.4f}, so a block whose absmax is negative loses a little."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The 4-bit tables, built.** NF4 (QLoRA) puts 8 positive and 7 negative codes at quantiles of $N(0, 1)$, evenly
# spaced in probability from 0.5 out to bitsandbytes' `offset` 0.9677083 (`create_normal_map`'s default; QLoRA's
# $1 - \frac12(\frac1{30} + \frac1{32})$), plus an exact 0, scaled so that the largest is 1. bitsandbytes' FP4 is a
# sign bit, 2 exponent bits and 1 mantissa bit with its own layout (bitsandbytes' `get_4bit_type("fp4")`): exponent
# field $e \ge 1$ gives $(1 + m/2)\,2^{4-e}$, $e = 0$ gives $m \cdot 0.0625$, divided by the largest value, 12.

# %% slideshow={"slide_type": "-"}
offset = 0.9677083  # bitsandbytes' create_normal_map default
positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())   # 8 quantiles above the median
negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())  # 7 below
nf4 = torch.cat([positive, negative, torch.zeros(1, dtype=torch.float64)]).float().sort().values
nf4 = nf4 / nf4.max()
i = torch.arange(16)
sign, exponent, mantissa = i >> 3, (i >> 1) & 3, i & 1
magnitude = torch.where(exponent == 0, mantissa * 0.0625, (1 + mantissa / 2) * 2.0 ** (4 - exponent))
fp4 = (torch.where(sign == 1, -magnitude, magnitude) / 12).float()
print(f"offset vs QLoRA's 1 - (1/30 + 1/32)/2: differ by {abs(offset - (1 - (1 / 30 + 1 / 32) / 2)):.1e}")
print("NF4", [round(v, 4) for v in nf4.tolist()])
print("FP4 (index order)", [round(v, 4) for v in fp4.tolist()])
for name, built in (("nf4", nf4), ("fp4", fp4)):
    print(f"{name}: equal to bitsandbytes' table: {torch.equal(built, R.code_4bit(name))}")
    assert torch.equal(built, R.code_4bit(name))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Blocks localize outliers: error vs block size on a MiniLM weight

# %% slideshow={"slide_type": "-"}
model, tok = load_minilm()
model64 = copy.deepcopy(model).double()  # float parts in float64 for the measurements (see below)
sentences = load_sentences()[0][::2]   # 24 sentences, every topic
W = model64.encoder.layer[0].output.dense.weight.detach()  # float32 values held in float64: errors sum in float64
blocksizes = [32, 64, 128, 256, 1024, 4096]
errors = {"NF4": [], "8-bit dynamic": []}
for bs in blocksizes:  # bitsandbytes quantizes 16/32-bit floats: the float32 cast is exact here
    p, a = R.quantize_4bit(W.float(), bs, "nf4")
    errors["NF4"].append((R.dequantize_4bit(p, a, W.shape, bs) - W).pow(2).mean().item())
    q, a = R.blockwise_quantize(W.float(), blocksize=bs)
    errors["8-bit dynamic"].append((R.blockwise_dequantize(q, a, blocksize=bs) - W).pow(2).mean().item())
print("block sizes", blocksizes)
for k, v in errors.items():
    print(f"{k:14s}", " ".join(f"{e:.3e}" for e in v))
assert errors["NF4"][0] < errors["NF4"][-1] and errors["8-bit dynamic"][0] < errors["8-bit dynamic"][-1]

# %% slideshow={"slide_type": "subslide"}
P.plot_blocksize_sweep(blocksizes, errors, title=f"encoder.layer.0.output.dense.weight {tuple(W.shape)}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## LLM.int8() on MiniLM: find the outlier features

# %% [markdown] slideshow={"slide_type": "fragment"}
# From here on MiniLM's float parts — attention, LayerNorm, GELU, the outlier columns — run in float64 (`model64`, the same float32 weights).
# An int8 quantizer rounds its input, so a last-bit difference in a float32 activation (another CPU sums in another order) can flip a code and move the fourth decimal of an error or a cosine; in float64 every quantizer gets the same input on every CPU, and the tables measure the quantizer alone.
# The quantized layers compute as they do in a float32 model: `Linear8bitLt` casts activations to float16 before quantizing and accumulates in int32, `Linear4bit` computes in float32 (its kernels take 16/32-bit floats), and torch's dynamic int8 Linear gets the float32 cast of its input.

# %% slideshow={"slide_type": "-"}
names = [f"encoder.layer.{i}.output.dense" for i in range(6)]
inputs = {}
hooks = [model64.get_submodule(n).register_forward_hook(lambda m, inp, out, n=n: inputs.__setitem__(n, inp[0].detach()))
         for n in names]
batch = tok(sentences, padding=True, return_tensors="pt")
with torch.no_grad():
    model64(**batch)
for h in hooks:
    h.remove()
real = batch["attention_mask"].bool()
acts = {n: inputs[n][real] for n in names}          # real tokens only: (tokens, 1536)
print(f"{'layer':30s} {'max|x|':>8s} {'median|x|':>9s} {'max/median':>10s} {'cols >= 6':>9s}")
for n, a in acts.items():
    mx, med = a.abs().max().item(), a.abs().median().item()
    print(f"{n:30s} {mx:8.2f} {med:9.4f} {mx / med:10.0f} {R.outlier_columns(a, 6.0).numel():9d}")

# %% slideshow={"slide_type": "subslide"}
worst = max(names, key=lambda n: acts[n].abs().max().item())
P.plot_feature_absmax(acts[worst].abs().amax(0), 6.0, title=f"{worst}: max |x| per input feature")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Naive per-tensor vs vector-wise vs LLM.int8 on those layers

# %% slideshow={"slide_type": "-"}
print(f"{'layer':30s} {'per-tensor':>11s} {'vector-wise':>11s} {'LLM.int8':>9s} {'float cols':>10s}   (relative output error)")
layer_err = {}
for n in names:
    a, lin = acts[n], model64.get_submodule(n)
    with torch.no_grad():
        y = a @ lin.weight.T
        def rel(y_q, y=y):
            return ((y_q - y).norm() / y.norm()).item()

        e = (rel(R.per_tensor_int8_linear(a, lin.weight)), rel(R.llm_int8_linear(a, lin.weight, threshold=0.0)),
             rel(R.llm_int8_linear(a, lin.weight, threshold=6.0)))
    layer_err[n] = e
    frac = R.outlier_columns(a, 6.0).numel() / a.shape[1]
    print(f"{n:30s} {e[0]:11.4f} {e[1]:11.4f} {e[2]:9.4f} {100 * frac:9.2f}%")
assert all(e[1] < e[0] and e[2] <= e[1] for e in layer_err.values())  # equal where no column reaches 6

# %% slideshow={"slide_type": "subslide"}
thresholds = [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0]
a, lin = acts[worst], model64.get_submodule(worst)
y = a @ lin.weight.T.detach()
sweep = [R.layer_errors(a, lin.weight.detach(), t, 64)[:2] for t in thresholds]
P.plot_threshold_sweep(thresholds, [s[0] for s in sweep], [s[1] for s in sweep], title=f"{worst}: threshold sweep")

# %% [markdown] slideshow={"slide_type": "fragment"}
# Lower thresholds send more columns to the float path (more accurate, less int8); 6.0 catches the
# few systematic outlier features at a small fraction of columns.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Sentence embeddings: cosine to the float model

# %% slideshow={"slide_type": "skip"}
ref = embed(model64, tok, sentences)
def cos(m):  # mean cosine (in float64) of m's sentence embeddings to the float model's
    return torch.nn.functional.cosine_similarity(embed(m, tok, sentences).double(), ref.double(), dim=-1).mean().item()
results = {}
results["torch dynamic int8 Linear (per-tensor int8)"] = cos(R.swap_linears(model64, R.torch_dynamic_int8).eval())
results["reference per-tensor int8"] = cos(R.swap_linears(model64, lambda lin_: R.Int8RefLinear(lin_, "per_tensor")).eval())
results["reference vector-wise int8"] = cos(R.swap_linears(model64, lambda lin_: R.Int8RefLinear(lin_, "vectorwise")).eval())
results["reference LLM.int8 (6.0)"] = cos(R.swap_linears(model64, lambda lin_: R.Int8RefLinear(lin_, "llm_int8", 6.0)).eval())
for t in (0.0, 6.0):
    results[f"bnb Linear8bitLt threshold {t}"] = cos(R.swap_linears(model64, lambda lin_, t=t: R.bnb_int8(lin_, t)).eval())

# %% slideshow={"slide_type": "-"}
for qt in ("nf4", "fp4"):
    results[f"bnb Linear4bit {qt.upper()} (block 64, double quant)"] = cos(
        R.swap_linears(model64, lambda lin_, qt=qt: R.bnb_4bit(lin_, qt, 64, True)).eval())
display(Markdown("| model | mean cosine to the float model |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4f} |" for k, v in results.items())))
assert results["bnb Linear8bitLt threshold 6.0"] > results["torch dynamic int8 Linear (per-tensor int8)"]
assert results["reference LLM.int8 (6.0)"] > results["reference per-tensor int8"]
assert results["reference LLM.int8 (6.0)"] == results["bnb Linear8bitLt threshold 6.0"]  # the same embeddings, bit for bit
assert results["reference vector-wise int8"] == results["bnb Linear8bitLt threshold 0.0"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4-bit: NF4 vs FP4, block size, compute dtype

# %% slideshow={"slide_type": "-"}
linears = {n: m.weight.detach() for n, m in model64.encoder.named_modules() if isinstance(m, torch.nn.Linear)}
mse = {}
for qt in ("nf4", "fp4"):
    num = sum((R.dequantize_4bit(*R.quantize_4bit(w.float(), 64, qt), w.shape, 64, qt) - w).pow(2).sum() for w in linears.values())
    mse[qt] = (num / sum(w.numel() for w in linears.values())).item()
print(f"weight MSE over {len(linears)} encoder Linear weights, block 64: NF4 {mse['nf4']:.4e}  FP4 {mse['fp4']:.4e}")
assert mse["nf4"] < mse["fp4"]

# %% slideshow={"slide_type": "subslide"}
rows = []
for qt in ("nf4", "fp4"):
    for bs in (32, 64, 128):
        rows.append((qt.upper(), bs, "float32", cos(R.swap_linears(model64, lambda lin_, qt=qt, bs=bs: R.bnb_4bit(lin_, qt, bs, True)).eval())))
rows.append(("NF4", 64, "bfloat16", cos(R.swap_linears(model64, lambda lin_: R.bnb_4bit(lin_, "nf4", 64, True, torch.bfloat16)).eval())))
display(Markdown("| code | block | compute dtype | mean cosine |\n|---|---|---|---|\n"
                 + "\n".join(f"| {a} | {b} | {c} | {d:.4f} |" for a, b, c, d in rows)))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Double quantization: bits per parameter, measured

# %% slideshow={"slide_type": "-"}
def weight_bits(model_4bit, tables):
    mods = [m for m in model_4bit.encoder.modules() if isinstance(m, bnb.nn.Linear4bit)]
    bits = sum(8 * (R.storage_bytes(m, include_tables=tables) - m.bias.untyped_storage().nbytes()) for m in mods)
    return bits / sum(m.weight.quant_state.shape.numel() for m in mods)
bpp = {}
for dq in (False, True):
    m4 = R.swap_linears(model, lambda lin_, dq=dq: R.bnb_4bit(lin_, "nf4", 64, dq))
    bpp[dq] = (weight_bits(m4, False), weight_bits(m4, True))
n_big = 4096 * 4096
print(f"{'':22s} {'measured':>9s} {'+code tables':>13s} {'formula':>8s}")
for dq in (False, True):
    print(f"{'with' if dq else 'without':7s} double quant  {bpp[dq][0]:9.4f} {bpp[dq][1]:13.4f} {R.bits_per_param_4bit(n_big, 64, dq):8.4f}")
assert bpp[True][0] < bpp[False][0] and bpp[True][1] < bpp[False][1]

# %% [markdown] slideshow={"slide_type": "fragment"}
# Measured from the tensors each `Linear4bit` holds. The code tables (16 floats for NF4, 256 for the
# nested dynamic code) are a fixed cost per layer — visible for MiniLM's small layers, negligible for big ones.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Memory of MiniLM's encoder, measured vs theory

# %% slideshow={"slide_type": "-"}
enc_linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
n_w = sum(m.weight.numel() for m in enc_linears)
n_rows = sum(m.out_features for m in enc_linears)
n_other = sum(p.numel() for p in model.encoder.parameters()) - n_w
theory = {"fp32": 32 * n_w, "fp16": 16 * n_w, "bf16": 16 * n_w, "int8 (LLM.int8)": 8 * n_w + 32 * n_rows,
          "nf4": sum(R.bits_per_param_4bit(m.weight.numel(), 64) * m.weight.numel() for m in enc_linears),
          "nf4 + double quant": sum(R.bits_per_param_4bit(m.weight.numel(), 64, True) * m.weight.numel() for m in enc_linears)}
other_bits = {"fp16": 16 * n_other, "bf16": 16 * n_other}
measured = {"fp32": R.storage_bytes(model.encoder),
            "fp16": R.storage_bytes(R.swap_linears(model, lambda lin_: lin_).encoder.half()),
            "bf16": R.storage_bytes(R.swap_linears(model, lambda lin_: lin_).encoder.bfloat16()),
            "int8 (LLM.int8)": R.storage_bytes(R.swap_linears(model, lambda lin_: R.bnb_int8(lin_, 6.0)).encoder),
            "nf4": R.storage_bytes(R.swap_linears(model, lambda lin_: R.bnb_4bit(lin_, "nf4", 64, False)).encoder, include_tables=False),
            "nf4 + double quant": R.storage_bytes(R.swap_linears(model, lambda lin_: R.bnb_4bit(lin_, "nf4", 64, True)).encoder, include_tables=False)}
lines = ["| format | measured | theory | measured / fp32 |", "|---|---|---|---|"]
for k, v in measured.items():
    t = (theory[k] + other_bits.get(k, 32 * n_other)) / 8
    lines.append(f"| {k} | {fmt_mb(v)} | {fmt_mb(int(t))} | {v / measured['fp32']:.3f} |")
    assert abs(v - t) / t < 1e-6, k
display(Markdown("\n".join(lines)))

# %% [markdown] slideshow={"slide_type": "fragment"}
# Theory = weight bits + scales + everything else (biases, LayerNorm) kept in its own dtype;
# measured = bytes of every parameter, buffer and quantization-state tensor. They agree exactly
# (asserted). The embedding table (outside the encoder) stays fp32 in every variant.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8-bit optimizers: Adam8bit vs Adam

# %% slideshow={"slide_type": "skip"}
split = load_digits_split()
def train(make_opt, dtype=torch.float32, epochs=3, lr=3e-3):
    torch.manual_seed(0)
    net = DigitsCNN().to(dtype)
    opt = make_opt(net.parameters(), lr)
    losses = []
    for epoch in range(epochs):
        for xb, yb in digits_loader(split.x_train, split.y_train, 64, shuffle=True, seed=epoch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xb.to(dtype)), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses, R.optimizer_state_bytes(opt), net, opt
def per_epoch(losses, epochs=3):
    n = len(losses) // epochs
    return [sum(losses[i * n:(i + 1) * n]) / n for i in range(epochs)]
# bitsandbytes as a learner runs it: float32 network, float32 optimizer arithmetic
loss32, bytes32, net32, _ = train(lambda p, lr: torch.optim.Adam(p, lr=lr))
loss8, bytes8, net8, opt8 = train(lambda p, lr: bnb.optim.Adam8bit(p, lr=lr))
# the same comparison in float64: torch's Adam, and 8-bit Adam rebuilt from scratch (uint8 moments, blocks of 256)
adam64, *_ = train(lambda p, lr: torch.optim.Adam(p, lr=lr), torch.float64)
adam8_64, *_ = train(lambda p, lr: R.Adam8bitRef(p, lr=lr), torch.float64)

# %% [markdown] slideshow={"slide_type": "subslide"}
# A training run is a long chain of float operations, and 8-bit moments make it fork easily: one moment that lands on another code changes the next step, and the runs drift apart.
# In float32 the last bit of every step depends on the CPU's kernels; even in float64 a difference in the 8th significant digit of a gradient (another kernel for one op) is enough, over the run's steps, to send some moment to another code.
# So the loss comparison below runs twice — in float64 with torch's Adam and `R.Adam8bitRef` (the algorithm of `Adam8bit`: uint8 moments on the signed and unsigned dynamic codes, one absmax per 256 values, small tensors in full precision, arithmetic in float64), and with bitsandbytes' own float32 optimizer — and its losses are machine-dependent in the 3rd decimal: printed, not compared, with the claim (8-bit Adam tracks Adam, epoch by epoch) asserted as a band.
# The state sizes are exact.

# %% slideshow={"slide_type": "-"}
big = sum(p.numel() for p in net8.parameters() if p.numel() >= 4096)
total = sum(p.numel() for p in net8.parameters())
print(f"optimizer state: Adam {bytes32} B, Adam8bit {bytes8} B -> {100 * bytes8 / bytes32:.1f}%")
print(f"{big} of {total} parameters ({100 * big / total:.1f}%) sit in tensors >= min_8bit_size=4096 and get uint8 states;")
print("the small tensors (biases, BatchNorm, first conv, last layer) keep two float32 moments.")
assert bytes8 <= 0.30 * bytes32

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# Machine-dependent: 8-bit moments fork a run at the smallest difference (measured on one CPU under three kernel
# settings: final 8-bit losses 0.0554-0.0563 in float64, 0.0415-0.0423 for bitsandbytes in float32). Asserted everywhere:
# each epoch's mean loss of 8-bit Adam within 25% of Adam's, and the final losses within 0.02 of each other.
runs = {"float64": (adam64, adam8_64), "bitsandbytes, float32": (loss32, loss8)}
for name, (a32, a8) in runs.items():
    print(f"{name:22s} mean loss per epoch: Adam", " ".join(f"{v:.4f}" for v in per_epoch(a32)),
          "| 8-bit", " ".join(f"{v:.4f}" for v in per_epoch(a8)),
          f"| final (last 10 steps): Adam {sum(a32[-10:]) / 10:.4f}, 8-bit {sum(a8[-10:]) / 10:.4f}")
    assert all(abs(e8 - e32) <= 0.25 * e32 for e8, e32 in zip(per_epoch(a8), per_epoch(a32)))
    assert abs(sum(a8[-10:]) - sum(a32[-10:])) / 10 <= 0.02

# %% slideshow={"slide_type": "subslide"}
P.plot_loss_curves({"Adam (float32)": loss32, "bnb Adam8bit (float32)": loss8, "Adam (float64)": adam64,
                    "8-bit Adam reference (float64)": adam8_64}, title="digits CNN, 3 epochs, same seed and batches")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Where the GPU path differs
#
# *From bitsandbytes' documentation and CUDA sources, not measured here (no GPU in this run):* on CUDA,
# `Linear8bitLt` runs int8 GEMMs through cuBLASLt with fused quantize kernels, `Linear4bit` has fused 4-bit GEMV
# kernels for batch-1 inference, and the 8-bit optimizers run as one fused kernel per step; the CUDA 8-bit quantizer
# searches the code per value instead of through the CPU's 65,536-point grid, so its codes may differ from the ones
# shown here by a step.
#
# *Measured on this CPU:* which int8 matmul bitsandbytes 0.50 picks, read from its CPU backend (it depends on the
# CPU, so the output is not compared):

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
# Machine-dependent: bitsandbytes registers torch._int_mm as its CPU int8 matmul only where torch reports AVX-512.
# Asserted everywhere: whichever it picks, its result is the exact int32 product of the codes used above.
import bitsandbytes.backends.cpu.ops as bnb_cpu
capability = torch.backends.cpu.get_cpu_capability()
print(f"torch CPU capability {capability}: bitsandbytes' int8 matmul is "
      + ("torch._int_mm (exact int32)" if bnb_cpu._has_avx512 else
         "the default backend's float32 matmul of the int8 codes (exact while every |sum| < 2^24, checked above)"))
acc_bnb = torch.ops.bitsandbytes.int8_linear_matmul(x_q, w_q)
assert torch.equal(acc_bnb, x_q.int() @ w_q.int().t())

# %% slideshow={"slide_type": "-"}
if torch.cuda.is_available():
    lin_gpu = torch.nn.Linear(384, 256).cuda().half()
    xg = torch.randn(64, 384, device="cuda", dtype=torch.float16)
    xg[:, 3] *= 30
    layer = R.bnb_int8(lin_gpu.float().cpu(), 6.0).cuda().eval()
    with torch.no_grad():
        y_gpu = layer(xg).float().cpu()
        y_ref = R.llm_int8_linear(xg.float().cpu(), lin_gpu.weight.float().cpu(), lin_gpu.bias.float().cpu(), 6.0)
    print("GPU Linear8bitLt vs CPU reference, max rel diff:", ((y_gpu - y_ref).abs().max() / y_ref.abs().max()).item())
else:
    print("skipped: torch.cuda.is_available() is False — no GPU here, so the CUDA kernels cannot be exercised")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: threshold and block size on a real layer

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.bnb import threshold_blocksize_widget
threshold_blocksize_widget({n: (acts[n], model64.get_submodule(n).weight.detach()) for n in names})

# %% slideshow={"slide_type": "subslide"}
from helpers.plotting import new_figure
fig, axes = new_figure(9, 3.0, ncols=3)
for ax, t in zip(axes, (0.0, 3.0, 6.0)):
    col = acts[worst].abs().amax(0)
    out = col >= t if t > 0 else torch.zeros_like(col, dtype=torch.bool)
    rel, frac, _, _ = R.layer_errors(acts[worst], model64.get_submodule(worst).weight.detach(), t, 64)
    P.column_bars(ax, col, out)
    ax.set_yscale("log")
    ax.set_title(f"threshold {t:g}: {100 * frac:.1f}% float cols\nrel. error {rel:.4f}", fontsize=9)
fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls

# %% [markdown] slideshow={"slide_type": "subslide"}
# **1. A swapped `Linear8bitLt` is in training mode** — and on CPU training mode takes `MatMul8bitFp` (dequantize the weights, float matmul): no activation is quantized, so the threshold does nothing.

# %% slideshow={"slide_type": "-"}
base = model64.eval()
before = {t: R.swap_linears(base, lambda lin_, t=t: R.bnb_int8(lin_, t)) for t in (0.0, 6.0)}
print("swapped module training?", before[6.0].encoder.layer[0].output.dense.training)
c_before = {t: cos(m) for t, m in before.items()}
print(f"before .eval(): threshold 0 -> {c_before[0.0]:.6f}, threshold 6 -> {c_before[6.0]:.6f}")
c_after = {t: cos(m.eval()) for t, m in before.items()}
print(f"after  .eval(): threshold 0 -> {c_after[0.0]:.6f}, threshold 6 -> {c_after[6.0]:.6f}")
assert c_before[0.0] == c_before[6.0] and c_after[0.0] != c_after[6.0]

# %% [markdown] slideshow={"slide_type": "subslide"}
# **2. `numel()` of packed 4-bit weights** counts bytes, not parameters: two 4-bit codes live in one uint8.

# %% slideshow={"slide_type": "-"}
m4 = R.swap_linears(model, lambda lin_: R.bnb_4bit(lin_, "nf4", 64, True))
wrong = sum(p.numel() for p in m4.encoder.parameters())
right = sum(p.numel() for p in model.encoder.parameters())
print(f"numel() says {wrong:,} parameters; the encoder has {right:,}")
print(f"numel() x 4 bytes = {fmt_mb(4 * wrong)}; real storage = {fmt_mb(R.storage_bytes(m4.encoder))}")
assert wrong < right


# %% [markdown] slideshow={"slide_type": "subslide"}
# **3. Compute dtype.** fp16 input into a `Linear4bit` with the default float32 compute dtype logs a warning (bitsandbytes#1177); pass `compute_dtype`.

# %% slideshow={"slide_type": "-"}
class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []
    def emit(self, record):
        self.messages.append(record.getMessage())
lin = torch.nn.Linear(384, 64)
for compute_dtype in (None, torch.float16):
    cap, log = Capture(), logging.getLogger("bitsandbytes")
    log.addHandler(cap)
    log.setLevel(logging.WARNING)
    R.bnb_4bit(lin, "nf4", 64, True, compute_dtype).eval()(torch.randn(8, 384).half())
    log.removeHandler(cap)
    log.setLevel(logging.ERROR)
    print(f"compute_dtype={compute_dtype}: {cap.messages or 'no warning'}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **4. The CPU fast path changes storage.** On CPUs with AVX512-BF16, the first eval call repacks a `Linear4bit` weight and *undoes double quantization* (absmax back to bf16) — hardware-dependent, so this output is not compared by nbval.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from bitsandbytes.functional import has_avx512bf16
layer = R.bnb_4bit(torch.nn.Linear(1536, 384), "nf4", 64, True, portable=False).eval()
n = 1536 * 384
b0 = 8 * (R.storage_bytes(layer, include_tables=False) - 384 * 4) / n
with torch.no_grad():
    layer(torch.randn(4, 1536))
b1 = 8 * (R.storage_bytes(layer, include_tables=False) - 384 * 4) / n
print(f"AVX512-BF16: {has_avx512bf16()}; bits/param before first call {b0:.4f}, after {b1:.4f}")


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary

# %% slideshow={"slide_type": "-"}
cos_llm, cos_pt = results["reference LLM.int8 (6.0)"], results["reference per-tensor int8"]
display(Markdown("\n".join([
    f"- Blockwise absmax gives every block its own scale: on the MiniLM weight the NF4 MSE grows "
    f"{errors['NF4'][-1] / errors['NF4'][0]:.1f}x from block {blocksizes[0]} to {blocksizes[-1]}, at 32 bits of scale per block.",
    "- LLM.int8() = row-wise int8 on both operands + int32 accumulation + a float path for the few outlier feature "
    "columns; rebuilt here bit-exactly against `Linear8bitLt`, and the blockwise 8-bit and NF4/FP4 quantizers against "
    "bitsandbytes' CPU kernels.",
    f"- On MiniLM, vector-wise int8 beats naive per-tensor int8 on all {len(layer_err)} FFN output layers, and LLM.int8 "
    f"reaches embedding cosine {cos_llm:.4f} against {cos_pt:.4f} for per-tensor int8.",
    f"- NF4 beats FP4 on these weights (MSE {mse['nf4']:.2e} vs {mse['fp4']:.2e}); double quantization cuts the "
    f"constants from {bpp[False][0] - 4:.3f} to {bpp[True][0] - 4:.3f} bits per parameter — measured from real storage, "
    "never `numel()`.",
    f"- 8-bit Adam keeps the optimizer state at {100 * bytes8 / bytes32:.1f}% of Adam's (uint8 moments for tensors of at "
    f"least 4096 elements), with a loss that tracks 32-bit Adam epoch by epoch.",
])))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# 1. Write `my_absmax_int8_blockwise(x, blocksize)`: uniform symmetric int8 with one absmax per block of
#    `blocksize` (it divides `x.numel()`), returning the dequantized values
#    `x_hat = round(127 x / absmax_block) * absmax_block / 127` in x's shape.
# 2. Write `my_dq_bits(numel, blocksize)`: bits per parameter of NF4 with double quantization — 4-bit codes
#    (`ceil(numel / 2)` bytes), one 8-bit constant per block of `blocksize` (the last block may be shorter), one
#    float32 absmax per 256 constants and one float32 offset.

# %% slideshow={"slide_type": "-"}
def my_absmax_int8_blockwise(x, blocksize):
    raise NotImplementedError  # your code here

def my_dq_bits(numel, blocksize):
    raise NotImplementedError  # your code here

R.check_absmax_int8_blockwise(my_absmax_int8_blockwise)
R.check_dq_bits(my_dq_bits)


# %% [markdown] slideshow={"slide_type": "skip"}
# ### Solution

# %% slideshow={"slide_type": "skip"}
def solution_absmax_int8_blockwise(x, blocksize):
    blocks = x.reshape(-1, blocksize)
    absmax = blocks.abs().amax(1, keepdim=True)
    return (torch.round(blocks / absmax * 127) * absmax / 127).reshape(x.shape)

def solution_dq_bits(numel, blocksize):
    blocks = -(-numel // blocksize)
    return (8 * -(-numel // 2) + 8 * blocks + 32 * -(-blocks // 256) + 32) / numel

assert R.check_absmax_int8_blockwise(solution_absmax_int8_blockwise)
assert R.check_dq_bits(solution_dq_bits)
