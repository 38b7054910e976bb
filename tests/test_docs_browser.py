"""/docs in a real headless Chromium: Swagger UI loads from the service itself, lists every operation, and
"Try it out" on POST /score, with the key given through "Authorize", scores the documented example."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.live import TEST_KEY, live_server

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


KEY_FIELD = ".modal-ux input[aria-label='auth-bearer-value']"  # the bearer scheme's field in "Authorize"
ANSWER = ".live-responses-table tr.response"  # the answer "Execute" got, as Swagger UI shows it


def click(browser: WebDriver, css: str, within: WebElement | None = None) -> WebElement:
    """The element once it can be clicked, clicked."""
    root = within or browser
    element = WebDriverWait(browser, 20).until(lambda _: root.find_element(By.CSS_SELECTOR, css))
    WebDriverWait(browser, 20).until(ec.element_to_be_clickable(element))
    element.click()
    return element


def test_try_it_out_scores_the_documented_example(redis_url: str, browser: WebDriver) -> None:
    with live_server(redis_url, public_endpoints=frozenset({"docs"})) as server:
        browser.get(f"{server.url}/docs")
        # The key goes in through the bearer scheme the document declares, as a reader would give it.
        click(browser, ".auth-wrapper .authorize")
        field = WebDriverWait(browser, 20).until(
            lambda driver: driver.find_element(By.CSS_SELECTOR, KEY_FIELD)
        )
        field.send_keys(TEST_KEY)
        click(browser, ".modal-ux .auth-btn-wrapper button[type='submit']")
        click(browser, ".modal-ux .btn-done")

        operation = browser.find_element(By.CSS_SELECTOR, "#operations-score-score_score_post")
        click(browser, ".opblock-summary", within=operation)
        click(browser, ".try-out__btn", within=operation)
        sent = operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text").get_attribute("value")
        click(browser, ".execute", within=operation)

        row = WebDriverWait(browser, 30).until(lambda _: operation.find_element(By.CSS_SELECTOR, ANSWER))
        status = row.find_element(By.CSS_SELECTOR, ".response-col_status").text
        shown = row.find_element(By.CSS_SELECTOR, ".highlight-code pre")
        answer = json.loads(shown.text)
    assert json.loads(sent or "") == {"user_ids": ["u-42"], "explain": True}  # the example, unedited
    assert status.strip() == "200"  # /score needs a key: the one given to "Authorize" was sent
    assert [result["user_id"] for result in answer["results"]] == ["u-42"]
    assert 0 <= answer["results"][0]["churn_probability"] <= 1
    assert answer["results"][0]["known_user"] is False  # no events yet: scored all the same
