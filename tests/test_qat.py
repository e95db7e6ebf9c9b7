"""Tests of helpers.qat: STE vs torch's fake-quant kernels, LSQ gradients, QAT layers, PTQ/QAT plumbing."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from helpers.affine import affine_qparams, calc_qparams, fake_quantize, fake_quantize_tensor, qrange
from helpers.models import DigitsCNN, evaluate, load_digits_cnn, seed_everything, train_epochs
from helpers.plotting.qat import accuracy_curves, accuracy_vs_bits, ste_figure, ste_grid_figure
from helpers.qat import (
    ActQuantizer,
    LSQQuantize,
    QATLayer,
    RangeObserver,
    WeightQuantizer,
    calibrate,
    fake_quant_ste,
    freeze_observers,
    lsq_grad_scale,
    lsq_init_step,
    lsq_quantize,
    make_qat_model,
    ptq_model,
    qat_layers,
    ste_grid_view,
    ste_mask,
    ste_view,
)

# ---------------------------------------------------------------- STE vs torch


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    lo=st.floats(-4.0, -0.01),
    hi=st.floats(0.01, 4.0),
    seed=st.integers(0, 2**16),
)
def test_ste_matches_torch_per_tensor(bits, lo, hi, seed):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(300, generator=gen) * 2).requires_grad_()
    scale, zp = affine_qparams(lo, hi, bits, signed=False)
    qmin, qmax = qrange(bits, signed=False)
    grad_out = torch.randn(300, generator=gen)
    ours = fake_quant_ste(x, scale, zp, qmin, qmax)
    (g_ours,) = torch.autograd.grad(ours, x, grad_out)
    ref = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), qmin, qmax)
    (g_ref,) = torch.autograd.grad(ref, x, grad_out)
    assert torch.equal(ours, ref)
    assert torch.equal(g_ours, g_ref)
    assert torch.equal(ste_mask(x.detach(), scale, zp, qmin, qmax), g_ref != 0) or bool((grad_out == 0).any())


def test_ste_matches_torch_per_channel():
    x = (torch.randn(8, 5, 3) * 3).requires_grad_()
    scale, zp = calc_qparams(x.detach(), 3, axis=0)
    qmin, qmax = qrange(3)
    ours = fake_quant_ste(x, scale, zp, qmin, qmax, axis=0)
    ref = torch.fake_quantize_per_channel_affine(x, scale, zp, 0, qmin, qmax)
    assert torch.equal(ours, ref)
    g = torch.randn_like(x)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(ref, x, g)[0])


def test_ste_forward_equals_affine_fake_quantize_and_mask_values():
    x = torch.linspace(-3, 3, 601)
    out = fake_quant_ste(x, 0.25, 1, -8, 7)
    assert torch.equal(out, fake_quantize(x, 0.25, 1, -8, 7))
    mask = ste_mask(x, 0.25, 1, -8, 7)
    codes = torch.round(x * 4) + 1
    assert torch.equal(mask, (codes >= -8) & (codes <= 7))
    assert mask.any() and not mask.all()


def test_ste_gradient_zero_outside_one_inside_scalar():
    x = torch.tensor([0.37, 1.2, -0.9], requires_grad=True)
    fake_quant_ste(x, 0.25, 0, -4, 3).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]


@settings(max_examples=25, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_ste_idempotent(bits, seed):
    x = torch.randn(200, generator=torch.Generator().manual_seed(seed))
    scale, zp = calc_qparams(x, bits)
    qmin, qmax = qrange(bits)
    once = fake_quant_ste(x, scale, zp, qmin, qmax)
    assert torch.equal(fake_quant_ste(once, scale, zp, qmin, qmax), once)


# ---------------------------------------------------------------- LSQ


def _lsq_autograd_reference(x, step, qmin, qmax, g):
    """LSQ written with plain autograd: gradient scaling trick + round with an identity gradient."""
    s = step * g + (step - step * g).detach()
    v = x / s
    r = v + (torch.round(v) - v).detach()
    # torch.where, not torch.clamp: clamp's backward drops the gradient at r == qmin/qmax exactly,
    # while LSQ (and torch's fake-quant kernels) keep codes equal to qmin/qmax inside the range
    low, high = torch.full_like(r, qmin), torch.full_like(r, qmax)
    return torch.where(r < qmin, low, torch.where(r > qmax, high, r)) * s


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 8), signed=st.booleans(), seed=st.integers(0, 2**16))
def test_lsq_gradients_match_autograd_reference_per_tensor(bits, signed, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, generator=gen, dtype=torch.float64)
    step0 = torch.tensor(0.05 + torch.rand((), generator=gen, dtype=torch.float64).item() * 0.5, dtype=torch.float64)
    qmin, qmax = qrange(bits, signed)
    g = lsq_grad_scale(x.numel(), qmax)
    grad_out = torch.randn(256, generator=gen, dtype=torch.float64)

    xa, sa = x.clone().requires_grad_(), step0.clone().requires_grad_()
    out = lsq_quantize(xa, sa, bits, signed=signed)
    out.backward(grad_out)

    xb, sb = x.clone().requires_grad_(), step0.clone().requires_grad_()
    ref = _lsq_autograd_reference(xb, sb, qmin, qmax, g)
    ref.backward(grad_out)
    # float64 both ways; x * (1/s) vs x / s can differ in the last bit, so a tight tolerance
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    assert torch.allclose(xa.grad, xb.grad)
    assert torch.allclose(sa.grad, sb.grad, rtol=1e-9, atol=1e-12)


def test_lsq_gradients_match_autograd_reference_per_channel():
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    step0 = lsq_init_step(x, 3, axis=0)
    qmin, qmax = qrange(3)
    g = lsq_grad_scale(x.numel() // 6, qmax)
    grad_out = torch.randn_like(x)
    xa, sa = x.clone().requires_grad_(), step0.clone().requires_grad_()
    lsq_quantize(xa, sa, 3, axis=0).backward(grad_out)
    xb, sb = x.clone().requires_grad_(), step0.clone().reshape(6, 1, 1, 1).requires_grad_()
    _lsq_autograd_reference(xb, sb, qmin, qmax, g).backward(grad_out)
    assert sa.grad.shape == (6,)
    assert torch.allclose(sa.grad, sb.grad.reshape(6), rtol=1e-9, atol=1e-12)
    assert torch.allclose(xa.grad, xb.grad)


def test_lsq_matches_torch_learnable_fake_quant():
    # torch's LSQ-style kernel with zero_point 0: same forward, same x and scale gradients
    x = (torch.randn(1000) * 2).requires_grad_()
    step = torch.tensor([0.3], requires_grad=True)
    g = 0.5
    ours = lsq_quantize(x, step, 3, grad_scale=g)
    ours.backward(torch.ones_like(ours))
    x2 = x.detach().clone().requires_grad_()
    step2 = torch.tensor([0.3], requires_grad=True)
    ref = torch._fake_quantize_learnable_per_tensor_affine(x2, step2, torch.tensor([0.0]), -4, 3, g)
    ref.backward(torch.ones_like(ref))
    assert torch.equal(ours, ref)
    assert torch.equal(x.grad, x2.grad)
    assert torch.allclose(step.grad, step2.grad, rtol=1e-5)


def test_lsq_step_gradient_by_hand():
    x = torch.tensor([0.3, 1.7, -5.0, 9.0])
    step = torch.tensor(1.0, requires_grad=True)
    out = LSQQuantize.apply(x, step, -4, 3, 1.0)
    out.sum().backward()
    # inside: round(v) - v = 0 - 0.3, 2 - 1.7; below: qmin = -4; above: qmax = 3
    expected = (0 - 0.3) + (2 - 1.7) + (-4) + 3
    assert math.isclose(step.grad.item(), expected, abs_tol=1e-6)
    assert out.tolist() == [0.0, 2.0, -4.0, 3.0]


def test_lsq_grad_scale_and_init():
    assert lsq_grad_scale(100, 4) == pytest.approx(1 / 20)
    x = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    assert torch.allclose(lsq_init_step(x, 3), torch.tensor(2 * 2.0 / math.sqrt(3)))
    assert torch.allclose(lsq_init_step(x, 3, axis=0), torch.tensor([4 / math.sqrt(3), 4 / math.sqrt(3)]))


# ---------------------------------------------------------------- modules


def test_qat_layer_equals_fake_quant_of_weights_in_eval_linear():
    torch.manual_seed(0)
    lin = nn.Linear(12, 5)
    layer = QATLayer(copy.deepcopy(lin), bits=4)
    x = torch.rand(32, 12)
    calibrate(layer, x)
    layer.eval()
    scale, zp = affine_qparams(layer.act_quant.observer.min_val, layer.act_quant.observer.max_val, 4, signed=False)
    qmin, qmax = qrange(4, signed=False)
    x_hat = fake_quantize(x, scale, zp, qmin, qmax)
    w_hat = fake_quantize_tensor(lin.weight.detach(), 4, scheme="symmetric", granularity="channel", axis=0)
    expected = torch.nn.functional.linear(x_hat, w_hat, lin.bias.detach())
    with torch.no_grad():
        assert torch.allclose(layer(x), expected, atol=1e-6)


def test_qat_layer_equals_fake_quant_of_weights_in_eval_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
    layer = QATLayer(copy.deepcopy(conv), bits=3, act_bits=8)
    x = torch.rand(4, 3, 5, 5)
    calibrate(layer, x)
    scale, zp = layer.act_quant.qparams()
    x_hat = fake_quantize(x, scale, zp, *qrange(8, signed=False))
    w_hat = fake_quantize_tensor(conv.weight.detach(), 3, scheme="symmetric", granularity="channel", axis=0)
    with torch.no_grad():
        assert torch.allclose(layer(x), conv._conv_forward(x_hat, w_hat, None), atol=1e-6)
    # weights per channel: one scale per output channel
    assert layer.weight_quant.qparams(conv.weight)[0].shape == (6,)


@pytest.mark.parametrize("method", ["minmax", "lsq"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_qat_layer_accumulates_integer_codes_and_keeps_the_gradients(method, dtype):
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True).to(dtype)
    layer = calibrate(QATLayer(conv, bits=3, act_bits=4, method=method), torch.rand(8, 3, 6, 6, dtype=dtype))
    freeze_observers(layer).train()  # ranges fixed: the recomputation below sees the same scales
    x = torch.rand(4, 3, 6, 6, dtype=dtype)
    x[:, :, :3, :3] = 0.0  # a flat corner: many positions see the same patch
    x.requires_grad_()
    y = layer(x)
    x_hat = layer.act_quant(x)
    w_hat = layer.weight_quant(conv.weight)
    s_x = layer.act_quant.qparams()[0].to(dtype)
    s_w = layer.weight_quant.qparams(conv.weight)[0].to(dtype)
    codes_x = torch.round(x_hat.detach() / s_x)
    codes_w = torch.round(w_hat.detach() / s_w.reshape(-1, 1, 1, 1))
    acc = conv._conv_forward(codes_x, codes_w, None)
    assert torch.equal(acc, torch.round(acc))  # integer accumulator, exact in any summation order
    expected = acc * (s_x * s_w).reshape(-1, 1, 1) + conv.bias.detach().reshape(-1, 1, 1)
    assert torch.equal(y.detach(), expected)
    reference = conv._conv_forward(x_hat, w_hat, conv.bias)  # the same value in exact arithmetic
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(y, reference, atol=tol)
    g = torch.randn_like(y)
    params = [x, conv.weight] + ([layer.act_quant.step, layer.weight_quant.step] if method == "lsq" else [])
    ours = torch.autograd.grad(y, params, g, retain_graph=True)
    ref = torch.autograd.grad(reference, params, g)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=tol)


def test_make_qat_model_dtype_widens_exactly_and_casts_inputs():
    fp = load_digits_cnn()
    q = make_qat_model(fp, 4, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in q.parameters())
    assert fp.features[0].weight.dtype == torch.float32  # original untouched
    assert torch.equal(q.features[0].layer.weight, fp.features[0].weight.double())
    x = torch.rand(16, 1, 8, 8)
    calibrate(q, x)  # float32 images are cast to the model's float64
    with torch.no_grad():
        assert q(x.double()).dtype == torch.float64
    p64 = ptq_model(fp, 8, x, dtype=torch.float64)
    assert next(p64.parameters()).dtype == torch.float64
    with pytest.raises(TypeError, match="dtype"):
        make_qat_model(fp, 4, dtype=torch.int8)
    with pytest.raises(TypeError, match="dtype"):
        make_qat_model(fp, 4, dtype="float64")


def test_float64_qat_ptq_agree_with_float32_within_a_few_images():
    from helpers.data import load_digits_split

    d = load_digits_split()
    fp = load_digits_cnn()
    acc32 = evaluate(ptq_model(fp, 8, d.x_train[:256]), d.x_test, d.y_test)
    acc64 = evaluate(ptq_model(fp, 8, d.x_train[:256], dtype=torch.float64), d.x_test, d.y_test)
    assert abs(acc32 - acc64) <= 100 * 2 / len(d.y_test)


def test_weight_quantizer_passes_gradient_to_weight():
    w = torch.randn(4, 3, requires_grad=True)
    wq = WeightQuantizer(w.detach(), 2)
    wq(w).sum().backward()
    assert w.grad is not None and set(w.grad.unique().tolist()) <= {0.0, 1.0}
    assert w.grad.sum() > 0


def test_range_observer_modes_and_freeze():
    obs = RangeObserver("minmax").train()
    obs(torch.tensor([0.0, 1.0]))
    obs(torch.tensor([-1.0, 0.5]))
    assert (obs.min_val.item(), obs.max_val.item()) == (-1.0, 1.0)
    ema = RangeObserver("ema", momentum=0.5).train()
    ema(torch.tensor([0.0, 2.0]))
    ema(torch.tensor([0.0, 4.0]))
    assert ema.max_val.item() == 3.0
    ema.freeze()
    ema(torch.tensor([0.0, 100.0]))
    assert ema.max_val.item() == 3.0
    ev = RangeObserver().eval()
    ev(torch.tensor([1.0]))
    assert not ev.initialized  # eval mode does not observe (only calibrate does)


def test_act_quantizer_needs_calibration():
    aq = ActQuantizer(4).eval()
    with pytest.raises(RuntimeError, match="calibrate"):
        aq(torch.rand(3))


def test_make_qat_model_swaps_every_conv_and_linear_and_keeps_original():
    fp = load_digits_cnn()
    q = make_qat_model(fp, 4)
    names = [n for n, _ in qat_layers(q)]
    assert names == ["features.0", "features.3", "features.7", "classifier.1", "classifier.3"]
    assert isinstance(fp.features[0], nn.Conv2d)  # original untouched
    lsq = make_qat_model(fp, 3, method="lsq")
    assert all(layer.weight_quant.step.shape == (layer.layer.weight.shape[0],) for _, layer in qat_layers(lsq))


def test_ptq_8bit_close_to_fp32_and_eval_does_not_move_ranges():
    from helpers.data import load_digits_split

    d = load_digits_split()
    fp = load_digits_cnn()
    p = ptq_model(fp, 8, d.x_train[:256])
    before = [layer.act_quant.observer.max_val.clone() for _, layer in qat_layers(p)]
    acc = evaluate(p, d.x_test, d.y_test)
    after = [layer.act_quant.observer.max_val for _, layer in qat_layers(p)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert acc >= evaluate(fp, d.x_test, d.y_test) - 1.0


def test_freeze_observers_stops_training_updates():
    fp = load_digits_cnn()
    q = calibrate(make_qat_model(fp, 4), torch.rand(16, 1, 8, 8))
    freeze_observers(q)
    before = [layer.act_quant.observer.max_val.clone() for _, layer in qat_layers(q)]
    q.train()
    q(torch.rand(16, 1, 8, 8) * 5)
    assert all(torch.equal(a, layer.act_quant.observer.max_val) for a, (_, layer) in zip(before, qat_layers(q)))


def test_qat_training_is_deterministic():
    from helpers.data import DigitsSplit, load_digits_split

    d = load_digits_split()
    small = DigitsSplit(d.x_train[:256], d.y_train[:256], d.x_test[:128], d.y_test[:128])
    runs = []
    for _ in range(2):
        seed_everything(0)
        q = calibrate(make_qat_model(DigitsCNN(), 3), small.x_train)
        runs.append(train_epochs(q, 1, lr=0.01, seed=0, data=small))
        runs.append(q.features[0].layer.weight.detach().clone())
    assert runs[0] == runs[2]
    assert torch.equal(runs[1], runs[3])


# ---------------------------------------------------------------- plotting


def test_ste_curves_mask_matches_grid():
    c = ste_view(2, 1.0)
    assert set(c["mask"].unique().tolist()) == {0.0, 1.0}
    assert c["x_hat"].unique().numel() == 4
    # the mask is 1 exactly where x's code lands inside the grid
    q = (c["x"] / c["scale"]).round() + c["zero_point"]
    inside = (q >= c["qmin"]) & (q <= c["qmax"])
    assert torch.equal(c["mask"].bool(), inside)
    v = ste_view(4, 0.5)
    assert "levels=16" in v["readout"] and ste_figure(v).axes
    assert len(ste_grid_figure(ste_grid_view((2, 3), (1.0,))).axes) == 4
    assert accuracy_vs_bits([8, 2], {"PTQ": [99.0, 50.0]}, 99.3).axes
    assert accuracy_curves({"a": {"fp32": [1.0, 2.0]}}, fp32=99.0).axes


# ---------------------------------------------------------------- bad input


def test_bad_input_fake_quant_ste():
    x = torch.randn(5)
    with pytest.raises(ValueError, match="scale"):
        fake_quant_ste(x, 0.0, 0, -4, 3)
    with pytest.raises(ValueError, match="scale"):
        fake_quant_ste(x, torch.tensor([-1.0]), 0, -4, 3)
    with pytest.raises(ValueError, match="qmin"):
        fake_quant_ste(x, 0.1, 0, 3, -4)
    with pytest.raises(ValueError, match="zero_point"):
        fake_quant_ste(x, 0.1, 9, -4, 3)
    with pytest.raises(TypeError, match="x"):
        fake_quant_ste(torch.arange(5), 0.1, 0, -4, 3)
    with pytest.raises(ValueError, match="x"):
        fake_quant_ste(torch.tensor([float("nan")]), 0.1, 0, -4, 3)
    with pytest.raises(ValueError, match="axis"):
        fake_quant_ste(x, 0.1, 0, -4, 3, axis=2)
    with pytest.raises(ValueError, match="scale"):
        fake_quant_ste(torch.randn(3, 2), torch.ones(2), 0, -4, 3, axis=0)
    with pytest.raises(ValueError, match="scale"):
        ste_mask(x, -0.1, 0, -4, 3)


def test_bad_input_lsq():
    x = torch.randn(5)
    with pytest.raises(ValueError, match="bits"):
        lsq_quantize(x, torch.tensor(0.1), 1)
    with pytest.raises(ValueError, match="bits"):
        lsq_quantize(x, torch.tensor(0.1), 9)
    with pytest.raises(ValueError, match="step"):
        lsq_quantize(x, torch.tensor(0.0), 4)
    with pytest.raises(ValueError, match="step"):
        lsq_quantize(x, torch.tensor(-0.5), 4)
    with pytest.raises(TypeError, match="step"):
        lsq_quantize(x, 0.1, 4)
    with pytest.raises(ValueError, match="grad_scale"):
        lsq_quantize(x, torch.tensor(0.1), 4, grad_scale=0.0)
    with pytest.raises(ValueError, match="n_per_step"):
        lsq_grad_scale(0, 3)
    with pytest.raises(ValueError, match="bits"):
        lsq_init_step(x, 12)


def test_bad_input_modules_and_models():
    with pytest.raises(ValueError, match="bits"):
        QATLayer(nn.Linear(2, 2), bits=1)
    with pytest.raises(ValueError, match="act_bits"):
        QATLayer(nn.Linear(2, 2), bits=4, act_bits=9)
    with pytest.raises(TypeError, match="layer"):
        QATLayer(nn.ReLU())
    with pytest.raises(ValueError, match="method"):
        ActQuantizer(4, method="magic")
    with pytest.raises(ValueError, match="mode"):
        RangeObserver("histogram")
    with pytest.raises(ValueError, match="momentum"):
        RangeObserver("ema", momentum=0.0)
    with pytest.raises(ValueError, match="method"):
        WeightQuantizer(torch.randn(2, 2), 4, method="x")
    with pytest.raises(TypeError, match="model"):
        make_qat_model("not a model", 4)
    with pytest.raises(ValueError, match="bits"):
        make_qat_model(nn.Linear(2, 2), 0)
    with pytest.raises(ValueError, match="observer"):
        make_qat_model(nn.Linear(2, 2), 4, observer="kl")
    with pytest.raises(TypeError, match="x"):
        calibrate(nn.Linear(2, 2), torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch_size"):
        calibrate(nn.Linear(2, 2), torch.ones(2, 2), batch_size=0)
    with pytest.raises(TypeError, match="model"):
        freeze_observers(None)
    with pytest.raises(TypeError, match="model"):
        list(qat_layers(3))
    with pytest.raises(ValueError, match="bits"):
        ptq_model(nn.Linear(2, 2), 17, torch.ones(2, 2))


def test_bad_input_plotting():
    with pytest.raises(ValueError, match="bits"):
        ste_view(1, 1.0)
    with pytest.raises(ValueError, match="clip"):
        ste_view(3, 0.0)
    with pytest.raises(ValueError, match="bits_list"):
        ste_grid_view((), (1.0,))
    with pytest.raises(ValueError, match="views"):
        ste_grid_figure([])
    with pytest.raises(ValueError, match="results"):
        accuracy_vs_bits([8, 4], {"PTQ": [1.0]}, 99.0)
    with pytest.raises(ValueError, match="results"):
        accuracy_vs_bits([8], {}, 99.0)
    with pytest.raises(ValueError, match="panels"):
        accuracy_curves({})


# ---------------------------------------------------------------- as strict as torch: every dtype torch accepts

FQ_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _near_ties(dtype, scale, k_lo, k_hi, shape, seed):
    """Values within ~1e-6 relative of a half-integer code, where rounding order decides the result."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(k_lo, k_hi, shape, generator=g).double()
    jitter = (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5) * 1e-6
    return ((k + 0.5 + jitter) * scale.double()).to(dtype)


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(FQ_DTYPES),
    scale=st.floats(1e-3, 10.0),
    zp=st.integers(-8, 8),
    bits=st.integers(2, 8),
    seed=st.integers(0, 2**16),
)
def test_ste_equals_torch_on_every_dtype_per_tensor(dtype, scale, zp, bits, seed):
    qmin, qmax = qrange(bits, True)
    zp = max(qmin, min(qmax, zp))
    s = torch.tensor(scale, dtype=torch.float32)
    x = torch.cat([_near_ties(dtype, s, 2 * qmin, 2 * qmax, (400,), seed), (torch.randn(400) * scale * qmax).to(dtype)])
    x.requires_grad_(True)
    ours = fake_quant_ste(x, scale, zp, qmin, qmax)
    ref = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
    assert ours.dtype == ref.dtype == dtype
    assert torch.equal(ours, ref)
    g = torch.randn(x.shape).to(dtype)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(ref, x, g, retain_graph=True)[0])
    assert torch.equal(ste_mask(x, scale, zp, qmin, qmax), torch.autograd.grad(ref, x, torch.ones_like(x))[0] != 0)


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from(FQ_DTYPES), bits=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_ste_equals_torch_on_every_dtype_per_channel(dtype, bits, seed):
    qmin, qmax = qrange(bits, True)
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(6, generator=g) * 0.5 + 1e-3
    zp = torch.randint(qmin, qmax + 1, (6,), generator=g, dtype=torch.int32)
    x = _near_ties(dtype, scale[:, None], 2 * qmin, 2 * qmax, (6, 300), seed).requires_grad_(True)
    ours = fake_quant_ste(x, scale, zp, qmin, qmax, axis=0)
    ref = torch.fake_quantize_per_channel_affine(x, scale, zp, 0, qmin, qmax)
    assert ours.dtype == ref.dtype == dtype
    assert torch.equal(ours, ref)
    gy = torch.randn(x.shape, generator=g).to(dtype)
    assert torch.equal(torch.autograd.grad(ours, x, gy)[0], torch.autograd.grad(ref, x, gy, retain_graph=True)[0])
    assert torch.equal(
        ste_mask(x, scale, zp, qmin, qmax, axis=0), torch.autograd.grad(ref, x, torch.ones_like(x))[0] != 0
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ste_half_precision_every_value_equals_torch(dtype):
    """All 2^16 finite bit patterns of float16/bfloat16 (before: rounded in half precision, thousands differed)."""
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    x = x[torch.isfinite(x)].clone().requires_grad_(True)
    for scale, zp, qmin, qmax in [
        (0.0123, 3, -128, 127),
        (0.1, 0, 0, 255),
        (1e-3, 100, 0, 65535),
        (37.7, -5, -128, 127),
    ]:
        ours = fake_quant_ste(x, scale, zp, qmin, qmax)
        ref = torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)
        assert torch.equal(ours, ref)
        assert torch.equal(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(ref.sum(), x)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_act_and_weight_quantizers_equal_torch_fake_quantize_modules(dtype):
    """ActQuantizer/WeightQuantizer (min-max) equal torch.ao FakeQuantize with the same qparams, fwd and bwd."""
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

    torch.manual_seed(0)
    x = (torch.randn(4, 3, 8, 8) * 3).abs().to(dtype)
    aq = ActQuantizer(8, observer="minmax")
    calibrate(nn.Sequential(aq), x.float())
    scale, zp = aq.qparams()
    fq = FakeQuantize(MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8)
    fq.disable_observer()
    fq.scale.resize_(1).copy_(scale.reshape(1))
    fq.zero_point.resize_(1).copy_(zp.reshape(1))
    aq.eval()
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ours, ref = aq(xa), fq(xb)
    assert ours.dtype == ref.dtype == dtype and torch.equal(ours, ref)
    gy = torch.randn(x.shape).to(dtype)
    assert torch.equal(torch.autograd.grad(ours, xa, gy)[0], torch.autograd.grad(ref, xb, gy)[0])

    w = (torch.randn(5, 3, 3, 3) * 0.2).to(dtype)
    wq = WeightQuantizer(w, 8)
    wscale, wzp = wq.qparams(w)
    fqw = FakeQuantize(
        MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric, ch_axis=0,
    )  # fmt: skip
    fqw.disable_observer()
    fqw.scale = wscale.clone()
    fqw.zero_point = wzp.clone()
    wa = w.clone().requires_grad_(True)
    wb = w.clone().requires_grad_(True)
    ours, ref = wq(wa), fqw(wb)
    assert ours.dtype == ref.dtype == dtype and torch.equal(ours, ref)
    gw = torch.randn(w.shape).to(dtype)
    assert torch.equal(torch.autograd.grad(ours, wa, gw)[0], torch.autograd.grad(ref, wb, gw)[0])


def test_bad_input_as_strict_as_torch():
    x = torch.randn(8)
    for bad in (torch.arange(8), torch.zeros(8, dtype=torch.complex64)):
        with pytest.raises(TypeError, match="x must"):
            fake_quant_ste(bad, 0.1, 0, -128, 127)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fake_quant_ste(None, 0.1, 0, -128, 127)
    with pytest.raises(TypeError, match="scale and zero_point"):
        fake_quant_ste(x, None, 0, -128, 127)
    with pytest.raises(TypeError, match="scale and zero_point"):
        fake_quant_ste(x, 0.1, None, -128, 127)
    with pytest.raises(ValueError, match=r"scale must lie in \["):
        fake_quant_ste(x, 1e-50, 0, -128, 127)  # 0 in float32: torch's 1/scale is inf
    with pytest.raises(ValueError, match=r"scale must lie in \["):
        fake_quant_ste(x.half(), 1e39, 0, -128, 127)  # inf in float32
    with pytest.raises(ValueError, match=r"scale must lie in \["):
        fake_quant_ste(x.double(), 1e-50, 0, -128, 127)
    with pytest.raises(ValueError, match=r"scale must lie in \["):
        fake_quant_ste(x.bfloat16(), torch.tensor([1e-39]), 0, -128, 127)  # float32 denormal: 1/scale overflows
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="x must contain only finite"):
            fake_quant_ste(torch.tensor([1.0, bad], dtype=torch.float16), 0.1, 0, -128, 127)
        aq = ActQuantizer(8)
        with pytest.raises(ValueError, match="x must contain only finite"):
            aq(torch.tensor([1.0, bad]))
        assert not aq.observer.initialized  # the bad batch did not reach the observer
        wq = WeightQuantizer(torch.randn(2, 3))
        with pytest.raises(ValueError, match="weight must contain only finite"):
            wq(torch.tensor([[1.0, bad, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(TypeError, match="x must"):
        ActQuantizer(8)(torch.arange(4))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        WeightQuantizer(None)
