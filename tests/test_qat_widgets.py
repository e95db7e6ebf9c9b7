"""Widget redraw tests for helpers.widgets.qat."""

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
