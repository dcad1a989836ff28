"""The live threshold sliders (notebook 05): every change redraws the readout and the figure
through the Output widget's state, never by printing into the widget (which is what hung
papermill; see :mod:`emseg_lib.report.live`)."""

from __future__ import annotations

import base64

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from emseg_lib.report.live import figure_output, threshold_sliders
from emseg_lib.report.plots import probability_and_segmentation


def _view(calls: list):
    def view(kind: str, sig_th: float, edge_th: float) -> tuple[str, Figure]:
        calls.append((kind, sig_th, edge_th))
        figure = Figure(figsize=(2, 2))
        figure.subplots().imshow(np.full((4, 4), sig_th), vmin=0, vmax=1)
        return f"{kind}, sig_th {sig_th:.2f}, edge_th {edge_th:.2f}", figure

    return view


def _png(panel) -> bytes:
    (output,) = panel.children[-1].outputs
    assert output["output_type"] == "display_data"
    return base64.b64decode(output["data"]["image/png"])


def test_figure_output_is_a_png_display_entry():
    entry = figure_output(Figure(figsize=(3, 2)))
    assert base64.b64decode(entry["data"]["image/png"]).startswith(b"\x89PNG")
    assert entry["data"]["text/plain"] == "<Figure size 300x200>"


def test_sliders_redraw_readout_and_figure_through_widget_state():
    calls: list = []
    panel = threshold_sliders(["unet2d", "unet3d"], _view(calls), 0.83, 0.91)
    kind, sig, edge, readout, live = panel.children
    assert calls == [("unet2d", 0.83, 0.91)]
    assert readout.value == "unet2d, sig_th 0.83, edge_th 0.91"
    first = _png(panel)
    sig.value = 0.5
    assert readout.value == "unet2d, sig_th 0.50, edge_th 0.91"
    assert _png(panel) != first
    kind.value = "unet3d"
    edge.value = 0.95
    assert calls[-1] == ("unet3d", 0.5, 0.95)
    assert len(live.outputs) == 1
    assert live.msg_id == ""  # nothing was ever printed into the widget
    assert plt.get_fignums() == []  # no pyplot figure left to be shown again


def test_live_view_counts_distinct_segments():
    seg = np.zeros((8, 8), np.int64)
    seg[:4] = 7
    seg[4:] = 300  # two segments, largest id 300
    figure = probability_and_segmentation(np.zeros((8, 8)), np.zeros((8, 8)), seg)
    assert figure.axes[1].get_title() == "2 segments"
