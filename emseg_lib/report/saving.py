"""Writing figures and tables where ``run_all.sh`` collects them, and showing them inline.

Every table is written twice, as ``NAME.csv`` and ``NAME.md`` (Markdown, via pandas/tabulate,
with its caption above and a sentence on how to read it below); every figure as ``NAME.png``.
Each file is written atomically (:func:`~emseg_lib.infra.atomic_files.atomic_path`), so an
interrupted notebook never leaves half a file. Inside a Jupyter kernel the saved figure and the
table are also shown in the notebook, so an executed notebook holds every figure and table it wrote.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from emseg_lib.infra.atomic_files import atomic_path, atomic_write_text


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def save_table(table: pd.DataFrame, out_dir: str | Path, name: str, *, caption: str = "",
               note: str = "", index: bool = True, floatfmt: str = ".4f",
               show: bool = True) -> None:
    """Write ``table`` to ``out_dir/name.csv`` and ``out_dir/name.md`` (and show it).

    Args:
        caption: the line above the Markdown table (number, what, provenance).
        note: how to read the table (units, what is better), below it.
        show: also display caption, table and note in a notebook.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=index)
    readable = table.reset_index() if index and table.index.nlevels > 1 else table
    markdown = readable.to_markdown(index=index and readable is table, floatfmt=floatfmt)
    text = "\n\n".join(part for part in (caption, markdown, note) if part)
    atomic_write_text(md_path, f"{text}\n")
    if show and in_notebook():
        from IPython.display import Markdown, display

        if caption:
            display(Markdown(f"**{caption}**"))
        display(table)
        if note:
            display(Markdown(f"*{note}*"))


def save_figure(figure: Figure, out_dir: str | Path, name: str, *, dpi: int = 110,
                show: bool = True) -> None:
    """Write ``figure`` to ``out_dir/name.png`` and, in a notebook, show that PNG inline.

    A pyplot figure is closed afterwards (so it is not shown twice)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if show and in_notebook():
        from IPython.display import Image, display

        display(Image(filename=str(path)))
    plt.close(figure)


def beside_thesis(ours: dict[str, float], thesis: dict[str, float], *,
                  ours_label: str = "ours", thesis_label: str = "thesis") -> pd.DataFrame:
    """Two-row table: our values and the thesis's, on the union of their columns."""
    columns = list(dict.fromkeys([*thesis, *ours]))
    return pd.DataFrame([ours, thesis], index=[ours_label, thesis_label], columns=columns)
