"""The threshold notebook's sliders in a real browser: JupyterLab on 127.0.0.1 (a free port, a
token; the notebook's kernel started through its REST API) opens
``notebooks/05_threshold_tables.ipynb`` after the session's smoke run
(:func:`conftest.smoke_run`, found through ``EMSEG_ROOT``), headless Chromium runs every cell,
moves the ``sig_th`` slider down with the arrow keys until the VOI changes (the smoke run's
network is barely trained: near the thesis's threshold every slice is one segment), and the
figure (its PNG data) and the VOI readout must change.

Every wait is for an event (the page's kernel status, prompts, the widgets' DOM, the server's
kernels) with one generous limit, :data:`LIMIT`, as a last guard: a loaded machine makes the
test slower, never red. When the page changes the kernel it was given (JupyterLab's front end
under load), the run is repeated on a fresh kernel and page (:func:`_run_notebook`).
Screenshots go to ``tests/artifacts/browser/`` (git-ignored) for a person to look at; on a
failure also the window, the page's console and the JupyterLab server's log (every request,
its kernels' output included), with the dialogs shown, the kernel and session events and the
logs' tails printed. Skipped where Chromium, its driver or selenium are missing (``.ci/run``
installs Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "05_threshold_tables.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: flags for a closed network: no first-run, sync, update or background traffic
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1100"]
#: JupyterLab settings: fetch no news (the kernel is started through the REST API)
SETTINGS = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}
#: slider steps (0.01 each) tried until the VOI changes
MAX_STEPS = 60
#: seconds any one awaited event may take before the test fails (a last guard, not a pace)
LIMIT = 600
#: Run All Cells clicks tried when a dialog of JupyterLab's swallowed the click
RUN_ATTEMPTS = 3
T = TypeVar("T")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no Chromium: apt-get install chromium chromium-driver "
                              "(.ci/run installs them)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _poll(check: Callable[[], T | None], timeout: float) -> T | None:
    """Call ``check`` until it returns something truthy (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    return None


def _wait(what: str, check: Callable[[], T | None], timeout: float = LIMIT) -> T:
    """:func:`_poll`, failing the test naming ``what`` on a timeout."""
    result = _poll(check, timeout)
    if not result:
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
    return result


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its base URL, token and log file."""

    base: str
    token: str
    log: Path

    @property
    def url(self) -> str:
        """The notebook's page, with the token."""
        return f"{self.base}/lab/tree/notebooks/{NOTEBOOK}?token={self.token}"

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        """The server's REST API: ``path`` under ``/api/``; the decoded JSON answer (None when
        empty)."""
        request = urllib.request.Request(
            f"{self.base}/api/{path}?token={self.token}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=LIMIT) as response:
            text = response.read()
        return json.loads(text) if text else None

    def fresh_kernel(self) -> str:
        """Shut every session and kernel down, then start the notebook's kernel (a session
        for its path) so that the page connects to a running kernel: no kernel choice, no
        start-up race in the page. Returns the kernel's id."""
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")
        session = self.api("sessions", method="POST", body={
            "path": f"notebooks/{NOTEBOOK}", "type": "notebook", "name": NOTEBOOK,
            "kernel": {"name": "python3"}})
        return session["kernel"]["id"]

    def kernel_churn(self, kernel: str) -> str | None:
        """Why the server's kernels are no longer just ``kernel`` (the page shut it down or
        started another), or None while they are."""
        running = [k["id"] for k in self.api("kernels")]
        return None if running == [kernel] else \
            f"the page changed its kernel: started {kernel}, the server now runs {running}"


@pytest.fixture(scope="module")
def jupyterlab(smoke_run, tmp_path_factory) -> Iterator[Lab]:
    """JupyterLab serving a copy of the notebook (autosave must not touch the repository)
    with ``EMSEG_ROOT`` set to the smoke run."""
    out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    home = tmp_path_factory.mktemp("jupyterlab")
    (home / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, home / "notebooks" / NOTEBOOK)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "EMSEG_ROOT": str(out), "PYTHONPATH": str(ROOT),
           "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    for plugin, settings in SETTINGS.items():
        path = home / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    log = (home / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={home}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly",
         "--ServerApp.log_level=DEBUG",  # every request: who changed or shut a kernel
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(home / 'jupyterlab.log').read_text()[-2000:]}")
            return _answers(f"{base}/api/status?token={token}")

        _wait("JupyterLab to answer", ready)
        yield Lab(base, token, home / "jupyterlab.log")
    finally:
        server.send_signal(signal.SIGTERM)  # the server shuts its kernels down
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven by selenium, with a fresh profile."""
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    options.unhandled_prompt_behavior = "accept"  # leave a page with unsaved outputs
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver, element, name: str) -> Path:
    """The element (and the whole window beside it) as PNGs in :data:`ARTIFACTS`."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}_window.png"))
    path = ARTIFACTS / f"{name}.png"
    element.screenshot(str(path))
    print(f"screenshot: {path}")
    return path


#: every dialog JupyterLab showed during the test, as ``title | body`` (printed on a failure)
DIALOGS: list[str] = []


def _accept_dialogs(driver) -> bool:
    """Accept what JupyterLab asks in a dialog (which kernel to start: the notebook's); True
    when there was one. Each dialog's text is kept in :data:`DIALOGS`."""
    from selenium.webdriver.common.by import By

    shown = [d for d in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog") if d.is_displayed()]
    for dialog in shown:
        DIALOGS.append(" | ".join(dialog.text.split("\n")))
        for button in dialog.find_elements(By.CSS_SELECTOR, ".jp-mod-accept"):
            button.click()
    return bool(shown)


def _kernel_idle(driver) -> bool:
    return driver.execute_script(
        "const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
        "return s && s.getAttribute('data-status') === 'idle';")


def _started(driver) -> bool:
    """Whether a cell has run or is running (a prompt shows ``[*]`` or ``[n]``)."""
    return driver.execute_script("""return [...document.querySelectorAll('.jp-InputPrompt')]
                                     .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent));""")


def _dialog_open(driver) -> bool:
    from selenium.webdriver.common.by import By

    return any(d.is_displayed() for d in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"))


def _run_all_cells(driver) -> None:
    """Run > Run All Cells once the kernel is idle and no dialog is open, until cells run.

    A dialog (JupyterLab asks which kernel to start when its kernel specs come late on a
    loaded machine) is accepted only while no cell has run: accepting a kernel choice while
    cells run would start another kernel for the cells still queued. A click that a dialog
    swallowed is repeated, at most :data:`RUN_ATTEMPTS` times.
    """
    from selenium.webdriver.common.by import By

    run_menu = "//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='Run']"
    run_all = "//li[contains(@class, 'lm-Menu-item')][.//*[text()='Run All Cells']]"
    for _ in range(RUN_ATTEMPTS):
        _wait("the notebook's kernel to be idle, with no dialog open",
              lambda: not _accept_dialogs(driver) and _kernel_idle(driver))
        _wait("the Run menu", lambda: driver.find_elements(By.XPATH, run_menu))[0].click()
        _wait("the Run All Cells item", lambda: driver.find_elements(By.XPATH, run_all))[0].click()
        _wait("Run All Cells to start the notebook (or a dialog to stop it)",
              lambda: _started(driver) or _dialog_open(driver))
        if _started(driver):
            return
    pytest.fail(f"Run All Cells did not start the notebook in {RUN_ATTEMPTS} tries: a dialog "
                "opened each time")


def _run_notebook(driver, lab: Lab) -> tuple[str, str]:
    """Open the notebook on a fresh kernel, run all cells and wait for the slider panel's
    readout and first figure (returned).

    Under load JupyterLab's page has changed the kernel it was given while Run All queued
    cells (the server's log: the kernel shut down, two more started within a second; the
    page then waited on a kernel that no longer existed). The server's kernels are watched
    while waiting: when they change, the change is reported and the whole run repeated on a
    fresh kernel and page, at most :data:`RUN_ATTEMPTS` times. Nothing else is retried: a
    panel that never shows on an unchanged kernel fails after :data:`LIMIT` s.
    """
    churn = []
    for _ in range(RUN_ATTEMPTS):
        kernel = lab.fresh_kernel()
        driver.get(lab.url)
        _run_all_cells(driver)
        outcome = _wait("the slider panel with its first figure (or a change of kernel)",
                        lambda started=kernel: _state(driver) or lab.kernel_churn(started))
        if not isinstance(outcome, str):
            if churn:
                print("the run was repeated:", *churn, sep="\n")
            return outcome
        churn.append(outcome)
    pytest.fail(f"JupyterLab's page changed its kernel in each of {RUN_ATTEMPTS} runs: {churn}")


def _voi(readout: str) -> float:
    """The VOI (bits) a readout shows."""
    return float(re.search(r"VOI ([0-9.]+) bits", readout).group(1))


def _state(driver) -> tuple[str, str] | None:
    """The slider panel's VOI readout and its figure's image data, once both are shown."""
    return driver.execute_script("""
        const panels = [...document.querySelectorAll('.widget-vbox')].filter(
            box => box.querySelector('.widget-slider') && box.querySelector('.widget-output'));
        if (!panels.length) return null;
        const panel = panels[panels.length - 1];
        const readout = [...panel.querySelectorAll('.widget-html-content')]
            .map(e => e.textContent).find(t => t.includes('VOI') && t.includes('bits'));
        const image = panel.querySelector('.widget-output img');
        return readout && image && image.src.startsWith('data:image/png') ?
            [readout, image.src] : null;
    """)


def _save_failure(driver, log: Path) -> None:
    """The window and the JupyterLab log (server and kernels) in :data:`ARTIFACTS`; the
    log's tail printed."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "failure_window.png"))
    shutil.copy(log, ARTIFACTS / "jupyterlab.log")
    console = [f"{e['level']} {e['message']}" for e in driver.get_log("browser")]
    (ARTIFACTS / "console.log").write_text("\n".join(console))
    lines = log.read_text().splitlines()
    events = [line for line in lines if re.search(r"(PATCH|DELETE|POST) /api/|Kernel |\[[WE] ",
                                                  line)]
    print(f"screenshot of the failure: {ARTIFACTS / 'failure_window.png'}; JupyterLab's log: "
          f"{ARTIFACTS / 'jupyterlab.log'}; the page's console: {ARTIFACTS / 'console.log'}")
    print("dialogs shown:", DIALOGS or "none")
    print("the server's kernel and session events:", *events[-60:], sep="\n")
    print("the page's console, ending:", *console[-40:], sep="\n")
    print("the server's log, ending:", *lines[-30:], sep="\n")


def test_threshold_slider_redraws_the_figure_and_the_voi(jupyterlab, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    lab = jupyterlab
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's pictures
    try:
        readout, image = _run_notebook(browser, lab)
        counts = browser.execute_script(
            "return [...document.querySelectorAll('.jp-InputPrompt')]"
            ".map(p => p.textContent.match(/\\[(\\d+)\\]/)).filter(m => m).map(m => +m[1]);")
        assert len(counts) > 1 and len(set(counts)) == len(counts), \
            f"the cells did not run in one kernel: execution counts {counts}"
        panel = browser.find_elements(By.CSS_SELECTOR, ".widget-vbox")[-1]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", panel)
        _shot(browser, panel, "sliders_before")

        slider = browser.find_element(
            By.XPATH, "//div[contains(@class, 'widget-slider')][.//*[text()='sig_th']]")
        handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
        ActionChains(browser).click(handle).perform()  # focus: the arrow keys move it
        new_readout, new_image = readout, image
        for _ in range(MAX_STEPS):  # down by 0.01 until the VOI differs
            handle.send_keys(Keys.ARROW_LEFT)
            new_readout, new_image = _wait(
                "the readout to follow the slider",
                lambda last=new_readout: (state := _state(browser)) and state[0] != last
                and state)
            if _voi(new_readout) != _voi(readout):
                break
        assert _voi(new_readout) != _voi(readout), (readout, new_readout)
        new_readout, new_image = _wait("the figure to be redrawn", lambda: (
            state := _state(browser)) and state[1] != image and state)
        _shot(browser, panel, "sliders_after")
        assert "sig_th 0.83" in readout and "sig_th 0.83" not in new_readout
        assert _voi(new_readout) != _voi(readout)
        assert new_image != image
    except BaseException:
        _save_failure(browser, lab.log)
        raise
