"""Shared test settings."""

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a 2-core machine run far faster on one thread than on two (no OpenMP
    spin-waiting between the threads), and CI machines may be shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save their screenshots: $ELGAN_SCREENSHOT_DIR (e.g. docs/screenshots, to
    refresh the committed ones) or a temporary folder, so a plain test run never rewrites them."""
    chosen = os.environ.get("ELGAN_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
