# %% [markdown] slideshow={"slide_type": "slide"}
# # 01 · Float bits: what a number costs
#
# Every quantization scheme in this course starts from a float32 tensor and stores it in fewer bits.
# Before integers, look at the floating-point formats themselves: fp32, fp16, bf16 and the two
# 8-bit floats fp8 e4m3 and e5m2. Each one splits its bits between **range** (exponent) and
# **precision** (mantissa), and that split decides what breaks first.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - Read any float's bits: sign, biased exponent, mantissa; decode normals, subnormals, ±0, inf, NaN.
# - Derive each format's range and precision (max, smallest normal/subnormal, eps) from its layout, and check them against `torch.finfo`.
# - See why spacing grows with magnitude (ULP), and what that means for rounding error.
# - Predict overflow in fp16, underflow and saturation in fp8, and lost increments in bf16, then measure them on a real model's weights.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))

import copy
import inspect
import math
import struct
import warnings

import torch
from IPython.display import Markdown, display

from helpers.data import load_digits_split
from helpers.float_bits import (FORMATS, check_decode, check_first_gap, check_halving_bit, classify, decode, encode,
                                float_bits, float_bits_view, format_info, format_table, magnitudes_view,
                                round_to_format, ulp, ulp_view, value_from_bits)
from helpers.models import evaluate, load_digits_cnn, seed_everything
from helpers.plotting.float_bits import plot_bit_patterns, plot_magnitudes_vs_range, plot_ulp_spacing

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)
torch.set_num_threads(2)
seed_everything(0)
print("threads:", torch.get_num_threads(), "| formats:", ", ".join(FORMATS))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea: sign × significand × 2^exponent
#
# A format with $E$ exponent bits and $M$ mantissa bits stores three fields: sign $s$, biased exponent $e$, mantissa $m$.
#
# | field values | meaning |
# |---|---|
# | $0 < e <$ all ones | **normal**: $x = (-1)^s \,(1 + m/2^M)\, 2^{\,e-\text{bias}}$, with $\text{bias} = 2^{E-1}-1$ |
# | $e = 0$, $m \ne 0$ | **subnormal**: $x = (-1)^s \,(m/2^M)\, 2^{\,1-\text{bias}}$ (no hidden 1: gradual underflow) |
# | $e = 0$, $m = 0$ | **±0** (two zeros, same value) |
# | $e =$ all ones | **±inf** ($m=0$) or **NaN** ($m \ne 0$); fp8 e4m3 instead keeps normals there and only `S 1111 111` is NaN |
#
# The hidden leading 1 is why a normal number gets $M+1$ bits of precision out of $M$ stored bits.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand: 85.125 in float32
#
# Integer part and fraction part to binary, normalise to $1.\ldots \times 2^k$, add the bias, pad the mantissa to 23 bits.

# %% slideshow={"slide_type": "-"}
x = 85.125
integer, fraction = int(x), x - int(x)
int_bits = f"{integer:b}"
frac_bits, f = "", fraction
while f:  # fraction to binary: double, take the integer bit
    f *= 2
    frac_bits += str(int(f))
    f -= int(f)
print(f"{integer} = {int_bits}b    {fraction} = 0.{frac_bits}b")
exponent = len(int_bits) - 1            # shift the point left until one 1 remains in front
after_point = int_bits[1:] + frac_bits  # the bits after the hidden leading 1
print(f"{x} = {int_bits}.{frac_bits}b = 1.{after_point}b x 2^{exponent}")
biased = exponent + 127
print(f"biased exponent = {exponent} + 127 = {biased} = {biased:08b}b")
mantissa = after_point.ljust(23, "0")  # pad on the RIGHT to the 23-bit field
by_hand = f"0 {biased:08b} {mantissa}"
print("bits:", by_hand)

# %% slideshow={"slide_type": "fragment"}
(word,) = struct.unpack(">I", struct.pack(">f", x))  # the float32 bytes Python's struct writes
w = f"{word:032b}"
from_struct = f"{w[0]} {w[1:9]} {w[9:]}"
assert by_hand == from_struct == str(float_bits(x, "fp32"))
print("struct:", from_struct, "| mantissa field length:", len(w[9:]))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The seminar notes this lesson grew from first write the mantissa as just its significant bits
# (`010101001`) and pad afterwards. The field is always 23 bits, and the padding goes on the
# **right**: trailing zeros after the binary point change nothing, leading zeros would shift every bit.

# %% slideshow={"slide_type": "-"}
significant = "010101001"
notes_final = "0 10000101 010101001 00000000000000"  # the notes' final answer, written with an extra space
print("notes' word, spaces removed, equals struct's:", notes_final.replace(" ", "") == w)
right = value_from_bits("0 10000101 " + significant.ljust(23, "0"), "fp32").value
left = value_from_bits("0 10000101 " + significant.rjust(23, "0"), "fp32").value
print(f"padded right: {right}    padded left: {left:.10g}")
assert right == x and left != x

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation
#
# `helpers.float_bits` does the same for every format and every element of a tensor. Rounding is the
# core: find the exponent $k=\lfloor\log_2|x|\rfloor$ (never below the smallest normal exponent), then the spacing
# $2^{k-M}$ is fixed and rounding is a plain round-half-to-even of $x / 2^{k-M}$.

# %% slideshow={"slide_type": "-"}
print(inspect.getsource(round_to_format))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The format table, derived from the bit layout and checked against `torch.finfo`

# %% slideshow={"slide_type": "-"}
header = "| format | bits | E | M | bias | max | smallest normal | smallest subnormal | eps |\n|---|---|---|---|---|---|---|---|---|\n"
rows = []
for info in format_table():
    fi = torch.finfo(info.torch_dtype)
    assert (info.bits, info.max, info.smallest_normal, info.eps) == (fi.bits, fi.max, fi.smallest_normal, fi.eps)
    rows.append(f"| {info.name} | {info.bits} | {info.exp_bits} | {info.man_bits} | {info.bias} | {info.max:.6g} "
                f"| {info.smallest_normal:.4g} | {info.smallest_subnormal:.4g} | {info.eps:.4g} |")
display(Markdown(header + "\n".join(rows)))
print("max, smallest normal, eps and bits equal torch.finfo for all", len(rows), "formats")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Bit-exact against PyTorch's own casts

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(0)
x_rand = torch.randn(200_000, generator=g) * torch.exp(torch.randn(200_000, generator=g) * 10)
for fmt in FORMATS[1:]:
    dtype = format_info(fmt).torch_dtype
    half = 2 ** (format_info(fmt).bits - 1)
    v = decode(torch.arange(half), fmt).double()
    v = v[torch.isfinite(v)]
    ties = torch.cat([(v[:-1] + v[1:]) / 2, -(v[:-1] + v[1:]) / 2]).float()  # exact midpoints
    for name, t in (("random", x_rand), ("ties", ties)):
        ours, torchs = round_to_format(t, fmt), t.to(dtype).float()
        assert torch.equal(ours.view(torch.int32), torchs.view(torch.int32)), (fmt, name)
    print(f"{fmt:9s} {dtype}: {len(x_rand):,} random values and {len(ties):,} ties bit-identical")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Normals, subnormals, ±0, inf, NaN: real bit patterns

# %% slideshow={"slide_type": "-"}
fp16 = format_info("fp16")
examples = [1.0, fp16.max, fp16.smallest_normal, fp16.smallest_subnormal, 0.0, -0.0, math.inf, math.nan]
recs = [float_bits(v, "fp16") for v in examples]
for r in recs:
    print(f"{r.kind:9s} {r.sign} {r.exponent} {r.mantissa}  -> {r.value!r}")
assert [r.kind for r in recs] == ["normal", "normal", "normal", "subnormal", "zero", "zero", "inf", "nan"]
assert classify(torch.tensor(examples), "fp16") == [r.kind for r in recs]  # the vectorized version agrees

# %% slideshow={"slide_type": "subslide"}
plot_bit_patterns(recs[:4] + recs[6:])

# %% slideshow={"slide_type": "subslide"}
# fp8 e4m3 (float8_e4m3fn): no inf, the all-ones exponent still holds numbers
for v in (448.0, math.inf, math.nan):
    r = float_bits(v, "fp8_e4m3")
    print(f"{v!r:>5} -> {r.sign} {r.exponent} {r.mantissa}  {r.kind:6s} value {r.value}")
r = float_bits(math.inf, "fp8_e5m2")
print(f"e5m2: inf -> {r}  {r.kind}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: the bit explorer
#
# Type a value and pick a format: the boxes show its bits (sign red, exponent green, mantissa blue),
# the number line shows the stored value `x_hat` between its two neighbours, and the readout gives
# `err = x_hat - x`. Click the toggle buttons to flip single bits. Try: flip the lowest exponent
# bit (the value doubles or halves), the highest mantissa bit, or the sign; set the exponent to all ones.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.float_bits import float_bits_widget

float_bits_widget(85.125, "fp32")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Static views: the widget at x = 0.1 in fp16, and 85.125 in every format

# %% slideshow={"slide_type": "-"}
from helpers.plotting.float_bits import plot_float_bits

view = float_bits_view(0.1, "fp16")
print(view["readout"])
plot_float_bits(view)

# %% slideshow={"slide_type": "subslide"}
plot_bit_patterns([float_bits(85.125, fmt) for fmt in FORMATS])

# %% slideshow={"slide_type": "subslide"}
values = [85.125, 0.1, 1000.3]
print(f"{'x':>8} " + "".join(f"{fmt:>22}" for fmt in FORMATS))
for v in values:
    cells = []
    for fmt in FORMATS:
        r = float_bits(v, fmt)
        cells.append(f"{r.value:>12.6g} ({abs(r.error) / v:7.1e})")
    print(f"{v:>8} " + "".join(f"{c:>22}" for c in cells))
print("each cell: stored value x_hat (relative error |x_hat - x| / |x|)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Spacing grows with magnitude
#
# Between $2^k$ and $2^{k+1}$ a format has $2^M$ evenly spaced values, so the gap (one **ULP**) is
# $2^{k-M}$: it doubles at every power of two. The *relative* gap stays between eps/2 and eps —
# that is what "precision" means for floats. Below the smallest normal the gap stops shrinking (subnormals).

# %% slideshow={"slide_type": "-"}
plot_ulp_spacing(ulp_view())

# %% slideshow={"slide_type": "subslide"}
def torch_gap(v, fmt):  # next representable value minus v, read from torch's own bits of v in that dtype
    info = format_info(fmt)
    stored = torch.tensor([v]).to(info.torch_dtype)
    code = stored.view({4: torch.int32, 2: torch.int16, 1: torch.uint8}[info.bits // 8])
    return ((code + 1).view(info.torch_dtype).double() - stored.double()).item()

for fmt in FORMATS:
    u = ulp(torch.tensor([1.0, 1000.0]), fmt)
    assert u[0] == torch.finfo(format_info(fmt).torch_dtype).eps == torch_gap(1.0, fmt)
    assert u[1] == torch_gap(1000.0, fmt) or (math.isnan(u[1]) and math.isnan(torch_gap(1000.0, fmt)))
    print(f"{fmt:9s} ulp(1) = {u[0].item():.3g}   ulp(1000) = {u[1].item():.3g}")
e4 = format_info("fp8_e4m3")
assert 1000 > e4.max and math.isnan(ulp(torch.tensor([1000.0]), "fp8_e4m3").item())  # no gap at 1000: out of range
print(f"fp8_e4m3: 1000 is past its max {e4.max:g}, so it has no ulp there (nan); "
      f"the cast saturates it to {round_to_format(torch.tensor([1000.0]), 'fp8_e4m3').item():g} (pitfall 4)")

# %% slideshow={"slide_type": "fragment"}
# fp16 at 1000: half an ulp is exactly representable, so x = 1000 + ulp/2 is a tie, decided by ties-to-even
u = ulp(torch.tensor([1000.0]), "fp16").item()
print(f"fp16: ulp(1000) = {u:g}, half an ulp = {u / 2:g}")
got = {}
for x in (1000 + u / 2, 1000 + 3 * u / 2, 1000 + u / 2 + 2**-10):  # all exact in float32
    lo = math.floor(x / u) * u
    m_lo, m_hi = (float_bits(v, "fp16").mantissa for v in (lo, lo + u))
    got[x] = round_to_format(torch.tensor([x]), "fp16").item()
    assert got[x] == torch.tensor([x]).half().item()  # the same as torch's cast
    why = "tie: to the even mantissa" if x - lo == u / 2 else "nearest"
    print(f"{x:<13.10g} between {lo:g} (mantissa {m_lo}) and {lo + u:g} (mantissa {m_hi}) -> {got[x]:g}  {why}")
assert got[1000 + u / 2] == 1000 and int(float_bits(1000.0, "fp16").mantissa, 2) % 2 == 0  # tie, down to even
assert got[1000 + 3 * u / 2] == 1001 and got[1000 + u / 2 + 2**-10] == 1000 + u  # tie up to even; past it: up

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Range vs precision: fp16 against bf16, e4m3 against e5m2

# %% slideshow={"slide_type": "-"}
probe = torch.tensor([65504.0, 65519.0, 65520.0, 65535.0, 1e5])
print("x       :", probe.tolist())
print("fp16    :", round_to_format(probe, "fp16").tolist())
print("bf16    :", round_to_format(probe, "bf16").tolist())
assert round_to_format(torch.tensor([65535.0]), "fp16").item() == math.inf  # 65535 is not the max

# %% slideshow={"slide_type": "fragment"}
fp16, bf16 = format_info("fp16"), format_info("bf16")
display(Markdown(
    f"fp16 spends {fp16.man_bits} bits on the mantissa and overflows above **{fp16.max:g}**; "
    f"bf16 keeps fp32's {bf16.exp_bits} exponent bits (max {bf16.max:.3g}) and pays with precision: "
    f"eps {bf16.eps:g} vs {fp16.eps:g}, i.e. {bf16.eps / fp16.eps:g}x coarser."
))

# %% slideshow={"slide_type": "subslide"}
e4, e5 = format_info("fp8_e4m3"), format_info("fp8_e5m2")
g = torch.Generator().manual_seed(1)
w = torch.randn(100_000, generator=g) * 0.05  # weight-like values
fp8_rel = {}
for info in (e4, e5):
    w_hat = round_to_format(w, info.name)
    rel = fp8_rel[info.name] = ((w_hat.double() - w.double()).norm() / w.double().norm()).item()
    zeros = int(((w_hat == 0) & (w != 0)).sum())
    print(f"{info.name}: max {info.max:g}, eps {info.eps:g}, smallest subnormal {info.smallest_subnormal:.3g} "
          f"| N(0, 0.05^2): rel. error {rel:.4f}, flushed to zero {zeros}")
assert fp8_rel["fp8_e4m3"] < fp8_rel["fp8_e5m2"]  # the extra mantissa bit wins on well-scaled values

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"e4m3 has one more mantissa bit (steps {e5.eps / e4.eps:g}x finer, smaller error on well-scaled values); "
    f"e5m2 has one more exponent bit ({e5.max / e4.max:g}x the max, and subnormals down to {e5.smallest_subnormal:.2g}). "
    "That is why fp8 training recipes usually keep weights and activations in e4m3 and gradients, "
    "whose magnitudes vary wildly, in e5m2."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Real model: the digits CNN's weights in each format
#
# Round every float tensor of the trained CNN's `state_dict` to a format (weight storage; the
# arithmetic stays float32), then count what underflows, what overflows, and measure test accuracy.

# %% slideshow={"slide_type": "-"}
model = load_digits_cnn()
split = load_digits_split()
state = model.state_dict()
w_all = torch.cat([t.flatten() for t in state.values() if t.is_floating_point()])
print(f"{w_all.numel():,} float values; |w| from {w_all.abs().min().item():.3g} to {w_all.abs().max().item():.3g}")
plot_magnitudes_vs_range(magnitudes_view(w_all, FORMATS), title="digits CNN: |weights| against each format's range")


# %% slideshow={"slide_type": "subslide"}
def rounded_model(fmt):
    m = copy.deepcopy(model)
    m.load_state_dict({k: round_to_format(t, fmt) if t.is_floating_point() else t for k, t in state.items()})
    return m

results = {}
for fmt in FORMATS:
    w_hat = round_to_format(w_all, fmt)
    results[fmt] = dict(
        rel=((w_hat - w_all).norm() / w_all.norm()).item(),
        zero=int(((w_hat == 0) & (w_all != 0)).sum()),
        sub=int(((w_hat != 0) & (w_hat.abs() < format_info(fmt).smallest_normal)).sum()),
        over=int((w_hat.abs() == math.inf).sum()),
        acc=evaluate(rounded_model(fmt), split.x_test, split.y_test),
    )
table = "| format | rel. error ‖ŵ−w‖/‖w‖ | flushed to 0 | subnormal | overflow | test accuracy |\n|---|---|---|---|---|---|\n"
table += "\n".join(f"| {f} | {r['rel']:.2e} | {r['zero']} | {r['sub']} | {r['over']} | {r['acc']:.2f}% |" for f, r in results.items())
display(Markdown(table))

# %% slideshow={"slide_type": "fragment"}
acc32 = results["fp32"]["acc"]
for fmt in ("fp16", "bf16"):
    m = copy.deepcopy(model).to(format_info(fmt).torch_dtype)  # weights AND arithmetic in the format
    acc = evaluate(m, split.x_test.to(format_info(fmt).torch_dtype), split.y_test)
    print(f"{fmt}: end-to-end compute accuracy {acc:.2f}% (fp32 {acc32:.2f}%)")
assert results["fp16"]["acc"] == results["bf16"]["acc"] == acc32  # 16-bit weights: unchanged accuracy
assert min(results["fp8_e4m3"]["acc"], results["fp8_e5m2"]["acc"]) >= acc32 - 1  # 8-bit: within a point
assert results["fp16"]["rel"] < results["bf16"]["rel"] < results["fp8_e4m3"]["rel"]
best = min(("fp8_e4m3", "fp8_e5m2"), key=lambda f: results[f]["rel"])
display(Markdown(f"On these weights the 8-bit format with the smaller error is **{best}**; "
                 f"accuracy: e4m3 {results['fp8_e4m3']['acc']:.2f}%, e5m2 {results['fp8_e5m2']['acc']:.2f}% "
                 f"vs fp32 {acc32:.2f}%."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1 · fp16 overflows in a sum or an activation

# %% slideshow={"slide_type": "-"}
h = torch.full((1000,), 100.0, dtype=torch.float16)
logits = torch.tensor([12.0, 11.0], dtype=torch.float16)
print("sum of 1000 x 100 in fp16:", h.sum().item())
e = torch.exp(logits)
print("exp(logits) in fp16:", e.tolist(), "-> naive softmax:", (e / e.sum()).tolist())

# %% slideshow={"slide_type": "fragment"}
# fix: accumulate in float32 (or bf16), and subtract the max before exp (what torch.softmax does)
print("float32 sum:", h.float().sum().item())
stable = torch.exp(logits - logits.max())
print("stable softmax in fp16:", (stable / stable.sum()).tolist())
assert h.sum().item() == math.inf and h.float().sum().item() == 100_000  # past fp16's max 65504
assert e[0].item() == math.inf and math.isnan((e / e.sum())[0].item())  # exp(12) > 65504: inf, then inf/inf
assert torch.isfinite(stable / stable.sum()).all()

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2 · bf16 drops small increments

# %% slideshow={"slide_type": "-"}
acc_bf16 = torch.tensor(1.0, dtype=torch.bfloat16)
acc_fp32 = torch.tensor(1.0)
for _ in range(100):  # e.g. an optimizer adding a small update to a weight
    acc_bf16 += 1e-3
    acc_fp32 += 1e-3
print(f"1 + 100 x 0.001 in bf16: {acc_bf16.item()}   in fp32: {acc_fp32.item():.4f}")
print("half an ulp of bf16 at 1.0:", format_info("bf16").eps / 2)
assert 1e-3 < format_info("bf16").eps / 2 and acc_bf16.item() == 1.0  # each increment is below half an ulp
assert abs(acc_fp32.item() - 1.1) < 1e-5

# %% [markdown] slideshow={"slide_type": "fragment"}
# Fix: keep a float32 "master" copy of anything that accumulates (weights in mixed-precision
# training, running sums) and cast to bf16 only for the matmuls.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3 · Comparing floats with ==

# %% slideshow={"slide_type": "-"}
a16 = torch.tensor(0.1, dtype=torch.float16)
print("0.1 + 0.2 == 0.3:", 0.1 + 0.2 == 0.3)
print("fp16 0.1 == 0.1 (scalar cast to fp16 first):", bool(a16 == 0.1))
print("fp16 0.1 == fp32 0.1 (promoted to fp32):    ", bool(a16 == torch.tensor(0.1)))
# fix: compare with a tolerance tied to the format's precision
print("isclose with rtol = eps(fp16):", bool(torch.isclose(a16.float(), torch.tensor(0.1), rtol=format_info("fp16").eps)))
assert 0.1 + 0.2 != 0.3 and bool(a16 == 0.1) and not bool(a16 == torch.tensor(0.1))
assert bool(torch.isclose(a16.float(), torch.tensor(0.1), rtol=format_info("fp16").eps))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 4 · fp8 overflow: saturation, inf or NaN, depending on the cast

# %% slideshow={"slide_type": "-"}
version = torch.__version__.split("+")[0]
big = torch.tensor([300.0, 1000.0, 1e4, math.inf, -math.inf, math.nan])
print(f"torch {version}, device {big.device}: x = {big.tolist()}")
casts = {}
for dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz):
    casts[dtype] = str(big.to(dtype).float().tolist())  # no error, no warning
    print(f"to {str(dtype)[6:]:15s} (max {torch.finfo(dtype).max:>5g}): {casts[dtype]}")
changed = f"torch {version}'s CPU cast differs from the pinned 2.14.1's"
assert casts[torch.float8_e4m3fn] == "[288.0, 448.0, 448.0, 448.0, -448.0, nan]", changed  # saturates, inf too
assert casts[torch.float8_e5m2] == "[320.0, 1024.0, 10240.0, inf, -inf, nan]", changed  # has inf: overflows to it
assert casts[torch.float8_e4m3fnuz] == "[nan, nan, nan, nan, nan, nan]", changed  # past its max 240: NaN

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"In torch {version} on CPU (the same on all three CPU code paths) `.to(torch.float8_e4m3fn)` saturates: "
    f"{big[1].item():g}, {big[2].item():g} and even inf become {big.to(torch.float8_e4m3fn)[1].float().item():g}, "
    "NaN stays NaN, and "
    "nothing warns. `float8_e5m2` has an inf and overflows to it; `float8_e4m3fnuz` turns everything past "
    f"its max {torch.finfo(torch.float8_e4m3fnuz).max:g} into NaN. Overflow is the cast's choice, not the format's: "
    "the OCP fp8 spec allows both saturating and non-saturating conversion, torch's own CPU cast gave NaN "
    "on finite e4m3 overflow before pytorch/pytorch#178817 (2026), ml_dtypes' `float8_e4m3fn` gives NaN, "
    "and GPU kernels pick their own mode (not run here). Check the cast you deploy with; better, never rely on it:"
))

# %% slideshow={"slide_type": "-"}
# fix: scale into range first (per-tensor amax scaling, as fp8 training does), unscale after
finite = big[[0, 2]]
scale = finite.abs().max() / format_info("fp8_e4m3").max
back = round_to_format(finite / scale, "fp8_e4m3") * scale
print("scaled e4m3 round trip:", back.tolist())
rel_back = ((back - finite).abs() / finite).max().item()
rel_cast = ((finite.to(torch.float8_e4m3fn).float() - finite).abs() / finite).max().item()
print(f"largest relative error: scaled {rel_back:.3g} (at most eps/2 = {format_info('fp8_e4m3').eps / 2:g}), unscaled cast {rel_cast:.3g}")
assert rel_back <= format_info("fp8_e4m3").eps / 2 < rel_cast


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - A float is sign × (1 + m/2^M) × 2^(e − bias); subnormals drop the hidden 1, and the all-ones exponent is inf/NaN (except fp8 e4m3, which keeps numbers there and has no inf: what overflow gives — saturation or NaN — depends on the cast).
# - Exponent bits buy range, mantissa bits buy precision: fp16 vs bf16 and e4m3 vs e5m2 are the same trade made two ways.
# - The gap between neighbours (ULP) doubles with every power of two; relative error stays below eps/2 for normals.
# - Rounding the trained digits CNN's weights to fp16 or bf16 left its test accuracy unchanged, and the fp8 formats stayed within a point of fp32 (asserted above); what fp8 loses is range, so real fp8 use scales tensors into range first — which is where the integer formats of lesson 02 begin.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **1. Decode by hand.** Write `my_decode(bits, exp_bits, man_bits)` that turns a bit string (sign first) of an
# IEEE-style format — the all-ones exponent holds inf and NaN — into its value: normals, subnormals, ±0, ±inf
# and NaN. `check_decode` tries every pattern of fp8 e5m2, fp16 and bf16 and compares with torch's own reading
# of the same bits (`Tensor.view`), after a few patterns chosen to catch the usual slips.

# %% slideshow={"slide_type": "skip"}
def my_decode(bits: str, exp_bits: int, man_bits: int) -> float:
    # YOUR CODE: split into sign / exponent / mantissa, then apply the normal, subnormal or inf/NaN rule
    raise NotImplementedError


_ = check_decode(my_decode)


# %% slideshow={"slide_type": "skip"}
# Solution
def solution_decode(bits: str, exp_bits: int, man_bits: int) -> float:
    s, e, m = int(bits[0]), int(bits[1 : 1 + exp_bits], 2), int(bits[1 + exp_bits :], 2)
    bias = 2 ** (exp_bits - 1) - 1
    if e == 2**exp_bits - 1:  # all ones: inf or NaN
        magnitude = math.inf if m == 0 else math.nan
    elif e == 0:  # subnormal: no hidden 1, exponent 1 - bias
        magnitude = m / 2**man_bits * 2.0 ** (1 - bias)
    else:
        magnitude = (1 + m / 2**man_bits) * 2.0 ** (e - bias)
    return -magnitude if s else magnitude


assert check_decode(solution_decode)

# %% [markdown] slideshow={"slide_type": "-"}
# **2. The first integer that does not fit.** Which is the smallest positive integer that fp16
# cannot store exactly? And bf16? Predict from the mantissa width, then fill in the answers;
# `check_first_gap` finds the right ones by casting 1, 2, 3, … with torch.

# %% slideshow={"slide_type": "skip"}
answer_fp16 = None  # YOUR ANSWER (an int)
answer_bf16 = None  # YOUR ANSWER (an int)
_ = check_first_gap(answer_fp16, answer_bf16)

# %% slideshow={"slide_type": "skip"}
# Solution: with M mantissa bits every integer up to 2^(M+1) is exact; 2^(M+1) + 1 needs one bit more
solution_fp16 = 2 ** (format_info("fp16").man_bits + 1) + 1
solution_bf16 = 2 ** (format_info("bf16").man_bits + 1) + 1
assert check_first_gap(solution_fp16, solution_bf16)
print(f"fp16: {solution_fp16} = 2^{format_info('fp16').man_bits + 1} + 1, bf16: {solution_bf16} = 2^{format_info('bf16').man_bits + 1} + 1")

# %% [markdown] slideshow={"slide_type": "-"}
# **3. Which bit halves a number?** In the widget, find the single bit of 85.125's float32 pattern
# whose flip gives 85.125 / 2. Enter its position counted from the left (the sign bit is 0).
# (Why can no single flip *double* 85.125?)

# %% slideshow={"slide_type": "skip"}
answer_bit = None  # YOUR ANSWER (an int in 0..31)
_ = check_halving_bit(answer_bit)

# %% slideshow={"slide_type": "skip"}
# Solution: the exponent occupies positions 1..8 and its lowest bit (position 8) is a 1 for 85.125.
# Doubling needs exponent 133 + 1 = 134 = 10000110b: two bits change, so no single flip doubles it.
solution_bit = format_info("fp32").exp_bits
assert check_halving_bit(solution_bit)
r = float_bits(85.125, "fp32")
assert r.biased_exponent == 133 and bin(r.biased_exponent ^ (r.biased_exponent + 1)).count("1") == 2
