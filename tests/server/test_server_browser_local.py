"""The web page's "in my browser" mode in headless Chromium: onnxruntime-web runs exported models on a real photo.

The page reads the files with the File API, resizes them on a canvas, runs /models/METHOD.onnx with onnxruntime-web
(wasm) and draws the result; the test reads the canvases back (the resized inputs and the output), compares the
output with PyTorch's on the same inputs, and checks from the server's side that nothing was uploaded. Skipped, with
the reason, where Chromium or the onnxruntime-web files (``impasto web-assets``; scripts/setup.sh fetches them) are
missing. Saves screenshots to test-artifacts/web_browser_mode_METHOD.png.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from browser_support import chrome, needs_chromium
from PIL import Image

from impasto import webassets
from impasto.server.app import ServerConfig, create_app, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.weights,
    pytest.mark.slow,
    needs_chromium,
]

selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


class RequestLog:
    """ASGI wrapper that records (method, path) of every HTTP request the server receives."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests = app, []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server(weights_dir: Path) -> Iterator[tuple[str, RequestLog]]:
    config = ServerConfig(port=0, workers=1, queue=4, timeout=120)
    log = RequestLog(create_app(config))
    with serve_in_thread(config, app=log) as url:
        yield url, log


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chrome(tmp_path / "chrome-profile", window="1280,1400", browser_log=True) as drv:
        yield drv


def canvas_tensor(drv: webdriver.Chrome, expr: str) -> torch.Tensor:
    """A canvas of the page read back losslessly (PNG data URL) as 1 x 3 x H x W in [0, 1]."""
    url = drv.execute_script(f"return {expr}.toDataURL('image/png');")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean().clamp_min(1e-20)))


@pytest.mark.parametrize("method", ["adain", "microast"])
def test_stylize_in_my_browser(method: str, driver: webdriver.Chrome, server: tuple[str, RequestLog],
                               content_path: Path, style_path: Path) -> None:
    ready, why = webassets.ort_web_status()
    if not ready:
        pytest.skip(f"in-browser mode needs the onnxruntime-web files: {why}")
    pytest.importorskip("onnxscript", reason="exporting the model needs onnx and onnxscript (impasto[export])")
    from impasto.pipeline import Stylizer
    from impasto.server.browser import exported_model

    base_url, log = server
    t = time.perf_counter()
    exported_model(method)  # exported once into the cache (reused by later runs); the page then fetches it
    export_s = time.perf_counter() - t

    driver.get(base_url + "/")
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "run-browser").is_enabled())
    assert "never leave" in driver.find_element(By.ID, "run-browser-help").text
    driver.find_element(By.ID, "run-browser").click()
    WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#method option")) > 1)
    methods = Select(driver.find_element(By.ID, "method"))
    methods.select_by_value(method)
    # only exported methods run in the browser; the others are greyed out with the reason as their title
    sanet = driver.find_element(By.CSS_SELECTOR, "#method option[value='sanet']")
    assert not sanet.is_enabled() and sanet.get_attribute("title")
    assert driver.find_element(By.ID, "max-size").get_attribute("value") == "512"
    driver.execute_script("const a = document.getElementById('alpha'); a.value = '0.8';"
                          "a.dispatchEvent(new Event('input'));")
    driver.find_element(By.ID, "content-file").send_keys(str(content_path))  # the real photo, 712 x 474
    driver.find_element(By.ID, "style-file").send_keys(str(style_path))
    driver.find_element(By.ID, "stylize-button").click()

    def finished(d: webdriver.Chrome) -> bool:
        err = d.find_element(By.ID, "error")
        if err.is_displayed():
            raise AssertionError(f"the page shows an error: {err.text}; console: {d.get_log('browser')}")
        return "Done" in d.find_element(By.ID, "status-text").text

    WebDriverWait(driver, 180, poll_frequency=0.2).until(finished)
    status = driver.find_element(By.ID, "status-text").text
    assert "nothing was uploaded" in status, status
    timings = driver.execute_script("return window.impastoBrowser.state.last.timings;")

    # the result: a canvas of the resized photo's size, downloadable as a PNG made in the page
    canvas = driver.find_element(By.ID, "result-canvas")
    assert canvas.is_displayed() and not driver.find_element(By.ID, "result-img").is_displayed()
    link = driver.find_element(By.ID, "download")
    assert link.get_attribute("href").startswith("blob:") and link.get_attribute("download").endswith(".png")
    content = canvas_tensor(driver, "window.impastoBrowser.state.last.content")
    style = canvas_tensor(driver, "window.impastoBrowser.state.last.style")
    out = canvas_tensor(driver, "document.getElementById('result-canvas')")
    assert content.shape[-2:] == (341, 512) and style.shape[-2:] == (512, 512), (content.shape, style.shape)
    assert out.shape == content.shape

    # PyTorch on the same resized inputs
    st = Stylizer(method, precision="fp32")
    ref = st.stylize_tensor(content, style, alpha=0.8, max_size=512)
    value, unrounded = psnr(out, (ref * 255).round() / 255), psnr(out, ref)  # the page's canvas holds 8 bits
    assert psnr(out, content) < 20  # stylized, not the photo passed through
    print(f"in-browser {method} 512x341 alpha 0.8: PSNR {value:.1f} dB vs PyTorch rounded to 8 bits "
          f"({unrounded:.1f} dB vs its float image); export {export_s:.1f} s, "
          f"model load {timings['model_s']:.2f} s, stylize {timings['stylize_s']:.2f} s, "
          f"total {timings['total_s']:.2f} s")
    assert value >= 30, value

    if method == "adain":  # "keep the photo's colours" in the page: impasto.pipeline.luminance_transfer
        from impasto.pipeline import luminance_transfer

        driver.execute_script("window.__before = window.impastoBrowser.state.last;")
        driver.find_element(By.ID, "preserve-color").click()
        driver.find_element(By.ID, "stylize-button").click()
        WebDriverWait(driver, 120, poll_frequency=0.2).until(lambda d: finished(d) and d.execute_script(
            "return window.impastoBrowser.state.last !== window.__before;"))
        kept = canvas_tensor(driver, "document.getElementById('result-canvas')")
        value = psnr(kept, (luminance_transfer(ref, content) * 255).round() / 255)
        print(f"  with the photo's colours: PSNR {value:.1f} dB")
        assert value >= 30, value

    # nothing was uploaded: the server saw only GETs, never the stylize endpoint
    assert not [r for r in log.requests if r[0] not in ("GET", "HEAD")], log.requests
    assert not [r for r in log.requests if r[1].startswith("/v1/stylize")], log.requests
    assert ("GET", f"/models/{method}.onnx") in log.requests
    assert ("GET", "/ort/ort-wasm-simd-threaded.wasm") in log.requests

    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"web_browser_mode_{method}.png"))


def test_browser_mode_disabled_without_runtime(driver: webdriver.Chrome, server: tuple[str, RequestLog],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(webassets.ENV_DIR, str(tmp_path / "no-ort-here"))  # read per request by the server
    base_url, _ = server
    driver.get(base_url + "/")
    help_text = driver.find_element(By.ID, "run-browser-help")
    WebDriverWait(driver, 20).until(lambda d: "web-assets" in help_text.text)
    assert not driver.find_element(By.ID, "run-browser").is_enabled()
    assert driver.find_element(By.ID, "run-server").is_selected()
    assert f"`{webassets.FETCH_COMMAND}`" in help_text.text, help_text.text
