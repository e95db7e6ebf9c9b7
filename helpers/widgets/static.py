"""Widget of lesson 05_ptsq: observer x percentile x activation bits -> clipping range, MSE and test accuracy.

Taught in 05_ptsq. The accuracy for a setting (every activation quantized with that observer
and bit width, weights int8 per-channel) is computed once and cached, so moving back to a
setting is instant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import ipywidgets as widgets
import torch
from torch import nn

from helpers._validate import check_bits, check_choice
from helpers.affine import affine_qparams, fake_quantize, mse, qrange
from helpers.models import evaluate
from helpers.observers import METHODS, observer_range
from helpers.plotting.static import observer_figure
from helpers.static import DIGITS_OBSERVED, quantize_digits_cnn

__all__ = ["make_observer_draw", "observer_widget"]


def make_observer_draw(
    model: nn.Module,
    acts: Mapping[str, Sequence[torch.Tensor]],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
):
    """A pure-ish ``draw(layer, method, percentile, bits) -> (Figure, readout)`` with cached ranges and accuracies.

    ``acts`` are the calibration activations of every name in ``DIGITS_OBSERVED`` (from
    ``collect_activations``). Taught in 05_ptsq.
    """
    missing = [n for n in DIGITS_OBSERVED if n not in acts]
    if missing:
        raise ValueError(f"acts must hold every layer of DIGITS_OBSERVED; missing {missing}")
    flat = {n: torch.cat([b.reshape(-1) for b in acts[n]]) for n in DIGITS_OBSERVED}

    @lru_cache(maxsize=512)
    def layer_range(layer: str, method: str, percentile: float, bits: int) -> tuple[float, float]:
        kwargs = {"percentile": percentile} if method == "percentile" else {}
        lo, hi = observer_range(method, list(acts[layer]), bits, **kwargs)
        return float(lo), float(hi)

    @lru_cache(maxsize=128)
    def accuracy(method: str, percentile: float, bits: int) -> float:
        ranges = {n: layer_range(n, method, percentile, bits) for n in DIGITS_OBSERVED}
        return evaluate(quantize_digits_cnn(model, ranges=ranges, act_bits=bits), x_test, y_test)

    def draw(layer: str, method: str, percentile: float, bits: int):
        check_choice(layer, "layer", DIGITS_OBSERVED)
        check_choice(method, "method", METHODS)
        bits = check_bits(bits, lo=2, hi=8)
        percentile = round(float(percentile), 3)
        lo, hi = layer_range(layer, method, percentile, bits)
        x = flat[layer]
        scale, zp = affine_qparams(lo, hi, bits, signed=False)
        qmin, qmax = qrange(bits, signed=False)
        err = mse(x, fake_quantize(x, scale, zp, qmin, qmax))
        acc = accuracy(method, percentile, bits)
        clipped = float(((x < lo) | (x > hi)).float().mean()) * 100
        code_bits = min(bits, 7)  # quantize_digits_cnn on x86 caps codes at 7 bits (reduce_range)
        readout = (
            f"{layer}: {method}{f' p={percentile}' if method == 'percentile' else ''}, {bits}-bit activations\n"
            f"range [{lo:.4g}, {hi:.4g}]  scale {float(scale):.4g}  zero_point {int(zp)}\n"
            f"MSE {err:.3e}  clipped {clipped:.3f}%  test accuracy (all layers, x86, {code_bits}-bit codes) {acc:.2f}%"
        )
        fig = observer_figure(x, lo, hi, bits, title=f"{layer} — {method}", readout=readout)
        return fig, readout

    draw.layer_range = layer_range
    draw.accuracy = accuracy
    return draw


def observer_widget(
    model: nn.Module,
    acts: Mapping[str, Sequence[torch.Tensor]],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    layer: str = "module.classifier.1",
    method: str = "minmax",
    percentile: float = 99.9,
    bits: int = 8,
) -> widgets.VBox:
    """Controls (layer, observer, percentile, activation bits) above the histogram and the readout.

    Taught in 05_ptsq.
    """
    from helpers.widgets import panel

    draw = make_observer_draw(model, acts, x_test, y_test)
    style = {"description_width": "initial"}
    controls = {
        "layer": widgets.Dropdown(options=DIGITS_OBSERVED, value=layer, description="layer", style=style),
        "method": widgets.Dropdown(options=METHODS, value=method, description="observer", style=style),
        "percentile": widgets.FloatSlider(
            value=percentile,
            min=99.0,
            max=100.0,
            step=0.01,
            description="percentile",
            continuous_update=False,
            style=style,
        ),  # fmt: skip
        "bits": widgets.IntSlider(
            value=bits, min=2, max=8, description="act. bits", continuous_update=False, style=style
        ),
    }
    return panel(draw, controls, columns=2)
