import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GLOG_v", "3")

import mindspore as ms  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
# Synchronous op launch: same numbers, but PyNative on a busy 2-core CPU runs 5-30x faster without the async queue.
ms.runtime.launch_blocking()


@pytest.fixture(autouse=True)
def _pynative_after_each_test():
    """Tests that switch to GRAPH_MODE must not leak it into the next test."""
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
