# %% [markdown] slideshow={"slide_type": "slide"}
# # 03 · Uniform vs non-uniform quantization
#
# Codebooks, power-of-two levels, k-means, NF4 derived from the normal distribution, FP4 — and which
# grids hardware can multiply directly (integers and small floats) and which need a table lookup.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))
import inspect
import warnings

import numpy as np
import torch
from IPython.display import Markdown, display

import logging

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # quiet the "no optional CPU kernel package" notice
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import bitsandbytes.functional as bnbF
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

from helpers import nonuniform as nu
from helpers.affine import dequantize, fake_quantize_tensor, quantize_tensor
from helpers.models import evaluate, load_digits_cnn, seed_everything
from helpers.data import load_digits_split
from helpers.nonuniform import METHOD_LABELS
from helpers.plotting.nonuniform import image_grid, levels_over_histograms
from helpers.measure import serialized_size

torch.set_num_threads(2)
seed_everything(0)
print("torch threads:", torch.get_num_threads())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - See the difference between a **uniform grid** (`x_hat = scale · (q - zero_point)`) and a **codebook** (`x_hat = levels[q]`).
# - Build the non-uniform codebooks used in practice: power-of-two, k-means (Lloyd), **NF4** (derived, then checked against bitsandbytes) and **FP4**.
# - Measure where each one wins and where it loses — on Gaussian and on heavy-tailed weights, per block.
# - Understand which grids hardware multiplies natively (integers, fp8/fp4 floats) and which need a lookup, and what a codebook really costs in storage.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea
#
# A $b$-bit quantizer stores one of $2^b$ codes per value. **Uniform**: the code's value is affine in the code,
# $\hat x = s\,(q - z)$, so the levels are evenly spaced. **Non-uniform (codebook)**: any sorted table of
# levels $c_0 < c_1 < \dots$; quantize to the nearest level and look it up again:
#
# $$q = \arg\min_i |x - c_i|, \qquad \hat x = c_q .$$
#
# Place more levels where the data is dense and the expected error $\mathbb E[(x-\hat x)^2]$ drops —
# but $\hat x$ is no longer a multiple of one scale.

# %% [markdown] slideshow={"slide_type": "fragment"}
# The simplest code book is a hand-written rule (the seminar's example): negative → 0, from 0 up to 1 → 1, 1 and above → 2.

# %% slideshow={"slide_type": "-"}
x = torch.tensor([-2.5, -0.1, 0.0, 0.4, 0.99, 1.0, 3.7])
print("x    :", [round(v, 2) for v in x.tolist()])
print("codes:", nu.rule_codebook(x).tolist())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand: 8 weights, 2 bits
#
# Four levels either way: an evenly spaced min–max grid, or k-means levels fitted to these 8 values.

# %% slideshow={"slide_type": "-"}
x8 = torch.tensor([-0.9, -0.12, -0.05, -0.01, 0.02, 0.06, 0.15, 1.2])
x_uni = fake_quantize_tensor(x8, bits=2)  # affine grid, 4 codes
km = nu.kmeans_levels(x8, bits=2)  # 4 fitted levels
x_km = nu.codebook_fake_quantize(x8, km)
print("k-means levels:", [round(v, 4) for v in km.tolist()])
print(f"{'x':>7} {'uniform':>8} {'k-means':>8}")
for a, b, c in zip(x8.tolist(), x_uni.tolist(), x_km.tolist()):
    print(f"{a:7.2f} {b:8.4f} {c:8.4f}")
mse_uni, mse_km = float(((x_uni - x8) ** 2).mean()), float(((x_km - x8) ** 2).mean())
print(f"MSE uniform {mse_uni:.4g}   MSE k-means {mse_km:.4g}")
assert mse_km < mse_uni

# %% slideshow={"slide_type": "fragment"}
small = x8.abs() < 0.5  # the six weights near zero
n_uni, n_km = torch.unique(x_uni[small]).numel(), torch.unique(x_km[small]).numel()
display(
    Markdown(
        f"The uniform grid spends its four levels evenly on [{float(x8.min()):.1f}, {float(x8.max()):.1f}], so the "
        f"{int(small.sum())} small weights all land on {n_uni} level; k-means moves levels to where the values are and "
        f"gives them {n_km}."
    )
)
assert n_uni == 1 and n_km == 2

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation
#
# Nearest level = `torch.bucketize` on the midpoints between levels (ties go to the lower level, as in bitsandbytes).
# Below, unedited: the full source of `codebook_quantize` and of the private `_nearest` it calls.

# %% slideshow={"slide_type": "-"}
print(inspect.getsource(nu.codebook_quantize))
print(inspect.getsource(nu._nearest))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### k-means, written out (Lloyd's algorithm)
#
# Start from any levels, then repeat two steps: **assign** every value to its nearest level (the codebook quantizer
# above), and **move** every level to the mean of the values assigned to it. Neither step can raise the MSE, so it
# falls until nothing moves. Here on the 8 weights above, from two starts:


# %% slideshow={"slide_type": "-"}
def lloyd(x, levels, steps):
    """`steps` rounds of Lloyd's k-means on the values of x, from the starting levels; float32 levels out."""
    x64 = x.reshape(-1).double()
    levels = levels.double()
    for _ in range(steps):
        q = nu.codebook_quantize(x, levels.float()).long()  # 1. assign each value to its nearest level
        count = torch.bincount(q, minlength=len(levels))
        total = torch.bincount(q, weights=x64, minlength=len(levels))
        levels = torch.where(count > 0, total / count.clamp(min=1), levels)  # 2. move each level to its cluster mean
    return levels.float()


starts = {"evenly spaced": torch.linspace(float(x8.min()), float(x8.max()), 4), "first four values": x8[:4]}
ends = {}
for label, lv in starts.items():
    trace = []
    for _ in range(6):
        trace.append(float(((nu.codebook_fake_quantize(x8, lv) - x8).double() ** 2).mean()))
        lv = lloyd(x8, lv, 1)
    print(
        f"{label:17s}: MSE " + " -> ".join(f"{m:.4f}" for m in trace) + f"; levels {[round(v, 4) for v in lv.tolist()]}"
    )
    assert all(b <= a for a, b in zip(trace, trace[1:])) and trace[-1] < trace[0]  # Lloyd never raises the MSE
    assert torch.equal(lloyd(x8, lv, 1), lv)  # a fixed point: every level is the mean of its cluster (or empty)
    ends[label] = trace[-1]
    if label == "evenly spaced":
        empty = int((torch.bincount(nu.codebook_quantize(x8, lv).long(), minlength=4) == 0).sum())
display(
    Markdown(
        f"Both runs stop at a fixed point, at MSE {ends['evenly spaced']:.4f} and {ends['first four values']:.4f}; "
        f"from its quantile start the helper reached {mse_km:.4f} above. Lloyd finds a *local* minimum, and which one "
        "depends on the start (the evenly spaced start even keeps a level that no value is nearest to)."
    )
)
assert min(ends.values()) > mse_km and empty >= 1  # worse local minima than the quantile start; an unused level

# %% [markdown] slideshow={"slide_type": "subslide"}
# The helper `kmeans_fit` runs the same loop faster: it sorts the values once and keeps prefix sums of $x$ and $x^2$,
# so each step finds the cluster boundaries with `searchsorted` and the cluster sums as differences of prefix sums
# (O(k log n) per step instead of O(n); source below, collapsed in the slides). Same start, same number of steps, on
# 2^14 Gaussian and Student-t values with 16 levels:

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(1)
lloyd_data = {
    "Gaussian": torch.randn(2**14, generator=g),
    "Student-t ν=3": torch.randn(2**14, generator=g) / (torch.randn(3, 2**14, generator=g).pow(2).mean(0)).sqrt(),
}
for dname, xd in lloyd_data.items():
    fast = nu.kmeans_fit(xd, 16)  # the helper, to its own stopping rule
    start = nu.kmeans_fit(xd, 16, max_iter=0).levels  # its starting levels (quantiles)
    mine = lloyd(xd, start, fast.n_iter)
    print(f"{dname:14s}: {fast.n_iter} steps, same float32 levels bit for bit: {torch.equal(mine, fast.levels)}")
    assert torch.equal(mine, fast.levels)

# %% [markdown] slideshow={"slide_type": "fragment"}
# The float64 sums are added in a different order (one running sum per cluster here, differences of prefix sums in
# the helper), so they can differ in their last bits; that is far below float32's resolution, and the levels, rounded
# to float32, agree to the last bit on both data sets. (A float64 mean lying exactly on a float32 rounding boundary
# could still flip one level by one float32 step; it does not happen here.)

# %% slideshow={"slide_type": "skip"}
src = inspect.getsource(nu.kmeans_fit)
print(src[src.index("    xs = ") : src.index("    out = best")])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Grids over real weights
#
# Weights of the digits CNN and of MiniLM, each block of 64 divided by its absmax (the bitsandbytes layout),
# with four 4-bit level sets drawn on top.

# %% slideshow={"slide_type": "-"}
cnn = load_digits_cnn()
w_cnn = cnn.features[7].weight.detach()  # conv 32 -> 64, 3x3
from helpers.language import load_minilm

minilm, tokenizer = load_minilm()
w_lm = minilm.encoder.layer[0].intermediate.dense.weight.detach()  # 1536 x 384
tensors = {"CNN conv3": w_cnn, "MiniLM L0 FFN": w_lm}
for name, w in tensors.items():
    print(f"{name:14s} shape {tuple(w.shape)}  {w.numel():7d} weights  absmax/std {float(w.abs().max() / w.std()):.2f}")

# %% slideshow={"slide_type": "subslide"}
panels, rows = [], []
for name, w in tensors.items():
    normalised, _ = nu._block_absmax_normalise(w.reshape(-1), 64)
    for method in ("uniform", "pow2", "kmeans", "nf"):
        res = nu.nonuniform_fake_quantize(w, method, 4, 64)
        mse = float(((res.x_hat - w) ** 2).mean())
        panels.append((f"{name}: {METHOD_LABELS[method]}", normalised, res.levels))
        rows.append((name, METHOD_LABELS[method], mse))
levels_over_histograms(panels, ncols=4, row_height=2.0)

# %% slideshow={"slide_type": "-"}
for name in tensors:
    sub = [(m, e) for n, m, e in rows if n == name]
    best = min(sub, key=lambda r: r[1])
    print(f"{name:14s} " + "  ".join(f"{m}: {e:.3e}" for m, e in sub) + f"   -> lowest: {best[0]}")

# %% [markdown] slideshow={"slide_type": "fragment"}
# Both histograms are bell-shaped and peaked at 0 after block normalisation: the uniform grid wastes its outer
# levels, power-of-two crowds too many levels into the centre, NF4 and k-means follow the density.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## NF4, derived step by step
#
# QLoRA's NormalFloat: levels at **evenly spaced quantiles of N(0, 1)**, with an exact zero. QLoRA motivates this as
# equal expected mass per level; how far from equal the occupancy really is after blockwise absmax scaling is measured
# after the bitsandbytes check below.

# %% [markdown] slideshow={"slide_type": "fragment"}
# 1. With $n = 16$ codes, the outermost quantile cannot be $\Phi^{-1}(1) = \infty$: use the offset
#    $\delta = \tfrac12\big[(1 - \tfrac{1}{2\cdot 15}) + (1 - \tfrac{1}{2\cdot 16})\big]$.
# 2. 8 positive levels $\Phi^{-1}(p)$ for $p$ evenly spaced from $\delta$ down to 0.5 (0.5 itself dropped);
#    7 negative levels the same way with 8 points; then add 0.
# 3. Sort and divide by the largest, so the ends are exactly −1 and +1.

# %% slideshow={"slide_type": "subslide"}
offset = 0.5 * ((1 - 1 / (2 * 15)) + (1 - 1 / (2 * 16)))
print(f"offset = {offset:.7f}")
pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8 values
neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7 values
nf4 = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
nf4 = (nf4 / nf4.max()).float()
print(np.array2string(nf4.numpy(), precision=4, max_line_width=100))

# %% slideshow={"slide_type": "fragment"}
bnb_nf4 = bnbF.get_4bit_type("nf4", device="cpu")
diff = float((nf4 - bnb_nf4).abs().max())
print(f"max |derived - bitsandbytes| = {diff:.2e}")
assert torch.allclose(nf4, bnb_nf4, atol=1e-4, rtol=0)
assert torch.equal(nf4, nu.nf4_levels())
# the ends are symmetric (both sides start at the same offset δ), the inside is not: one more positive level
assert nf4[0] == -1 and int((nf4 > 0).sum()) == int((nf4 < 0).sum()) + 1

# %% [markdown] slideshow={"slide_type": "subslide"}
# **FP4** is a tiny float: 1 sign, 2 exponent, 1 mantissa bit (e2m1). Its magnitudes are 0, 0.5, 1, 1.5, 2, 3, 4, 6,
# divided by 6. bitsandbytes' `fp4` table is built differently — compare:

# %% slideshow={"slide_type": "-"}
e2m1 = nu.fp4_e2m1_levels()
bnb_fp4 = bnbF.get_4bit_type("fp4", device="cpu")
assert torch.equal(nu.bnb_fp4_code(), bnb_fp4)  # our construction of bnb's table, same index order
bnb_sorted = torch.unique(bnb_fp4)  # +0 and -0 are one level
print("e2m1 (OCP):", np.array2string(e2m1.numpy(), precision=4, max_line_width=110))
print("bnb fp4   :", np.array2string(bnb_sorted.numpy(), precision=4, max_line_width=110))
differ = (e2m1 - bnb_sorted).abs() > 1e-7
print("levels that differ:", e2m1[differ].tolist(), "vs", bnb_sorted[differ].tolist())
assert differ.sum() == 2

# %% [markdown] slideshow={"slide_type": "fragment"}
# Only the smallest nonzero magnitude differs: bitsandbytes' subnormal is far closer to zero than e2m1's.
# The lesson uses the standard e2m1 levels; the cross-check below uses bitsandbytes' own table.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Check against bitsandbytes' `quantize_4bit`
#
# Blockwise absmax (block 64) on a real MiniLM weight: our codes vs bitsandbytes' packed nibbles.

# %% slideshow={"slide_type": "-"}
packed, state = bnbF.quantize_4bit(w_lm, blocksize=64, quant_type="nf4")
nibbles = torch.stack([packed.reshape(-1) >> 4, packed.reshape(-1) & 15], 1).reshape(-1)
q, absmax = nu.blockwise_absmax_codebook(w_lm, bnb_nf4, 64)
x_hat = nu.blockwise_codebook_dequantize(q, absmax, bnb_nf4, 64, w_lm.shape)
assert torch.equal(q, nibbles) and torch.equal(absmax, state.absmax)
assert torch.equal(nu.pack_codes(q, 4), packed.reshape(-1))
assert torch.equal(x_hat, bnbF.dequantize_4bit(packed, state))
q_derived, _ = nu.blockwise_absmax_codebook(w_lm, nu.nf4_levels(), 64)
print("codes equal:", torch.equal(q, nibbles), "| derived-table codes equal:", torch.equal(q_derived, nibbles))

# %% [markdown] slideshow={"slide_type": "fragment"}
# Bit-exact: same absmax, same codes, same bytes, same dequantized floats. The match needs bitsandbytes' arithmetic:
# scale by `x * (1/absmax)` (a reciprocal then a multiply, not a division), clamp to [-1, 1], and send ties to the
# lower level. With our derived table the codes agree here too; only a value within ~1e-7 of a midpoint could flip.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Are NF4's codes equally used?
#
# Fraction of weights on each NF4 code after blockwise absmax (block 64), on the two real weights and on seeded
# Gaussian data. Equal mass would put 1/16 of the weights on every code.

# %% slideshow={"slide_type": "-"}
occ_data = {**tensors, "Gaussian N(0,1)": torch.randn(2**16, generator=torch.Generator().manual_seed(0))}
occupancy = {}
for name, w in occ_data.items():
    q_occ, _ = nu.blockwise_absmax_codebook(w, nu.nf4_levels(), 64)
    occupancy[name] = torch.bincount(q_occ.long(), minlength=16).double() / q_occ.numel()
print(f"{'code':>4} {'level':>7} " + " ".join(f"{name:>16s}" for name in occupancy))
for i, lv in enumerate(nu.nf4_levels().tolist()):
    print(f"{i:4d} {lv:7.4f} " + " ".join(f"{100 * float(o[i]):15.1f}%" for o in occupancy.values()))
gauss = occ_data["Gaussian N(0,1)"][: 2**16].reshape(-1, 64)
absmax_sigma = float(gauss.abs().amax(1).double().mean())
end_sigma = float(torch.special.ndtri(torch.tensor(nu.nf4_offset(4), dtype=torch.float64)))
for name, o in occupancy.items():
    assert float(o.max() / o.min()) > 2, name  # far from equal mass on every tensor

# %% slideshow={"slide_type": "fragment"}
zero_idx = int(torch.nonzero(nu.nf4_levels() == 0)[0])
spread = "; ".join(
    f"{name}: {100 * float(o.min()):.1f}% to {100 * float(o.max()):.1f}%" for name, o in occupancy.items()
)
display(
    Markdown(
        f"The levels are **not** equally used after block absmax: per-code occupancy ranges {spread} (equal mass: {100 / 16:.2f}%). "
        f"Two reasons. The derivation puts ±1 at the quantile {end_sigma:.3f}σ, but a block of 64 Gaussian values "
        f"has a mean absmax of {absmax_sigma:.2f}σ, so after division the data is narrower than the levels assume and "
        "the centre codes fill up while the outer ones starve. And every block's absmax lands exactly on ±1, "
        "so at least 1/64 of the weights sits on an end code whatever the distribution. "
        "The zero code alone holds "
        + ", ".join(f"{100 * float(o[zero_idx]):.1f}% ({name})" for name, o in occupancy.items())
        + "."
    )
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## MSE at 2, 3, 4 bits
#
# Relative MSE $\mathrm{MSE}/\mathrm{Var}(x)$ with blockwise absmax scaling, on Gaussian weights and on heavy-tailed
# Student-t (ν = 3) weights. *affine* is the min–max uniform grid per block (scale and zero-point per block);
# *k-means* fits one 2^b-level codebook to the normalised values (the only method that sees the data).

# %% slideshow={"slide_type": "subslide"}
g = torch.Generator().manual_seed(0)
n = 2**15
dists = {
    "Gaussian": torch.randn(n, generator=g),
    # Student-t with ν = 3: z / sqrt(chi²_3 / 3), from seeded normals
    "Student-t ν=3": torch.randn(n, generator=g) / (torch.randn(3, n, generator=g).pow(2).mean(0)).sqrt(),
}
methods = list(nu.METHODS)
table = nu.mse_table(dists, block_sizes=(32, 64, 256), bits=(2, 3, 4))  # {(data, block, bits, method): rel. MSE}
print(len(table), "configurations measured")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The key rows (the full table: `print(nu.mse_table_markdown(table))`, or the widget below for one real weight):

# %% slideshow={"slide_type": "-"}
key_rows = [(d, bs, bits) for d in dists for bs, bits in ((64, 2), (64, 4), (256, 4))]
display(Markdown("Relative MSE (bold: lowest)\n\n" + nu.mse_table_markdown(table, key_rows)))


def best_fixed(row):
    fixed = {m: v for (d, b, k, m), v in table.items() if (d, b, k) == row and m != "kmeans"}
    return min(fixed, key=fixed.get)


winners = {best_fixed(row) for row in key_rows}
print("best fixed format in these rows:", ", ".join(METHOD_LABELS[m] for m in sorted(winners)))
assert len(winners) >= 3  # no fixed format wins everywhere: the winner changes with bits, block size and tails


# %% slideshow={"slide_type": "subslide"}
def fixed_rank(dname, bs, bits):
    vals = {m: v for (d, b, k, m), v in table.items() if (d, b, k) == (dname, bs, bits) and m != "kmeans"}
    return sorted(vals, key=vals.get)


lines = []
for dname in dists:
    for bs in (32, 64, 256):
        r = fixed_rank(dname, bs, 4)
        nf_pos = r.index("nf") + 1
        beaten_by = ", ".join(METHOD_LABELS[m] for m in r[: nf_pos - 1]) or "nothing"
        km_vs_nf = table[dname, bs, 4, "kmeans"] / table[dname, bs, 4, "nf"]
        lines.append(
            f"- {dname}, block {bs}, 4 bits: NF4 ranks **{nf_pos}** of {len(r)} fixed formats "
            f"(beaten by {beaten_by}); k-means reaches {km_vs_nf:.2f}× NF4's MSE."
        )
nf_losses = [(d, b) for d in dists for b in (32, 64, 256) if fixed_rank(d, b, 4)[0] != "nf"]
nf_wins = [(d, b) for d in dists for b in (32, 64, 256) if fixed_rank(d, b, 4)[0] == "nf"]
display(Markdown("\n".join(lines)))
assert nf_losses, "expected at least one configuration where NF4 is not the best fixed format"


# %% slideshow={"slide_type": "fragment"}
def margin(d, b):
    best = fixed_rank(d, b, 4)[0]
    return f"{METHOD_LABELS[best]}, {100 * (1 - table[d, b, 4, best] / table[d, b, 4, 'nf']):.0f}% lower MSE"


wins = "; ".join(f"{d} block {b}" for d, b in nf_wins) or "none"
losses = "; ".join(f"{d} block {b} ({margin(d, b)})" for d, b in nf_losses)
configs = sorted({k[:3] for k in table})
km_best = sum(min((v, m) for (d, b, k, m), v in table.items() if (d, b, k) == c)[1] == "kmeans" for c in configs)
display(
    Markdown(
        f"At 4 bits NF4 is the best fixed format in: {wins}. It is **not** in: {losses}. "
        "The affine grid adapts to each block's min *and* max and uses all 2^b codes (the absmax formats spend one on "
        "symmetry), paid for with a zero-point per block. "
        f"k-means, fitted to the data, is lowest in {km_best} of {len(configs)} configurations — at the price of storing its codebook."
    )
)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The same comparison at equal storage
#
# The tables above compare formats at equal *code* bits, but they do not store the same number of bits: the affine
# grid keeps a scale **and** a zero-point per block, k-means a fitted codebook. Charge every side value and compare at
# equal **bits per weight**: an fp32 absmax (or scale) per block for every method, plus a zero-point of `bits` bits
# per block for affine (it lies in the code range), plus 2^b fp32 levels per tensor for k-means. For each budget,
# each method gets its best bit width and block size (32 to 512) that fits.

# %% slideshow={"slide_type": "-"}
sweep = {}
for dname, x in dists.items():
    for bs in (32, 64, 128, 256, 512):
        for bits in (2, 3, 4):
            for m in methods:
                if m == "fp4" and bits != 4:
                    continue
                res = nu.nonuniform_fake_quantize(x, m, bits, bs)
                bpw = nu.storage_bits_per_weight(
                    x.numel(),
                    bits,
                    block_size=bs,
                    scale_bits=32 + (bits if m == "affine" else 0),
                    n_codebook=2**bits if m == "kmeans" else 0,
                )
                sweep[dname, m, bits, bs] = (bpw, float(((res.x_hat - x) ** 2).mean() / x.var()))


def best_within(dname, m, budget):
    fits = [
        (mse, bits, bs, bpw)
        for (d, mm, bits, bs), (bpw, mse) in sweep.items()
        if (d, mm) == (dname, m) and bpw <= budget
    ]
    return min(fits) if fits else None


budgets = (2.5, 3.5, 4.5)
text = ""
for dname in dists:
    text += f"**{dname}**: relative MSE (bits, block, bits/weight) of each method's best layout within the budget\n\n"
    text += "| bits/weight ≤ | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |\n"
    text += "|---|" + "---|" * len(methods) + "\n"
    for budget in budgets:
        cells = [best_within(dname, m, budget) for m in methods]
        low = min(c[0] for c in cells if c is not None)
        text += (
            f"| {budget} | "
            + " | ".join(
                "–"
                if c is None
                else (("**%.4f**" if c[0] == low else "%.4f") % c[0]) + f" ({c[1]}, {c[2]}, {c[3]:.2f})"
                for c in cells
            )
            + " |\n"
        )
    text += "\n"
display(Markdown(text))


# %% slideshow={"slide_type": "fragment"}
def nf_vs_affine(dname, budget):
    return best_within(dname, "nf", budget)[0] / best_within(dname, "affine", budget)[0]


def nf_vs_affine_4bit(dname, bs):
    return table[dname, bs, 4, "nf"] / table[dname, bs, 4, "affine"]


eq_bits = "; ".join(f"{d} block {b}: {nf_vs_affine_4bit(d, b):.2f}×" for d in dists for b in (32, 64, 256))
eq_store = "; ".join(f"{d} ≤ {bud} bits/weight: {nf_vs_affine(d, bud):.2f}×" for d in dists for bud in budgets)
display(
    Markdown(
        f"NF4's MSE as a multiple of affine's at equal code bits (4 bits, same block): {eq_bits}. "
        f"At equal storage, NormalFloat's best MSE as a multiple of affine's best: {eq_store}. "
        "Affine's zero-point makes its blocks dearer, so within the same bits per weight it must use larger blocks; "
        "ratios below 1 mean NormalFloat wins at equal storage."
    )
)
assert all(nf_vs_affine(d, 4.5) < 1 for d in dists)  # at 4.5 bits/weight NF4 beats affine on both distributions

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Image demo: a photo at 1–4 bits
#
# Grey intensities of a photo from `sklearn.datasets.load_sample_images`: the uniform grid vs k-means levels
# fitted to the image, with the absolute error images.

# %% slideshow={"slide_type": "subslide"}
from sklearn.datasets import load_sample_images

photo = load_sample_images().images[0]  # 427 x 640 x 3, uint8
img = torch.from_numpy(photo).float().mean(dim=2)[::2, ::2].contiguous()  # grey, 214 x 320
rows_img = {"uniform": [], "k-means": [], "|err| uniform": [], "|err| k-means": []}
stats = []
for bits in (1, 2, 3, 4):
    uni = fake_quantize_tensor(img, bits, signed=False)
    km = nu.codebook_fake_quantize(img, nu.kmeans_levels(img, bits))
    for key, val in (
        ("uniform", uni),
        ("k-means", km),
        ("|err| uniform", (uni - img).abs()),
        ("|err| k-means", (km - img).abs()),
    ):
        rows_img[key].append(val.numpy())
    psnr = lambda a: 10 * np.log10(255**2 / float(((a - img) ** 2).mean()))
    stats.append((bits, psnr(uni), psnr(km)))
for bits, pu, pk in stats:
    print(f"{bits} bits: PSNR uniform {pu:5.2f} dB   k-means {pk:5.2f} dB")
    assert pk >= pu

# %% slideshow={"slide_type": "subslide"}
image_grid(
    list(rows_img.items()),
    [f"{b} bit" + ("s" if b > 1 else "") for b in (1, 2, 3, 4)],
    width=8.0,
    cmaps=["gray", "gray", "magma", "magma"],
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What hardware multiplies directly
#
# With uniform grids, $x \approx s_x q_x$ and $w \approx s_w q_w$, so $x^\top w \approx s_x s_w \sum q_x q_w$:
# an **integer** matmul (int8 × int8 → int32, exact) and one rescale at the end.

# %% slideshow={"slide_type": "subslide"}
torch.manual_seed(0)
X = torch.randn(32, 64)  # activations: m = 32 > 16, k = 64
W = torch.randn(64, 48) * 0.05  # weights: n = 48 (multiples of 8 for _int_mm)
qx, sx, _ = quantize_tensor(X, 8, scheme="symmetric", restricted=True)
qw, sw, _ = quantize_tensor(W, 8, scheme="symmetric", restricted=True)
acc = torch._int_mm(qx, qw)  # int32 accumulation
assert torch.equal(acc.double(), qx.double() @ qw.double())  # integer arithmetic: exact
y_int = acc.float() * (sx * sw)  # one rescale
y_deq = dequantize(qx, sx, 0) @ dequantize(qw, sw, 0)  # float matmul of dequantized values
print(acc.dtype, f"| max |y_int - y_deq| / max|y| = {float((y_int - y_deq).abs().max() / y_deq.abs().max()):.1e}")

# %% slideshow={"slide_type": "subslide"}
levels = nu.kmeans_levels(W, 4)  # a 16-level codebook for W
idx = nu.codebook_quantize(W, levels)
y_lookup = dequantize(qx, sx, 0) @ nu.codebook_dequantize(idx, levels)  # look up first, then a float matmul
# the codes are not proportional to the values: fit levels ≈ a·i + b and see what is left
i = torch.arange(16, dtype=torch.float64)
A = torch.stack([i, torch.ones(16, dtype=torch.float64)], 1)
coef = torch.linalg.lstsq(A, levels.double().unsqueeze(1)).solution.squeeze()
resid = float((A @ coef - levels.double()).abs().max() / (levels[1:] - levels[:-1]).min())
y_codes = dequantize(qx, sx, 0) @ (coef[0].float() * idx.float() + coef[1].float())  # pretend the codes were uniform
print(f"best affine fit of the codebook misses by {resid:.1f} of its smallest gap")
print(
    f"codes used as integers: rel. error {float((y_codes - y_lookup).norm() / y_lookup.norm()):.3f} vs the lookup result"
)
assert resid > 0.5

# %% [markdown] slideshow={"slide_type": "fragment"}
# A codebook's codes are only names: no integer arithmetic on them gives the product. Every weight must first be
# looked up (a gather), then multiplied in floating point — which is exactly what bitsandbytes' 4-bit layers do
# (dequantize, then a float matmul).

# %% [markdown] slideshow={"slide_type": "subslide"}
# "Uniform" is not the dividing line, though: recent tensor cores multiply **non-uniform floating-point codes**
# natively. NVIDIA Hopper (H100) has FP8 tensor cores for E4M3 and E5M2 (NVIDIA H100 Tensor Core GPU Architecture
# whitepaper, 2022; formats in Micikevicius et al., *FP8 Formats for Deep Learning*, arXiv:2209.05433); Blackwell adds
# FP4 and FP6, including NVFP4 (e2m1 values with an FP8 E4M3 scale per 16 values) and the OCP microscaling formats
# (*OCP Microscaling Formats (MX) Specification v1.0*, 2023: MXFP8/MXFP6/MXFP4, 32 values sharing one power-of-two
# E8M0 scale). The FP4 levels of this lesson are exactly e2m1. What such hardware cannot do is multiply a *fitted*
# codebook (k-means, or NF4's normal quantiles): the dividing line is a format with fixed arithmetic
# (sign · 2^exponent · mantissa, or an integer) versus a table lookup. PyTorch exposes FP8 as `torch.float8_e4m3fn`
# (and `torch._scaled_mm` for the FP8 GEMM on such GPUs). Its values are far from evenly spaced, yet the product of two
# of them needs no table: signs multiply, exponents add, the 4-bit significands multiply into at most 8 bits, exact
# in float32:

# %% slideshow={"slide_type": "-"}
fp8_values = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
fp8_pos = torch.unique(fp8_values[torch.isfinite(fp8_values) & (fp8_values > 0)])
fp8_gaps = fp8_pos[1:] - fp8_pos[:-1]
print(f"float8_e4m3fn: {fp8_pos.numel()} positive values from {float(fp8_pos[0])} to {float(fp8_pos[-1])}")
print(f"gap between neighbours: {float(fp8_gaps.min())} near zero, {float(fp8_gaps.max())} at the top (non-uniform)")
fp8_finite = fp8_values[torch.isfinite(fp8_values)]
prod32 = fp8_finite.reshape(-1, 1) * fp8_finite.reshape(1, -1)  # every pair of e4m3 values, float32 multiply
exact = torch.equal(prod32.double(), fp8_finite.double().reshape(-1, 1) * fp8_finite.double().reshape(1, -1))
print(f"all {prod32.numel()} products of two e4m3 values exact in float32: {exact}")
assert fp8_gaps.max() / fp8_gaps.min() > 1000 and exact

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Storage accounting, measured
#
# Bits per weight = (index bits + per-block scales + codebook) / number of weights, from the bytes actually stored.

# %% slideshow={"slide_type": "subslide"}
n = w_lm.numel()


def bits_per_weight(*tensors):
    return 8 * sum(t.numel() * t.element_size() for t in tensors) / n


q_nf, am_nf = nu.blockwise_absmax_codebook(w_lm, nu.nf4_levels(), 64)
km_lv = nu.kmeans_levels(w_lm, 4)
q_km = nu.codebook_quantize(w_lm, km_lv)
q8, s8, _ = quantize_tensor(w_lm, 8, scheme="symmetric", restricted=True)
per_block_codebooks = torch.zeros(-(-n // 64), 16)  # k-means with its own 16 fp32 levels per block
layouts = {
    "fp32": ((w_lm,), 32),
    "int8 per tensor (+1 scale)": ((q8, s8.reshape(1)), 8 + 32 / n),
    "NF4 block 64 (+absmax)": ((nu.pack_codes(q_nf, 4), am_nf), nu.storage_bits_per_weight(n, 4, block_size=64)),
    "k-means 4 bit per tensor (+16 levels)": (
        (nu.pack_codes(q_km, 4), km_lv),
        nu.storage_bits_per_weight(n, 4, n_codebook=16),
    ),
    "k-means 4 bit, codebook per block 64": (
        (nu.pack_codes(q_nf, 4), per_block_codebooks),
        nu.storage_bits_per_weight(n, 4, n_codebook=16 * (n // 64)),
    ),
}
print(f"{'layout':40s} {'measured':>9s} {'formula':>8s} {'torch.save':>11s}")
measured = {}
for name, (ts, formula) in layouts.items():
    measured[name] = bits_per_weight(*ts)
    saved = 8 * serialized_size({str(i): t for i, t in enumerate(ts)}) / n
    print(f"{name:40s} {measured[name]:9.4f} {formula:8.4f} {saved:11.4f}")
    assert abs(measured[name] - formula) < 1e-9  # the helper's formula counts exactly the bytes stored
    assert 0 < saved - measured[name] < 0.05  # torch.save adds only its container (under 0.05 bit per weight here)

# %% slideshow={"slide_type": "fragment"}
per_tensor_cb = measured["k-means 4 bit per tensor (+16 levels)"] - 4
per_block_cb = measured["k-means 4 bit, codebook per block 64"] - 4
nf4_side = measured["NF4 block 64 (+absmax)"] - 4
display(
    Markdown(
        f"A per-tensor codebook is almost free ({per_tensor_cb:.4f} bit per weight for 16 fp32 levels over {n:,} weights); "
        f"a codebook per block of 64 costs {per_block_cb:.0f} bits per weight, more than the 4-bit codes themselves. "
        f"NF4's table is a constant of the format, so only the fp32 absmax per block is added ({nf4_side:.2f} bit)."
    )
)
assert per_tensor_cb < 0.01 and per_block_cb > 4 and nf4_side == 0.5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: method × bits × block size
#
# Pick a method, bit width and block size for a MiniLM query weight: the levels over the normalised histogram,
# the error distribution, and the MSE/storage readout. It shows, for one real weight, every configuration the key
# table above leaves out (`nu.mse_table` computes them all for any tensors). Degenerate tensors work too: k-means on a
# tensor with fewer distinct values than levels uses one level per distinct value.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.nonuniform import codebook_widget

w_query = minilm.encoder.layer[0].attention.self.query.weight.detach()
codebook_widget(w_query, "MiniLM L0 query")

# %% slideshow={"slide_type": "fragment"}
few = {
    "constant": torch.full((64, 64), 0.02),
    "two values": torch.tensor([-0.01, 0.03]).repeat(2048).reshape(64, 64),
    "post-ReLU": torch.relu(w_query),
}
for label, t in few.items():
    print(f"{label:10s} ({torch.unique(t).numel():6d} distinct): {nu.codebook_view(t, 'kmeans', 4, 64)['readout']}")
assert nu.kmeans_fit(few["two values"], 16).levels.tolist() == torch.unique(few["two values"]).tolist()

# %% [markdown] slideshow={"slide_type": "subslide"}
# Static small multiples (block 64) for a static render:

# %% slideshow={"slide_type": "-"}
panels = []
normalised, _ = nu._block_absmax_normalise(w_query.reshape(-1), 64)
for method in ("uniform", "pow2", "kmeans", "nf"):
    for bits in (2, 4):
        res = nu.nonuniform_fake_quantize(w_query, method, bits, 64)
        mse = float(((res.x_hat - w_query) ** 2).mean() / w_query.var())
        panels.append((f"{METHOD_LABELS[method]}, {bits}b: rel.MSE {mse:.3f}", normalised, res.levels))
levels_over_histograms(panels, ncols=4, row_height=1.7, width=9.0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Real model: the digits CNN with non-uniform weights
#
# Every conv and linear weight replaced by its quantize-dequantize (block 64), accuracy on the held-out test digits.

# %% slideshow={"slide_type": "subslide"}
split = load_digits_split()
base = evaluate(cnn, split.x_test, split.y_test)
names = [n for n, p in cnn.named_parameters() if p.ndim > 1]
original = {k: v.clone() for k, v in cnn.state_dict().items()}
acc_rows = []
for bits in (4, 3, 2):
    row = []
    for m in methods:
        if m == "fp4" and bits != 4:
            row.append(None)
            continue
        sd = dict(original)
        for k in names:
            sd[k] = nu.nonuniform_fake_quantize(original[k], m, bits, 64).x_hat
        cnn.load_state_dict(sd)
        row.append(evaluate(cnn, split.x_test, split.y_test))
    acc_rows.append((bits, row))
cnn.load_state_dict(original)
text = "| bits | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |\n|---|" + "---|" * len(methods) + "\n"
for bits, row in acc_rows:
    text += f"| {bits} | " + " | ".join("–" if a is None else f"{a:.2f}" for a in row) + " |\n"
display(Markdown(f"fp32 accuracy on {len(split.y_test)} test digits: **{base:.2f}%**\n\n" + text))
assert evaluate(cnn, split.x_test, split.y_test) == base

# %% slideshow={"slide_type": "fragment"}
acc4 = dict(zip(methods, acc_rows[0][1]))
acc2 = dict(zip(methods, acc_rows[2][1]))
best2 = max((a, m) for m, a in acc2.items() if a is not None)[1]
display(
    Markdown(
        f"At 4 bits every method stays within {base - min(a for a in acc4.values()):.2f} points of fp32; at 2 bits the "
        f"spread opens ({min(a for a in acc2.values() if a is not None):.2f}% to {max(a for a in acc2.values() if a is not None):.2f}%), "
        f"with {METHOD_LABELS[best2]} best."
    )
)
spread4 = max(acc4.values()) - min(acc4.values())
spread2 = max(a for a in acc2.values() if a is not None) - min(a for a in acc2.values() if a is not None)
assert base - min(acc4.values()) < 5 and spread2 > 5 * spread4  # 4 bits: all close to fp32; 2 bits: far apart

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls

# %% [markdown] slideshow={"slide_type": "-"}
# **1. uint8 codes are not an index.** Codes stored as `uint8` (to save memory) look like a boolean mask to PyTorch.

# %% slideshow={"slide_type": "-"}
levels = nu.nf4_levels()
q = torch.tensor([0, 7, 15], dtype=torch.uint8)
raised = False
try:
    levels[q]
except IndexError as e:
    raised = True
    print(type(e).__name__ + ":", str(e).splitlines()[0])
print("fix, index with int64:", levels[q.long()].tolist())
assert raised and levels[q.long()].tolist() == [-1.0, 0.0, 1.0]

# %% [markdown] slideshow={"slide_type": "subslide"}
# **2. An unsorted codebook silently gives wrong codes.** `bucketize` assumes sorted boundaries.

# %% slideshow={"slide_type": "-"}
levels = torch.tensor([0.5, -1.0, 1.0])  # not sorted
x = torch.tensor([-0.9, 0.45, 0.9])
mid = (levels[:-1] + levels[1:]) / 2
naive = levels[torch.bucketize(x, mid)]
nearest = levels[(x.reshape(-1, 1) - levels).abs().argmin(dim=1)]  # brute force: the truly nearest level
print("naive bucketize:", naive.tolist(), f" (nearest would be {nearest.tolist()})")
rejected = False
try:
    nu.codebook_quantize(x, levels)
except ValueError as e:
    rejected = True
    print("ValueError:", e)
fixed = nu.codebook_fake_quantize(x, levels.sort().values)
print("fix, sort first:", fixed.tolist())
assert not torch.equal(naive, nearest) and rejected and torch.equal(fixed, nearest)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **3. One outlier, one absmax.** Per-tensor absmax scaling with a single large weight pushes almost everything onto the zero level.

# %% slideshow={"slide_type": "-"}
w = w_cnn.clone().reshape(-1)
w[0] = 20 * w.abs().max()  # one outlier
zero_code = int(torch.nonzero(nu.nf4_levels() == 0)[0])
outlier = {}
for bs in (w.numel(), 64):
    q, am = nu.blockwise_absmax_codebook(w, nu.nf4_levels(), bs)
    x_hat = nu.blockwise_codebook_dequantize(q, am, nu.nf4_levels(), bs, w.shape)
    label = "per tensor" if bs == w.numel() else f"block {bs}"
    outlier[label] = (float((q == zero_code).float().mean()), float(((x_hat - w)[1:] ** 2).mean()))
    print(f"{label:10s}: {outlier[label][0]:.1%} of weights on code 0.0, MSE of the rest {outlier[label][1]:.3e}")
# blocks confine the damage: far fewer weights crushed to zero, the others' error 10x smaller at least
assert outlier["block 64"][0] < outlier["per tensor"][0] / 5 and outlier["block 64"][1] < outlier["per tensor"][1] / 10


# %% [markdown] slideshow={"slide_type": "fragment"}
# Blocks confine the outlier's damage to its own 64 weights — the reason bitsandbytes uses blockwise absmax.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - A uniform grid is a codebook whose levels are affine in the code; any other codebook needs a lookup.
# - NF4 = normal quantiles with an exact zero; derived here, it equals bitsandbytes' table, and our blockwise codes equal `quantize_4bit` bit for bit.
# - No format wins everywhere: the measured ranking changes with bits, block size and the tails of the data; compare at equal bits per weight (scales, zero-points and codebooks charged), not at equal code bits. NF4's codes are not equally used after block absmax.
# - Integer matmul works only on uniform codes (exact int32 accumulation, one rescale); small floats (FP8 on Hopper, FP4/MX on Blackwell) are non-uniform yet multiplied natively; fitted codebooks (k-means, NF4) pay a gather and a float matmul.
# - Count storage from the stored bytes: codes + scales per block + codebook.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **1.** Write `my_codebook_quantize(x, levels)` with a broadcast `argmin` over `|x - levels|` (no `bucketize`):
# the index of the nearest level for every element of `x`, in `x`'s shape, a value exactly halfway between two
# levels going to the lower one. `nu.check_codebook_quantize` compares it with `nu.codebook_quantize` (equal to
# bitsandbytes' codes) on NF4 and power-of-two levels, exact ties, values beyond the ends and a 2-D `x`.


# %% slideshow={"slide_type": "-"}
def my_codebook_quantize(x, levels):
    raise NotImplementedError  # your code: the index of the nearest level for each element of x


done = nu.check_codebook_quantize(my_codebook_quantize)


# %% slideshow={"slide_type": "skip"}
# Solution
def solution_codebook_quantize(x, levels):
    dist = (x.reshape(-1, 1) - levels.reshape(1, -1)).abs()  # one row per value, one column per level
    return dist.argmin(dim=1).reshape(x.shape)  # argmin returns the first minimum: ties go to the lower level


assert nu.check_codebook_quantize(solution_codebook_quantize)


# %% [markdown] slideshow={"slide_type": "fragment"}
# **2.** Write `my_nf_levels(bits)`: the $2^b$ NormalFloat levels by the NF4 recipe with $n = 2^b$ codes
# ($2^{b-1}$ positive, $2^{b-1} - 1$ negative, one exact zero, ascending, ends at ±1). The checker tries 3 bits
# ("NF3"), 2, 4 and 5 bits against `nu.nf_levels`, which equals bitsandbytes' NF4 table at 4 bits. Then look at the
# 3-bit rows of `nu.mse_table_markdown(table)`: which method wins there, and why might NF3 not?


# %% slideshow={"slide_type": "-"}
def my_nf_levels(bits):
    raise NotImplementedError  # your code: 2**bits ascending float levels


done = nu.check_nf_levels(my_nf_levels)


# %% slideshow={"slide_type": "skip"}
# Solution
def solution_nf_levels(bits):
    n_codes = 2**bits
    off = 0.5 * ((1 - 1 / (2 * (n_codes - 1))) + (1 - 1 / (2 * n_codes)))
    p = torch.special.ndtri(torch.linspace(off, 0.5, n_codes // 2 + 1, dtype=torch.float64)[:-1])
    m = -torch.special.ndtri(torch.linspace(off, 0.5, n_codes // 2, dtype=torch.float64)[:-1])
    v = torch.cat([p, torch.zeros(1, dtype=torch.float64), m]).sort().values
    return (v / v.max()).float()


assert nu.check_nf_levels(solution_nf_levels)
print("NF3:", np.array2string(solution_nf_levels(3).numpy(), precision=4))
