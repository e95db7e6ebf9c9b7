"""Widget of the capstone (08_recipes): a quality budget and a goal -> the method the measured table picks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import ipywidgets as widgets

from helpers.plotting.recipes import plot_pareto
from helpers.recipes import Result, decision_view
from helpers.widgets import panel


def _check_tables(tables: Mapping[str, tuple[Sequence[Result], str, float]]) -> None:
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("tables must map at least one model name to (results, quality_name, max_drop_limit)")
    for name, entry in tables.items():
        if not isinstance(name, str):
            raise TypeError(f"tables keys must be model names (str), got {type(name).__name__}")
        if not isinstance(entry, tuple) or len(entry) != 3:
            raise TypeError(f"tables[{name!r}] must be a tuple (results, quality_name, max_drop_limit), got {entry!r}")
        results, quality_name, limit = entry
        if isinstance(results, (str, bytes)) or not isinstance(results, Sequence) or not results:
            raise ValueError(f"tables[{name!r}] results must be a non-empty list of Result rows")
        if not all(isinstance(r, Result) for r in results):
            raise TypeError(f"tables[{name!r}] results must hold Result rows")
        if not isinstance(quality_name, str):
            raise TypeError(f"tables[{name!r}] quality_name must be a str, got {type(quality_name).__name__}")
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit) or limit <= 0:
            raise ValueError(f"tables[{name!r}] max_drop_limit must be a finite number > 0, got {limit!r}")


def decision_widget(tables: Mapping[str, tuple[Sequence[Result], str, float]]) -> widgets.VBox:
    """Pick a model, an allowed quality drop, a goal and whether a real kernel is required; the Pareto plot rings the pick.

    ``tables`` maps a model name to ``(results, quality_name, max_drop_limit)``; the pick is
    ``helpers.recipes.decision_view`` (ties within measured noise go to the next criterion; the
    readout says which decided). Taught in 08_recipes.
    """
    _check_tables(tables)
    names = list(tables)
    limit = float(max(t[2] for t in tables.values()))

    def draw(model: str, max_drop: float, goal: str, real_kernel: bool):
        results, quality_name, _ = tables[model]
        view = decision_view(
            results, max_drop=max_drop, goal=goal, quality_name=quality_name, require_kernel=real_kernel
        )
        fig = plot_pareto(
            results,
            view["front"],
            quality_name=quality_name,
            title=f"{model}: best for {goal}, drop ≤ {max_drop:g}",
            highlight=view["pick"],
        )
        return fig, view["readout"]

    controls = {
        "model": widgets.Dropdown(options=names, value=names[0], description="model"),
        "max_drop": widgets.FloatSlider(
            value=limit / 4,
            min=0.0,
            max=limit,
            step=limit / 40,
            description="max drop",
            continuous_update=False,
            readout_format=".3f",
        ),
        "goal": widgets.ToggleButtons(options=["size", "speed", "quality"], value="size", description="goal"),
        "real_kernel": widgets.Checkbox(value=False, description="real kernel only"),
    }
    return panel(draw, controls)
