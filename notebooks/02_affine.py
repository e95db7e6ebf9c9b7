# %% [markdown] slideshow={"slide_type": "slide"}
# # 02 · Affine vs scale: uniform integer quantization
#
# How a float tensor becomes 8 (or 4, or 3) bit integers: the **affine** map with a zero-point and the
# **scale-only** (symmetric) map, computed exactly as PyTorch computes them — down to the last rounding tie.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ## Goals
#
# - Write the affine (asymmetric) and scale (symmetric) transforms, and recognise the three conventions
#   used in papers and notes: `round(x/S)+Z`, `round(x/S+Z)` and the multiplicative `s·x+z`.
# - Reproduce the worked example [-2, 2] → int8 **bit for bit** with PyTorch, including why the zero-point is −1
#   in float32 and 0 in exact arithmetic.
# - Know the full [−128, 127] vs restricted [−127, 127] range, and why 0 must be exactly representable.
# - Separate rounding error from clipping error, and measure SQNR against the 6.02 dB-per-bit rule.
# - Compare per-tensor, per-channel and per-group scales on the real weights of a trained CNN.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))

import copy
import inspect
import math
import warnings
from fractions import Fraction

import torch
from IPython.display import Markdown, display

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning)

from helpers import affine
from helpers.affine import (
    affine_qparams, calc_qparams, check_clip, check_prediction, check_symmetric_qparams, clipping_error_split,
    dequantize, fake_quantize, fake_quantize_range, fake_quantize_tensor, fake_quantize_weight, mse, qrange, quantize,
    sqnr_db,
)
from helpers.data import load_digits_split
from helpers.models import evaluate, load_digits_cnn, seed_everything
from helpers.plotting import affine as plots
from helpers.widgets.affine import affine_playground
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

torch.set_num_threads(2)
seed_everything(0)
print("threads:", torch.get_num_threads())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea
#
# A uniform quantizer stores an integer code $q$ for each float $x$, on a grid of step **scale** $S$:
#
# $$q = \mathrm{clamp}\big(\mathrm{round}(x/S) + Z,\; q_{min},\; q_{max}\big), \qquad \hat x = (q - Z)\,S$$
#
# | | scale $S$ | zero-point $Z$ | grid |
# |---|---|---|---|
# | **affine** (asymmetric) | $(x_{max}-x_{min})/(q_{max}-q_{min})$ | $q_{min} - \mathrm{round}(x_{min}/S)$ | fits $[x_{min}, x_{max}]$ |
# | **scale** (symmetric) | $\max(\lvert x_{min}\rvert, \lvert x_{max}\rvert)\,/\,((q_{max}-q_{min})/2)$ | 0 | centred on 0 |
#
# The range is first widened to contain 0, so that $x = 0$ lands exactly on a code. Which `round`, on a tie
# $k + \tfrac12$, is itself a convention: PyTorch rounds half to even (the `torch.round` docs; its quantize kernels
# use `nearbyint` in the default IEEE mode) and so does ONNX `QuantizeLinear` ("rounds to the nearest even");
# TFLite's reference `AffineQuantize` uses `TfLiteRound`, i.e. C++ `std::round`, and gemmlowp's
# `RoundingDivideByPOT` both round half **away from zero**. This course follows PyTorch: half to even.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Three ways the literature writes it
#
# | convention | formula | used by |
# |---|---|---|
# | round, then shift | $q = \mathrm{round}(x/S) + Z$ | PyTorch kernels, Jacob et al. 2018, the [-2, 2] worked example |
# | shift, then round | $q = \mathrm{round}(x/S + Z)$ | several papers and tutorials |
# | multiplicative | $q = \mathrm{round}(s\,x + z)$, $s = \frac{2^b-1}{\alpha-\beta}$, $z = -\mathrm{round}(\beta s) - 2^{b-1}$ | the seminar notes (004) |
#
# With an integer $Z$, $\mathrm{round}(t) + Z$ and $\mathrm{round}(t + Z)$ agree everywhere except on ties
# ($t = k + \tfrac12$), and with half-to-even they differ on ties **only when $Z$ is odd**: half-to-even picks the even
# neighbour, an even $Z$ keeps the parity of both neighbours, an odd $Z$ swaps it.
# The multiplicative $s$ is $1/S$; computing $s\cdot x$ instead of $x \cdot (1/S)$ changes the float rounding.
# Both claims, and torch's own tie-breaking, computed on ties $k + \tfrac12$ (in float64, where they are exact):

# %% slideshow={"slide_type": "-"}
t_demo = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], dtype=torch.float64)
half_even = lambda v: torch.where(torch.floor(v) % 2 == 0, torch.floor(v), torch.floor(v) + 1)  # ties only
half_away = lambda v: torch.sign(v) * torch.floor(v.abs() + 0.5)
torch_round = torch.round(t_demo)
torch_codes = torch.quantize_per_tensor(t_demo.float(), 1.0, 0, torch.qint8).int_repr()
print("t                        :", t_demo.tolist())
print("torch.round              :", torch_round.tolist())
print("torch.quantize_per_tensor:", torch_codes.tolist(), " (scale 1, zero_point 0)")
print("half away from zero      :", half_away(t_demo).tolist(), " (TFLite std::round, gemmlowp)")
assert torch.equal(torch_round, half_even(t_demo)) and torch.equal(torch_codes.double(), half_even(t_demo))
assert not torch.equal(torch_round, half_away(t_demo))

t_ties = torch.arange(-64, 64, dtype=torch.float64) + 0.5  # 128 ties
zps = list(range(-4, 5))
differ_even = {Z: int((torch.round(t_ties) + Z != torch.round(t_ties + Z)).sum()) for Z in zps}
differ_away = {Z: int((half_away(t_ties) + Z != half_away(t_ties + Z)).sum()) for Z in zps}
print(f"ties where round(t)+Z != round(t+Z), of {len(t_ties)}:")
print("  Z                  :", "".join(f"{Z:5d}" for Z in zps))
print("  half to even       :", "".join(f"{differ_even[Z]:5d}" for Z in zps))
print("  half away from zero:", "".join(f"{differ_away[Z]:5d}" for Z in zps))
assert all(differ_even[Z] == (len(t_ties) if Z % 2 else 0) for Z in zps)
assert all(differ_away[Z] == abs(Z) for Z in zps)

# %% [markdown] slideshow={"slide_type": "fragment"}
# Half to even: every tie differs when $Z$ is odd, none when $Z$ is even. Half away from zero has its own pattern:
# the two orders differ only on the $|Z|$ ties between $0$ and $-Z$, where adding $Z$ flips the sign of $t$.
# A kernel must match both the rounding mode and the order of round and shift.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand: [-2, 2] → int8
#
# Range $[-2, 2]$, signed 8-bit codes $[-128, 127]$, affine. First in **exact** rational arithmetic:

# %% slideshow={"slide_type": "-"}
qmin, qmax = qrange(8)
S_exact = Fraction(2 - (-2), qmax - qmin)
t_exact = Fraction(-2) / S_exact
Z_exact = qmin - round(t_exact)  # Python's round on a Fraction is half-to-even
print(f"S = {S_exact} = {float(S_exact):.8f}")
print(f"x_min / S = {t_exact} = {float(t_exact)}  -> a tie; half-to-even gives {round(t_exact)}")
print(f"Z = {qmin} - ({round(t_exact)}) = {Z_exact}")
assert t_exact == Fraction(-255, 2) and Z_exact == 0

# %% [markdown] slideshow={"slide_type": "fragment"}
# Now the same steps in **float32**, as `torch.ao.quantization.MinMaxObserver` does them:

# %% slideshow={"slide_type": "-"}
S32 = torch.tensor(4.0, dtype=torch.float32) / 255
t32 = torch.tensor(-2.0) / S32
print(f"S in float32   = {S32.item():.10f}   (4/255 = {4 / 255:.10f})")
print(f"x_min / S      = {t32.item():.8f}   (not the tie -127.5)")
print(f"round -> {torch.round(t32).item():.0f},  Z = {qmin} - ({torch.round(t32).item():.0f}) = {qmin - int(torch.round(t32))}")

obs = MinMaxObserver(dtype=torch.qint8)
obs(torch.tensor([-2.0, 2.0]))
scale, zero_point = obs.calculate_qparams()
print(f"MinMaxObserver: scale {scale.item():.6f}, zero_point {zero_point.item()}")
assert (scale.item(), zero_point.item()) == (S32.item(), -1)
s_ref, z_ref = affine_qparams(-2.0, 2.0, 8)  # the course's helper, same float32 steps
assert (s_ref.item(), z_ref.item()) == (scale.item(), zero_point.item())

# %% slideshow={"slide_type": "subslide"}
assert S32.item() > 4 / 255 and float(t_exact) < t32.item() < float(t_exact) + 0.5  # just inside the exact tie
display(Markdown(f"The float32 scale is a hair larger than 4/255 (by {S32.item() - 4 / 255:.1e}), so $-2/S$ lands "
                 f"just *inside* {float(t_exact)} and rounds to {torch.round(t32).item():.0f}: the zero-point PyTorch "
                 f"stores is **{zero_point.item()}**, where exact arithmetic gives **{Z_exact}**. Next, $x = 1.3$:"))

# %% slideshow={"slide_type": "-"}
x = torch.tensor([1.3])
q = quantize(x, scale, zero_point, qmin, qmax)
x_hat = dequantize(q, scale, zero_point)
ref = torch.quantize_per_tensor(x, scale.item(), zero_point.item(), torch.qint8)
print(f"1.3 / S = {(x * (1 / scale)).item():.4f} -> round {torch.round(x * (1 / scale)).item():.0f} -> q = {q.item()}")
print(f"x_hat = (q - Z) * S = {x_hat.item():.4f}   torch: q = {ref.int_repr().item()}, x_hat = {ref.dequantize().item():.4f}")
assert q.item() == ref.int_repr().item() == 82 and x_hat.item() == ref.dequantize().item()
assert round(x_hat.item(), 4) == 1.3020

# %% [markdown] slideshow={"slide_type": "subslide"}
# The seminar notes (001) do the same calculation by hand with the scale **rounded to 0.0157** and get a
# different dequantized value. Recomputing their steps:

# %% slideshow={"slide_type": "-"}
S_hand = 0.0157
Z_hand = round(2.0 / S_hand) - 128
q_hand = round(1.3 / S_hand) + Z_hand
x_hat_hand = (q_hand - Z_hand) * S_hand
print(f"2/0.0157 = {2 / S_hand:.4f} -> Z = {Z_hand};  1.3/0.0157 = {1.3 / S_hand:.4f} -> q = {q_hand}")
print(f"x_hat = {q_hand - Z_hand} * 0.0157 = {x_hat_hand:.4f}   vs   {q_hand - Z_hand} * S = {x_hat.item():.4f}")
rel = (S_hand - scale.item()) / scale.item()
print(f"rounding S changed it by {100 * rel:+.3f} %, and that error is multiplied by {q_hand - Z_hand} steps: "
      f"{(q_hand - Z_hand) * (S_hand - scale.item()):+.4f}")
assert q_hand == q.item() and round(x_hat_hand, 4) == 1.3031

# %% slideshow={"slide_type": "fragment"}
display(Markdown(f"Same code {q_hand}, but the decoded value moves from {x_hat.item():.4f} to {x_hat_hand:.4f}: a rounded "
                 "scale is a different quantizer. Carry $S$ at full float32 precision (it is what the kernel stores).\n\n"
                 f"What about the exact-arithmetic zero-point {Z_exact} — does it matter? The codes shift by one and so "
                 "does the grid:"))

# %% slideshow={"slide_type": "-"}
by_zp = {}
for Z in (Z_exact, zero_point.item()):
    lo, hi = (qmin - Z) * scale.item(), (qmax - Z) * scale.item()
    qs = quantize(torch.tensor([-2.0, 1.3, 2.0]), scale, Z, qmin, qmax)
    xs = dequantize(qs, scale, Z)
    by_zp[Z] = (lo, hi, qs.long())
    print(f"Z = {Z:2d}: grid [{lo:+.4f}, {hi:+.4f}]  codes of (-2, 1.3, 2) = {qs.tolist()}  x_hat = {[round(v, 4) for v in xs.tolist()]}")
half_step = scale.item() / 2
assert abs(by_zp[Z_exact][1] - (2 - half_step)) < 1e-6 and abs(by_zp[zero_point.item()][0] - (-2 + half_step)) < 1e-6
assert torch.equal(by_zp[Z_exact][2] - by_zp[zero_point.item()][2], torch.ones(3, dtype=torch.long))  # codes shift by one

# %% slideshow={"slide_type": "fragment"}
display(Markdown(f"With Z = {Z_exact} the grid stops half a step short of +2, with torch's Z = {zero_point.item()} half a step "
                 f"short of −2, and the codes of every value shift by one. Compare the printed $\\hat x$: {qmax - qmin} steps "
                 f"cannot place {qmax - qmin + 1} codes symmetrically around 0 and reach both ends of [-2, 2]."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Where the conventions disagree: ties
#
# Scan every midpoint $(k + \tfrac12)\,S$ of the [-2, 2] grid in float32 and keep the ones where $x \cdot (1/S)$ is
# **exactly** a tie:

# %% slideshow={"slide_type": "-"}
k = torch.arange(qmin, qmax + 1, dtype=torch.float32)
mid = (k + 0.5) * scale
t = mid * (1 / scale)
ties = mid[t - torch.floor(t) == 0.5]
a = quantize(ties, scale, zero_point, qmin, qmax, convention="round_then_shift")
b = quantize(ties, scale, zero_point, qmin, qmax, convention="shift_then_round")
torch_q = torch.quantize_per_tensor(ties, scale.item(), zero_point.item(), torch.qint8).int_repr()
print(f"{len(ties)} of {len(mid)} midpoints are exact ties in float32")
print("x                 :", [f"{v:.5f}" for v in ties[:4].tolist()], "...")
print("round(x/S)+Z      :", a[:4].tolist(), "  torch:", torch_q[:4].tolist())
print("round(x/S+Z)      :", b[:4].tolist())
print(f"codes that differ : {(a != b).sum().item()} of {len(ties)};  round(x/S)+Z vs torch mismatches: {(a != torch_q).sum().item()}")
assert torch.equal(a, torch_q) and bool((a.long() - b.long()).abs().eq(1).all())

# %% slideshow={"slide_type": "subslide"}
assert zero_point.item() % 2 == 1 and (a != b).sum().item() == len(ties)  # odd Z: every tie differs
display(Markdown(f"With the odd zero-point {zero_point.item()} **every** exact tie ({(a != b).sum().item()} of {len(ties)}) "
                 "gets a different code under the two conventions; PyTorch uses round-then-shift. The multiplicative "
                 "form of the notes uses its own $s$ and $z$:"))

# %% slideshow={"slide_type": "-"}
bits = 8
s = (2**bits - 1) / (2.0 - (-2.0))  # alpha = 2, beta = -2
z = -round(-2.0 * s) - 2 ** (bits - 1)
print(f"s = {s} (exactly 1/S in exact arithmetic), beta * s = {-2.0 * s} is a tie -> z = {z}")
mult = {}
for x_ in (1.3, -2.0, 2.0):
    q_ = max(-128, min(127, round(s * x_ + z)))
    mult[x_] = (q_, (q_ - z) / s)
    print(f"x = {x_:+.1f}: s*x+z = {s * x_ + z:+.4f} -> q = {q_:4d} -> x_hat = {(q_ - z) / s:+.4f}")
assert z == 0 and mult[1.3][0] == q.item() + 1 and round(mult[1.3][1], 4) == round(x_hat.item(), 4)

# %% slideshow={"slide_type": "fragment"}
assert Fraction(s) == 1 / S_exact and Fraction(-2.0 * s) == t_exact and z == Z_exact  # exact: the same tie as by hand
display(Markdown(f"$s = {s}$ is exact, $\\beta s = {-2.0 * s}$ is an exact tie, and half-to-even gives $z = {z}$: the "
                 "multiplicative notes agree with exact arithmetic, not with PyTorch's float32 zero-point. "
                 f"1.3 gets code {mult[1.3][0]} instead of {q.item()} but the same $\\hat x$. Codes are only comparable "
                 "between tools that share the convention **and** the zero-point."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Full [−128, 127] vs restricted [−127, 127]
#
# A signed symmetric grid with the **full** range divides $\max|x|$ by 127.5, so the top code 127 sits half a step
# below $+\max|x|$. The **restricted** range drops −128 and divides by 127: symmetric, and $\pm\max|x|$ exact.

# %% slideshow={"slide_type": "-"}
w = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
rows = []
for restricted, lo_hi in ((False, None), (True, (-127, 127))):
    s_, z_ = calc_qparams(w, 8, symmetric=True, restricted=restricted)
    lo_, hi_ = qrange(8, restricted=restricted)
    kw = {} if lo_hi is None else {"quant_min": lo_hi[0], "quant_max": lo_hi[1]}
    o = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, **kw)
    o(w)
    assert o.calculate_qparams()[0].item() == s_.item()  # same scale as torch's observer
    q_ = quantize(w, s_, z_, lo_, hi_)
    x_hat_ = dequantize(q_, s_, z_)
    name = "restricted" if restricted else "full"
    print(f"{name:10s} [{lo_}, {hi_}]  scale = 1/{1 / s_.item():.1f}  codes {q_.tolist()}  x_hat(+1) = {x_hat_[-1].item():.5f}")
    rows.append(x_hat_[-1].item())
assert rows[0] < 1.0 and rows[1] == 1.0

# %% slideshow={"slide_type": "fragment"}
n_full, n_restricted = (hi_ - lo_ + 1 for lo_, hi_ in (qrange(8), qrange(8, restricted=True)))
bits_lost = math.log2(n_full / n_restricted)  # capacity of the full range's codes minus that of the restricted one's
assert (n_full, n_restricted) == (256, 255) and bits_lost == math.log2(256 / 255)
display(Markdown(f"""Full range: +1.0 is clipped to code 127 and comes back as 127/127.5 = {rows[0]:.5f} — the one value
that matters most for a weight tensor (its largest) is the one that is wrong. Restricted range gives up one code,
$\\log_2(256/255) = {bits_lost:.4f}$ bits, to make the grid symmetric; it also avoids the −128 × −128 product that
overflows int16 pairs in some SIMD kernels."""))

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Why zero must be exactly representable
#
# Zeros are everywhere in a network: the zero padding of every convolution, ReLU outputs (measured on the digits
# CNN just below), pruned weights, the background of an image. If 0 decodes to $\varepsilon \ne 0$, every one of them adds a bias
# $\varepsilon \sum w$ to the next layer — an error that does not average out. The qparams above widen the range to
# contain 0 and round the zero-point to an integer, so $\hat x(0) = (Z - Z)\,S = 0$ exactly.

# %% slideshow={"slide_type": "-"}
relu_outs = {}
cnn = load_digits_cnn()
hooks = [m.register_forward_hook(lambda m, i, o, n=n: relu_outs.__setitem__(n, o.detach()))
         for n, m in cnn.named_modules() if isinstance(m, torch.nn.ReLU)]
with torch.no_grad():
    cnn(load_digits_split().x_test)
for h in hooks:
    h.remove()
zero_frac = {n: (o == 0).double().mean().item() for n, o in relu_outs.items()}
zero_all = sum(int((o == 0).sum()) for o in relu_outs.values()) / sum(o.numel() for o in relu_outs.values())
print(f"digits CNN on its test images: {100 * zero_all:.1f}% of all ReLU outputs are exactly 0 "
      f"({min(zero_frac.values()) * 100:.0f}% to {max(zero_frac.values()) * 100:.0f}% per ReLU layer, {len(zero_frac)} layers)")
assert min(zero_frac.values()) > 0.5  # at least half of every ReLU layer's outputs are exact zeros

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(0)
lo_r = -torch.rand(1000, generator=g) * 5 + 1  # random ranges, some not containing 0
hi_r = lo_r + torch.rand(1000, generator=g) * 5
worst = 0.0
for bits_ in (2, 4, 8):
    for symmetric in (False, True):
        s_, z_ = affine_qparams(lo_r, hi_r, bits_, symmetric=symmetric)
        lo_, hi_ = qrange(bits_)
        zero_hat = fake_quantize(torch.zeros(1000), s_, z_, lo_, hi_, axis=0)
        worst = max(worst, zero_hat.abs().max().item())
print(f"largest |x_hat(0)| over 1000 random ranges x bits (2, 4, 8) x (affine, symmetric): {worst}")
assert worst == 0.0

# %% [markdown] slideshow={"slide_type": "fragment"}
# The **Pitfalls** section shows what happens to the digits CNN when a grid has no zero level.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation
#
# `helpers/affine.py` holds the quantizer the rest of the course uses. Its core, `quantize`, multiplies by
# `1 / scale` (in float32, like PyTorch's CPU kernels), rounds half-to-even, then adds the zero-point:

# %% slideshow={"slide_type": "skip"}
src = inspect.getsource(quantize)
print(src[src.index("    check_float32_tensor"):])

# %% slideshow={"slide_type": "skip"}
src = inspect.getsource(affine_qparams)
print(src[src.index("    lo = torch.as_tensor"):])


# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Bit-exact against PyTorch
#
# Random values and tie values $(k+\tfrac12)S$, per-tensor (`qint8`/`quint8`, affine/symmetric, qparams from
# `MinMaxObserver`) and per-channel (`PerChannelMinMaxObserver`): codes, dequantized and fake-quantized values
# compared with `torch.equal`.

# %% slideshow={"slide_type": "skip"}
def ties_of(scale, zp, qmin, qmax):
    k = torch.arange(qmin - zp - 2, qmax - zp + 2, dtype=torch.float32)
    return (k + 0.5) * scale  # values at (k + 1/2) * scale: the rounding ties

g = torch.Generator().manual_seed(1)
w2 = torch.randn(16, 64, generator=g) * torch.rand(16, 1, generator=g) * 3  # channels of different size
checks = {}
for dtype, signed in ((torch.qint8, True), (torch.quint8, False)):
    lo_, hi_ = qrange(8, signed)
    for sym in (False, True):
        obs = MinMaxObserver(dtype=dtype, qscheme=torch.per_tensor_symmetric if sym else torch.per_tensor_affine)
        obs(w2)
        t_s, t_z = obs.calculate_qparams()
        s_, z_ = calc_qparams(w2, 8, signed=signed, symmetric=sym)
        name = f"{str(dtype)[6:]} {'symmetric' if sym else 'affine'}"
        checks[f"MinMaxObserver qparams, {name}"] = (s_.item(), z_.item()) == (t_s.item(), t_z.item())
        for kind, x_ in (("random", w2.flatten()), ("ties", ties_of(s_, int(z_), lo_, hi_))):
            ref = torch.quantize_per_tensor(x_, t_s.item(), t_z.item(), dtype)
            checks[f"quantize_per_tensor, {name}, {kind}"] = torch.equal(quantize(x_, s_, z_, lo_, hi_), ref.int_repr())
            ref_fq = torch.fake_quantize_per_tensor_affine(x_, t_s.item(), t_z.item(), lo_, hi_)
            checks[f"fake_quantize_per_tensor_affine, {name}, {kind}"] = torch.equal(fake_quantize(x_, s_, z_, lo_, hi_), ref_fq)

# %% slideshow={"slide_type": "skip"}
for sym in (False, True):
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                   qscheme=torch.per_channel_symmetric if sym else torch.per_channel_affine)
    obs(w2)
    t_s, t_z = obs.calculate_qparams()
    s_, z_ = calc_qparams(w2, 8, symmetric=sym, axis=0)
    name = "symmetric" if sym else "affine"
    checks[f"PerChannelMinMaxObserver qparams, {name}"] = torch.equal(s_, t_s.float()) and torch.equal(z_.long(), t_z.long())
    ties2 = (torch.arange(-64, 64, dtype=torch.float32) + 0.5)[None, :] * s_[:, None]
    for kind, x_ in (("random", w2), ("ties", ties2)):
        ref = torch.quantize_per_channel(x_, t_s.double(), t_z.long(), 0, torch.qint8)
        checks[f"quantize_per_channel, {name}, {kind}"] = torch.equal(quantize(x_, s_, z_, -128, 127, axis=0), ref.int_repr())
        ref_fq = torch.fake_quantize_per_channel_affine(x_, t_s.float(), t_z.int(), 0, -128, 127)
        checks[f"fake_quantize_per_channel_affine, {name}, {kind}"] = torch.equal(fake_quantize(x_, s_, z_, -128, 127, axis=0), ref_fq)

# %% slideshow={"slide_type": "-"}
apis = sorted({name.split(",")[0] for name in checks})
for api in apis:
    group = [ok for name, ok in checks.items() if name.startswith(api + ",")]
    print(f"{api:34s} {sum(group)}/{len(group)} bit-exact")
print(f"total: {sum(checks.values())} of {len(checks)} checks bit-exact")
assert all(checks.values()), [k for k, v in checks.items() if not v]

# %% [markdown] slideshow={"slide_type": "fragment"}
# The test suite (`tests/test_affine.py`) repeats these checks for reduced and custom ranges, 2–8 bits,
# several axes and hypothesis-generated inputs.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play
#
# Move **bits**, the **clip** range (fraction of the min-max range kept), the **scheme** and the input
# **distribution**. Left: the histogram (log counts) with the grid's levels (green; 0 drawn thicker) and its ends
# (dashed). Right: the error $\hat x - x$ across the input range — a saw-tooth of height $\pm S/2$ inside the
# grid, straight ramps outside (clipping).

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
affine_playground(bits=4, clip=1.0, scheme="affine", distribution="heavy-tailed")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same picture at fixed settings, 3 bits, for all four inputs and both schemes:

# %% slideshow={"slide_type": "-"}
grid = affine.small_multiples_view(3)  # every scheme x distribution, 8192 samples each
views = grid["views"]
plots.small_multiples_figure(grid)

# %% slideshow={"slide_type": "-"}
for d in affine.DISTRIBUTIONS:
    a_, s_ = views[("affine", d)]["sqnr_db"], views[("symmetric", d)]["sqnr_db"]
    print(f"{d:13s} SQNR affine {a_:5.2f} dB   symmetric {s_:5.2f} dB")
relu_gap = views[("affine", "relu")]["sqnr_db"] - views[("symmetric", "relu")]["sqnr_db"]
assert 5 < relu_gap < 7  # one-sided data wastes the negative half of a symmetric grid: about one bit

# %% slideshow={"slide_type": "fragment"}
centred_gap = max(abs(views[("affine", d)]["sqnr_db"] - views[("symmetric", d)]["sqnr_db"]) for d in ("normal", "uniform"))
assert centred_gap < 1 < relu_gap
display(Markdown(f"On the one-sided ReLU data the symmetric grid spends half its codes on negative values that never occur: "
                 f"{relu_gap:.1f} dB lost, about one bit at 6.02 dB per bit. On zero-centred data (normal, uniform) the "
                 f"two schemes differ by at most {centred_gap:.2f} dB, which is why weights are usually quantized "
                 "symmetrically (cheaper: no zero-point terms in the integer matmul) and activations after ReLU affinely."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Rounding vs clipping error
#
# Shrinking the range makes the step smaller (less **rounding** error for the many small values) but clips the
# few large ones (more **clipping** error). Sweep it on the heavy-tailed data at 4 bits, symmetric:

# %% slideshow={"slide_type": "-"}
x_ht = affine.sample_distribution("heavy-tailed", 16384, seed=1)
amax = x_ht.abs().max().item()
clips = [round(0.05 * i, 2) for i in range(1, 21)]
parts = {"total": [], "rounding": [], "clipping": []}
for c in clips:
    x_hat_c = fake_quantize_range(x_ht, -c * amax, c * amax, 4, scheme="symmetric")
    r_, c_ = clipping_error_split(x_ht, x_hat_c, -c * amax, c * amax)
    parts["rounding"].append(r_)
    parts["clipping"].append(c_)
    parts["total"].append(mse(x_ht, x_hat_c))
best = min(range(len(clips)), key=lambda i: parts["total"][i])
print(f"min-max (clip 1.00): MSE {parts['total'][-1]:.4g}   best clip {clips[best]:.2f}: MSE {parts['total'][best]:.4g} "
      f"({parts['total'][-1] / parts['total'][best]:.1f}x lower)")
assert 0 < best < len(clips) - 1 and parts["total"][best] < parts["total"][-1] / 2

# %% slideshow={"slide_type": "-"}
plots.clip_sweep_figure(clips, parts, "heavy-tailed data, 4-bit symmetric: the MSE U-curve")

# %% [markdown] slideshow={"slide_type": "fragment"}
# A U-curve: to the right rounding dominates, to the left clipping. Min-max calibration sits at the far right end;
# the calibration methods of lesson 05 (percentile, MSE-optimal, KL) are ways to find the bottom of the U.

# %% [markdown] slideshow={"slide_type": "slide"}
# ### SQNR vs bits: the 6.02 dB rule
#
# For data **uniform** over the grid, the error is uniform on $[-S/2, S/2]$ (power $S^2/12$) and the signal power
# is $R^2/12$ with $R = (2^b-1)S$, so $\mathrm{SQNR} = 20\log_{10}(2^b - 1) \approx 6.02\,b$ dB: each bit buys 6 dB.

# %% slideshow={"slide_type": "-"}
g = torch.Generator().manual_seed(2)
data = {"uniform": torch.rand(50_000, generator=g) * 2 - 1, "gaussian": torch.randn(50_000, generator=g)}
bit_list = list(range(2, 11))
sqnr = {name: [sqnr_db(v, fake_quantize_tensor(v, b)) for b in bit_list] for name, v in data.items()}
lines = ["| bits | uniform (dB) | 20·log10(2^b−1) | 6.02·b | gaussian (dB) |", "|---:|---:|---:|---:|---:|"]
for i, b in enumerate(bit_list):
    theory = 20 * torch.log10(torch.tensor(2.0**b - 1)).item()
    lines.append(f"| {b} | {sqnr['uniform'][i]:.2f} | {theory:.2f} | {6.02 * b:.2f} | {sqnr['gaussian'][i]:.2f} |")
    assert abs(sqnr["uniform"][i] - theory) < 0.05
display(Markdown("\n".join(lines)))


# %% slideshow={"slide_type": "-"}
def fit_line(xs, ys):
    xs, ys = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)
    slope = ((xs - xs.mean()) * (ys - ys.mean())).sum() / ((xs - xs.mean()) ** 2).sum()
    return slope.item(), (ys.mean() - slope * xs.mean()).item()

fits = {name: fit_line(bit_list[2:], ys[2:]) for name, ys in sqnr.items()}  # 4..10 bits
for name, (slope, c) in fits.items():
    c602 = sum(y - 6.02 * b for b, y in zip(bit_list[2:], sqnr[name][2:])) / len(bit_list[2:])
    resid = max(abs(y - 6.02 * b - c602) for b, y in zip(bit_list[2:], sqnr[name][2:]))
    print(f"{name:9s} least squares: {slope:.3f}·b {c:+.2f} dB;  6.02·b + c with c = {c602:+.2f} dB, max residual {resid:.2f} dB")
    if name == "uniform":
        assert abs(c602) < 0.5 and resid < 0.5 and abs(slope - 6.02) < 0.1
assert abs(fits["gaussian"][0] - 6.02) < 0.15 and fits["gaussian"][1] < -5

# %% slideshow={"slide_type": "-"}
plots.sqnr_bits_figure(bit_list, sqnr)

# %% slideshow={"slide_type": "fragment"}
below = [u - g_ for u, g_ in zip(sqnr["uniform"][2:], sqnr["gaussian"][2:])]  # 4..10 bits
assert min(below) > 5 and abs(fits["gaussian"][0] - fits["uniform"][0]) < 0.15
display(Markdown(f"Uniform data follow the rule (slope and offset printed above). Gaussian data keep the slope "
                 f"(**{fits['gaussian'][0]:.2f} dB per bit**) but sit {min(below):.1f}–{max(below):.1f} dB lower: min-max "
                 "stretches the grid to the rare tails, so most values share a few central codes."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Real model: granularity on the digits CNN's weights
#
# The trained digits CNN (five weight tensors). One scale per **tensor**, per output **channel**, or per
# **group** of 16/32/64 consecutive inputs of a channel; 4-bit symmetric, MSE against the fp32 weights:

# %% slideshow={"slide_type": "-"}
model = load_digits_cnn()
split = load_digits_split()
fp32_acc = evaluate(model, split.x_test, split.y_test)
layers = {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
settings_ = {"per-tensor": ("tensor", None), "per-channel": ("channel", None),
             "group 64": ("group", 64), "group 32": ("group", 32), "group 16": ("group", 16)}
table = {n: {k: mse(w, fake_quantize_weight(w, 4, granularity=g, group_size=gs)) for k, (g, gs) in settings_.items()}
         for n, w in layers.items()}
lines = ["| layer | shape | " + " | ".join(settings_) + " |", "|---|---|" + "---:|" * len(settings_)]
for n, w in layers.items():
    lines.append(f"| {n} | {tuple(w.shape)} | " + " | ".join(f"{table[n][k]:.3g}" for k in settings_) + " |")
display(Markdown("\n".join(lines)))
print(f"fp32 test accuracy: {fp32_acc:.2f}% on {len(split.y_test)} test images")

# %% slideshow={"slide_type": "-"}
total = {k: sum(table[n][k] * layers[n].numel() for n in layers) / sum(w.numel() for w in layers.values()) for k in settings_}
print("all weights, 4-bit:", "  ".join(f"{k} {v:.3g}" for k, v in total.items()))
print(f"per-channel is {total['per-tensor'] / total['per-channel']:.2f}x lower than per-tensor, "
      f"group 16 another {total['per-channel'] / total['group 16']:.2f}x")
assert all(table[n]["per-channel"] <= table[n]["per-tensor"] for n in layers)
assert total["group 16"] < total["group 32"] < total["group 64"] < total["per-channel"] < total["per-tensor"]


# %% slideshow={"slide_type": "fragment"}
fan_in0 = layers["features.0"][0].numel()
assert fan_in0 < 16 and table["features.0"]["group 16"] == table["features.0"]["per-channel"]  # one group = the channel
display(Markdown(f"Each finer granularity lowers the error (`features.0` has only {fan_in0} inputs per channel, so its "
                 "groups are its channels). The price is one scale per group: a float16 scale per 16 4-bit weights is "
                 f"{torch.finfo(torch.float16).bits / 16:g} extra bit per weight. Does the error matter for accuracy? Fake-quantize every conv and linear "
                 "weight (BN and biases stay fp32):"))

# %% slideshow={"slide_type": "slide"}
def quantized_copy(model, bits, granularity, group_size=None):
    q_model = copy.deepcopy(model)
    with torch.no_grad():
        for m in q_model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(fake_quantize_weight(m.weight, bits, granularity=granularity, group_size=group_size))
    return q_model

acc_bits = [8, 4, 3, 2]
acc = {k: [evaluate(quantized_copy(model, b, g, gs), split.x_test, split.y_test) for b in acc_bits]
       for k, (g, gs) in settings_.items() if k in ("per-tensor", "per-channel", "group 16")}
lines = ["| weight bits | " + " | ".join(acc) + " |", "|---:|" + "---:|" * len(acc)]
lines += [f"| {b} | " + " | ".join(f"{acc[k][i]:.2f}%" for k in acc) + " |" for i, b in enumerate(acc_bits)]
display(Markdown(f"fp32: **{fp32_acc:.2f}%**\n\n" + "\n".join(lines)))

# %% slideshow={"slide_type": "-"}
plots.accuracy_bits_figure(acc_bits, acc, fp32_acc)

# %% slideshow={"slide_type": "-"}
i8, i3, i2 = acc_bits.index(8), acc_bits.index(3), acc_bits.index(2)
print(f"8 bits: every granularity within {max(fp32_acc - a[i8] for a in acc.values()):.2f} points of fp32")
print(f"3 bits: per-tensor loses {fp32_acc - acc['per-tensor'][i3]:.2f} points, per-channel {fp32_acc - acc['per-channel'][i3]:.2f}")
print(f"2 bits: per-tensor {acc['per-tensor'][i2]:.2f}%, per-channel {acc['per-channel'][i2]:.2f}%, group 16 {acc['group 16'][i2]:.2f}%")
print(f"(one test image = {100 / len(split.y_test):.2f} points)")
assert all(abs(a[i8] - fp32_acc) < 0.5 for a in acc.values())
assert acc["per-channel"][i3] > acc["per-tensor"][i3]
assert acc["group 16"][i2] > max(acc["per-tensor"][i2], acc["per-channel"][i2])

# %% slideshow={"slide_type": "fragment"}
i4 = acc_bits.index(4)
loss4 = max(fp32_acc - a[i4] for a in acc.values())
n_w = sum(w.numel() for w in layers.values())
mse2 = {k: sum(mse(w, fake_quantize_weight(w, 2, granularity=g)) * w.numel() for w in layers.values()) / n_w
        for k, g in (("per-tensor", "tensor"), ("per-channel", "channel"))}
print(f"4 bits: every granularity within {loss4:.2f} points of fp32;  2-bit weight MSE: per-tensor "
      f"{mse2['per-tensor']:.3g}, per-channel {mse2['per-channel']:.3g}")
assert loss4 < 1 and mse2["per-channel"] < mse2["per-tensor"] and acc["per-channel"][i2] <= acc["per-tensor"][i2]
display(Markdown(f"This small CNN on {len(split.y_test)} test images is robust: 8 and 4 bits cost (almost) nothing, "
                 "3 bits separates per-tensor from per-channel, and at 2 bits only the group scales hold up. At 2 bits "
                 f"per-channel ({acc['per-channel'][i2]:.2f}%) does not beat per-tensor ({acc['per-tensor'][i2]:.2f}%) here "
                 f"although its weight MSE is {mse2['per-tensor'] / mse2['per-channel']:.1f}× lower: accuracy is not a "
                 "monotone function of weight MSE, and a single test image moves it by the step printed above. Lower MSE "
                 "is a good bet, not a guarantee — always measure the model."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls
#
# Four mistakes, each run for real, then fixed.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 1 · A grid without a zero level
#
# A "mid-rise" quantizer (levels at the *centres* of $2^b$ equal bins, common in signal processing) has no level at
# 0. Feed the CNN 1- and 2-bit input images quantized that way — the black background (exact zeros) turns grey:

# %% slideshow={"slide_type": "-"}
x_test = split.x_test
print(f"{(x_test == 0).float().mean().item() * 100:.1f}% of the test pixels are exactly 0")
for b in (1, 2):
    step = 1.0 / 2**b
    mid_rise = step * (torch.floor(x_test / step).clamp(max=2**b - 1) + 0.5)  # levels step/2, 3step/2, ...
    zero_exact = fake_quantize_tensor(x_test, b, signed=False)  # affine grid on [0, 1]: 0 is a level
    acc_mr, acc_ze = evaluate(model, mid_rise, split.y_test), evaluate(model, zero_exact, split.y_test)
    print(f"{b} bit: background decodes to {mid_rise.min().item():.3f} vs {zero_exact.min().item():.0f};"
          f"  accuracy mid-rise {acc_mr:.2f}%  zero-exact {acc_ze:.2f}%")
    assert acc_ze > acc_mr


# %% [markdown] slideshow={"slide_type": "fragment"}
# Fix: widen the range to contain 0 and round the zero-point to an integer (`affine_qparams` does both), so
# $\hat x(0) = 0$ exactly and every padded or ReLU-zero input stays zero.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 2 · Tie convention mismatch: off-by-one codes vs PyTorch
#
# A hand-written kernel that computes `round(x / scale + zero_point)` looks right and passes random tests —
# but not on ties:

# %% slideshow={"slide_type": "-"}
def my_quantize(x, scale, zero_point):  # the "shift, then round" form many papers write
    return torch.clamp(torch.round(x / scale + zero_point), -128, 127).to(torch.int8)

s_, z_ = 0.02, 5
x_rand = torch.randn(10_000, generator=torch.Generator().manual_seed(3))
x_ties = (torch.arange(-100, 100) + 0.5) * 0.25  # exact ties for a power-of-two scale
differ = {}
for name, x_, sc in (("random", x_rand, s_), ("ties", x_ties, 0.25)):
    ref = torch.quantize_per_tensor(x_, sc, z_, torch.qint8).int_repr()
    differ[name] = (my_quantize(x_, sc, z_) != ref).sum().item()
    print(f"{name:6s}: {differ[name]:5d} of {len(x_)} codes differ from torch")
assert differ["random"] == 0 and differ["ties"] == len(x_ties)  # passes random tests; odd zero-point 5: every tie off

# %% slideshow={"slide_type": "-"}
fixed = quantize(x_ties, 0.25, z_, -128, 127)  # round(x * (1/scale)) + zero_point, half-to-even
ref = torch.quantize_per_tensor(x_ties, 0.25, z_, torch.qint8).int_repr()
print("after the fix:", (fixed != ref).sum().item(), "codes differ")
assert torch.equal(fixed, ref)

# %% [markdown] slideshow={"slide_type": "fragment"}
# Random data almost never hit an exact tie, so the bug hides; test on tie values, and match both the rounding
# mode and the order of *round* and *shift*. (Division `x / scale` vs multiplication `x * (1/scale)` can differ in the
# last bit too — PyTorch's CPU kernels multiply.)

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 3 · Restricted vs full range mismatch
#
# An observer calibrated for the full range [−8, 7] (4-bit, affine) feeding a kernel that saturates at the
# restricted [−7, 7]. It matters most where values pile up at the ends of the range — e.g. activations after a
# `tanh` (or a ReLU6-style clamp):

# %% slideshow={"slide_type": "-"}
x_act = torch.tanh(3 * torch.randn(10_000, generator=torch.Generator().manual_seed(4)))
s_full, z_full = calc_qparams(x_act, 4)  # qparams for [-8, 7]
q_full = quantize(x_act, s_full, z_full, *qrange(4))
q_mismatch = quantize(x_act, s_full, z_full, *qrange(4, restricted=True))  # kernel clamps to [-7, 7]
moved = (q_full != q_mismatch).float().mean().item()
steps = lambda x_hat_, s: ((x_hat_ - x_act).abs().max() / s).item()
mse_ok, mse_bad = mse(x_act, dequantize(q_full, s_full, z_full)), mse(x_act, dequantize(q_mismatch, s_full, z_full))
print(f"{100 * moved:.1f}% of the codes changed; worst error {steps(dequantize(q_mismatch, s_full, z_full), s_full):.2f} steps")
print(f"MSE: matched {mse_ok:.3g}   mismatched {mse_bad:.3g}  ({mse_bad / mse_ok:.1f}x)")
s_r, z_r = calc_qparams(x_act, 4, restricted=True)  # fix: qparams for the range the kernel uses
x_hat_r = fake_quantize(x_act, s_r, z_r, *qrange(4, restricted=True))
print(f"fixed (restricted qparams and clamp): MSE {mse(x_act, x_hat_r):.3g}, worst error {steps(x_hat_r, s_r):.2f} steps")
assert moved > 0.1 and mse_bad > 2 * mse_ok and steps(x_hat_r, s_r) <= 0.5 + 1e-5
assert steps(dequantize(q_mismatch, s_full, z_full), s_full) > 1

# %% [markdown] slideshow={"slide_type": "fragment"}
# The fix's MSE is even lower than the matched full range's, although its step is larger. Where do the grids'
# levels fall relative to this data, which piles up at ±1?

# %% slideshow={"slide_type": "-"}
near_end = (x_act.abs() >= 0.99).double()  # the pile-up at the ends of tanh
grids = {"full [-8, 7]": (s_full, z_full, qrange(4)), "restricted [-7, 7]": (s_r, z_r, qrange(4, restricted=True))}
split_mse = {}
for name, (s_g, z_g, (lo_g, hi_g)) in grids.items():
    err2 = (fake_quantize(x_act, s_g, z_g, lo_g, hi_g).double() - x_act.double()) ** 2
    pos = [(v / s_g.double() + int(z_g)).item() for v in (-1.0, 1.0)]  # where -1 and +1 fall, in codes
    ends = (err2 * near_end).sum().item() / len(x_act)
    split_mse[name] = (ends, (err2 * (1 - near_end)).sum().item() / len(x_act), s_g.item())
    print(f"{name:18s} S = {s_g.item():.4f}, Z = {int(z_g):2d}, levels {(lo_g - int(z_g)) * s_g.item():+.4f} .. "
          f"{(hi_g - int(z_g)) * s_g.item():+.4f};  -1, +1 at codes {pos[0]:+.2f}, {pos[1]:+.2f};  "
          f"MSE from |x| >= 0.99: {ends:.2e}, from the rest: {split_mse[name][1]:.2e}")
print(f"{100 * near_end.mean().item():.1f}% of the samples have |x| >= 0.99")
(end_f, mid_f, sf), (end_r, mid_r, sr) = split_mse.values()
assert end_f > 100 * end_r and end_f > mid_f  # the pile-up dominates the full grid's error, not the restricted one's
assert mid_r > mid_f  # inside, the restricted grid's larger step costs more, as S^2/12 predicts

# %% slideshow={"slide_type": "fragment"}
(lo4, hi4), (lo4r, hi4r) = qrange(4), qrange(4, restricted=True)
display(Markdown(f"""The full range has {hi4 - lo4} steps over [−1, 1] and must put 0 on a level, so ±1 are ±{(hi4 - lo4) / 2:g} steps away:
the grid is shifted (Z = {int(z_full)}) and **both** ends of the data land half a step from the nearest level.
Here {100 * near_end.mean().item():.1f}% of the samples sit within 0.01 of ±1, and they contribute
{end_f:.2e} of the full range's MSE. The restricted range has {hi4r - lo4r} steps, so ±1 = ±{(hi4r - lo4r) // 2} steps are levels and the pile-up
costs only {end_r:.1e}. Its larger step ({sr:.4f} vs {sf:.4f}) raises the error on the rest of the data from
{mid_f:.2e} to {mid_r:.2e} — there the full range's smaller step wins — far less than it saves at the ends."""))

# %% slideshow={"slide_type": "fragment"}
worst_steps = steps(dequantize(q_mismatch, s_full, z_full), s_full)
assert 1 < worst_steps <= 1.5 + 1e-5  # the dropped code's half step plus the one step it was moved
display(Markdown(f"Every value that needed the dropped code is off by up to {worst_steps:.2f} steps — silently, no error "
                 "is raised. Fix: derive the scale, zero-point and clamp bounds from one "
                 "`qrange(bits, signed, restricted)` call, and give the observer (`quant_min`/`quant_max`) the range the "
                 "kernel really uses."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### 4 · One outlier wrecks a per-tensor scale
#
# Plant a single large weight (10× the largest) in `classifier.1` and quantize it at 4 bits:

# %% slideshow={"slide_type": "-"}
w4 = layers["classifier.1"].clone()
w4[0, 0] = 10 * w4.abs().max()
others = torch.ones_like(w4, dtype=torch.bool)
others[0, 0] = False
for gran in ("tensor", "channel"):
    x_hat_ = fake_quantize_weight(w4, 4, granularity=gran)
    zeroed = ((x_hat_ == 0) & (w4 != 0))[others].float().mean().item()
    print(f"per-{gran:7s}: MSE of the other weights {mse(w4[others], x_hat_[others]):.3g},  {100 * zeroed:.1f}% of them rounded to 0")
t_mse = mse(w4[others], fake_quantize_weight(w4, 4, granularity="tensor")[others])
c_mse = mse(w4[others], fake_quantize_weight(w4, 4, granularity="channel")[others])
zeroed_t = ((fake_quantize_weight(w4, 4, granularity="tensor") == 0) & (w4 != 0))[others].float().mean().item()
assert t_mse > 10 * c_mse and zeroed_t > 0.5

# %% [markdown] slideshow={"slide_type": "fragment"}
# Per-tensor, the outlier sets the step for every weight of the layer and most of them collapse to 0. Per-channel confines
# the damage to the outlier's own row. (Clipping the outlier — the U-curve above — or keeping outliers in higher
# precision, as LLM.int8 does in lesson 07, are the other fixes.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary

# %% slideshow={"slide_type": "-"}
display(Markdown(f'''
- Affine: $q = \\mathrm{{round}}(x/S) + Z$ fits any range; symmetric ($Z = 0$) is cheaper and fits zero-centred weights.
  On ReLU-like data the symmetric grid measured {relu_gap:.1f} dB worse at 3 bits.
- [-2, 2] → int8: PyTorch's float32 qparams are $S = {scale.item():.6f}$, $Z = {zero_point.item()}$; exact arithmetic
  hits the tie −127.5 and gives $Z = 0$. 1.3 → {q.item()} → {x_hat.item():.4f}; a hand scale of 0.0157 gives {x_hat_hand:.4f}.
- `round(x/S)+Z` and `round(x/S+Z)` differ on every exact tie when $Z$ is odd ({(a != b).sum().item()} of {len(ties)} here), never when $Z$ is even;
  match PyTorch's order and half-to-even rounding, and the same full/restricted range end to end.
- Error = rounding + clipping (a U-curve in the clip range); SQNR grows {fits["uniform"][0]:.2f} dB per bit on uniform data.
- Finer scales help: on the CNN's 4-bit weights per-channel cut the MSE {total["per-tensor"] / total["per-channel"]:.1f}×
  vs per-tensor, groups of 16 another {total["per-channel"] / total["group 16"]:.1f}×.
'''))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **1. Symmetric qparams.** Fill in `my_symmetric_qparams(x, bits, restricted)`: return `(scale, zero_point)` for
# signed symmetric quantization of `x` (float32 arithmetic, scale at least `torch.finfo(torch.float32).eps`).
# `check_symmetric_qparams` compares with `torch.ao.quantization.MinMaxObserver` for 2–8 bits, full and restricted,
# on skewed data, data whose largest magnitude is negative, and an all-zero tensor.

# %% slideshow={"slide_type": "-"}
def my_symmetric_qparams(x, bits, restricted=False):
    raise NotImplementedError  # your code here


_ = check_symmetric_qparams(my_symmetric_qparams)


# %% [markdown] slideshow={"slide_type": "skip"}
# *Solution* (collapsed):

# %% slideshow={"slide_type": "skip"}
def solution_symmetric_qparams(x, bits, restricted=False):
    lo_, hi_ = qrange(bits, restricted=restricted)
    amax = torch.maximum(-x.min().clamp(max=0), x.max().clamp(min=0))
    scale_ = torch.clamp(amax / (float(hi_ - lo_) / 2), min=torch.finfo(torch.float32).eps)
    return scale_, 0


assert check_symmetric_qparams(solution_symmetric_qparams)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **2. Predict the SQNR.** Using the Gaussian fit above (`fits["gaussian"]`), predict the SQNR of 6-bit min-max
# quantization of a fresh sample of 50,000 standard-normal values, then measure it on that sample. How far apart are
# they? Try a few seeds: min-max's step follows the sample's largest value.

# %% slideshow={"slide_type": "-"}
predicted = None  # your prediction in dB, from fits["gaussian"]
x_sample = None  # a fresh N(0, 1) sample of 50,000 values
measured = None  # sqnr_db(...) of 6-bit min-max quantization of x_sample
_ = check_prediction(predicted, measured, x_sample, fits["gaussian"])

# %% slideshow={"slide_type": "skip"}
slope, c = fits["gaussian"]
solution_sample = torch.randn(50_000, generator=torch.Generator().manual_seed(9))
solution_predicted, solution_measured = slope * 6 + c, sqnr_db(solution_sample, fake_quantize_tensor(solution_sample, 6))
assert check_prediction(solution_predicted, solution_measured, solution_sample, fits["gaussian"])

# %% [markdown] slideshow={"slide_type": "subslide"}
# **3. Beat min-max on real weights.** Find a symmetric clip range for `classifier.1`'s weights at 3 bits
# (`fake_quantize_range`, a fraction of $\max|w|$) whose MSE is lower than the min-max one. How much of the U-curve's
# gain survives on real (not heavy-tailed) weights? Then try
# `fake_quantize_weight(..., granularity="group", group_size=16)` at 3 bits: which helps more here, clipping or finer scales?

# %% slideshow={"slide_type": "-"}
w_fc = layers["classifier.1"]
my_clip = None  # a fraction of max|w| in (0, 1], e.g. 0.8
_ = check_clip(my_clip, w_fc)

# %% slideshow={"slide_type": "skip"}
m_ = w_fc.abs().max().item()
cands = [round(0.05 * i, 2) for i in range(4, 21)]
errs = [mse(w_fc, fake_quantize_range(w_fc, -c * m_, c * m_, 3, scheme="symmetric")) for c in cands]
solution_clip = cands[min(range(len(cands)), key=errs.__getitem__)]
assert check_clip(solution_clip, w_fc)
mse_g16 = mse(w_fc, fake_quantize_weight(w_fc, 3, granularity="group", group_size=16))
print(f"best clip {solution_clip}: MSE {min(errs):.4g};  group 16 at 3 bits (no clipping): MSE {mse_g16:.4g}")
