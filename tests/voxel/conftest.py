"""The voxel tests run torch on one thread (restored afterwards).

Their networks and grids are tiny: a second thread gains nothing, and on a machine whose cores
are busy it costs several times the run time (threads wait for each other). Other tests keep
the thread count set in ``tests/conftest.py``.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
