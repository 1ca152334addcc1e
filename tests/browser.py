"""A real headless Chromium for the tests of pages (Debian's `chromium` and `chromium-driver`,
driven by selenium; `.ci/run` installs them when missing).

    from browser import browser  # noqa: F401  (the fixture; pytest finds it by name)

    def test_page(browser):
        browser.get(url)             # a selenium WebDriver
        wait_for(browser, "return document.body.dataset.ready === '1'")

Each test gets a fresh browser with its own profile folder; a test skips, saying why, only when
selenium, the browser or its driver is missing (CI installs them, so there it runs).
"""
from __future__ import annotations

import shutil
import time

import pytest

# as root (CI containers) Chromium runs only without its sandbox; the rest keeps it off the
# network and quiet: no GPU, no QUIC, no first-run pages, no background updates or sync
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,900")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")


def chromium_paths() -> tuple[str, str] | str:
    """(browser binary, driver binary), or why there is none."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if browser is None or driver is None:
        return ("no Chromium and driver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run "
                "installs them)")
    return browser, driver


def start_chromium(profile_dir) -> "webdriver.Chrome":  # noqa: F821 - selenium is imported lazily
    """A headless Chromium with a fresh profile in ``profile_dir``; skips the test when it cannot start."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .)")
    paths = chromium_paths()
    if isinstance(paths, str):
        pytest.skip(paths)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 20.0):
    """Poll ``script`` (JavaScript returning a value) until it is truthy; fails after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"the page never made this true within {timeout:g} s: {script}")
