"""Widget of lesson 02: bits, clip range, scheme and input distribution -> histogram, grid, error, MSE/SQNR.

Taught in 02_affine.
"""

from __future__ import annotations

import ipywidgets as widgets

from helpers._validate import check_bits, check_choice, check_finite_number
from helpers.affine import DISTRIBUTIONS, SCHEMES, playground_view
from helpers.plotting.affine import playground_figure
from helpers.widgets import panel

__all__ = ["affine_playground"]


def _draw(bits: int, clip: float, scheme: str, distribution: str):
    view = playground_view(bits, clip, scheme, distribution)
    return playground_figure(view), view["readout"]


def affine_playground(
    bits: int = 4, clip: float = 1.0, scheme: str = "affine", distribution: str = "normal"
) -> widgets.VBox:
    """A panel redrawing ``helpers.affine.playground_view`` with ``helpers.plotting.affine.playground_figure``.

    Controls (``box.controls``): ``bits`` (IntSlider 2..8, described "bits"), ``clip`` (FloatSlider
    0.05..1, fraction of the min-max range kept), ``scheme`` and ``distribution`` (Dropdowns).
    Taught in 02_affine.
    """
    bits = check_bits(bits, lo=2, hi=8)
    clip = check_finite_number(clip, "clip")
    if not 0.05 <= clip <= 1.0:
        raise ValueError(f"clip must be in 0.05..1.0, got {clip}")
    check_choice(scheme, "scheme", SCHEMES)
    check_choice(distribution, "distribution", DISTRIBUTIONS)
    style = {"description_width": "initial"}
    controls = {
        "bits": widgets.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False),
        "clip": widgets.FloatSlider(
            value=clip, min=0.05, max=1.0, step=0.05, description="clip", continuous_update=False, style=style
        ),
        "scheme": widgets.Dropdown(options=list(SCHEMES), value=scheme, description="scheme"),
        "distribution": widgets.Dropdown(options=list(DISTRIBUTIONS), value=distribution, description="distribution"),
    }
    return panel(_draw, controls, columns=4)
