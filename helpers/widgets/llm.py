"""Widget for 09_llm: method, bits, group size and α over one real layer's weights and activations.

Taught in 09_llm.
"""

from __future__ import annotations

import ipywidgets as widgets
import torch

from helpers._validate import check_bits, check_choice, check_finite_number
from helpers.llm import LAYER_VIEW_METHODS, allowed_group_sizes, layer_view
from helpers.plotting.llm import layer_panel
from helpers.widgets import panel

__all__ = ["GROUP_CHOICES", "layer_widget"]

GROUP_CHOICES = (16, 32, 64, 96, 192)


def layer_widget(
    w: torch.Tensor, x: torch.Tensor, method: str = "rtn", bits: int = 3, group_size: int = 64, alpha: float = 0.5
) -> widgets.VBox:
    """Controls ``method`` (RTN, GPTQ, AWQ, HQQ, SmoothQuant), ``bits`` (2..8), ``group_size`` and ``alpha``
    driving :func:`helpers.llm.layer_view` and :func:`helpers.plotting.llm.layer_panel`.

    ``alpha`` is AWQ's exponent (``s = mean|x|^α``) or SmoothQuant's migration strength; the
    other methods ignore it (the readout says so). Taught in 09_llm.
    """
    if not (isinstance(w, torch.Tensor) and isinstance(x, torch.Tensor)) or w.dim() != 2:
        raise TypeError("w must be a 2-d weight tensor and x a tensor of its inputs")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"x must have {w.shape[1]} columns (w's in_features), got {x.shape[-1]}")
    check_choice(method, "method", LAYER_VIEW_METHODS)
    check_bits(bits, lo=2, hi=8)
    groups = [g for g in GROUP_CHOICES if g in allowed_group_sizes(w.shape[1])]
    if group_size not in groups:
        raise ValueError(f"group_size must be one of {groups} (they divide in_features={w.shape[1]}), got {group_size}")
    alpha = check_finite_number(alpha, "alpha")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    w, x = w.detach().double(), x.detach().reshape(-1, x.shape[-1]).double()

    def draw(method: str, bits: int, group_size: int, alpha: float):
        view = layer_view(w, x, method, bits, group_size, alpha)
        fig = layer_panel(view, f"{method}, {bits} bits, groups of {group_size}")
        uses = {
            "awq": "AWQ exponent",
            "smoothquant": "migration strength (weights and activations at bits, per tensor)",
        }
        note = f"alpha={alpha:.2f}: {uses[method]}" if method in uses else "alpha not used by this method"
        if method == "smoothquant":
            note += "; group size not used (per-channel weights)"
        text = f"relative output error {view['output_error']:.4f}   weight MSE {view['weight_mse']:.3e}\n{note}"
        return fig, text

    controls = {
        "method": widgets.Dropdown(options=list(LAYER_VIEW_METHODS), value=method, description="method"),
        "bits": widgets.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False),
        "group_size": widgets.Dropdown(options=groups, value=group_size, description="group"),
        "alpha": widgets.FloatSlider(
            value=alpha, min=0.0, max=1.0, step=0.05, description="alpha", continuous_update=False
        ),
    }
    return panel(draw, controls, columns=4)
