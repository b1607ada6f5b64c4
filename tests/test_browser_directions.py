"""The shipped default model's equivariant-direction sliders move the object, seen in a real browser.

For each of the four sliders (tx, ty, rotation, scale) the test sets ε = +1 (the edge of the range the walk
was trained on) in the Explore tab of the app serving ``checkpoints/default.safetensors``, reads the mask
picture the page shows, and compares the object's move (its mask's centroid, orientation and size, from
image moments) with the move of the layers themselves, T^X_ε G(z, c), computed by the library for the same
scene (seed 0, c = 0). It passes when the slider does, in the move's direction, at least a third of it.
A screenshot of the compare panel (walk | layers moved directly | difference) is saved per direction
(moves-tx.png ... moves-scale.png) into a temporary folder, or into $ELGAN_SCREENSHOT_DIR.

    ELGAN_SCREENSHOT_DIR=docs/screenshots python -m pytest tests/test_browser_directions.py
    ELGAN_DIRECTIONS_BUNDLE=runs/x/bundle.safetensors python -m pytest tests/test_browser_directions.py

Never runs ``playwright install``: it uses /usr/bin/chromium (``apt-get install chromium``) or skips.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_browser import ARGS, CHROMIUM, pytestmark, sync_api  # noqa: F401 (pytestmark: same marks and skips)

ROOT = Path(__file__).resolve().parents[1]
MIN_SHARE = 1 / 3  # the slider's move over the layers' own move, at eps = +1
WAIT_MS = 20_000  # for a re-render on a busy 2-core machine


@pytest.fixture(scope="module")
def bundle() -> Path:
    return Path(os.environ.get("ELGAN_DIRECTIONS_BUNDLE", ROOT / "checkpoints" / "default.safetensors"))


@pytest.fixture(scope="module")
def page(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import app
    from studio.registry import ModelRegistry
    from tests._server import launch

    root = tmp_path_factory.mktemp("directions")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    registry = ModelRegistry(root / "checkpoints", root / "runs", extra=[bundle])
    demo = app.build_demo(registry, root / "runs", None, default_model=str(bundle.resolve()),
                          allow_training=False)
    url = launch(demo)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            try:
                yield page
            finally:
                browser.close()
    finally:
        demo.close()
        torch.set_num_threads(before)


def _src(page) -> str:
    return page.locator("#mask img").first.get_attribute("src")


def _shown_mask(page, src: str) -> torch.Tensor:
    """The mask picture the page shows, as [1, 1, H, W] in [0, 1]."""
    body = page.request.get(src).body() if not src.startswith("data:") else None
    if body is None:
        import base64
        body = base64.b64decode(src.split(",", 1)[1])
    gray = np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(gray)[None, None]


def _set(page, name: str, value: float, previous: str) -> str:
    """Move one slider as a drag ends (input events on the range) and return the mask picture's new address.
    A model whose walk changes nothing leaves the picture as it was: then the old address comes back after
    WAIT_MS, and the share check below fails with the numbers."""
    page.locator(f"#eps-{name} input[type=range]").fill(str(value))
    try:
        page.wait_for_function(f"() => document.querySelector('#mask img').getAttribute('src') !== {previous!r}",
                               timeout=WAIT_MS)
    except sync_api.TimeoutError:
        pass
    return _src(page)


@torch.no_grad()
def _true_moves(bundle: Path) -> dict[str, float]:
    """The move of the object's mask when the layers themselves are moved by T^X at eps = +1 (seed 0, c = 0)."""
    from elgan.bundle import load_model_bundle
    from elgan.equivariance import DIRECTIONS, _delta, mask_moments, move
    from elgan.figures import code_from_seed

    model = load_model_bundle(bundle)
    model.generator.eval()
    z = code_from_seed(model.generator.cfg.z_dim, 0)
    base = model.generator(z, torch.tensor([0]))
    before = mask_moments(base.mask)
    out = {}
    for i, name in enumerate(DIRECTIONS):
        eps = torch.zeros(1, len(DIRECTIONS))
        eps[0, i] = 1.0
        moved = move(base, eps, model.perturb)
        out[name] = float(_delta(mask_moments(moved.mask)[name], before[name], name))
    return out


def test_each_slider_moves_the_object(page, bundle: Path, shots: Path) -> None:
    from elgan.equivariance import DIRECTIONS, _delta, mask_moments

    true = _true_moves(bundle)
    page.wait_for_selector("#mask img")
    page.locator("#compare-box input[type=checkbox]").check()
    page.wait_for_selector("#compare img")
    src = _src(page)
    rest = mask_moments(_shown_mask(page, src))
    shares = {}
    for name in DIRECTIONS:
        src = _set(page, name, 1.0, src)
        moved = mask_moments(_shown_mask(page, src))
        shares[name] = float(_delta(moved[name], rest[name], name)) / true[name]
        page.locator("#compare").screenshot(path=str(shots / f"moves-{name}.png"))
        src = _set(page, name, 0.0, src)
    assert all(abs(t) > 0 for t in true.values()), true
    assert all(s >= MIN_SHARE for s in shares.values()), (
        f"share of the layers' own move that each slider makes at eps = +1: {shares} (true moves {true})")
