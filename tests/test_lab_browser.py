"""The course in a real browser: `make lab`'s JupyterLab in headless Chromium runs lessons 01-03.

For each lesson: open it, run all cells, wait for the kernel to go idle, and check that no cell shows
an error, that the widgets render as controls (not as text like ``IntSlider(value=...)``), and that
moving a control changes what is drawn below it. Autosave is off and the notebook file is compared
before and after, so the committed notebooks stay as they are. Screenshots of a failure go to
runs/browser/. The kernel inherits `make test`'s fast mode.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
import urllib.request

import pytest
from browser import chromium_page, needs_chromium
from lab_server import REPO, serving

pytestmark = [
    needs_chromium,
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(not (REPO / ".venv/bin/jupyter").exists(), reason="no .venv: run `make setup` first"),
]

RUN_TIMEOUT_S = 600
NO_AUTOSAVE = {"@jupyterlab/docmanager-extension:plugin": {"autosave": False}}
# window.jupyterapp (JupyterLab's own option) lets the test run commands and read the notebook model.
LAB_ARGS = "--LabApp.expose_app_in_browser=True"

CURRENT = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
KERNEL_READY = f"""() => {{
    const panel = {CURRENT};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!(kernel && kernel.status === 'idle' && panel.content && panel.content.widgets.length);
}}"""
# Done when the kernel is idle and every code cell has run, or a cell failed (Run All stops there).
RUN_STATE = f"""() => {{
    const panel = {CURRENT};
    const cells = panel.content.widgets.filter(c => c.model.type === 'code');
    const errors = cells.map((c, i) => [i, c.model.toJSON().outputs || []])
        .filter(([i, outs]) => outs.some(o => o.output_type === 'error'))
        .map(([i, outs]) => {{ const e = outs.find(o => o.output_type === 'error'); return `code cell ${{i}}: ${{e.ename}}: ${{e.evalue}}`; }});
    const ran = cells.filter(c => c.model.executionCount !== null).length;
    return {{idle: panel.sessionContext.session.kernel.status === 'idle', ran, total: cells.length, errors}};
}}"""


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with serving("lab", tmp_path_factory.mktemp("lab"), lab_args=LAB_ARGS, user_settings=NO_AUTOSAVE) as server:
        yield server


def shut_down_kernels(lab) -> None:
    """Stop every kernel of the server, so one lesson's kernel does not slow down the next."""
    port, token = lab
    base = f"http://127.0.0.1:{port}/api/kernels"
    with urllib.request.urlopen(f"{base}?token={token}", timeout=10) as resp:
        kernels = json.loads(resp.read())
    for kernel in kernels:
        request = urllib.request.Request(f"{base}/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def run_lesson(page, lab, notebook: str):
    """Open ``notebook`` in JupyterLab, run all cells, wait until done; fail on any error output.

    Returns the notebook's panel, the part of the page later checks look in."""
    port, token = lab
    # ?reset: a fresh workspace, so the lessons opened by earlier tests are not open again.
    page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook}?reset&token={token}", wait_until="load",
              timeout=120_000)
    page.wait_for_function(KERNEL_READY, timeout=180_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline, idle_since = time.monotonic() + RUN_TIMEOUT_S, None
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE)
        if state["errors"]:
            break
        if state["idle"] and state["ran"] == state["total"]:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 2:  # stays idle: no widget callback still drawing
                break
        else:
            idle_since = None
        page.wait_for_timeout(500)
    else:
        pytest.fail(f"{notebook}: not finished after {RUN_TIMEOUT_S} s ({state['ran']} of {state['total']} code cells ran)")
    assert not state["errors"], f"{notebook}: cells show errors: {state['errors']}"
    panel = page.locator(f"[id='{page.evaluate(f'() => {CURRENT}.id')}']")
    outputs = panel.locator(".jp-OutputArea-output").all_inner_texts()
    as_text = [t for t in outputs if "IntSlider(" in t or "interactive(children" in t]
    assert not as_text, f"{notebook}: widgets shown as text, not as controls: {as_text[0][:200]}"
    return panel


def widget_with(page, panel, label: str):
    """The interact box of ``panel`` whose controls include one labelled ``label``."""
    box = panel.locator(".widget-interact").filter(has=page.locator(".widget-label", has_text=label))
    assert box.count() >= 1, f"no widget with a control labelled {label!r}"
    return box.first


def set_slider(page, box, label: str, value) -> None:
    """Type ``value`` into the slider's readout, as a learner can, and press Enter."""
    slider = box.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=label)).first
    assert slider.locator(".noUi-handle, .slider-container").count() >= 1, f"{label!r} is not drawn as a slider"
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def figure_below(box) -> str:
    """The src of the last image the widget has drawn ("" when none yet)."""
    images = box.locator(".widget-output img")
    return images.last.get_attribute("src") if images.count() else ""


def wait_for_new_figure(page, box, before: str, what: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = figure_below(box)
        if now and now != before:
            return now
        page.wait_for_timeout(250)
    pytest.fail(f"{what}: the figure below the controls did not change")


@contextlib.contextmanager
def lesson_in_browser(lab, name: str):
    """Run lesson ``name`` in JupyterLab; yield ``(page, panel)``. Afterwards: no request left the
    machine, the kernels are stopped, and the committed notebook is byte for byte what it was."""
    notebook = REPO / "notebooks" / name
    before_file = digest(notebook)
    with chromium_page(f"lab_{name[:2]}") as (page, outside):
        yield page, run_lesson(page, lab, name)
        assert outside == [], f"the page tried to reach the network: {outside}"
    shut_down_kernels(lab)
    assert digest(notebook) == before_file, "running the lesson in the browser changed the committed notebook"


def test_lesson_01_mask_explorer_redraws_when_its_slider_moves(lab):
    with lesson_in_browser(lab, "01_glm_attention_masks.ipynb") as (page, panel):
        explorer = widget_with(page, panel, "mask ratio")
        first = figure_below(explorer)
        assert first, "the mask explorer drew no figure"
        set_slider(page, explorer, "mask ratio", 0.5)
        wait_for_new_figure(page, explorer, first, "mask ratio 0.0 -> 0.5")


def test_lesson_02_error_histogram_redraws_when_the_bits_change(lab):
    with lesson_in_browser(lab, "02_quantization.ipynb") as (page, panel):
        controls = widget_with(page, panel, "bits")
        set_slider(page, controls, "bits", 8)
        at_8 = wait_for_new_figure(page, controls, figure_below(controls), "bits 4 -> 8")
        set_slider(page, controls, "bits", 2)
        wait_for_new_figure(page, controls, at_8, "bits 8 -> 2")


def test_lesson_03_chat_widget_answers(lab):
    with lesson_in_browser(lab, "03_deploy_and_chat.ipynb") as (page, panel):
        chat_box = panel.locator(".widget-vbox").filter(has=page.locator("button", has_text="Clear History")).last
        transcript = chat_box.locator(".widget-output").first
        before = transcript.inner_text()
        chat_box.locator("textarea").fill("你好")
        chat_box.locator("button", has_text="Submit").click()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and transcript.inner_text() == before:
            page.wait_for_timeout(250)
        reply = transcript.inner_text()
        assert "你好" in reply and len(reply) > len(before) + 2, f"no reply shown; transcript: {reply!r}"
