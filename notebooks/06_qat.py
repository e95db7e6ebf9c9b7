# %% [markdown] slideshow={"slide_type": "slide"}
# # 06 · Quantization-aware training
#
# Fake quantization, the straight-through estimator, learned step sizes (LSQ) —
# and why training *through* the quantizer keeps accuracy where post-training quantization loses it.

# %% slideshow={"slide_type": "skip"}
# %matplotlib inline
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd().parent))

import copy
import inspect
import logging
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao import notice

import torch
from IPython.display import Markdown, display

from helpers.affine import affine_qparams, qrange
from helpers.data import load_digits_split
from helpers.measure import serialized_size
from helpers.models import DigitsCNN, evaluate, load_digits_cnn, seed_everything, train_digits_cnn, train_epochs
from helpers.plotting.qat import accuracy_curves, accuracy_vs_bits, ste_grid_figure
from helpers.qat import (CLIP_METHODS, STEP_GRAD_X, FakeQuantSTE, LSQQuantize, calibrate, check_fake_quant,
                         check_ste, check_step_grad, fake_quant_ste, freeze_bn_stats, freeze_observers,
                         layer_input_ranges, logit_kl, lsq_grad_scale, lsq_quantize, make_qat_model, model_logits,
                         ptq_model, qat_layers, record_layer_inputs, set_act_ranges, ste_grid_view)

torch.set_num_threads(2)
seed_everything(0)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Goals
#
# - See why `round()` gives gradient descent nothing to work with, and how the **straight-through estimator** (STE) fixes it.
# - Build fake quantization as a `torch.autograd.Function` and check it against `torch.fake_quantize_per_tensor_affine`, forward and backward.
# - Learn the step size too (**LSQ**), with its gradient and gradient scale.
# - Measure **PTQ vs QAT** at 8, 4, 3 and 2 bits on the digits CNN, and the accuracy per epoch.
# - Run the two real APIs: classic `torch.ao.quantization` (`prepare_qat` → train → `convert`) and torchao `QATConfig`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Idea: train through the quantizer
#
# QAT inserts **fake quantization** into the forward pass, so the loss sees the rounding and clipping the deployed integer model will do:
#
# $$\hat x = \big(\operatorname{clamp}(\operatorname{round}(x/s) + z,\ q_{min},\ q_{max}) - z\big)\cdot s$$
#
# The trouble is the backward pass: $\frac{d}{dx}\operatorname{round}(x) = 0$ almost everywhere (and undefined at the half-integers).
# By the chain rule every weight upstream would get gradient 0.

# %% slideshow={"slide_type": "fragment"}
x = torch.linspace(-1, 1, 5, requires_grad=True)
x_hat = torch.round(x * 4) / 4          # a 0.25 grid
x_hat.sum().backward()
print("x          ", x.detach().tolist())
print("round grid ", x_hat.detach().tolist())
print("d x_hat/dx ", x.grad.tolist())
assert bool((x.grad == 0).all())        # autograd's honest answer: no signal at all

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Straight-through estimator** (Bengio et al. 2013; used by Jacob et al. 2018 and PyTorch):
# in the backward pass pretend `round` is the identity, but keep the clip honest —
#
# $$\frac{\partial \hat x}{\partial x} \approx \begin{cases}1 & q_{min} \le \operatorname{round}(x/s)+z \le q_{max}\\ 0 & \text{otherwise (clipped)}\end{cases}$$
#
# Inside the range the weights keep learning; a value pushed past the clip gets no gradient from this term.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## By hand: one scalar through a 3-bit quantizer
#
# Signed 3 bits: $q_{min}=-4$, $q_{max}=3$, scale $s = 0.25$, zero-point 0. Two inputs: one inside the range, one that clips.

# %% slideshow={"slide_type": "-"}
scale, zero_point, qmin, qmax = 0.25, 0, -4, 3
by_hand = {}
for x0 in (0.37, 1.2):
    code = round(x0 / scale) + zero_point          # Python's round is half-to-even, like torch
    q = min(max(code, qmin), qmax)
    x_hat0 = (q - zero_point) * scale
    grad = 1.0 if qmin <= code <= qmax else 0.0     # the STE mask
    by_hand[x0] = (x_hat0, grad)
    print(f"x={x0}: x/s={x0 / scale:.2f} -> code {code} -> q {q} -> x_hat {x_hat0}; STE gradient {grad}")

# %% slideshow={"slide_type": "fragment"}
x = torch.tensor([0.37, 1.2], requires_grad=True)
x_hat = fake_quant_ste(x, scale, zero_point, qmin, qmax)
x_hat.sum().backward()
print("helper x_hat:", x_hat.tolist(), " gradient:", x.grad.tolist())
assert x_hat.tolist() == [by_hand[0.37][0], by_hand[1.2][0]]
assert x.grad.tolist() == [by_hand[0.37][1], by_hand[1.2][1]]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Reference implementation: `FakeQuantSTE`
#
# A `torch.autograd.Function`: the forward does the real rounding and clipping, saves the mask of codes that stayed inside $[q_{min}, q_{max}]$, and the backward multiplies the incoming gradient by that mask.

# %% slideshow={"slide_type": "-"}
print(inspect.getsource(FakeQuantSTE))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Check against PyTorch.** `torch.fake_quantize_per_tensor_affine` is the kernel inside every `torch.ao` QAT model.
# Same input, a 4-bit range that clips part of it, a random upstream gradient: forward and backward must agree bit for bit.

# %% slideshow={"slide_type": "-"}
gen = torch.Generator().manual_seed(0)
x = (torch.randn(10_000, generator=gen) * 2).requires_grad_()
grad_out = torch.randn(10_000, generator=gen)
scale, zero_point = affine_qparams(-2.0, 2.0, 4)   # clip at about +-2: the tails get no gradient
qmin, qmax = qrange(4)
ours = fake_quant_ste(x, scale, zero_point, qmin, qmax)
(g_ours,) = torch.autograd.grad(ours, x, grad_out)
ref = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), qmin, qmax)
(g_ref,) = torch.autograd.grad(ref, x, grad_out)
assert torch.equal(ours, ref) and torch.equal(g_ours, g_ref)
print(f"forward and gradient bit-identical to torch; gradient zeroed on {(g_ref == 0).float().mean():.1%} of x (clipped)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Learned step size (LSQ)
#
# Min-max ranges are a guess. LSQ (Esser et al. 2020) makes the step $s$ a parameter: $\hat x = \operatorname{clamp}(\operatorname{round}(x/s), q_{min}, q_{max})\cdot s$, with the STE for $x$ and
#
# $$\frac{\partial \hat x}{\partial s} = \begin{cases}\operatorname{round}(x/s) - x/s & \text{inside}\\ q_{min} \text{ or } q_{max} & \text{clipped}\end{cases}
# \qquad \text{scaled by } g = \frac{1}{\sqrt{N\, q_{max}}}$$
#
# ($N$ = number of values sharing the step). Inside, the gradient sees the rounding error; outside, it pushes the step to widen the range.

# %% slideshow={"slide_type": "-"}
print(inspect.getsource(LSQQuantize.backward))

# %% slideshow={"slide_type": "subslide"}
x = (torch.randn(1000, generator=gen) * 2).requires_grad_()
step, g = torch.tensor([0.3], requires_grad=True), 0.5
ours = lsq_quantize(x, step, 3, grad_scale=g)
ours.sum().backward()
x2, step2 = x.detach().clone().requires_grad_(), torch.tensor([0.3], requires_grad=True)
ref = torch._fake_quantize_learnable_per_tensor_affine(x2, step2, torch.tensor([0.0]), -4, 3, g)
ref.sum().backward()
assert torch.equal(ours, ref) and torch.equal(x.grad, x2.grad)
assert torch.allclose(step.grad, step2.grad, rtol=1e-5)   # float32 sums in a different order
print(f"step gradient: ours {step.grad.item():.4f}, torch's learnable fake-quant {step2.grad.item():.4f}")
print(f"LSQ gradient scale for conv1's weights (9 values per channel, 3 bits): g = {lsq_grad_scale(9, 3):.4f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Play: the forward staircase and the backward mask
#
# Move **bits** and the **clip** range ($[-\text{clip}, \text{clip}]$, affine min-max qparams). Top: what the forward pass computes. Bottom: what the STE lets through — 1 inside the grid (extended half a step past the last level), 0 outside — while the true derivative of the staircase is 0.

# %% slideshow={"slide_type": "-"}
# NBVAL_IGNORE_OUTPUT
from helpers.widgets.qat import ste_widget

ste_widget(bits=3, clip=1.0)

# %% slideshow={"slide_type": "subslide"}
ste_grid_figure(ste_grid_view(bits_list=(2, 3, 4), clips=(0.5, 1.5)))

# %% [markdown] slideshow={"slide_type": "fragment"}
# A narrow clip gives a fine grid but zero gradient for most of the input; a wide clip passes every gradient but rounds coarsely.
# That trade-off is exactly what LSQ learns instead of guessing.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Real model: PTQ vs QAT at 8, 4, 3, 2 bits
#
# The digits CNN (trained fp32 checkpoint). Both sides use **the same quantizers** from `helpers.qat`: weights per output channel (symmetric min-max), activations — the input of every Conv2d/Linear — per tensor (affine).
#
# - **PTQ**, as strong as lesson 05 makes it: each of lesson 05's observers (min-max, histogram, percentile, MSE, KL) sets the activation ranges from the float model's layer inputs on a calibration set of training images; per bit width, the observer whose model is closest to fp32 *on those calibration images* is the PTQ baseline (the test set never chooses).
# - **QAT**: calibrate (EMA of per-batch min-max over the training images), then fine-tune through the fake quantizers (Adam, cosine schedule); observers frozen after the first epoch. Training depends on the seed (shuffling), so QAT runs once per seed and the table gives the mean and the min–max over seeds (one seed at 8 bits, where there is nothing to recover).
#
# Beside top-1 accuracy on the test set each row gives a continuous **fidelity** measure: the mean KL divergence from the fp32 model's predicted distribution to the quantized model's, $\mathrm{KL}(p_{fp32}\,\|\,p_q)$ over the test set (0 = identical predictions).
#
# **The same numbers on every CPU.** These small runs compute in **float64** (the fp32 checkpoint widened exactly; scales stay float32), and each QAT layer accumulates the *integer codes*, as an int8 kernel does, then rescales once. In float32 the kernel's summation order (AVX-512, AVX2, plain C) moves a value across a rounding boundary or breaks a max-pool tie the other way, and fake quantization turns that last bit into a different training trajectory.

# %% slideshow={"slide_type": "skip"}
data = load_digits_split()
fp32 = load_digits_cnn()
fp64 = load_digits_cnn().to(torch.float64)   # exact: every float32 is a float64; PTQ/QAT below compute in float64
acc_fp32 = evaluate(fp32, data.x_test, data.y_test)
BITS, QAT_EPOCHS, QAT_LR, SEEDS = (8, 4, 3, 2), 2, 1e-3, (0, 1, 2)
CALIB = data.x_train[:256]                   # PTQ's calibration images
ref_test, ref_calib = model_logits(fp64, data.x_test), model_logits(fp64, CALIB)   # the fp32 model's logits


def score(model):
    """(top-1 % on the test set, mean KL(fp32 || model) in nats on the test set)."""
    logits = model_logits(model, data.x_test)
    return 100.0 * float((logits.argmax(1) == data.y_test).double().mean()), logit_kl(ref_test, logits)


def freeze_after_first_epoch(model, epoch):   # runs after each epoch, counted from 0
    if epoch == 0:
        freeze_observers(model)


print(f"fp32 test accuracy {acc_fp32:.2f}%  ({len(data.x_train)} train / {len(data.x_test)} test images)")

# %% slideshow={"slide_type": "-"}
inputs = record_layer_inputs(fp64, CALIB)     # every Conv2d/Linear's float input on the calibration images
ptq, ptq_pick = {}, {}                        # (bits, observer) -> (acc, KL) on test; bits -> chosen observer
for bits in BITS:
    calib_kl = {}
    for method in CLIP_METHODS:
        q = set_act_ranges(make_qat_model(fp64, bits), layer_input_ranges(inputs, method, bits))
        calib_kl[method] = logit_kl(ref_calib, model_logits(q, CALIB))   # chosen on calibration data only
        ptq[bits, method] = score(q)
    ptq_pick[bits] = min(calib_kl, key=calib_kl.get)
print(f"PTQ, activation ranges from {len(CALIB)} calibration images; test top-1 % and KL(fp32 || PTQ) per observer")
print(f"{'bits':>4s}  " + "".join(f"{m:>17s}" for m in CLIP_METHODS))
for bits in BITS:
    print(f"{bits:4d}  " + "".join(f"{ptq[bits, m][0]:7.2f} {ptq[bits, m][1]:8.2g}{'*' if m == ptq_pick[bits] else ' '}"
                                   for m in CLIP_METHODS))
print("* the observer chosen on the calibration images")

# %% slideshow={"slide_type": "subslide"}
def seeds_for(bits):                          # at 8 bits QAT has nothing to recover: one seed keeps the lesson short
    return SEEDS[:1] if bits == 8 else SEEDS


qat_runs, qat_curves, starts = {}, {}, {}     # (bits, seed) -> (acc, KL); bits -> seed 0's accuracy per epoch
for bits in BITS:
    starts[bits] = calibrate(make_qat_model(fp64, bits), data.x_train)   # the same start for every seed
    for seed in seeds_for(bits):
        seed_everything(seed)
        qat = copy.deepcopy(starts[bits])
        curve = train_epochs(qat, QAT_EPOCHS, lr=QAT_LR, seed=seed, on_epoch_end=freeze_after_first_epoch)
        qat_runs[bits, seed] = score(qat)
        if seed == 0:
            qat_curves[bits] = [evaluate(starts[bits], data.x_test, data.y_test), *curve]

# %% slideshow={"slide_type": "subslide"}
def spread(values, fmt):
    """mean [min–max] of a list of numbers (the value alone for a single run)."""
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{sum(values) / len(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


best_ptq = {b: ptq[b, ptq_pick[b]] for b in BITS}
qat_acc = {b: [qat_runs[b, s][0] for s in seeds_for(b)] for b in BITS}
qat_kl = {b: [qat_runs[b, s][1] for s in seeds_for(b)] for b in BITS}
gain = {b: [a - best_ptq[b][0] for a in qat_acc[b]] for b in BITS}
rows = [f"| {b} | {ptq[b, 'minmax'][0]:.2f} · {ptq[b, 'minmax'][1]:.2g} | {ptq_pick[b]}: {best_ptq[b][0]:.2f} · {best_ptq[b][1]:.2g} "
        f"| {spread(qat_acc[b], '.2f')} · {spread(qat_kl[b], '.2g')} | {spread(gain[b], '+.2f')} |" for b in BITS]
display(Markdown(
    f"fp32 reference: **{acc_fp32:.2f}%** · each cell: top-1 % on {len(data.y_test)} test images "
    f"(one image = {100 / len(data.y_test):.2f} points) · KL(fp32 ‖ quantized) in nats · "
    f"QAT: {QAT_EPOCHS} epochs of fine-tuning, mean [min–max] over {len(SEEDS)} seeds (one at 8 bits)\n\n"
    "| bits (W and A) | PTQ min-max | PTQ best observer | QAT | QAT − best PTQ (points) |\n|---|---|---|---|---|\n" + "\n".join(rows)
))
assert acc_fp32 - min(qat_acc[4]) <= 1.5, "at 4 bits every QAT seed should stay within 1.5 points of fp32"
assert min(gain[2]) >= 10, "at 2 bits every QAT seed should beat the best PTQ observer by at least 10 points"
assert max(qat_kl[2]) < best_ptq[2][1], "at 2 bits every QAT seed should also be closer to fp32's predictions"

# %% slideshow={"slide_type": "subslide"}
accuracy_vs_bits(BITS, {"PTQ (min-max)": [ptq[b, "minmax"][0] for b in BITS],
                        "PTQ (best observer)": [best_ptq[b][0] for b in BITS],
                        f"QAT ({QAT_EPOCHS} epochs, mean of {len(SEEDS)} seeds)": [sum(qat_acc[b]) / len(qat_acc[b]) for b in BITS]},
                 acc_fp32)

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"At 8 bits PTQ (best observer: {best_ptq[8][0]:.2f}%, KL {best_ptq[8][1]:.2g}) and QAT ({spread(qat_acc[8], '.2f')}%) agree: "
    f"rounding noise is far below what the model cares about. As bits fall PTQ degrades; at 2 bits min-max gives "
    f"{ptq[2, 'minmax'][0]:.1f}% and the best observer ({ptq_pick[2]}) {best_ptq[2][0]:.1f}%, while QAT keeps "
    f"{spread(qat_acc[2], '.1f')}% over {len(SEEDS)} seeds — a gain of {spread(gain[2], '.1f')} points over the best PTQ "
    f"from {QAT_EPOCHS} epochs of training the weights to live on the grid, and its KL to fp32 falls from "
    f"{best_ptq[2][1]:.2g} to {spread(qat_kl[2], '.2g')} nats."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Freezing observers and BatchNorm
#
# Two things keep moving during QAT unless told not to. The **observers**: an EMA range follows every training batch, so the scale the weights are learning to live with keeps shifting under them. **BatchNorm**: in train mode it normalizes with the *batch's* statistics, while the deployed model folds the *running* statistics into the conv weights — so training and deployment compute different functions. The torchvision recipe (used below with `torch.ao`) freezes both after a few epochs.
# Here at 2 bits, the same runs as above with nothing frozen, with the observers frozen after epoch 1 (the table above), and with the observers and the BatchNorm statistics (`freeze_bn_stats`: running statistics used and kept, $\gamma$/$\beta$ still train) frozen after epoch 1.

# %% slideshow={"slide_type": "-"}
def freeze_observers_and_bn(model, epoch):
    if epoch == 0:
        freeze_observers(model)
        freeze_bn_stats(model)


def act_scales(model):
    return torch.stack([layer.act_quant.qparams()[0].double() for _, layer in qat_layers(model)])


def record_scales(model, epoch):                  # nothing frozen: only watch how far the ranges still move
    drift.append(act_scales(model))


FREEZE_BITS = 2
freeze_runs = {"nothing frozen": {}, "observers frozen": {s: qat_runs[FREEZE_BITS, s] for s in SEEDS},
               "observers + BN frozen": {}}
moved = []                                       # per seed: largest relative change of a layer's scale in epoch 2
for name, hook in (("nothing frozen", record_scales), ("observers + BN frozen", freeze_observers_and_bn)):
    for seed in SEEDS:
        seed_everything(seed)
        qat, drift = copy.deepcopy(starts[FREEZE_BITS]), []
        train_epochs(qat, QAT_EPOCHS, lr=QAT_LR, seed=seed, on_epoch_end=hook)
        freeze_runs[name][seed] = score(qat)
        if drift:
            moved.append(float(((drift[-1] - drift[0]).abs() / drift[0]).max()))
for name, runs in freeze_runs.items():
    print(f"{name:22s} top-1 {spread([runs[s][0] for s in SEEDS], '6.2f')} %   KL {spread([runs[s][1] for s in SEEDS], '.3f')}")
print(f"nothing frozen: the activation scales still move by up to {spread(moved, '.1%')} during epoch 2")

# %% slideshow={"slide_type": "fragment"}
mean = {name: [sum(runs[s][i] for s in SEEDS) / len(SEEDS) for i in (0, 1)] for name, runs in freeze_runs.items()}
between = max(m[0] for m in mean.values()) - min(m[0] for m in mean.values())
within = max(max(r[s][0] for s in SEEDS) - min(r[s][0] for s in SEEDS) for r in freeze_runs.values())
display(Markdown(
    f"At {FREEZE_BITS} bits over {len(SEEDS)} seeds: nothing frozen {mean['nothing frozen'][0]:.2f}% (KL {mean['nothing frozen'][1]:.3f}), "
    f"observers frozen after epoch 1 {mean['observers frozen'][0]:.2f}% (KL {mean['observers frozen'][1]:.3f}), observers and "
    f"BatchNorm frozen {mean['observers + BN frozen'][0]:.2f}% (KL {mean['observers + BN frozen'][1]:.3f}). The means lie within "
    f"{between:.2f} points of each other while one recipe's seeds alone spread over up to {within:.2f} points. Left free, "
    f"the EMA ranges still move by up to {max(moved):.1%} during epoch 2, yet in this two-epoch fine-tune at a small "
    "learning rate freezing them (or BatchNorm) after epoch 1 changes the result less than the seed does."
))
assert between < within, "the freezing recipes should differ by less than the seed-to-seed spread"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Accuracy per epoch: float training vs QAT
#
# Left: training from scratch with the same seed and schedule, unquantized vs QAT at 4 bits (both in float64, initialised in float64) (the curve seminar material usually shows).
# Right: fine-tuning the trained checkpoint (seed 0) — epoch 0 is the calibrated model before any training, then each QAT epoch.

# %% slideshow={"slide_type": "-"}
SCRATCH_EPOCHS = 5
_, float_curve = train_digits_cnn(SCRATCH_EPOCHS, seed=0, verbose=False, dtype=torch.float64)
torch.manual_seed(0)
scratch = calibrate(make_qat_model(DigitsCNN(dtype=torch.float64), 4), data.x_train[:256])
qat4_curve = train_epochs(scratch, SCRATCH_EPOCHS, lr=0.01, seed=0)
print("epoch        ", "  ".join(f"{e:6d}" for e in range(1, SCRATCH_EPOCHS + 1)))
print("float scratch", "  ".join(f"{a:6.2f}" for a in float_curve))
print("QAT-4 scratch", "  ".join(f"{a:6.2f}" for a in qat4_curve))

# %% slideshow={"slide_type": "subslide"}
accuracy_curves({
    "from scratch (same seed, same schedule)": {"float (unquantized)": float_curve, "QAT 4-bit": qat4_curve},
    "fine-tuning the checkpoint (seed 0)": {f"QAT {b}-bit (epoch 0 = calibrated)": qat_curves[b] for b in (4, 3, 2)},
}, fp32=acc_fp32)

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"From scratch the 4-bit QAT model ends at {qat4_curve[-1]:.2f}% after {SCRATCH_EPOCHS} epochs vs the unquantized model's {float_curve[-1]:.2f}% "
    f"(a gap of {float_curve[-1] - qat4_curve[-1]:+.2f} points, one seed). Fine-tuning, the 2-bit model of seed 0 climbs from "
    f"{qat_curves[2][0]:.1f}% (calibrated, before training) to {qat_curves[2][-1]:.1f}% in {QAT_EPOCHS} epochs."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## LSQ vs fixed ranges at 2 bits
#
# Three ways to set the ranges during the same QAT fine-tuning budget (seed 0 only, 2 bits, where the choice matters most):
# **fixed** (the min-max calibration, never updated), **EMA then frozen** (the runs above), and **LSQ** (steps learned by gradient descent, initialised to $2\,\mathrm{mean}|x|/\sqrt{q_{max}}$).

# %% slideshow={"slide_type": "-"}
range_res = {}                                                   # bits -> {method: (acc, KL)}
for bits in (2,):
    seed_everything(0)
    fixed = ptq_model(fp64, bits, data.x_train)                  # ranges frozen from min-max calibration
    train_epochs(fixed, QAT_EPOCHS, lr=QAT_LR, seed=0)
    seed_everything(0)
    lsq = calibrate(make_qat_model(fp64, bits, method="lsq"), data.x_train)
    lsq_start = score(lsq)
    train_epochs(lsq, QAT_EPOCHS, lr=QAT_LR, seed=0)
    range_res[bits] = {"fixed min-max": score(fixed), "EMA, then frozen": qat_runs[bits, 0], "LSQ": score(lsq), "LSQ before training": lsq_start}

# %% slideshow={"slide_type": "subslide"}
for bits, res in range_res.items():
    print(f"{bits} bits: " + " | ".join(f"{k} {a:.2f}% · {kl:.2g}" for k, (a, kl) in res.items())
          + f" | PTQ best ({ptq_pick[bits]}) {best_ptq[bits][0]:.2f}% · {best_ptq[bits][1]:.2g}")
trained = {k: v for k, v in range_res[2].items() if k != "LSQ before training"}
best2 = min(trained, key=lambda k: trained[k][1])
print(f"closest to fp32 at 2 bits after {QAT_EPOCHS} epochs (lowest KL): {best2}")

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"At 2 bits, LSQ ends at {range_res[2]['LSQ'][0]:.2f}% (KL {range_res[2]['LSQ'][1]:.2g}) vs {range_res[2]['fixed min-max'][0]:.2f}% "
    f"(KL {range_res[2]['fixed min-max'][1]:.2g}) with ranges fixed at their min-max calibration. "
    f"Even before any training, LSQ's mean-based step gives {range_res[2]['LSQ before training'][0]:.1f}% where min-max PTQ gives "
    f"{ptq[2, 'minmax'][0]:.1f}%: at 2 bits min-max spends its four levels on rare extremes. "
    f"(One seed: the QAT runs above spread over {max(qat_acc[2]) - min(qat_acc[2]):.2f} points across seeds.)"
))
assert best2 == "LSQ" and trained["LSQ"][0] > trained["fixed min-max"][0], "at 2 bits LSQ should beat fixed min-max ranges"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The classic API: `torch.ao.quantization` eager QAT
#
# `fuse_modules_qat` (model in **train** mode) → `qconfig = get_default_qat_qconfig("x86")` (the x86 engine where the platform has it) → `prepare_qat` → train, freezing BatchNorm statistics and then the observers after some epochs (the torchvision recipe) → `eval()` + `convert` to a real int8 model.
# (`torch.ao.quantization` is deprecated in favour of torchao but still works in this torch.)
# Its fused fake-quant kernels are float32 only, so this run's accuracies move with the CPU's summation order: the cell prints them as measured here and asserts the claim (the int8 model within a point of fp32).

# %% slideshow={"slide_type": "-"}
import torch.ao.quantization as tq
from torch.ao.nn.intrinsic.qat import freeze_bn_stats

ENGINE = next(e for e in ("x86", "fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines)
torch.backends.quantized.engine = ENGINE
FUSE = [["1.features.0", "1.features.1", "1.features.2"], ["1.features.3", "1.features.4", "1.features.5"],
        ["1.features.7", "1.features.8", "1.features.9"], ["1.classifier.1", "1.classifier.2"]]
wrapped = torch.nn.Sequential(tq.QuantStub(), copy.deepcopy(fp32), tq.DeQuantStub()).train()
fused = tq.fuse_modules_qat(wrapped, FUSE)
fused.qconfig = tq.get_default_qat_qconfig(ENGINE)
prepared = tq.prepare_qat(fused)
print(f"quantized engine: {ENGINE}")
print(type(prepared[1].features[0]).__name__, "with", type(prepared[1].features[0].weight_fake_quant).__name__)

# %% slideshow={"slide_type": "subslide"}
# NBVAL_IGNORE_OUTPUT
# float32-only torch.ao fake-quant kernels: the exact accuracies depend on the CPU; the claim is asserted below
BN_UPDATE_EPOCHS, OBSERVER_UPDATE_EPOCHS = 1, 2


def torchvision_recipe(model, epoch):             # runs after epoch `epoch` (counted from 0)
    if epoch + 1 >= BN_UPDATE_EPOCHS:
        model.apply(freeze_bn_stats)                # after epoch 1: BN uses running stats
    if epoch + 1 >= OBSERVER_UPDATE_EPOCHS:
        model.apply(tq.disable_observer)            # after epoch 2: scales and zero-points fixed


seed_everything(0)
classic_curve = train_epochs(prepared, 3, lr=QAT_LR, seed=0, on_epoch_end=torchvision_recipe)
int8_model = tq.convert(copy.deepcopy(prepared).eval())
acc_classic = evaluate(int8_model, data.x_test, data.y_test)
print("QAT accuracy per epoch:", [f"{a:.2f}" for a in classic_curve])
print(f"converted int8 model: {acc_classic:.2f}% (fp32 {acc_fp32:.2f}%)")
assert abs(acc_classic - acc_fp32) <= 1.0 and min(classic_curve) >= acc_fp32 - 1.5

# %% slideshow={"slide_type": "-"}
from torch.ao.nn.intrinsic.quantized import ConvReLU2d as QuantizedConvReLU2d

first = int8_model[1].features[0]
print(f"first layer after convert: {type(first).__module__}.{type(first).__name__}, weight {first.weight().dtype}")
# eval fusion also makes a (float) ConvReLU2d: check it is the quantized module holding int8 weights
assert isinstance(first, QuantizedConvReLU2d) and first.weight().dtype == torch.qint8

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The modern API: torchao `QATConfig`
#
# `quantize_(model, QATConfig(base_config, step="prepare"))` → train → `quantize_(model, QATConfig(base_config, step="convert"))`.
# torchao's QAT swaps `nn.Linear` (and embeddings), not convolutions; here the base config is int8 dynamic activations with **2-bit** per-channel weights on the two Linear layers, compared with applying the same config without training.

# %% slideshow={"slide_type": "-"}
import torchao.quantization as tao
from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
from torchao.quantization.granularity import PerAxis
from torchao.quantization.qat import QATConfig

print("Int8DynamicActivationInt4WeightConfig still in torchao:", hasattr(tao, "Int8DynamicActivationInt4WeightConfig"))
base = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int2, weight_granularity=PerAxis(0))
is_linear = lambda module, fqn: isinstance(module, torch.nn.Linear)

ao_ptq = copy.deepcopy(fp32)
quantize_(ao_ptq, base, filter_fn=is_linear)                      # PTQ with the same config
acc_ao_ptq = evaluate(ao_ptq, data.x_test, data.y_test)

# %% slideshow={"slide_type": "subslide"}
ao_qat = copy.deepcopy(fp32)
quantize_(ao_qat, QATConfig(base, step="prepare"), filter_fn=is_linear)
print("prepared:", type(ao_qat.classifier[1]).__name__)
seed_everything(0)
ao_curve = train_epochs(ao_qat, QAT_EPOCHS, lr=QAT_LR, seed=0)
quantize_(ao_qat, QATConfig(base, step="convert"), filter_fn=is_linear)
acc_ao_qat = evaluate(ao_qat, data.x_test, data.y_test)
print("converted weight:", type(ao_qat.classifier[1].weight).__name__)
print(f"2-bit Linear weights: PTQ {acc_ao_ptq:.2f}%  ->  QAT {acc_ao_qat:.2f}%  (fp32 {acc_fp32:.2f}%)")
assert acc_ao_qat >= acc_ao_ptq

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls

# %% [markdown] slideshow={"slide_type": "subslide"}
# **1. "QAT did not shrink my model."** A prepared QAT model is still a float model plus observers and fake quantizers — *bigger* than fp32. Only `convert` stores int8 weights. Measure the serialized state, not `numel()`.

# %% slideshow={"slide_type": "-"}
sizes = {"fp32": serialized_size(fp32), "after prepare_qat + training": serialized_size(prepared),
         "after convert": serialized_size(int8_model)}
for name, n in sizes.items():
    print(f"{name:30s} {n / 1e3:7.1f} kB   ({n / sizes['fp32']:.2f} x fp32)")
print("prepared weight dtype:", prepared[1].features[0].weight.dtype)
assert sizes["after prepare_qat + training"] > sizes["fp32"] > 2 * sizes["after convert"]

# %% [markdown] slideshow={"slide_type": "subslide"}
# **2. Fusing in the wrong mode.** `fuse_modules` is the *eval* fusion: it folds BatchNorm into the conv weights and refuses a model in train mode. For QAT use `fuse_modules_qat` on a model in train mode, which keeps BN as a trainable part of `ConvBnReLU2d`.

# %% slideshow={"slide_type": "-"}
train_mode = torch.nn.Sequential(tq.QuantStub(), copy.deepcopy(fp32), tq.DeQuantStub()).train()
try:
    tq.fuse_modules(train_mode, FUSE)
except AssertionError as e:
    print("fuse_modules on a train-mode model ->", type(e).__name__ + ":", str(e).splitlines()[0])
eval_fused = tq.fuse_modules(copy.deepcopy(train_mode).eval(), FUSE)
qat_fused = tq.fuse_modules_qat(copy.deepcopy(train_mode), FUSE)
print("eval fusion :", type(eval_fused[1].features[0]).__name__, "(BN folded away:", type(eval_fused[1].features[1]).__name__ + ")")
print("QAT fusion  :", type(qat_fused[1].features[0]).__name__, "(BN kept for training)")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **3. Forgetting to freeze observers.** In `torch.ao`, an enabled observer updates on *every* forward pass — also in `eval()` mode.
# Evaluating on the test set then silently re-calibrates the model on test data, and the quantization parameters you `convert` are not the ones you trained with.

# %% slideshow={"slide_type": "-"}
probe = copy.deepcopy(prepared)
probe.apply(tq.enable_observer)                                 # as if we never froze them
fq = probe[0].activation_post_process                           # the input quantizer
before = fq.calculate_qparams()[0].item()
evaluate(probe, data.x_test * 16, data.y_test)                  # e.g. raw 0..16 pixel values by mistake
after = fq.calculate_qparams()[0].item()
frozen_fq = prepared[0].activation_post_process                 # the recipe froze these
frozen_before = frozen_fq.calculate_qparams()[0].item()
evaluate(prepared, data.x_test * 16, data.y_test)
print(f"observers on : input scale {before:.5f} -> {after:.5f} after one evaluation")
print(f"observers off: input scale {frozen_before:.5f} -> {frozen_fq.calculate_qparams()[0].item():.5f}")
assert after != before and frozen_fq.calculate_qparams()[0].item() == frozen_before

# %% [markdown] slideshow={"slide_type": "fragment"}
# Our own helpers avoid this by design: a `RangeObserver` only updates in training mode or inside `calibrate`, and `freeze_observers` stops it for good.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary

# %% slideshow={"slide_type": "-"}
display(Markdown(f"""
- `round` has zero gradient; the **straight-through estimator** passes the gradient inside the clip range and blocks it outside — `FakeQuantSTE` matches `torch.fake_quantize_per_tensor_affine` forward and backward bit for bit.
- **LSQ** learns the step with gradient $\\operatorname{{round}}(x/s)-x/s$ (inside) or $q_{{min}}/q_{{max}}$ (clipped), scaled by $1/\\sqrt{{N q_{{max}}}}$; at 2 bits (seed 0) it ended at {range_res[2]['LSQ'][0]:.2f}% vs {range_res[2]['fixed min-max'][0]:.2f}% with fixed min-max ranges.
- On the digits CNN, PTQ and QAT agree at 8 bits; at 2 bits QAT ({spread(qat_acc[2], '.1f')}% over {len(SEEDS)} seeds) beats the best PTQ observer ({ptq_pick[2]}, {best_ptq[2][0]:.1f}%) by {spread(gain[2], '.1f')} points after {QAT_EPOCHS} epochs, and its predictions are closer to fp32's (KL {spread(qat_kl[2], '.2g')} vs {best_ptq[2][1]:.2g} nats).
- Freezing during QAT at {FREEZE_BITS} bits (mean of {len(SEEDS)} seeds): nothing frozen {mean['nothing frozen'][0]:.2f}%, observers frozen after epoch 1 {mean['observers frozen'][0]:.2f}%, observers and BatchNorm statistics {mean['observers + BN frozen'][0]:.2f}%.
- Classic flow: `fuse_modules_qat` (train mode) → `prepare_qat` → train, freeze BN then observers → `convert` (within 1 point of fp32, {sizes['fp32'] / sizes['after convert']:.1f}x smaller). Modern flow: torchao `QATConfig` prepare → train → convert.
- A fake-quant model is still float: size only drops at `convert`.
"""))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# 1. **Fake quantization, forward.** Write `my_fake_quant(x, scale, zero_point, qmin, qmax)` returning $\hat x$. `check_fake_quant` compares it with `torch.fake_quantize_per_tensor_affine` on exact ties, a zero-point and clipped values.
# 2. **STE with the detach trick.** Write `my_ste(x, scale, zero_point, qmin, qmax)` *without* a custom `autograd.Function`: compute $\hat x$ and the mask of codes inside $[q_{min}, q_{max}]$, and combine them with `x` and `.detach()` so that the forward returns $\hat x$ and the gradient is the STE mask. `check_ste` compares both with torch's fake-quant and its autograd, on values just inside and just outside each end of the range.
# 3. **LSQ step gradient by hand.** For $x$ = `STEP_GRAD_X` (printed below), step 1, signed 3 bits ($[-4, 3]$), gradient scale 1 and upstream gradient 1: what is $\partial L/\partial s$? Fill in `my_step_grad`; `check_step_grad` compares it with torch's learnable fake-quant kernel.
# 4. *(open)* Rerun the PTQ/QAT table with per-tensor weights (hint: `WeightQuantizer` computes one scale per output channel). How much of PTQ's 2-bit loss is due to granularity?

# %% slideshow={"slide_type": "-"}
def my_fake_quant(x, scale, zero_point, qmin, qmax):
    raise NotImplementedError("your turn: x_hat = (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale")


def my_ste(x, scale, zero_point, qmin, qmax):
    raise NotImplementedError("your turn: forward = x_hat, backward = STE mask")


my_step_grad = None   # your number for exercise 3
print("STEP_GRAD_X =", STEP_GRAD_X)
for check, answer in ((check_fake_quant, my_fake_quant), (check_ste, my_ste), (check_step_grad, my_step_grad)):
    check(answer)


# %% slideshow={"slide_type": "skip"}
# Solution (hidden in the slides): run it to see the checkers pass
def solution_fake_quant(x, scale, zero_point, qmin, qmax):
    code = torch.round(x / scale) + zero_point            # torch.round: half to even
    return (code.clamp(qmin, qmax) - zero_point) * scale  # clamp the code, not x; remove the zero point again


def solution_ste(x, scale, zero_point, qmin, qmax):
    code = torch.round(x / scale) + zero_point
    inside = ((code >= qmin) & (code <= qmax)).to(x.dtype)  # the mask of the *rounded* code, ends included
    x_hat = (code.clamp(qmin, qmax) - zero_point) * scale
    return x * inside + (x_hat - x * inside).detach()     # value x_hat, gradient = inside


# inside: round(v) - v with v = x / s (2.5 rounds to 2); below the range: qmin; above: qmax
solution_step_grad = (0 - 0.3) + (2 - 1.6) + (2 - 2.5) + (-4) + 3
assert all([check_fake_quant(solution_fake_quant), check_ste(solution_ste), check_step_grad(solution_step_grad)])
