"""`make lab` and `make lab-zh` serve JupyterLab on 127.0.0.1: start each server, query it, stop it.

Runs the Makefile's own targets (with a free port and a known token), so the tests check the
commands a learner types, not copies of them. Also available on their own as `make check-lab`.
"""
from __future__ import annotations

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


def test_make_lab_serves_jupyterlab_on_localhost(tmp_path):
    with serving("lab", tmp_path) as (port, token):
        # Without the token the API refuses: the server is not open to anyone who can reach the port.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
        # The English course is as before: notebooks/ at the root, no Chinese default locale.
        assert {"00_start_here.ipynb", "zh"} <= root_listing(port, token)
        assert locale_in_effect(port, token)[1] != "zh_CN"


def test_make_lab_zh_serves_the_chinese_edition_in_chinese(tmp_path):
    with serving("lab-zh", tmp_path) as (port, token):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2)
        assert refused.value.code == 403
        # notebooks/zh/ is the root: its notebooks at the top, nothing of the English folder above it.
        listing = root_listing(port, token)
        assert "00_start_here.ipynb" in listing and "zh" not in listing and "solutions" not in listing
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
