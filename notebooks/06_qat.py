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
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao import notice

import torch
from IPython.display import Markdown, display

from helpers.affine import affine_qparams, calc_qparams, qrange
from helpers.data import load_digits_split
from helpers.measure import serialized_size
from helpers.models import DigitsCNN, evaluate, load_digits_cnn, seed_everything, train_digits_cnn, train_epochs
from helpers.plotting.qat import accuracy_curves, accuracy_vs_bits, ste_grid_figure
from helpers.qat import (FakeQuantSTE, LSQQuantize, calibrate, fake_quant_ste, freeze_observers,
                         lsq_grad_scale, lsq_quantize, make_qat_model, ptq_model, qat_layers, ste_grid_view)

torch.set_num_threads(2)
seed_everything(0)
NOTEBOOK_START = time.perf_counter()
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
# - **PTQ**: calibrate activation ranges (running min-max over the training images), freeze, evaluate.
# - **QAT**: same start, then fine-tune through the fake quantizers (Adam, cosine schedule, seeded); EMA observers for the first epoch, frozen after.
#
# **The same numbers on every CPU.** These small runs compute in **float64** (the fp32 checkpoint widened exactly; scales stay float32), and each QAT layer accumulates the *integer codes*, as an int8 kernel does, then rescales once. In float32 the kernel's summation order (AVX-512, AVX2, plain C) moves a value across a rounding boundary or breaks a max-pool tie the other way, and fake quantization turns that last bit into a different training trajectory.

# %% slideshow={"slide_type": "skip"}
data = load_digits_split()
fp32 = load_digits_cnn()
fp64 = load_digits_cnn().to(torch.float64)   # exact: every float32 is a float64; PTQ/QAT below compute in float64
acc_fp32 = evaluate(fp32, data.x_test, data.y_test)
BITS, QAT_EPOCHS, QAT_LR = (8, 4, 3, 2), 2, 1e-3


def freeze_after_first_epoch(model, epoch):
    if epoch == 0:
        freeze_observers(model)


print(f"fp32 test accuracy {acc_fp32:.2f}%  ({len(data.x_train)} train / {len(data.x_test)} test images)")

# %% slideshow={"slide_type": "-"}
ptq_acc, qat_acc, qat_curves = {}, {}, {}
for bits in BITS:
    ptq_acc[bits] = evaluate(ptq_model(fp64, bits, data.x_train), data.x_test, data.y_test)
    seed_everything(0)
    qat = calibrate(make_qat_model(fp64, bits), data.x_train)
    curve = train_epochs(qat, QAT_EPOCHS, lr=QAT_LR, seed=0, on_epoch_end=freeze_after_first_epoch)
    qat_acc[bits], qat_curves[bits] = curve[-1], [ptq_acc[bits], *curve]

# %% slideshow={"slide_type": "subslide"}
rows = [f"| {b} | {ptq_acc[b]:.2f} | {qat_acc[b]:.2f} | {qat_acc[b] - ptq_acc[b]:+.2f} |" for b in BITS]
display(Markdown(
    f"fp32 reference: **{acc_fp32:.2f}%** · QAT: {QAT_EPOCHS} epochs of fine-tuning per bit width\n\n"
    "| bits (W and A) | PTQ % | QAT % | QAT − PTQ |\n|---|---|---|---|\n" + "\n".join(rows)
))
assert acc_fp32 - qat_acc[4] <= 1.5, "at 4 bits QAT should stay within 1.5 points of fp32"
assert qat_acc[2] - ptq_acc[2] >= 10, "at 2 bits QAT should beat PTQ by at least 10 points"

# %% slideshow={"slide_type": "subslide"}
accuracy_vs_bits(BITS, {"PTQ (min-max calibration)": [ptq_acc[b] for b in BITS],
                        f"QAT ({QAT_EPOCHS} epochs fine-tuning)": [qat_acc[b] for b in BITS]}, acc_fp32)

# %% slideshow={"slide_type": "fragment"}
gap = {b: qat_acc[b] - ptq_acc[b] for b in BITS}
display(Markdown(
    f"At 8 bits the two agree to within {abs(gap[8]):.2f} points: rounding noise is far below what the model cares about. "
    f"As bits fall PTQ degrades, to {ptq_acc[2]:.1f}% at 2 bits, while QAT keeps {qat_acc[2]:.1f}% — "
    f"a gain of {gap[2]:.1f} points from {QAT_EPOCHS} epochs of training the weights to live on the grid."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Accuracy per epoch: float training vs QAT
#
# Left: training from scratch with the same seed and schedule, unquantized vs QAT at 4 bits (both in float64, initialised in float64) (the curve seminar material usually shows).
# Right: fine-tuning the trained checkpoint — epoch 0 is the PTQ accuracy, then each QAT epoch.

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
    "fine-tuning the checkpoint": {f"QAT {b}-bit (epoch 0 = PTQ)": qat_curves[b] for b in (4, 3, 2)},
}, fp32=acc_fp32)

# %% slideshow={"slide_type": "fragment"}
display(Markdown(
    f"From scratch the 4-bit QAT model ends at {qat4_curve[-1]:.2f}% after {SCRATCH_EPOCHS} epochs vs the unquantized model's {float_curve[-1]:.2f}% "
    f"(a gap of {float_curve[-1] - qat4_curve[-1]:+.2f} points). Fine-tuning, the 2-bit model climbs from "
    f"{qat_curves[2][0]:.1f}% (PTQ) to {qat_curves[2][-1]:.1f}% in {QAT_EPOCHS} epochs."
))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## LSQ vs fixed min-max ranges at 2-3 bits
#
# Three ways to set the ranges during the same QAT fine-tuning budget:
# **fixed** (the PTQ calibration, never updated), **EMA then frozen** (the runs above), and **LSQ** (steps learned by gradient descent, initialised to $2\,\mathrm{mean}|x|/\sqrt{q_{max}}$).

# %% slideshow={"slide_type": "-"}
range_acc = {}
for bits in (3, 2):
    seed_everything(0)
    fixed = ptq_model(fp64, bits, data.x_train)                  # ranges frozen from calibration
    fixed_curve = train_epochs(fixed, QAT_EPOCHS, lr=QAT_LR, seed=0)
    seed_everything(0)
    lsq = calibrate(make_qat_model(fp64, bits, method="lsq"), data.x_train)
    lsq_start = evaluate(lsq, data.x_test, data.y_test)
    lsq_curve = train_epochs(lsq, QAT_EPOCHS, lr=QAT_LR, seed=0)
    range_acc[bits] = {"fixed min-max": fixed_curve[-1], "EMA, then frozen": qat_acc[bits],
                       "LSQ": lsq_curve[-1], "LSQ before training": lsq_start}

# %% slideshow={"slide_type": "subslide"}
cols = ["fixed min-max", "EMA, then frozen", "LSQ", "LSQ before training"]
rows = [f"| {b} | " + " | ".join(f"{range_acc[b][c]:.2f}" for c in cols) + f" | {ptq_acc[b]:.2f} |" for b in (3, 2)]
display(Markdown("| bits | " + " | ".join(cols) + " | PTQ (min-max) |\n|---" * 1 + "|---" * (len(cols) + 1) + "|\n" + "\n".join(rows)))
best2 = max(range_acc[2], key=lambda k: range_acc[2][k] if k != "LSQ before training" else -1)
print(f"best range method at 2 bits after {QAT_EPOCHS} epochs: {best2}")

# %% slideshow={"slide_type": "fragment"}
spread3 = max(range_acc[3][k] for k in cols[:3]) - min(range_acc[3][k] for k in cols[:3])
display(Markdown(
    f"At 2 bits, LSQ ends at {range_acc[2]['LSQ']:.2f}% vs {range_acc[2]['fixed min-max']:.2f}% with ranges fixed at their min-max calibration. "
    f"Even before any training, LSQ's mean-based step gives {range_acc[2]['LSQ before training']:.1f}% where min-max PTQ gives {ptq_acc[2]:.1f}%: "
    "at 2 bits min-max spends its four levels on rare extremes. "
    f"At 3 bits the three methods lie within {spread3:.2f} points of each other ({round(spread3 * len(data.y_test) / 100)} of "
    f"{len(data.y_test)} test images): too close to call with this budget."
))

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
print("first layer after convert:", type(int8_model[1].features[0]).__name__)
assert type(int8_model[1].features[0]).__name__ == "ConvReLU2d"

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
- **LSQ** learns the step with gradient $\\operatorname{{round}}(x/s)-x/s$ (inside) or $q_{{min}}/q_{{max}}$ (clipped), scaled by $1/\\sqrt{{N q_{{max}}}}$; at 2 bits it ended at {range_acc[2]['LSQ']:.2f}% vs {range_acc[2]['fixed min-max']:.2f}% with fixed min-max ranges.
- On the digits CNN, PTQ and QAT agree at 8 bits; at 2 bits QAT ({qat_acc[2]:.1f}%) beats PTQ ({ptq_acc[2]:.1f}%) by {qat_acc[2] - ptq_acc[2]:.1f} points after {QAT_EPOCHS} epochs.
- Classic flow: `fuse_modules_qat` (train mode) → `prepare_qat` → train, freeze BN then observers → `convert` (within 1 point of fp32, {sizes['fp32'] / sizes['after convert']:.1f}x smaller). Modern flow: torchao `QATConfig` prepare → train → convert.
- A fake-quant model is still float: size only drops at `convert`.
"""))


# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# 1. **STE with the detach trick.** Write `my_fake_quant(x, scale, qmin, qmax)` (zero-point 0) *without* a custom `autograd.Function`: compute the quantized value, and combine it with `x` and `.detach()` so that the forward returns $\hat x$ and the gradient is the STE mask. The checker compares forward and gradient with `fake_quant_ste`.
# 2. **LSQ step gradient by hand.** For $x = [0.3, 1.7, -5, 9]$, step 1, signed 3 bits ($[-4, 3]$), gradient scale 1 and upstream gradient 1: what is $\partial L/\partial s$? Fill in `my_step_grad`.
# 3. *(open)* Rerun the PTQ/QAT table with per-tensor weights (hint: `WeightQuantizer` computes one scale per output channel). How much of PTQ's 2-bit loss is due to granularity?

# %% slideshow={"slide_type": "-"}
def my_fake_quant(x, scale, qmin, qmax):
    raise NotImplementedError("your turn: forward = x_hat, backward = STE mask")


my_step_grad = None   # your number for exercise 2


# %% slideshow={"slide_type": "skip"}
def check_fake_quant(fn):
    x = torch.linspace(-3, 3, 241, requires_grad=True)
    out = fn(x, 0.25, -8, 7)
    (g,) = torch.autograd.grad(out.sum(), x)
    x2 = x.detach().clone().requires_grad_()
    ref = fake_quant_ste(x2, 0.25, 0, -8, 7)
    (g_ref,) = torch.autograd.grad(ref.sum(), x2)
    assert torch.allclose(out, ref, atol=1e-6), "forward differs from fake_quant_ste"
    assert torch.equal(g, g_ref), "gradient is not the STE mask"
    return "exercise 1: correct"


def check_step_grad(value):
    x, step = torch.tensor([0.3, 1.7, -5.0, 9.0]), torch.tensor(1.0, requires_grad=True)
    LSQQuantize.apply(x, step, -4, 3, 1.0).sum().backward()
    assert value is not None and abs(value - step.grad.item()) < 1e-4, "not the LSQ step gradient"
    return "exercise 2: correct"


for check, answer in ((check_fake_quant, my_fake_quant), (check_step_grad, my_step_grad)):
    try:
        print(check(answer))
    except (NotImplementedError, AssertionError) as e:
        print(f"{check.__name__}: not yet ({type(e).__name__}: {e})")


# %% slideshow={"slide_type": "skip"}
# Solution (hidden in the slides): run it to see the checkers pass
def solution_fake_quant(x, scale, qmin, qmax):
    code = torch.round(x / scale)
    inside = ((code >= qmin) & (code <= qmax)).to(x.dtype)
    x_hat = code.clamp(qmin, qmax) * scale
    return x * inside + (x_hat - x * inside).detach()   # value x_hat, gradient = inside


solution_step_grad = (0 - 0.3) + (2 - 1.7) + (-4) + 3    # inside: round(v) - v; below: qmin; above: qmax
print(check_fake_quant(solution_fake_quant))
print(check_step_grad(solution_step_grad))

# %% slideshow={"slide_type": "skip"}
# NBVAL_IGNORE_OUTPUT
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.1f} s on {torch.get_num_threads()} threads")
