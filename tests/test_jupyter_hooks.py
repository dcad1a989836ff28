"""The Jupyter save hook: the project's notebooks are saved without outputs (NBVAL-checked
cells keep theirs), other notebooks as they are; and a real Jupyter server configured as
``python -m emseg_lib.jupyter_hooks`` configures one runs it on save."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from conftest import RUN_ALL_GROUP

from emseg_lib.jupyter_hooks import (
    PROJECT_NOTEBOOKS,
    hook_config_path,
    install_hook,
    strip_outputs,
    strip_project_notebook_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
CHECKED = "# NBVAL_CHECK_OUTPUT\nprint(1)"


def _notebook() -> dict:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("x = 1", execution_count=3, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="run output\n")]),
        nbformat.v4.new_code_cell(CHECKED, execution_count=4, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="2\n")]),
        nbformat.v4.new_markdown_cell("text")]
    return json.loads(nbformat.writes(notebook))


def test_strip_outputs_keeps_saved_nbval_outputs_only():
    notebook = _notebook()
    saved = {CHECKED: ([{"output_type": "stream", "name": "stdout", "text": "1\n"}], 1)}
    assert strip_outputs(notebook, saved) == 1
    plain, checked, _ = notebook["cells"]
    assert plain["outputs"] == [] and plain["execution_count"] is None
    assert checked["outputs"] == saved[CHECKED][0] and checked["execution_count"] == 1
    unsaved = _notebook()
    strip_outputs(unsaved, {})  # an edited NBVAL cell has no saved outputs: stripped too
    assert all(c.get("outputs", []) == [] for c in unsaved["cells"])


def test_hook_strips_project_notebooks_only(tmp_path):
    manager = SimpleNamespace(root_dir=str(ROOT.parent), log=SimpleNamespace(info=print))
    model = {"type": "notebook", "content": _notebook()}
    strip_project_notebook_outputs(model, f"{ROOT.name}/notebooks/05_threshold_tables.ipynb",
                                   manager)
    assert model["content"]["cells"][0]["outputs"] == []
    elsewhere = {"type": "notebook", "content": _notebook()}
    strip_project_notebook_outputs(elsewhere, "05_threshold_tables.ipynb",
                                   SimpleNamespace(root_dir=str(tmp_path), log=None))
    assert elsewhere["content"]["cells"][0]["outputs"]


def test_install_writes_the_config_once(tmp_path):
    assert install_hook(tmp_path) is True
    assert install_hook(tmp_path) is False
    config = json.loads(hook_config_path(tmp_path).read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"emseg_lib.jupyter_hooks": True}}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


@pytest.mark.slow
@pytest.mark.xdist_group(RUN_ALL_GROUP)  # adds a notebook to notebooks/ for a while
def test_a_jupyter_server_saves_project_notebooks_without_outputs(tmp_path):
    install_hook(tmp_path / "env")
    name = f"99_save_hook_test_{uuid.uuid4().hex[:8]}.ipynb"
    saved = PROJECT_NOTEBOOKS / name
    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_PATH": str(tmp_path / "env" / "etc" / "jupyter"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ROOT}", *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    guard = threading.Timer(600, os.killpg, (server.pid, signal.SIGKILL))  # last resort only
    guard.start()
    try:
        status = f"http://127.0.0.1:{port}/api/status?token={token}"
        while True:  # the server prints its URL before it listens: ask until it answers
            try:
                _request(status)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail("the Jupyter server exited: "
                                f"{(tmp_path / 'server.log').read_text()[-3000:]}")
                time.sleep(0.2)
        _request(f"http://127.0.0.1:{port}/api/contents/notebooks/{name}?token={token}", "PUT",
                 {"type": "notebook", "format": "json", "content": _notebook()})
        cells = json.loads(saved.read_text())["cells"]
        assert cells[0]["outputs"] == [] and cells[0]["execution_count"] is None
        assert cells[1]["outputs"] == []  # an NBVAL cell new to the file: nothing to keep
    finally:
        guard.cancel()
        saved.unlink(missing_ok=True)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
