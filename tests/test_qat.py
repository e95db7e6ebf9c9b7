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
    CLIP_METHODS,
    STEP_GRAD_X,
    ActQuantizer,
    LSQQuantize,
    QATLayer,
    RangeObserver,
    WeightQuantizer,
    calibrate,
    check_fake_quant,
    check_ste,
    check_step_grad,
    fake_quant_ste,
    freeze_bn_stats,
    freeze_observers,
    layer_input_ranges,
    logit_kl,
    lsq_grad_scale,
    lsq_init_step,
    lsq_quantize,
    make_qat_model,
    model_logits,
    ptq_model,
    qat_layers,
    record_layer_inputs,
    set_act_ranges,
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
    # the same value in exact arithmetic: x_hat's values as codes * scale (per tensor, torch's float64 rule rounds
    # x_hat itself to float32), with x_hat's gradient
    x_hat = x_hat + (codes_x * s_x - x_hat).detach()
    reference = conv._conv_forward(x_hat, w_hat, conv.bias)
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
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


def test_quantizers_follow_torch_float64_rule_near_ties():
    """float64: torch uses float32 1/scale (per tensor also a float32 product); values a hair from a tie show it."""
    scale = torch.tensor(0.1234567, dtype=torch.float32)
    x = _near_ties(torch.float64, scale, 0, 250, (4000,), 7).abs()
    aq = ActQuantizer(8, observer="minmax")
    aq.observer.min_val.fill_(0.0)
    aq.observer.max_val.fill_(float(scale) * 255)
    aq.eval()
    s, z = aq.qparams()
    assert torch.equal(aq(x), torch.fake_quantize_per_tensor_affine(x, float(s), int(z), 0, 255))
    w = _near_ties(torch.float64, scale, -120, 120, (8, 500), 8)
    wq = WeightQuantizer(w, 8)
    ws, wz = wq.qparams(w)
    assert ws.dtype == torch.float32
    assert torch.equal(wq(w), torch.fake_quantize_per_channel_affine(w, ws, wz, 0, -128, 127))


def test_per_channel_scale_and_zero_point_dtypes_as_torch():
    x = torch.randn(4, 3)
    zp = torch.zeros(4, dtype=torch.int32)
    for bad in (torch.float16, torch.float64, torch.bfloat16):
        scale = (torch.rand(4) + 0.1).to(bad)
        with pytest.raises(RuntimeError):
            torch.fake_quantize_per_channel_affine(x, scale, zp, 0, -8, 7)
        with pytest.raises(TypeError, match="scale must be a float32 tensor"):
            fake_quant_ste(x, scale, zp, -8, 7, axis=0)
        with pytest.raises(TypeError, match="scale must be a float32 tensor"):
            ste_mask(x, scale, zp, -8, 7, axis=0)
    scale = torch.rand(4) + 0.1
    for bad in (torch.int64, torch.float64, torch.bfloat16, torch.int8):
        with pytest.raises(RuntimeError, match="Zero-point"):
            torch.fake_quantize_per_channel_affine(x, scale, torch.zeros(4, dtype=bad), 0, -8, 7)
        with pytest.raises(TypeError, match="zero_point must be a tensor of dtype int32, float32, float16"):
            fake_quant_ste(x, scale, torch.zeros(4, dtype=bad), -8, 7, axis=0)
    for ok in (torch.int32, torch.float32, torch.float16):
        z = torch.zeros(4, dtype=ok)
        assert torch.equal(
            fake_quant_ste(x, scale, z, -8, 7, axis=0), torch.fake_quantize_per_channel_affine(x, scale, z, 0, -8, 7)
        )


# ---------------------------------------------------------------- LSQ against the paper's gradient (gradcheck)


def _lsq_paper_reference(x0, s0, bits, signed, n_per_step):
    """A smooth function of (x, s) whose exact derivative at (x0, s0) is LSQ's (Esser et al. 2020, eq. 3 and 4).

    Written from the paper, not from helpers: v = x0/s0, Qn/Qp the code limits, g = 1/sqrt(N * Qp);
    inside (-Qn <= round(v) <= Qp) d x_hat/ds = round(v) - v and d x_hat/dx = 1; below -Qn / above Qp,
    d x_hat/ds = -Qn / Qp and d x_hat/dx = 0; the step's gradient is multiplied by g. Frozen at (x0, s0),
    the reference is affine in (x, s) with exactly those slopes and value x_hat(x0, s0).
    """
    qn = 2 ** (bits - 1) if signed else 0
    qp = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    g = 1.0 / math.sqrt(n_per_step * qp)
    v = x0 / s0
    r = torch.round(v)
    below, above = r < -qn, r > qp
    slope_s = torch.where(below, float(-qn), torch.where(above, float(qp), r - v))
    slope_x = (~(below | above)).to(x0.dtype)
    value = torch.clamp(r, -qn, qp) * s0

    def ref(x, s):
        return value + slope_x * (x - x0) + g * slope_s * (s - s0)

    return ref


@settings(max_examples=15, deadline=None)
@given(bits=st.integers(2, 8), signed=st.booleans(), per_channel=st.booleans(), seed=st.integers(0, 2**16))
def test_lsq_gradcheck_against_the_paper(bits, signed, per_channel, seed):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(3, 7, generator=gen, dtype=torch.float64) * 2
    if not signed:
        x0 = x0.abs()
    qp = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    shape = (3,) if per_channel else ()
    s0 = (0.2 + torch.rand(shape, generator=gen, dtype=torch.float64)) * 4 / qp
    s0_b = s0.reshape(3, 1) if per_channel else s0
    ref = _lsq_paper_reference(x0, s0_b, bits, signed, 7 if per_channel else 21)

    def value_of_ref_gradient_of_lsq(x, s):
        ours = lsq_quantize(x, s, bits, signed=signed, axis=0 if per_channel else None)
        r = ref(x, s.reshape(3, 1) if per_channel else s)
        return ours + (r - ours).detach()  # numerically the reference, analytically lsq_quantize's backward

    x = x0.clone().requires_grad_()
    s = s0.clone().requires_grad_()
    assert torch.equal(lsq_quantize(x0, s0, bits, signed=signed, axis=0 if per_channel else None), ref(x0, s0_b))
    assert torch.autograd.gradcheck(value_of_ref_gradient_of_lsq, (x, s), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_lsq_dtype_errors_as_torch():
    x = torch.randn(20)
    for bad in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
            lsq_quantize(x.to(bad), torch.tensor(0.1, dtype=bad), 4)
    with pytest.raises(RuntimeError):  # torch's kernel: float16 is not computed
        xr = x.half().requires_grad_()
        torch._fake_quantize_learnable_per_tensor_affine(
            xr, torch.tensor([0.1]), torch.tensor([0.0]), -8, 7, 1.0
        ).sum().backward()
    for x_dtype, s_dtype in (
        (torch.float32, torch.float64),
        (torch.float64, torch.float32),
        (torch.float32, torch.float16),
    ):
        with pytest.raises(TypeError, match="step must have x's dtype"):
            lsq_quantize(x.to(x_dtype), torch.tensor(0.1, dtype=s_dtype), 4)
    with pytest.raises(RuntimeError):  # torch: a float64 step for float32 x is refused too
        s64 = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
        torch._fake_quantize_learnable_per_tensor_affine(x, s64, torch.tensor([0.0]), -8, 7, 1.0).sum().backward()
    with pytest.raises(ValueError, match="step must have 20 elements"):
        lsq_quantize(x.reshape(20, 1).expand(20, 3).clone(), torch.full((3,), 0.1), 4, axis=0)
    with pytest.raises(ValueError, match="x must contain only finite"):
        lsq_quantize(torch.tensor([1.0, float("inf")]), torch.tensor(0.1), 4)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        ActQuantizer(4, method="lsq", dtype=torch.float16)
    # a float64 model's LSQ layers get float64 steps, so they run without a cast
    q = make_qat_model(nn.Sequential(nn.Linear(4, 3)).double(), 4, method="lsq")
    calibrate(q, torch.rand(8, 4))
    assert q[0].act_quant.step.dtype == q[0].weight_quant.step.dtype == torch.float64


# ---------------------------------------------------------------- lesson 06's PTQ baseline and freezing


def _tiny_cnn():
    torch.manual_seed(0)
    return DigitsCNN(dtype=torch.float64).eval()


def test_layer_input_ranges_are_lesson_05_observers_on_the_float_inputs():
    from helpers.observers import observer_range

    model = _tiny_cnn()
    x = torch.rand(40, 1, 8, 8)
    inputs = record_layer_inputs(model, x, batch_size=16)
    assert list(inputs) == [n for n, _ in qat_layers(make_qat_model(model, 4))]
    assert len(inputs["features.0"]) == 3 and torch.equal(torch.cat(inputs["features.0"]), x.double())
    for method in CLIP_METHODS:
        ranges = layer_input_ranges(inputs, method, 3)
        for name, (lo, hi) in ranges.items():
            want = observer_range(method, inputs[name], 3)
            assert (lo, hi) == (float(want[0]), float(want[1]))
    q = set_act_ranges(make_qat_model(model, 3), layer_input_ranges(inputs, "mse", 3))
    before = {n: (float(m.act_quant.observer.min_val), float(m.act_quant.observer.max_val)) for n, m in qat_layers(q)}
    assert before == layer_input_ranges(inputs, "mse", 3)
    q.train()
    q(torch.rand(16, 1, 8, 8, dtype=torch.float64) * 5)  # frozen: a training batch with a wider range changes nothing
    assert before == {
        n: (float(m.act_quant.observer.min_val), float(m.act_quant.observer.max_val)) for n, m in qat_layers(q)
    }
    # min-max ranges from the float inputs are the whole range of what each layer sees in the float model
    mm = layer_input_ranges(inputs, "minmax", 8)
    assert mm["features.0"] == (float(x.min()), float(x.max()))


def test_ptq_helpers_bad_input():
    model = _tiny_cnn()
    inputs = record_layer_inputs(model, torch.rand(4, 1, 8, 8))
    with pytest.raises(ValueError, match="method"):
        layer_input_ranges(inputs, "moving_average", 4)
    with pytest.raises(ValueError, match="bits"):
        layer_input_ranges(inputs, "mse", 9)
    with pytest.raises(ValueError, match="inputs"):
        layer_input_ranges({}, "mse", 4)
    with pytest.raises(ValueError, match="float model"):
        record_layer_inputs(make_qat_model(model, 4), torch.rand(4, 1, 8, 8))
    with pytest.raises(ValueError, match="at least one"):
        record_layer_inputs(nn.ReLU(), torch.rand(4, 3))
    ranges = layer_input_ranges(inputs, "minmax", 4)
    with pytest.raises(ValueError, match="no entry"):
        set_act_ranges(make_qat_model(model, 4), {k: v for k, v in ranges.items() if k != "features.3"})
    with pytest.raises(ValueError, match="lo <= hi"):
        set_act_ranges(make_qat_model(model, 4), {**ranges, "features.3": (1.0, 0.0)})
    with pytest.raises(ValueError, match="finite"):
        set_act_ranges(make_qat_model(model, 4), {**ranges, "features.3": (0.0, float("nan"))})
    with pytest.raises(ValueError, match="method='minmax'"):
        set_act_ranges(make_qat_model(model, 4, method="lsq"), ranges)
    with pytest.raises(ValueError, match="no QATLayer"):
        set_act_ranges(model, ranges)
    with pytest.raises(TypeError, match="ranges must be a dict"):
        set_act_ranges(make_qat_model(model, 4), [1, 2])


def test_freeze_bn_stats_uses_and_keeps_running_statistics_in_train_mode():
    model = freeze_observers(calibrate(make_qat_model(_tiny_cnn(), 8), torch.rand(32, 1, 8, 8)))
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64) * 3
    bn = model.features[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    want = model.eval()(x)  # eval: running statistics
    freeze_bn_stats(model)
    frozen_copy = copy.deepcopy(model)
    for m in (model, frozen_copy):
        m.train()
        out = m(x)
        assert torch.equal(out, want)  # train mode now normalizes like eval
        assert torch.equal(m.features[1].running_mean, stats[0]) and torch.equal(m.features[1].running_var, stats[1])
    out.sum().backward()
    assert frozen_copy.features[1].weight.grad is not None and frozen_copy.features[1].bias.grad is not None
    unfrozen = make_qat_model(_tiny_cnn(), 8)
    calibrate(unfrozen, torch.rand(32, 1, 8, 8))
    unfrozen.train()(x)
    assert not torch.equal(unfrozen.features[1].running_mean, stats[0])  # without it, a training batch moves them
    freeze_bn_stats(model)  # twice is harmless: one hook
    assert len(model.features[1]._forward_pre_hooks) == 1
    with pytest.raises(ValueError, match="no BatchNorm"):
        freeze_bn_stats(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="running statistics"):
        freeze_bn_stats(nn.Sequential(nn.BatchNorm1d(3, track_running_stats=False)))


def test_logit_kl_and_model_logits():
    torch.manual_seed(0)
    p, q = torch.randn(50, 10), torch.randn(50, 10)
    want = torch.nn.functional.kl_div(
        torch.log_softmax(q.double(), 1), torch.log_softmax(p.double(), 1), log_target=True, reduction="batchmean"
    )
    assert logit_kl(p, q) == pytest.approx(float(want), rel=1e-12)
    assert logit_kl(p, p) == 0.0 and logit_kl(p, p + 3.0) == pytest.approx(0.0, abs=1e-12)  # shift-invariant
    assert logit_kl(p, q) > 0
    with pytest.raises(ValueError, match="same shape"):
        logit_kl(p, q[:, :5])
    with pytest.raises(ValueError, match="2-D"):
        logit_kl(p[0], q[0])
    with pytest.raises(ValueError, match="finite"):
        logit_kl(p, torch.full_like(q, float("nan")))
    model = _tiny_cnn()
    x = torch.rand(10, 1, 8, 8)
    out = model_logits(model, x, batch_size=3)
    assert out.dtype == torch.float64 and torch.allclose(out, model(x.double()), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- lesson 06's exercises


def _fq_solution(x, s, z, qmin, qmax):
    return (torch.clamp(torch.round(x / s) + z, qmin, qmax) - z) * s


FQ_WRONG = {
    "round half up": lambda x, s, z, a, b: (torch.clamp(torch.floor(x / s + 0.5) + z, a, b) - z) * s,
    "round half away from zero": lambda x, s, z, a, b: (
        (torch.clamp(torch.sign(x / s) * torch.floor((x / s).abs() + 0.5) + z, a, b) - z) * s
    ),
    "truncate": lambda x, s, z, a, b: (torch.clamp(torch.trunc(x / s) + z, a, b) - z) * s,
    "clamp x in code units": lambda x, s, z, a, b: (torch.round(torch.clamp(x, a, b) / s) + z - z) * s,
    "clamp x, then no clamp of the code": lambda x, s, z, a, b: (torch.round(torch.clamp(x, a * s, b * s) / s)) * s,
    "no zero point": lambda x, s, z, a, b: torch.clamp(torch.round(x / s), a, b) * s,
    "zero point not removed": lambda x, s, z, a, b: torch.clamp(torch.round(x / s) + z, a, b) * s,
    "zero point added after the clamp": lambda x, s, z, a, b: (torch.clamp(torch.round(x / s), a, b) + z - z) * s,
    "no clamp": lambda x, s, z, a, b: (torch.round(x / s) + z - z) * s,
}


def _ste_from_mask(mask_fn):
    def fn(x, s, z, qmin, qmax):
        m = mask_fn(x, s, z, qmin, qmax).to(x.dtype)
        x_hat = _fq_solution(x, s, z, qmin, qmax)
        return x * m + (x_hat - x * m).detach()

    return fn


def _code(x, s, z):
    return torch.round(x / s) + z


STE_WRONG = {
    "gradient 1 everywhere": _ste_from_mask(lambda x, s, z, a, b: torch.ones_like(x, dtype=torch.bool)),
    "mask on the unrounded x / s": _ste_from_mask(lambda x, s, z, a, b: (x / s + z >= a) & (x / s + z <= b)),
    "strict inequalities": _ste_from_mask(lambda x, s, z, a, b: (_code(x, s, z) > a) & (_code(x, s, z) < b)),
    "mask after the clamp": _ste_from_mask(
        lambda x, s, z, a, b: (_code(x, s, z).clamp(a, b) >= a) & (_code(x, s, z).clamp(a, b) <= b)
    ),
    "mask without the zero point": _ste_from_mask(lambda x, s, z, a, b: (_code(x, s, 0) >= a) & (_code(x, s, 0) <= b)),
    "mask off by one at the top": _ste_from_mask(
        lambda x, s, z, a, b: (_code(x, s, z) >= a) & (_code(x, s, z) <= b + 1)
    ),
    "no gradient (detached)": lambda x, s, z, a, b: _fq_solution(x, s, z, a, b).detach(),
    "plain autograd through round": _fq_solution,
}


def _step_grad_wrong():
    v = list(STEP_GRAD_X)
    inside = [t for t in v if -4 <= round(t) <= 3]  # Python's round: half to even
    right = sum(round(t) - t for t in inside) + (-4) + 3
    return {
        "sign flipped (v - round(v))": sum(t - round(t) for t in inside) + (-4) + 3,
        "clipped values give 0": sum(round(t) - t for t in inside),
        "clipped values give -v": sum(round(t) - t for t in inside) - (-5.0) - 9.0,
        "round half up": sum(math.floor(t + 0.5) - t for t in inside) + (-4) + 3,
        "qmax for both ends": sum(round(t) - t for t in inside) + 3 + 3,
        "abs(qmin) below": sum(round(t) - t for t in inside) + 4 + 3,
        "right": right,
    }


def test_exercise_solutions_pass(capsys):
    assert check_fake_quant(_fq_solution)
    assert check_ste(_ste_from_mask(lambda x, s, z, a, b: (_code(x, s, z) >= a) & (_code(x, s, z) <= b)))
    assert check_step_grad(_step_grad_wrong()["right"])
    assert check_step_grad(-1.4)  # (0 - 0.3) + (2 - 1.6) + (2 - 2.5) - 4 + 3, written as a number
    assert capsys.readouterr().out.count("correct") == 4


@pytest.mark.parametrize("name", sorted(FQ_WRONG))
def test_fake_quant_checker_rejects_classic_mistakes(name):
    assert not check_fake_quant(FQ_WRONG[name], quiet=True)


@pytest.mark.parametrize("name", sorted(STE_WRONG))
def test_ste_checker_rejects_classic_mistakes(name):
    assert not check_ste(STE_WRONG[name], quiet=True)


@pytest.mark.parametrize("name", sorted(set(_step_grad_wrong()) - {"right"}))
def test_step_grad_checker_rejects_classic_mistakes(name):
    value = _step_grad_wrong()[name]
    assert not math.isclose(value, _step_grad_wrong()["right"], abs_tol=1e-3), name  # the inputs tell them apart
    assert not check_step_grad(value, quiet=True)


def test_exercise_checkers_report_unwritten_and_broken_answers(capsys):
    def stub(*args):
        raise NotImplementedError

    assert not check_fake_quant(stub) and not check_ste(stub) and not check_step_grad(None)
    assert not check_fake_quant(None) and not check_ste(None)
    assert capsys.readouterr().out.count("not written yet") == 5
    assert not check_ste(lambda *a: "x_hat")
    assert not check_step_grad("-1.4")
    out = capsys.readouterr().out
    assert "raised TypeError" in out and out.count("Hint") == 2


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("zp_dtype", [torch.float32, torch.float16])
def test_float_zero_points_follow_torchs_float_rule(x_dtype, zp_dtype):
    """Per channel, torch rounds ``x / scale + zp`` for a floating zero point (fractional allowed, any value)."""
    from helpers.qat import fake_quant_ste, ste_mask

    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 256, generator=g) * 4
    x[:, :32] = (torch.randint(-40, 40, (8, 32), generator=g).float() + 0.5) * 0.25  # ties at scale 0.25
    x = x.to(x_dtype)
    s = torch.rand(8, generator=g) * 0.05 + 0.01
    s[:3] = 0.25
    z = torch.tensor([1.0, 3.0, -0.0, 0.3, -1.7, 2.0, 10.0, -5.5]).to(zp_dtype)
    for qmin, qmax in ((-128, 127), (-8, 7), (0, 15)):
        xr, xt = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours = fake_quant_ste(xr, s, z, qmin, qmax, axis=0)
        ref = torch.fake_quantize_per_channel_affine(xt, s, z, 0, qmin, qmax)
        assert ours.dtype == ref.dtype and torch.equal(ours, ref) and torch.equal(ours.signbit(), ref.signbit())
        g_out = torch.randn(x.shape, generator=g).to(x_dtype)
        ours.backward(g_out)
        ref.backward(g_out)
        assert torch.equal(xr.grad, xt.grad)
        assert torch.equal(ste_mask(x, s, z, qmin, qmax, axis=0), xt.grad != 0) or bool((g_out == 0).any())
    # whole odd zero points: the float rule and the int32 rule differ on ties, as in torch
    ties = torch.tensor([[0.5, 1.5, 2.5, -0.5]] * 2)
    one = torch.ones(2)
    assert (
        fake_quant_ste(ties, one, torch.tensor([1, 2], dtype=torch.int32), -128, 127, axis=0).tolist()
        == [[0.0, 2.0, 2.0, 0.0]] * 2
    )
    assert fake_quant_ste(ties, one, torch.tensor([1.0, 2.0]), -128, 127, axis=0).tolist() == [
        [1.0, 1.0, 3.0, -1.0],
        [0.0, 2.0, 2.0, 0.0],
    ]
    with pytest.raises(ValueError, match="zero_point must contain only finite"):
        fake_quant_ste(ties, one, torch.tensor([float("nan"), 0.0]), -128, 127, axis=0)
