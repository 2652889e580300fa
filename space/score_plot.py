"""The score-by-turn plot: a Vega-Lite chart drawn by gradio's own Plot component, fed the rows of `views`.

gradio's LinePlot draws turns on a fractional axis, draws nothing for a single point (a line needs two), and
freezes its set of series at the first update. This component takes the same DataFrame (turn, value, series)
and sends a spec of its own: integer turn ticks, a point on every score (so one scored turn shows), the trend
dashed, one line per series (score, trend, and each criterion when the judge gave them).
"""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd
from gradio.components.plot import AltairPlotData, PlotData

Y_DOMAIN = [1, 5]
SERIES_ORDER = ("score", "trend", "style", "content", "human")  # legend order; colours follow it
PALETTE = ("#f97316", "#9ca3af", "#3b82f6", "#10b981", "#a855f7", "#ef4444")


def plot_spec(rows: list[dict]) -> dict:
    """The Vega-Lite spec of `rows` ({turn, value, series}): points and lines per series, turns as integers."""
    last = max([int(r["turn"]) for r in rows] + [2])
    x = {"field": "turn", "type": "quantitative", "title": "turn",
         "scale": {"domain": [1, last], "nice": False},
         "axis": {"values": list(range(1, last + 1)), "format": "d", "tickMinStep": 1}}
    y = {"field": "value", "type": "quantitative", "title": "value", "scale": {"domain": Y_DOMAIN, "nice": False},
         "axis": {"values": list(range(Y_DOMAIN[0], Y_DOMAIN[1] + 1))}}
    color = {"field": "series", "type": "nominal", "title": "series"}
    present = [name for name in SERIES_ORDER if any(r["series"] == name for r in rows)]
    present += sorted({r["series"] for r in rows} - set(present))
    color = {**color, "scale": {"domain": present, "range": [PALETTE[i % len(PALETTE)] for i in range(len(present))]}}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "height": 220, "padding": {"top": 34, "left": 5, "right": 5, "bottom": 5},  # below the floating label
        "usermeta": {"embedOptions": {"renderer": "svg", "actions": False}},
        "data": {"values": rows},
        "layer": [{  # one layer: gradio's theming of a line chart walks `layer`
            "mark": {"type": "line", "point": {"filled": True, "size": 60}},  # unclipped: a 5 shows whole
            "encoding": {"x": x, "y": y, "color": color,
                         "strokeDash": {"condition": {"test": "datum.series === 'trend'", "value": [4, 3]},
                                        "value": [1, 0]},
                         "tooltip": [{"field": "turn"}, {"field": "value", "format": ".2f"}, {"field": "series"}]},
        }],
    }


class ScorePlot(gr.Plot):
    """gr.Plot that takes a DataFrame of (turn, value, series) rows, or None for an empty plot; its label is the
    title."""

    is_template = True  # drawn by gradio's Plot frontend

    def postprocess(self, value):
        if value is None or isinstance(value, PlotData):
            return value
        rows = value.to_dict("records") if isinstance(value, pd.DataFrame) else list(value)
        if not rows:
            return None
        # `chart` set: gradio sizes the chart to its box and applies the page's theme
        return AltairPlotData(chart="line", plot=json.dumps(plot_spec(rows)))
