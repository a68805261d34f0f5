"""A real browser for the UI tests: Debian's Chromium driven by its own chromedriver
through Selenium (no browser download: both come from the system's packages, so their
versions always match). Without them the tests skip, except in CI, where .ci/run
installs them and a missing browser is a failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def new_browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Any]:
    """One headless Chromium for a test module (starting one costs about a second)."""
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are missing; .ci/run installs them")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


def node_class(driver: Any, step_id: str) -> str:
    """The class of the DAG node of `step_id` (its status is `st-<status>`)."""
    return str(
        driver.execute_script(
            "const n = document.querySelector('#dag .node[data-step=\"' + arguments[0] + '\"]');"
            "return n ? n.getAttribute('class') : '';",
            step_id,
        )
    )
