"""`make lab` and `make lab-zh` serve JupyterLab on 127.0.0.1: start each server, query it, stop it.

Each serves the learner's workspace (a temporary one here): copies of the lessons, saved there, with the
course's modules and solutions readable beside them but not writable, so no committed file changes.

Runs the Makefile's own targets (with a free port and a known token), so the tests check the
commands a learner types, not copies of them. Also available on their own as `make check-lab`.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request

import pytest
from lab_server import REPO, get_json, serving

L10N_PLUGIN = "@jupyterlab/translation-extension:plugin"

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(not (REPO / ".venv/bin/jupyter").exists(), reason="no .venv: run `make setup` first"),
]


def locale_in_effect(port: int, token: str) -> tuple[str, str]:
    """(locale in effect, default locale) from the settings API: a user setting wins over the default,
    and the default is the schema's, with any overrides.json already applied by the server."""
    status, body = get_json(port, token, f"/lab/api/settings/{L10N_PLUGIN}")
    assert status == 200 and body["id"] == L10N_PLUGIN
    default = body["schema"]["properties"]["locale"]["default"]
    return body["settings"].get("locale", default), default


def root_listing(port: int, token: str) -> set[str]:
    status, body = get_json(port, token, "/api/contents")
    assert status == 200
    return {item["name"] for item in body["content"]}


def put(port: int, token: str, path: str, model: dict) -> int:
    """Save ``model`` at ``path`` through the contents API, as JupyterLab's Save does; the HTTP status."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents/{path}?token={token}",
                                     data=json.dumps(model).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def digests(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ipynb"))}


def test_make_lab_serves_jupyterlab_on_localhost(tmp_path):
    committed = digests(REPO / "notebooks")
    with serving("lab", tmp_path) as (port, token):
        # Without the token the API refuses: the server is not open to anyone who can reach the port.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
        # The workspace at the root: the lessons, and links to the modules and solutions; English locale.
        assert {"00_start_here.ipynb", "01_glm_attention_masks.ipynb", "glmcourse", "notebooks"} <= root_listing(port, token)
        assert locale_in_effect(port, token)[1] != "zh_CN"
        # The prose's paths open: glmcourse/masks.py and notebooks/solutions/01_masks_solutions.py.
        status, module = get_json(port, token, "/api/contents/glmcourse/masks.py")
        assert status == 200 and module["writable"] is False and "def " in module["content"]
        status, solution = get_json(port, token, "/api/contents/notebooks/solutions/01_masks_solutions.py")
        assert status == 200 and solution["writable"] is False
        # Saving a lesson writes the workspace copy; saving a course file is refused.
        status, nb = get_json(port, token, "/api/contents/01_glm_attention_masks.ipynb")
        assert status == 200 and nb["writable"] is True
        nb["content"]["cells"][0]["source"] = "my notes"
        assert put(port, token, "01_glm_attention_masks.ipynb", {"type": "notebook", "content": nb["content"]}) == 200
        assert put(port, token, "glmcourse/masks.py", {"type": "file", "format": "text", "content": "x"}) == 403
    saved = json.loads((tmp_path / "work" / "01_glm_attention_masks.ipynb").read_text())
    assert "".join(saved["cells"][0]["source"]) == "my notes"
    assert digests(REPO / "notebooks") == committed  # the course's lessons are as committed


def test_make_lab_zh_serves_the_chinese_edition_in_chinese(tmp_path):
    with serving("lab-zh", tmp_path) as (port, token):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
        # work/zh/ is the root: the Chinese lesson copies at the top, the course's links beside them,
        # nothing of the English workspace above it.
        listing = root_listing(port, token)
        assert {"00_start_here.ipynb", "glmcourse", "solutions"} <= listing and "zh" not in listing
        status, lesson = get_json(port, token, "/api/contents/00_start_here.ipynb")
        assert status == 200 and any(c.get("id") == "zh-setup" for c in lesson["content"]["cells"])  # 中文版
        assert (tmp_path / "work" / "zh" / "00_start_here.ipynb").exists()  # the workspace's Chinese edition
        status, module = get_json(port, token, "/api/contents/glmcourse/masks.py")
        assert status == 200 and module["writable"] is False
        # The language pack is installed where this server finds it ...
        status, packs = get_json(port, token, "/lab/api/translations/")
        assert status == 200 and packs["message"] == "", packs["message"]
        assert "zh_CN" in packs["data"], f"zh_CN not among installed language packs {sorted(packs['data'])}"
        status, pack = get_json(port, token, "/lab/api/translations/zh_CN")
        assert status == 200 and pack["message"] == "", pack["message"]
        assert pack["data"]["jupyterlab"][""]["language"] == "zh-CN"
        assert pack["data"]["jupyterlab"]["Settings"] == ["设置"]
        # ... and it is the locale in effect, set by lab-zh/settings/overrides.json (no user setting here).
        assert locale_in_effect(port, token) == ("zh_CN", "zh_CN")
