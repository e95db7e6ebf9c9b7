"""Widget redraw tests for helpers.widgets.qat: every control at both ends and every value gives a picture."""

import itertools

import pytest

from helpers.widgets.qat import ste_widget


@pytest.mark.parametrize(("name", "value"), [("bits", 5), ("clip", 0.5)])
def test_ste_widget_redraws(name, value):
    box = ste_widget(bits=3, clip=1.0)
    image, readout = box.image.value, box.readout.value
    box.controls[name].value = value
    assert box.image.value != image
    assert box.readout.value != readout
    assert box.last_values[name] == value


def test_ste_widget_bad_input():
    with pytest.raises(ValueError, match="bits"):
        ste_widget(bits=9)
    with pytest.raises(ValueError, match="clip"):
        ste_widget(clip=5.0)


def test_ste_widget_every_bits_value_at_both_clip_ends():
    """Every bit width 2..8 with the clip slider at its ends (0.25, 2.0) and in between: a picture, no error."""
    box = ste_widget(bits=3, clip=1.0)
    bits_slider, clip_slider = box.controls["bits"], box.controls["clip"]
    clips = (clip_slider.min, clip_slider.max, 1.0)
    for bits, clip in itertools.product(range(bits_slider.min, bits_slider.max + 1), clips):
        clip_slider.value = clip
        bits_slider.value = bits
        assert box.last_error is None, (bits, clip, box.last_error)
        assert box.last_values == {"bits": bits, "clip": clip}
        assert f"bits={bits}" in box.readout.value and "Traceback" not in box.readout.value
    assert (bits_slider.min, bits_slider.max, clip_slider.min, clip_slider.max) == (2, 8, 0.25, 2.0)
