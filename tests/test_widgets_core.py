"""Tests of the shared widget glue and plotting helpers."""

import ipywidgets as widgets
import pytest

from helpers.plotting import fig_to_png, new_figure
from helpers.widgets import panel


def _draw(bits: int, label: str):
    fig, ax = new_figure(3, 2)
    ax.plot(range(2**bits))
    ax.set_title(label)
    return fig, f"levels = {2**bits}"


def test_panel_redraws_on_value_change():
    slider = widgets.IntSlider(value=2, min=1, max=4, description="bits")
    box = panel(_draw, {"bits": slider, "label": widgets.Text(value="a")})
    png, text = box.image.value, box.readout.value
    assert bytes(png).startswith(b"\x89PNG") and "levels = 4" in text and box.redraws == 1
    slider.value = 3
    assert box.image.value != png and "levels = 8" in box.readout.value
    assert box.redraws == 2 and box.last_values == {"bits": 3, "label": "a"}


def test_panel_bad_inputs():
    with pytest.raises(TypeError, match="draw"):
        panel("not callable", {"bits": widgets.IntSlider()})
    with pytest.raises(ValueError, match="controls"):
        panel(_draw, {})
    with pytest.raises(TypeError, match="controls\\['bits'\\]"):
        panel(_draw, {"bits": widgets.Button()})


def test_fig_to_png_bad_input():
    with pytest.raises(TypeError, match="fig"):
        fig_to_png("nope")
    fig, _ = new_figure(2, 2)
    assert fig_to_png(fig).startswith(b"\x89PNG")


def test_saved_panel_text_tells_the_learner_to_run_the_cell():
    import ipywidgets as w
    from matplotlib.figure import Figure

    from helpers.widgets import SAVED_TEXT, panel

    box = panel(lambda bits: (Figure(), str(bits)), {"bits": w.IntSlider(3)})
    bundle = box._repr_mimebundle_()
    assert bundle["text/plain"] == SAVED_TEXT and "run this cell" in SAVED_TEXT
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_panel_shows_a_setting_the_data_cannot_take_instead_of_a_traceback():
    def draw(bits: int):
        if bits > 3:
            raise ValueError(f"bits must be at most 3 for these data, got {bits}")
        return _draw(bits, "ok")

    slider = widgets.IntSlider(value=2, min=1, max=5, description="bits")
    box = panel(draw, {"bits": slider})
    slider.value = 5
    assert box.last_error == "bits must be at most 3 for these data, got 5"
    assert "cannot be drawn" in box.readout.value and "at most 3" in box.readout.value
    assert bytes(box.image.value).startswith(b"\x89PNG") and box.redraws == 2
    slider.value = 3
    assert box.last_error is None and "levels = 8" in box.readout.value
    with pytest.raises(ValueError, match="at most 3"):  # the builder's own settings still raise
        panel(draw, {"bits": widgets.IntSlider(value=4, min=1, max=5)})
    with pytest.raises(RuntimeError):  # only ValueError (a named bad setting) is shown; bugs still raise

        def broken(bits: int):
            raise RuntimeError("bug")

        box2 = panel(lambda bits: _draw(bits, "x") if bits < 3 else broken(bits), {"bits": widgets.IntSlider(2)})
        box2.controls["bits"].value = 4


def test_panel_readout_is_escaped():
    box = panel(lambda bits: _draw(bits, "x")[:1] + ("a < b & c",), {"bits": widgets.IntSlider(2)})
    assert "a &lt; b &amp; c" in box.readout.value
