"""Sliders that re-run the post-processing on a slice and redraw its figure, in a notebook.

The figure is put into an ``ipywidgets.Output`` by setting the widget's ``outputs`` (a PNG
display-data entry), never by printing into it (``with output: clear_output(); plt.show()``).
That choice is what keeps notebook 05 from hanging under papermill: output printed into an
Output widget is emulated by nbclient, which sends the widget's new state back to the kernel
on the *shell* socket while the same event loop awaits the cell's ``execute_reply`` on that
socket. With pyzmq's asyncio sockets that send can swallow the wake-up of the pending wait, and
papermill, which sets no cell timeout, then waits for ever although the reply has arrived
(seen in 1 of 5 to 1 of 7 loaded executions, ``clear_output(wait=True)`` or not). Setting
``outputs`` is ordinary widget state that the kernel sends on IOPub: the client never writes
to the shell socket, and JupyterLab draws the same image.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

#: what a view draws for (kind, sig_th, edge_th): the readout text and the figure
View = Callable[[str, float, float], tuple[str, Figure]]


def figure_output(figure: Figure, *, dpi: int = 80) -> dict:
    """``figure`` as one notebook display-data output (PNG, base64), as
    ``Output.outputs`` holds it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    width, height = figure.get_size_inches() * figure.dpi
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                     "text/plain": f"<Figure size {width:.0f}x{height:.0f}>"}}


def show_figure(output: widgets.Output, figure: Figure) -> None:
    """Replace what ``output`` shows by ``figure``, in one state change (no flicker)."""
    output.outputs = (figure_output(figure),)


def threshold_sliders(kinds: Sequence[str], view: View, sig_th: float, edge_th: float
                      ) -> widgets.VBox:
    """A model choice, ``sig_th`` and ``edge_th`` sliders, a readout and a live figure.

    Every change of a control calls ``view(kind, sig_th, edge_th)`` and shows its text in the
    readout and its figure below it; the panel is drawn once before it is returned.

    Args:
        kinds: the models to choose from (the first is shown first).
        view: draws one setting (see :data:`View`).
        sig_th, edge_th: the sliders' starting thresholds (cell probabilities in [0, 1]).
    """
    kind = widgets.ToggleButtons(options=list(kinds), description="model")
    sig = widgets.FloatSlider(value=sig_th, min=0.3, max=0.99, step=0.01, description="sig_th")
    edge = widgets.FloatSlider(value=edge_th, min=0.3, max=1.0, step=0.01,
                               description="edge_th")
    readout = widgets.HTML()
    live = widgets.Output()

    def redraw(_change: object = None) -> None:
        text, figure = view(kind.value, sig.value, edge.value)
        show_figure(live, figure)
        readout.value = text

    for control in (kind, sig, edge):
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([kind, sig, edge, readout, live])
