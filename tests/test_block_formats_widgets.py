"""The 10_block_formats widget and plotting functions: every control swept, readable messages, bad input."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers import block_formats as bf
from helpers.plotting import block_formats as P
from helpers.widgets.block_formats import format_widget, readout


def _layers():
    g = torch.Generator().manual_seed(0)
    return {
        "wide (8x512)": torch.randn(8, 512, generator=g) ** 3 * 0.02,
        "narrow (8x576)": torch.randn(8, 576, generator=g) * 0.02,
    }


def test_widget_sweeps_every_control_without_tracebacks():
    box = format_widget(_layers())
    seen = set()
    for layer in box.controls["layer"].options:
        box.controls["layer"].value = layer
        for fmt in bf.FORMATS:
            box.controls["fmt"].value = fmt
            for block in (bf.BLOCK_SIZES[0], 32, bf.BLOCK_SIZES[-1]):
                box.controls["block"].value = block
                assert box.image.value[:4] == b"\x89PNG"
                text = box.readout.value
                assert "Traceback" not in text and fmt in text
                seen.add(text)
    assert box.last_values["layer"] == "narrow (8x576)"
    assert len(seen) > 20  # the readout follows the controls


def test_widget_redraws_on_each_control():
    box = format_widget(_layers(), fmt="mxfp4", block=32)
    for name, value in (("fmt", "nvfp4"), ("block", 16), ("layer", "narrow (8x576)")):
        image, text = box.image.value, box.readout.value
        box.controls[name].value = value
        assert box.image.value != image, name
        assert box.readout.value != text, name


def test_readout_messages():
    layers = _layers()
    v = bf.error_view(layers["narrow (8x576)"], "q4_k")
    assert v["err"] is None and "576 / 256 = 2.25" in readout(v, "q4_k", "narrow")
    v = bf.error_view(layers["wide (8x512)"], "q4_k", 16)
    assert v["err"] is not None and "fixed" in readout(v, "q4_k", "wide")
    v = bf.error_view(layers["wide (8x512)"], "nvfp4")
    assert "4.5 bits/weight" in readout(v, "nvfp4", "wide")
    v = bf.error_view(layers["narrow (8x576)"], "mxfp4", 256)
    assert v["err"] is None and "cannot hold" in v["message"]


def test_plots_return_figures():
    data = bf.encode(torch.randn(1, 256), "q4_k")[0]
    assert isinstance(P.plot_block_bytes({"q4_k": (data, bf.layout("q4_k"))}), Figure)
    view = bf.error_view(torch.randn(4, 64), "mxfp4")
    assert isinstance(P.plot_error_view(view, "t"), Figure)
    assert isinstance(P.plot_error_view(bf.error_view(torch.randn(4, 48), "mxfp4"), "t"), Figure)
    assert isinstance(P.plot_error_grid({"a": view, "b": bf.error_view(torch.randn(4, 48), "q4_0")}), Figure)
    assert isinstance(P.plot_block_sweep({"mxfp4": {16: (4.5, 1e-3), 32: (4.25, 2e-3)}}), Figure)
    assert isinstance(P.plot_kv_channels(torch.randn(16, 8), torch.randn(16, 8)), Figure)
    assert isinstance(P.plot_kv_perplexity([2, 4], {"a": [30.0, 18.0]}, 17.0), Figure)


def test_bad_inputs():
    with pytest.raises(ValueError, match="layers"):
        format_widget({})
    with pytest.raises(ValueError, match="layers"):
        format_widget({"a": torch.randn(4)})
    with pytest.raises(TypeError, match="layers"):
        format_widget({"a": torch.ones(2, 32, dtype=torch.int64)})
    with pytest.raises(ValueError, match="fmt"):
        format_widget(_layers(), fmt="q5_0")
    with pytest.raises(ValueError, match="block"):
        format_widget(_layers(), block=48)
    with pytest.raises(ValueError, match="units"):
        P.plot_block_bytes({})
    with pytest.raises(ValueError, match="fields"):
        P.plot_block_bytes({"x": (np.zeros(4, dtype=np.uint8), [("a", 3)])})
    with pytest.raises(TypeError, match="bytes"):
        P.plot_block_bytes({"x": (np.zeros(4), [("a", 4)])})
    with pytest.raises(TypeError, match="view"):
        P.plot_error_view({"mse": 1.0})
    with pytest.raises(ValueError, match="views"):
        P.plot_error_grid({})
    with pytest.raises(ValueError, match="results"):
        P.plot_block_sweep({})
    with pytest.raises(TypeError, match="keys"):
        P.plot_kv_channels(torch.randn(4), torch.randn(4, 2))
    with pytest.raises(ValueError, match="curves"):
        P.plot_kv_perplexity([2, 4], {"a": [1.0]}, 1.0)
