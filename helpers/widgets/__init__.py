"""Widgets: thin wiring of ipywidgets controls to the pure plotting functions.

Every lesson's widget is built with ``panel``: a pure ``draw(**values) -> (Figure, readout)``
function, a dict of controls, and this module's glue, which redraws into an ``ipywidgets.Image``
(PNG bytes) and an ``HTML`` readout whenever a control changes. Because the picture is a widget
value, a static HTML export embeds it, and tests can check a redraw by comparing bytes:

    box = panel(draw, {"bits": IntSlider(...)})
    before = box.image.value
    box.controls["bits"].value = 3        # redraws synchronously
    assert box.image.value != before

One module per lesson holds that lesson's builders (``float_bits``, ``affine``, ...).
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Callable, Mapping

import ipywidgets as widgets
from matplotlib.figure import Figure

from helpers.plotting import fig_to_png, new_figure

__all__ = ["Panel", "panel", "SAVED_TEXT"]

SAVED_TEXT = "Interactive panel: run this cell (with the ones above) to get the controls."


class Panel(widgets.VBox):
    """The VBox ``panel`` returns. Its text form (what a saved notebook shows until the cell runs) says what to do."""

    def __repr__(self) -> str:
        return SAVED_TEXT


def _message_figure(text: str) -> Figure:
    fig, ax = new_figure(6.0, 1.2)
    ax.axis("off")
    ax.text(0.01, 0.5, "\n".join(textwrap.wrap(text, 90)), va="center", fontsize=9, color="#b00020")
    return fig


def panel(
    draw: Callable[..., tuple[Figure, str]],
    controls: Mapping[str, widgets.ValueWidget],
    *,
    columns: int = 3,
) -> Panel:
    """A VBox of ``controls`` above an Image and a readout, redrawn by ``draw(**values)`` on every change.

    The returned box carries ``.controls`` (the dict), ``.image`` (``ipywidgets.Image``),
    ``.readout`` (``ipywidgets.HTML``), ``.redraws`` (a counter), ``.last_values`` and
    ``.last_error``. A setting the data cannot take (``draw`` raises ``ValueError``, whose message
    names the argument and the allowed values) shows that message in the picture and the readout
    instead of a traceback, and ``.last_error`` holds it (None after a good redraw). The first
    draw, with the builder's own settings, raises as usual.
    """
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {type(draw).__name__}")
    if not isinstance(controls, Mapping) or not controls:
        raise ValueError("controls must be a non-empty mapping of name -> ipywidgets control")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(f"controls[{name!r}] must be an ipywidgets value control, got {type(control).__name__}")

    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto", align_self="flex-start"))
    readout = widgets.HTML()
    rows = [widgets.HBox(list(controls.values())[i : i + columns]) for i in range(0, len(controls), columns)]
    box = Panel([*rows, image, readout])
    box.controls = dict(controls)
    box.image = image
    box.readout = readout
    box.redraws = 0
    box.last_values = {}
    box.last_error = None

    def redraw(_change=None) -> None:
        values = {name: control.value for name, control in box.controls.items()}
        try:
            fig, text = draw(**values)
            box.last_error = None
        except ValueError as err:
            if _change is None:
                raise
            box.last_error = str(err)
            text = f"This setting cannot be drawn for these data: {err}"
            fig = _message_figure(text)
        image.value = fig_to_png(fig)
        readout.value = f"<pre style='margin:0'>{html.escape(text)}</pre>"
        box.redraws += 1
        box.last_values = values

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return box
