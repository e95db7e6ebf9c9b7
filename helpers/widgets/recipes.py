"""Widget of the capstone (08_recipes): a quality budget and a goal -> the method the measured table picks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets

from helpers.plotting.recipes import plot_pareto
from helpers.recipes import Result, decision_view
from helpers.widgets import panel


def decision_widget(tables: Mapping[str, tuple[Sequence[Result], str, float]]) -> widgets.VBox:
    """Pick a model, an allowed quality drop and a goal; the Pareto plot rings the recommended method.

    ``tables`` maps a model name to ``(results, quality_name, max_drop_limit)``; the pick is
    ``helpers.recipes.decision_view``. Taught in 08_recipes.
    """
    if not tables:
        raise ValueError("tables must map at least one model name to (results, quality_name, max_drop_limit)")
    names = list(tables)
    limit = max(t[2] for t in tables.values())

    def draw(model: str, max_drop: float, goal: str):
        results, quality_name, _ = tables[model]
        view = decision_view(results, max_drop=max_drop, goal=goal, quality_name=quality_name)
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
    }
    return panel(draw, controls)
