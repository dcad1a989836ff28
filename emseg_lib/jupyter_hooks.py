"""Keep the project's notebooks committed without outputs when a person runs them in Jupyter.

:func:`strip_project_notebook_outputs` is a Jupyter server pre-save hook, registered by this
module as a Jupyter server extension. ``python -m emseg_lib.jupyter_hooks`` (run by
``run_all.sh``) enables the extension for every Jupyter server of the Python environment, as
``jupyter server extension enable --sys-prefix`` does: it writes
``<sys.prefix>/etc/jupyter/jupyter_server_config.d/emseg.json`` (an editable install cannot
carry that file itself). When JupyterLab
saves (or autosaves) one of ``notebooks/NN_*.ipynb`` of this checkout, the file gets no
outputs and no execution counts: what the person sees in the browser is unchanged, and the
executed copies with every figure are in ``outputs/<profile>/`` (``run_all.sh``). Cells marked
``NBVAL_CHECK_OUTPUT`` keep the outputs the file on disk already has (nbval compares them), as
long as their source is unchanged. Every other notebook is saved as it is.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from emseg_lib.infra.atomic_files import atomic_write_text

#: the checkout's notebooks folder (this file is ``<root>/emseg_lib/jupyter_hooks.py``)
PROJECT_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_NAME = re.compile(r"\d\d_.+\.ipynb")
NBVAL_MARK = "NBVAL_CHECK_OUTPUT"


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def is_project_notebook(path: Path) -> bool:
    """Whether ``path`` is one of the checkout's numbered notebooks."""
    path = path.resolve()
    return path.parent == PROJECT_NOTEBOOKS and NOTEBOOK_NAME.fullmatch(path.name) is not None


def _checked_outputs(path: Path) -> dict[str, tuple[list, int | None]]:
    """``{source: (outputs, execution_count)}`` of the NBVAL-checked cells saved at ``path``."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {_source(c): (c.get("outputs", []), c.get("execution_count"))
            for c in cells if c.get("cell_type") == "code" and NBVAL_MARK in _source(c)}


def strip_outputs(notebook: dict[str, Any], saved: dict[str, tuple[list, int | None]]) -> int:
    """Empty the outputs and execution counts of ``notebook``'s code cells, in place, but for
    NBVAL-checked cells found unchanged in ``saved`` (:func:`_checked_outputs`), which get
    their saved outputs back. Returns how many cells lost outputs."""
    stripped = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        if NBVAL_MARK in source and source in saved:
            cell["outputs"], cell["execution_count"] = saved[source]
            continue
        stripped += bool(cell.get("outputs"))
        cell["outputs"], cell["execution_count"] = [], None
    return stripped


def strip_project_notebook_outputs(model: dict[str, Any], path: str, contents_manager: Any,
                                   **kwargs: Any) -> None:
    """Jupyter server ``pre_save_hook``: strip the outputs of the checkout's notebooks."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    os_path = Path(contents_manager.root_dir) / path.lstrip("/")
    if not is_project_notebook(os_path):
        return
    stripped = strip_outputs(model["content"], _checked_outputs(os_path))
    contents_manager.log.info(
        "emseg: saved %s without outputs (%d cells; the executed copies with every figure are "
        "in outputs/<profile>/)", path, stripped)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """This module is a Jupyter server extension (found by the server through this name)."""
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the hook with the server's contents manager (beside any other hook)."""
    serverapp.contents_manager.register_pre_save_hook(strip_project_notebook_outputs)


def hook_config_path(prefix: str | Path = sys.prefix) -> Path:
    """Where :func:`install_hook` writes the Jupyter server config of the environment."""
    return Path(prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "emseg.json"


def install_hook(prefix: str | Path = sys.prefix) -> bool:
    """Enable the extension (so the save hook) for the Jupyter servers of the environment at
    ``prefix``; True when the config file was written (False: it was already there)."""
    path = hook_config_path(prefix)
    config = json.dumps({"ServerApp": {"jpserver_extensions": {__name__: True}}},
                        indent=2) + "\n"
    if path.is_file() and path.read_text(encoding="utf-8") == config:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, config)
    return True


def main() -> int:
    """Install the hook, saying so once; a read-only environment is reported, not an error."""
    try:
        if install_hook():
            print(f"Jupyter save hook on: notebooks/NN_*.ipynb are saved without outputs "
                  f"({hook_config_path()})")
    except OSError as error:
        print(f"note: could not switch on the Jupyter save hook ({error}); notebooks run in "
              f"JupyterLab will keep their outputs on disk", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
