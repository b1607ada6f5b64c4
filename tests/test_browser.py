"""One real-browser pass over the app: headless Chromium (Debian's package) driven by Playwright.

Checks the Explore pictures are in the first screen beside the sliders at 1366x768 and 1920x1080 (stacked
on a phone), moves a slider and checks the layers were re-rendered, picks an example and uploads an image
and checks the mask came back at the image's size, inverts an uploaded image in the Your-photo tab and edits
it with a Phi slider, runs a 5-iteration training from the Train tab, and saves a screenshot of each tab
(explore.png, segment.png, photo.png, train.png, explore-WxH.png) into a temporary folder, so a test run
never rewrites the committed ones.

To refresh docs/screenshots/ with a trained model:
    ELGAN_SCREENSHOT_BUNDLE=checkpoints/default.safetensors ELGAN_SCREENSHOT_DIR=docs/screenshots \
        python -m pytest tests/test_browser.py
By default a freshly initialised tiny bundle is used (the test checks wiring, not picture quality).
Never runs ``playwright install``: it uses /usr/bin/chromium (``apt-get install chromium``) or skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} missing: apt-get install -y chromium (Debian package)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import app
    from studio import jobs
    from studio.registry import ModelRegistry
    from tests._server import launch
    from tests.test_studio import write_tiny_bundle

    root = tmp_path_factory.mktemp("browser")
    trained = os.environ.get("ELGAN_SCREENSHOT_BUNDLE")
    default = Path(trained) if trained else write_tiny_bundle(root / "checkpoints" / "default.safetensors")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    registry = ModelRegistry(root / "checkpoints", root / "runs", extra=[default])
    demo = app.build_demo(registry, root / "runs", None, default_model=str(default.resolve()))
    url = launch(demo)  # returns once the server answers (a busy machine may take long)
    try:
        yield url
    finally:
        jobs.stop_job(root / "runs")
        demo.close()
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def page(url: str) -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(url)
        try:
            yield page
        finally:
            browser.close()


def _src(page, selector: str) -> str | None:
    img = page.locator(f"{selector} img").first
    return img.get_attribute("src") if img.count() else None


@pytest.mark.parametrize("width, height", [(1366, 768), (1920, 1080), (390, 844)])
def test_explore_pictures_in_view_beside_the_sliders(page, shots: Path, width: int, height: int) -> None:
    """The composite and the mask are in the first screen, at least ~256 px, next to the sliders on a laptop
    or desktop screen; on a phone (390 px) the columns stack, pictures first, sliders below. The pictures
    arrive at the model's size and the browser scales them up (at least 2x here)."""
    view = page.context.browser.new_page(viewport={"width": width, "height": height})
    try:
        view.goto(page.url)
        view.wait_for_selector("#composite img")
        view.wait_for_selector("#mask img")
        view.wait_for_timeout(300)  # let the layout settle
        assert view.evaluate("window.scrollY") == 0
        boxes = {sel: view.locator(sel).bounding_box() for sel in ("#composite img", "#mask img")}
        # sent at the model's own size (a 32² / 64² / 128² PNG), scaled up by the browser (CSS), not the server
        natural = view.evaluate("() => document.querySelector('#composite img').naturalWidth")
        slider = view.locator("#eps-tx").bounding_box()
        view.screenshot(path=str(shots / f"explore-{width}x{height}.png"))
        for sel, box in boxes.items():
            assert box is not None, sel
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (sel, box)
            if width >= 1024:  # the whole picture in the first screen, beside the sliders
                assert box["y"] >= 0 and box["y"] + box["height"] <= height + 0.5, (sel, box)
                assert min(box["width"], box["height"]) >= max(240, 2 * natural - 0.5), (sel, box, natural)
                assert slider is not None and slider["x"] + slider["width"] <= box["x"], (slider, box)
            else:  # a phone: pictures on top, the sliders below them
                assert slider is not None and slider["y"] > box["y"] + box["height"], (slider, box)
    finally:
        view.close()


def test_explore_slider_rerenders(page, shots: Path) -> None:
    page.wait_for_selector("#composite img")
    before = _src(page, "#composite")
    page.locator("#c input[type=range]").fill("57")  # what a drag ends with: input events on the range
    page.wait_for_function("() => document.querySelector('#explore-caption').innerText.includes('c = 57')")
    page.wait_for_function(f"() => document.querySelector('#composite img').getAttribute('src') !== {before!r}")
    assert page.locator("#c_sup input[type=number]").input_value() == "5"  # c_sup = c // 10 followed
    page.locator("#compare-box input[type=checkbox]").check()
    page.locator("#eps-tx input[type=range]").fill("1.5")
    page.wait_for_selector("#compare img")
    page.wait_for_function("() => document.querySelector('#explore-caption').innerText.includes('difference')")
    page.get_by_role("button", name="Render grid").click()
    page.wait_for_selector("#grid img")
    page.get_by_role("button", name="Render strip").click()
    page.wait_for_selector("#strip img")
    page.screenshot(path=str(shots / "explore.png"), full_page=True)


def test_segment_upload(page, shots: Path, tmp_path: Path) -> None:
    from elgan.data.synthetic import render_synthetic

    image, mask, _ = render_synthetic("test", 7, 160)
    rgba = np.concatenate([image, np.full(mask.shape + (1,), 255, np.uint8)], -1)[:, :150]  # 150 x 160, RGBA
    path = tmp_path / "scene.png"
    Image.fromarray(rgba, "RGBA").save(path)
    page.get_by_role("tab", name="Segment").click()
    page.locator(".gallery-item").nth(3).click()  # an example: the 16-bit greyscale scene
    page.wait_for_function("() => document.querySelector('#seg-caption').innerText.includes('grey16')")
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#seg-cutout img")
    page.wait_for_function("() => document.querySelector('#seg-caption').innerText.includes('scene.png')")
    size = page.evaluate("""() => new Promise(resolve => {
        const img = document.querySelector('#seg-mask img');
        const done = () => resolve([img.naturalWidth, img.naturalHeight]);
        img.complete && img.naturalWidth ? done() : img.addEventListener('load', done);
    })""")
    assert size == [150, 160]
    page.screenshot(path=str(shots / "segment.png"), full_page=True)


def test_photo_tab_inverts_and_edits(page, shots: Path, tmp_path: Path) -> None:
    from elgan.data.synthetic import render_synthetic

    path = tmp_path / "mine.png"
    Image.fromarray(render_synthetic("test", 3, 128)[0]).save(path)
    page.get_by_role("tab", name="Your photo").click()
    page.locator("#photo-upload input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#photo-caption').innerText.includes('mean pixel error')",
                           timeout=120_000)
    page.wait_for_selector("#photo-edited img")
    before = _src(page, "#photo-edited")
    page.locator("#photo-eps-tx input[type=range]").fill("1")
    page.wait_for_function(f"() => document.querySelector('#photo-edited img').getAttribute('src') !== {before!r}")
    page.wait_for_function("() => document.querySelector('#photo-edit-caption').innerText.includes('tx +1.00')")
    before = page.locator("#photo-caption").inner_text()
    page.locator("#photo-examples .gallery-item").nth(5).click()  # a sample of the model: it inverts best
    page.wait_for_function(f"""() => {{ const t = document.querySelector('#photo-caption').innerText;
                                      return t !== {before!r} && t.includes('pixel error'); }}""", timeout=120_000)
    page.locator("#photo-eps-rotation input[type=range]").fill("1.5")  # the sliders restarted at 0
    page.wait_for_function("() => document.querySelector('#photo-edit-caption').innerText.includes('rotation +1.50')")
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "photo.png"), full_page=True)


def test_train_tab_runs_a_tiny_job(page, shots: Path) -> None:
    page.get_by_role("tab", name="Train").click()
    page.locator("#iters input").fill("5")
    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_function("() => document.querySelector('#train-status').innerText.includes('Running')")
    page.wait_for_function("() => document.querySelector('#train-status').innerText.includes('finished')",
                           timeout=180_000)
    page.wait_for_selector("#curves .js-plotly-plot", timeout=30_000)
    page.wait_for_timeout(1000)  # let plotly finish drawing
    page.screenshot(path=str(shots / "train.png"), full_page=True)
