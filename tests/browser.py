"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright, which never
downloads a browser. `make test` installs the package when it runs as root; otherwise the browser
tests are skipped with the command that installs it."""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "runs" / "browser"  # git-ignored
# Without the background-networking flags Chromium keeps trying to reach Google's hosts.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]

def missing_browser() -> str:
    """Why the browser tests cannot run here, with the fix; "" when they can."""
    if not os.path.exists(CHROMIUM):
        return ("browser test skipped: needs Debian's chromium (`sudo apt-get install chromium`; "
                "`make test` installs it when run as root)")
    if importlib.util.find_spec("playwright") is None:
        return "browser test skipped: needs playwright (`make setup` installs it)"
    return ""


needs_chromium = pytest.mark.skipif(bool(missing_browser()), reason=missing_browser() or "-")


@contextlib.contextmanager
def chromium_page(name: str, viewport=(1400, 1000)):
    """A fresh page that may reach 127.0.0.1 only; on a failure its screenshot goes to runs/browser/NAME.png.

    Yields ``(page, outside)``: ``outside`` lists the requests that tried to leave the machine (refused)."""
    from playwright.sync_api import sync_playwright

    outside = []

    def only_local(route):
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.route("**/*", only_local)
            try:
                yield page, outside
            except BaseException:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
                raise
        finally:
            browser.close()
