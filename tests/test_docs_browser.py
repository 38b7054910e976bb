"""/docs in a real headless Chromium: Swagger UI loads from the service itself and lists every operation."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.live import live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def test_docs_page_lists_every_operation(redis_url: str, browser: WebDriver) -> None:
    with live_server(redis_url, public_endpoints=frozenset({"docs"})) as server:
        document = httpx.get(f"{server.url}/openapi.json").json()
        expected = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
        browser.get(f"{server.url}/docs")

        def listed(driver: WebDriver) -> set[tuple[str, str]]:  # (method, path) per rendered operation
            blocks = driver.find_elements(By.CSS_SELECTOR, ".opblock-summary")
            return {
                (
                    block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                    block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
                    or "",
                )
                for block in blocks
            }

        WebDriverWait(browser, 20).until(lambda driver: listed(driver) == expected)
        assert browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title")
