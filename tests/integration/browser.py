"""Headless Chromium for the UI tests (the MLflow UI and the Prefect UI).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the dev extra). Without
them a UI test is skipped with the reason, and fails in CI (``CI=true``), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

PAGE_TIMEOUT_S = 180.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)


def browser_missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    for exe in ("chromium", "chromedriver"):
        if shutil.which(exe) is None:
            return f"no `{exe}` on PATH (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra: pip install -e '.[dev]')"
    return None


def require_browser() -> None:
    """Skip (fail in CI) when the browser is missing."""
    if why := browser_missing():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {why}")
        pytest.skip(why)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Selenium, with a new empty profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="recipe-embed-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(shutil.which("chromium"))
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(shutil.which("chromedriver"))), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_text(driver: Any, text: str) -> None:
    """Wait until ``text`` is in the page (the UIs are React/Vue apps: they render after load; scrolled panes
    hold text that is not on screen, so the page's text content is read, not only what is visible)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.5).until(
        lambda d: text in str(d.execute_script("return document.body.textContent")),
        message=f"{text!r} never showed on {driver.current_url}",
    )
