"""Lesson 03: the browser chat (glmcourse/web_demo.py).

The answer logic is tested directly with the stand-ins. The page itself is tested in headless
Chromium (Debian's ``chromium``, driven by Playwright; see tests/browser.py) as part of `make test`,
which installs chromium when it runs as root; without it the browser test is skipped and says how
to get it. `make e2e` runs the browser tests alone.
"""
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from browser import chromium_page, needs_chromium
from chat_fakes import ByteTokenizer, ScriptedModel, save_tiny_chat_model
from glmcourse import REPO_ROOT, web_demo

TOK = ByteTokenizer()


def test_respond_streams_into_the_chat_box_and_the_history():
    model = ScriptedModel("你好,我是助手")
    steps = list(web_demo.respond(model, TOK, "你好", [], [], 2048, 0.7, 0.95))
    first_messages, _, textbox = steps[0]
    assert textbox == ""  # the input box is emptied at once
    assert first_messages[-2] == {"role": "user", "content": "你好"}
    answers = [m[-1]["content"] for m, _, _ in steps]
    assert len(set(answers)) > 3  # it streamed
    messages, history, _ = steps[-1]
    assert messages[-1] == {"role": "assistant", "content": "你好，我是助手"}
    assert history == [("你好", "你好，我是助手")]
    assert model.calls[0]["top_p"] == 0.7 and model.calls[0]["temperature"] == 0.95


def test_respond_ignores_an_empty_message_and_passes_the_sliders():
    model = ScriptedModel("ok")
    assert list(web_demo.respond(model, TOK, "  ", [], [], 2048, 0.7, 0.95)) == [([], [], "  ")]
    assert model.calls == []
    shown = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]  # what the page shows
    list(web_demo.respond(model, TOK, "q", shown, [("a", "b")], 100.0, 0.5, 0.3))
    call = model.calls[0]
    assert (call["top_p"], call["temperature"]) == (0.5, 0.3)
    prompt_ids = len("[Round 0]\n问：a\n答：b\n[Round 1]\n问：q\n答：".encode()) + 2  # + [gMASK] <sop>
    assert call["max_new_tokens"] == 100 - prompt_ids  # the Maximum length slider, an int


def test_the_page_has_the_seed_controls_and_binds_localhost_by_default():
    from chat_fakes import tiny_chat_model

    tok, model = tiny_chat_model()
    demo = web_demo.build_demo(model, tok)
    config = demo.get_config_file()
    labels = {c.get("props", {}).get("label") or c.get("props", {}).get("value")
              for c in config["components"]}
    assert {"Submit", "Clear History", "Maximum length", "Top P", "Temperature"} <= labels
    sliders = {c["props"]["label"]: c["props"]["value"] for c in config["components"] if c["type"] == "slider"}
    assert sliders == {"Maximum length": 2048, "Top P": 0.7, "Temperature": 0.95}
    chatbot = next(c for c in config["components"] if c["type"] == "chatbot")
    assert chatbot["props"]["render_markdown"] is True  # markdown and code blocks as HTML
    assert web_demo.parse_args([]).host == "127.0.0.1"
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


# ------------------------------------------------------------------ headless Chromium (make e2e)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_server(tmp_path):
    model_dir = save_tiny_chat_model(tmp_path / "tiny", min_new_tokens=30)  # never an empty answer
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GLMCOURSE_QUIET="1", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "glmcourse.web_demo", "--model", model_dir, "--port", str(port)],
                            cwd=str(REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while "Running on local URL" not in (tmp_path / "server.log").read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("web demo did not start:\n" + (tmp_path / "server.log").read_text())
        time.sleep(0.5)
    yield url, tmp_path / "server.log"
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


# Records, in the page, each distinct non-empty text of the first answer as the chat box changes.
ANSWER_RECORDER = """() => {
    window.answerTexts = [];
    const chat = document.querySelector('#chatbot');
    new MutationObserver(() => {
        const row = chat.querySelector('.bot-row');
        const text = row ? row.innerText.trim() : '';
        if (text && window.answerTexts[window.answerTexts.length - 1] !== text) window.answerTexts.push(text);
    }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


@needs_chromium
def test_browser_send_stream_and_clear(web_server):
    from playwright.sync_api import expect

    url, server_log = web_server
    with chromium_page("web_demo") as (page, outside):
        page.goto(url, wait_until="load", timeout=90_000)
        expect(page.get_by_role("button", name="Submit")).to_be_visible(timeout=60_000)
        for label in ("Maximum length", "Top P", "Temperature"):
            expect(page.get_by_text(label, exact=True).first).to_be_visible()

        # Every text the answer shows, recorded in the page as the DOM changes: polling from here can miss the
        # partial answers of a short reply on a fast machine, an observer in the page cannot.
        page.evaluate(ANSWER_RECORDER)
        page.locator("#user_input textarea").fill("你好")
        page.get_by_role("button", name="Submit").click()
        user = page.locator("#chatbot .user-row")
        bot = page.locator("#chatbot .bot-row")
        expect(user).to_have_count(1, timeout=60_000)
        expect(user.first).to_contain_text("你好")
        last_change, last = time.time(), None
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the answer stays the same for 3 s
            text = bot.first.inner_text().strip() if bot.count() else ""
            if text != last:
                last, last_change = text, time.time()
            elif text and time.time() - last_change > 3:
                break
            time.sleep(0.05)
        final = bot.first.inner_text().strip()
        assert final, f"no answer shown; server log:\n{server_log.read_text()}"
        assert "\ufffd" not in final
        shown = page.evaluate("() => window.answerTexts")
        assert shown[-1] == final, (shown, final)
        assert len(set(shown)) >= 2, f"the answer appeared in one piece, not streamed: {shown}"
        expect(page.locator("#user_input textarea")).to_have_value("")

        page.get_by_role("button", name="Clear History").click()
        expect(bot).to_have_count(0, timeout=30_000)
        expect(user).to_have_count(0)

        # Shift+Enter adds a line, Enter sends; a message's HTML and images are shown as text
        box = page.locator("#user_input textarea")
        box.click()
        box.press_sequentially("<img src=http://example.invalid/a.png>")
        box.press("Shift+Enter")
        box.press_sequentially("![x](http://example.invalid/b.png)")
        expect(box).to_have_value("<img src=http://example.invalid/a.png>\n![x](http://example.invalid/b.png)")
        expect(user).to_have_count(0)  # Shift+Enter did not send
        box.press("Enter")
        expect(user).to_have_count(1, timeout=60_000)
        expect(user.first).to_contain_text("<img src=http://example.invalid/a.png>")
        expect(page.locator("#chatbot img[src*='example.invalid']")).to_have_count(0)
        expect(box).to_have_value("", timeout=60_000)
        page.wait_for_timeout(2000)
    assert outside == [], f"the page tried to reach the network: {outside}"
    assert re.search(r"Running on local URL:\s+http://127\.0\.0\.1:", server_log.read_text())
    assert "share=True" not in server_log.read_text()  # no hint at public links (the lesson says why)
