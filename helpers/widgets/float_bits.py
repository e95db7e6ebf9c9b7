"""The bit-explorer widget of 01_float_bits: a value and a format -> coloured bits, decoded value, error; flip bits.

Taught in 01_float_bits. Built on ``helpers.widgets.panel``: each redraw computes
``helpers.float_bits.float_bits_view`` and draws it with ``helpers.plotting.float_bits.plot_float_bits``.
Controls: ``value`` (FloatText), ``fmt`` (Dropdown) and ``bits`` (Text with the bit pattern). A row of toggle buttons, one per bit (``box.toggles``),
flips single bits: clicking one rewrites ``bits``, which redraws. Typing a new value or picking
another format rewrites ``bits`` to the pattern of the rounded value.
"""

from __future__ import annotations

import ipywidgets as widgets

from helpers._validate import check_choice
from helpers.float_bits import FORMATS, float_bits_view
from helpers.plotting.float_bits import plot_float_bits
from helpers.widgets import panel

__all__ = ["float_bits_widget"]

_STYLES = {"sign": "danger", "exponent": "success", "mantissa": "info"}
_MAX_BITS = 32


def _draw(value: float, fmt: str, bits: str):
    view = float_bits_view(value, fmt, bits)
    return plot_float_bits(view), view["readout"]


def float_bits_widget(value: float = 85.125, fmt: str = "fp32") -> widgets.VBox:
    """A panel showing the bits of ``value`` in ``fmt``, with one toggle button per bit to flip it.

    The returned box has ``.controls`` (``value``, ``fmt``, ``bits``), ``.toggles`` (32
    ToggleButtons; those beyond the format's width are hidden), ``.image`` and ``.readout``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be a real number, got {type(value).__name__}")
    check_choice(fmt, "fmt", FORMATS)

    value_w = widgets.FloatText(value=float(value), description="value x", step=0.125)
    fmt_w = widgets.Dropdown(options=list(FORMATS), value=fmt, description="format")
    bits_w = widgets.Text(
        value=float_bits_view(value, fmt)["typed_bits"],
        description="bits",
        continuous_update=False,
        layout=widgets.Layout(width="420px"),
    )
    toggles = [
        widgets.ToggleButton(value=False, description="0", layout=widgets.Layout(width="30px", padding="0"))
        for _ in range(_MAX_BITS)
    ]
    syncing = {"active": False}

    def refresh_toggles() -> None:
        view = float_bits_view(value_w.value, fmt_w.value, bits_w.value)  # the typed bits, or the value's if invalid
        digits, fields = view["bits"], view["fields"]
        syncing["active"] = True
        try:
            for i, t in enumerate(toggles):
                if i < len(digits):
                    field = fields[i]
                    t.layout.display = None
                    t.button_style = _STYLES[field]
                    t.value = digits[i] == "1"
                    t.description = digits[i]
                    t.tooltip = f"bit {len(digits) - 1 - i} ({field})"
                else:
                    t.layout.display = "none"
        finally:
            syncing["active"] = False

    def on_value_or_fmt(_change=None) -> None:
        bits_w.value = float_bits_view(value_w.value, fmt_w.value)["typed_bits"]
        refresh_toggles()

    def on_toggle(change) -> None:
        if syncing["active"]:
            return
        i = toggles.index(change["owner"])
        digits = list(float_bits_view(value_w.value, fmt_w.value, bits_w.value)["bits"])
        digits[i] = "1" if change["new"] else "0"
        bits_w.value = "".join(digits)

    # registered before panel's redraw observer, so bits are already consistent when it redraws
    value_w.observe(on_value_or_fmt, names="value")
    fmt_w.observe(on_value_or_fmt, names="value")
    bits_w.observe(lambda _c: refresh_toggles(), names="value")
    for t in toggles:
        t.observe(on_toggle, names="value")

    box = panel(_draw, {"value": value_w, "fmt": fmt_w, "bits": bits_w})
    refresh_toggles()
    toggle_row = widgets.HBox(toggles, layout=widgets.Layout(flex_flow="row wrap"))
    children = list(box.children)
    box.children = (*children[:-2], toggle_row, *children[-2:])
    box.toggles = toggles
    return box
