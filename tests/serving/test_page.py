"""The drawing page in a real headless browser (Debian's chromium + chromedriver): strokes drawn with
the mouse, and a PNG dropped or chosen, are classified live and charted.

Needs `apt-get install chromium-driver`; skipped (saying so) without it. MNISTKIT_PAGE_SCREENSHOT=PATH
keeps a screenshot of the drawn digit there (how docs/serve-page.png was made).
"""

from __future__ import annotations

import base64
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests

CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER and shutil.which("chromium")),
    reason="needs chromium and chromedriver (apt-get install chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=800,600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _open(browser, server):
    browser.get(server.url + "/")
    browser.execute_script("document.getElementById('clear').click()")


def _settled_prediction(browser) -> dict:
    """The page's answer once every request it sent has been answered."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(
        lambda d: (
            d.execute_script(
                "const s = window.mnistkit; return s.responses > 0 && s.responses === s.requests && "
                "document.getElementById('status').className !== 'error'"
            )
            or d.execute_script("return document.getElementById('status').className === 'error'")
        )
    )
    status = browser.find_element("id", "status")
    assert status.get_attribute("class") != "error", status.text
    return browser.execute_script("return window.mnistkit")


def _draw(browser, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through `points` (pad pixels, 0..280; the pad shows at its own size)."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = browser.find_element("id", "pad")
    actions = ActionChains(browser, duration=10)
    x, y = points[0]
    actions.move_to_element_with_offset(pad, x - 140, y - 140).click_and_hold()
    for nx, ny in points[1:]:
        actions.move_by_offset(nx - x, ny - y)
        x, y = nx, ny
    actions.release().perform()


def _check_page_agrees_with_the_server(browser, server, state: dict) -> None:
    """The class shown, the chart drawn and a direct request with the pixels the page sent all agree."""
    shown = browser.find_element("id", "answer")
    response = requests.post(
        server.url + "/v1/models/mnist:predict", json={"instances": [{"key": 0, "image": state["image"]}]}, timeout=30
    )
    direct = response.json()["predictions"][0]
    assert shown.text == str(direct["class"]) == str(state["prediction"]["class"])
    bars = browser.find_elements("css selector", "#chart rect.bar")
    assert len(bars) == 10
    probabilities = [float(b.get_attribute("data-p")) for b in bars]
    np.testing.assert_allclose(probabilities, direct["probabilities"], atol=1e-6)
    heights = [float(b.get_attribute("height")) for b in bars]
    top = browser.find_elements("css selector", "#chart rect.bar.top")
    assert len(top) == 1 and top[0].get_attribute("data-digit") == str(direct["class"])
    assert max(heights) == float(top[0].get_attribute("height")) > 90  # a real bar, over half the chart
    assert browser.find_element("id", "confidence").text.endswith("% sure")


def test_a_drawn_one_is_classified_and_charted_live(browser, server):
    _open(browser, server)
    _draw(browser, [(150, 40 + 10 * i) for i in range(21)])
    state = _settled_prediction(browser)
    assert state["requests"] > 1  # live: predictions while the stroke was drawn, not only at its end
    assert state["prediction"]["class"] == 1
    _check_page_agrees_with_the_server(browser, server, state)
    image = np.asarray(state["image"]).reshape(28, 28)
    assert image.max() == 1 and image[:, :10].sum() == 0  # a centred, upright stroke, as MNIST has it


def test_a_drawn_zero_and_a_screenshot(browser, server, tmp_path):
    _open(browser, server)
    ring = [(140 + 75 * math.sin(t / 20 * 2 * math.pi), 140 - 100 * math.cos(t / 20 * 2 * math.pi)) for t in range(22)]
    _draw(browser, ring)
    state = _settled_prediction(browser)
    assert state["prediction"]["class"] == 0
    _check_page_agrees_with_the_server(browser, server, state)
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("MNISTKIT_PAGE_SCREENSHOT"):
        shutil.copy(shot, os.environ["MNISTKIT_PAGE_SCREENSHOT"])


def _digit_png(path: Path, pixels: np.ndarray, light_background: bool) -> None:
    from PIL import Image

    image = 255 - pixels if light_background else pixels
    Image.fromarray(image.reshape(28, 28).astype(np.uint8)).resize((112, 112), Image.NEAREST).save(path)


@pytest.mark.parametrize("light_background", [False, True])
def test_a_chosen_png_is_classified_as_the_model_classifies_the_digit(
    browser, server, tmp_path, mnist_test_set, expected, light_background
):
    images, _ = mnist_test_set
    index = 3
    png = tmp_path / "digit.png"
    _digit_png(png, images[index], light_background)
    _open(browser, server)
    browser.find_element("id", "file").send_keys(str(png))
    state = _settled_prediction(browser)
    assert state["prediction"]["class"] == expected[1][index]
    _check_page_agrees_with_the_server(browser, server, state)


def test_a_dropped_png_is_classified(browser, server, tmp_path, mnist_test_set, expected):
    images, _ = mnist_test_set
    index = 7
    png = tmp_path / "drop.png"
    _digit_png(png, images[index], light_background=False)
    _open(browser, server)
    browser.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "drop.png", { type: "image/png" }));
        const pad = document.getElementById("pad");
        pad.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        pad.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        """,
        base64.b64encode(png.read_bytes()).decode(),
    )
    state = _settled_prediction(browser)
    assert state["prediction"]["class"] == expected[1][index]
    _check_page_agrees_with_the_server(browser, server, state)
