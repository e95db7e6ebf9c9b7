"""Widget for 06_qat: bits and STE clip range -> forward staircase and backward gradient mask.

Taught in 06_qat.
"""

from __future__ import annotations

import ipywidgets as widgets

from helpers._validate import check_bits, check_finite_number
from helpers.plotting.qat import ste_figure
from helpers.qat import ste_view
from helpers.widgets import panel

__all__ = ["ste_widget"]


def ste_widget(bits: int = 3, clip: float = 1.0) -> widgets.VBox:
    """Sliders for ``bits`` (2..8) and the clip range ``[-clip, clip]`` driving ``helpers.qat.ste_view`` drawn by ``ste_figure``.

    Taught in 06_qat.
    """
    bits = check_bits(bits, lo=2, hi=8)
    clip = check_finite_number(clip, "clip")
    if not 0.25 <= clip <= 2.0:
        raise ValueError(f"clip must be in 0.25..2.0, got {clip}")
    controls = {
        "bits": widgets.IntSlider(value=bits, min=2, max=8, step=1, description="bits", continuous_update=False),
        "clip": widgets.FloatSlider(
            value=clip, min=0.25, max=2.0, step=0.05, description="clip", continuous_update=False
        ),
    }

    def draw(bits: int, clip: float):
        view = ste_view(bits, clip)
        return ste_figure(view), view["readout"]

    return panel(draw, controls)
