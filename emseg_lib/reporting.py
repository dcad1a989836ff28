"""Writing figures and tables where ``run_all.sh`` collects them.

Every table is written twice, as ``NAME.csv`` and ``NAME.md`` (Markdown, via pandas/tabulate);
every figure as ``NAME.png``; each file is written atomically
(:func:`~emseg_lib.atomic.atomic_path`), so an interrupted notebook never leaves half a file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from emseg_lib.atomic import atomic_path, atomic_write_text


def save_table(table: pd.DataFrame, out_dir: str | Path, name: str, *, caption: str = "",
               index: bool = True, floatfmt: str = ".4f") -> tuple[Path, Path]:
    """Write ``table`` to ``out_dir/name.csv`` and ``out_dir/name.md``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=index)
    readable = table.reset_index() if index and table.index.nlevels > 1 else table
    markdown = readable.to_markdown(index=index and readable is table, floatfmt=floatfmt)
    atomic_write_text(md_path, f"{caption}\n\n{markdown}\n" if caption else f"{markdown}\n")
    return csv_path, md_path


def save_figure(figure: Figure, out_dir: str | Path, name: str, *, dpi: int = 110) -> Path:
    """Write ``figure`` to ``out_dir/name.png``; returns the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


def beside_thesis(ours: dict[str, float], thesis: dict[str, float], *,
                  ours_label: str = "ours", thesis_label: str = "thesis") -> pd.DataFrame:
    """Two-row table: our values and the thesis's, on the union of their columns."""
    columns = list(dict.fromkeys([*thesis, *ours]))
    return pd.DataFrame([ours, thesis], index=[ours_label, thesis_label], columns=columns)
