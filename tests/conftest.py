"""Shared test settings."""

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
