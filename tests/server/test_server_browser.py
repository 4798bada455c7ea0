"""The web page in headless Chromium (Selenium): upload two images, stylize with adain, see the result.

Saves a screenshot of the finished page to test-artifacts/web_result.png (repo-root relative).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import chrome, needs_chromium
from PIL import Image

from impasto.server.app import ServerConfig, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.weights,
    needs_chromium,
]

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def base_url(weights_dir: Path) -> Iterator[str]:
    with serve_in_thread(ServerConfig(port=0, workers=1, queue=4, timeout=120)) as url:
        yield url


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chrome(tmp_path / "chrome-profile", window="1280,1300") as drv:
        yield drv


def resized_copy(src: Path, dest: Path, size: int) -> tuple[int, int]:
    img = Image.open(src).convert("RGB")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    img.save(dest, quality=92)
    return img.size


def wait_for_methods(drv: webdriver.Chrome) -> Select:
    WebDriverWait(drv, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#method option")) > 1)
    return Select(drv.find_element(By.ID, "method"))


def wait_for_result(drv: webdriver.Chrome, timeout: float = 90) -> tuple[int, int]:
    def loaded(d: webdriver.Chrome) -> tuple[int, int] | bool:
        err = d.find_element(By.ID, "error")
        if err.is_displayed():
            raise AssertionError(f"the page shows an error: {err.text}")
        return d.execute_script(
            "const i = document.getElementById('result-img');"
            "return i.complete && i.naturalWidth > 0 && !document.getElementById('result').hidden"
            " ? [i.naturalWidth, i.naturalHeight] : false;")

    return tuple(WebDriverWait(drv, timeout, poll_frequency=0.2).until(loaded))


def test_upload_stylize_and_download(driver: webdriver.Chrome, base_url: str, tmp_path: Path,
                                     content_path: Path, style_path: Path) -> None:
    content_file, style_file = tmp_path / "photo.jpg", tmp_path / "painting.png"
    content_size = resized_copy(content_path, content_file, 192)
    resized_copy(style_path, style_file, 160)

    driver.get(base_url + "/")
    assert "impasto" in driver.title
    methods = wait_for_methods(driver)
    # Every control has an accessible label.
    for control in ("content-file", "style-file", "method", "alpha", "preserve-color", "max-size"):
        assert driver.find_elements(By.CSS_SELECTOR, f"label[for='{control}']") or driver.execute_script(
            "return document.getElementById(arguments[0]).closest('label') !== null", control), control
    # Methods that cannot run here are disabled, with the reason as their title.
    from impasto.methods import availability

    for opt in methods.options:
        ok, why = availability(opt.get_attribute("value"))
        assert opt.is_enabled() is ok
        if not ok:
            assert opt.get_attribute("title") == why

    driver.find_element(By.ID, "content-file").send_keys(str(content_file))
    driver.find_element(By.ID, "style-file").send_keys(str(style_file))
    methods.select_by_value("adain")
    max_size = driver.find_element(By.ID, "max-size")
    max_size.clear()
    max_size.send_keys("512")
    driver.find_element(By.ID, "stylize-button").click()

    width, height = wait_for_result(driver)
    assert (width, height) == content_size
    link = driver.find_element(By.ID, "download")
    href = link.get_attribute("href")
    assert href.startswith(base_url + "/v1/jobs/") and href.endswith("/result")
    assert link.get_attribute("download").endswith(".png")
    assert "Done" in driver.find_element(By.ID, "status-text").text
    # The image shown is the server's result, a real PNG of the photo's size.
    import httpx

    png = Image.open(io.BytesIO(httpx.get(href, timeout=30).content))
    assert png.format == "PNG" and png.size == content_size

    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "web_result.png"))
    assert (ARTIFACTS / "web_result.png").stat().st_size > 10_000


def test_samples_and_errors(driver: webdriver.Chrome, base_url: str, tmp_path: Path) -> None:
    driver.get(base_url + "/")
    wait_for_methods(driver).select_by_value("adain")
    # Stylize without images: a message, no request.
    driver.find_element(By.ID, "stylize-button").click()
    err = driver.find_element(By.ID, "error")
    assert err.is_displayed() and "photo" in err.text.lower()
    # The built-in (procedurally drawn) samples work end to end.
    driver.find_elements(By.CSS_SELECTOR, "#content-samples .sample")[0].click()
    driver.find_elements(By.CSS_SELECTOR, "#style-samples .sample")[0].click()
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "content-preview").is_displayed()
        and d.find_element(By.ID, "style-preview").is_displayed())
    driver.find_element(By.ID, "max-size").clear()
    driver.find_element(By.ID, "stylize-button").click()
    assert wait_for_result(driver) == (320, 240)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "web_samples.png"))
    # A corrupt upload: the server's 422 message is shown to the user.
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    driver.find_element(By.ID, "content-file").send_keys(str(bad))
    driver.find_element(By.ID, "stylize-button").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    text = driver.find_element(By.ID, "error").text
    assert "broken.jpg" in text and ("corrupt" in text or "not an image" in text or "truncated" in text), text
    assert driver.find_element(By.ID, "stylize-button").is_enabled()


def test_api_docs_render_offline(driver: webdriver.Chrome, base_url: str) -> None:
    """/docs renders the API in Swagger UI from scripts the server ships (this machine has no internet access, so a
    CDN-loaded page stays blank: the state before fastapi-offline)."""
    driver.get(base_url + "/docs")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text.replace("\u200b", "") for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/stylize", "/v1/jobs/{job_id}", "/v1/methods"} <= paths, paths
    scripts = [e.get_attribute("src") for e in driver.find_elements(By.TAG_NAME, "script") if e.get_attribute("src")]
    assert scripts and all(src.startswith(base_url) for src in scripts), scripts
