"""Widget for 03_nonuniform: method × bits × block size over one weight tensor."""

from __future__ import annotations

import ipywidgets as widgets
import torch

from helpers._validate import check_choice, check_float_tensor, check_int
from helpers.nonuniform import METHOD_LABELS, METHODS, codebook_view
from helpers.plotting.nonuniform import codebook_figure
from helpers.widgets import panel

__all__ = ["codebook_widget", "BLOCK_CHOICES"]

BLOCK_CHOICES = (("per tensor", None), ("32", 32), ("64", 64), ("256", 256))


def codebook_widget(
    x: torch.Tensor, name: str = "weights", *, method: str = "nf", bits: int = 4, block_size: int | None = 64
) -> widgets.VBox:
    """A panel: choose the method, bits (2-4) and block size; see the levels over ``x``'s histogram and the MSE.

    Each redraw computes ``helpers.nonuniform.codebook_view`` and draws it with
    ``helpers.plotting.nonuniform.codebook_figure``. Taught in 03_nonuniform.
    """
    check_float_tensor(x, "x")
    check_choice(method, "method", METHODS)
    bits = check_int(bits, "bits", lo=2, hi=4)
    check_choice(block_size, "block_size", [v for _, v in BLOCK_CHOICES])
    if x.dtype == torch.float64 and float(x.detach().abs().max()) > torch.finfo(torch.float32).max:
        raise ValueError("x must fit in float32 (the codebook arithmetic is float32)")
    x = x.detach().float().clone()
    controls = {
        "method": widgets.Dropdown(
            options=[(METHOD_LABELS[m], m) for m in METHODS], value=method, description="method"
        ),
        "bits": widgets.IntSlider(value=bits, min=2, max=4, description="bits", continuous_update=False),
        "block_size": widgets.Dropdown(options=list(BLOCK_CHOICES), value=block_size, description="block"),
    }

    def draw(method: str, bits: int, block_size: int | None):
        view = codebook_view(x, method, bits, block_size, name)
        return codebook_figure(view), view["readout"]

    return panel(draw, controls)
