"""mindone.diffusers.utils.testing_utils: the helpers test suites written against diffusers / mindone import."""

import importlib
import random
import unittest
import warnings

import numpy as np
import PIL.Image
import pytest

import mindspore as ms

from mindone.diffusers.utils import logging, testing_utils
from mindone.peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from mindone.peft.utils.save_and_load import get_peft_model_state_dict as get_state_dict_impl


def _diffusers_testing_utils():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers deprecates the module, but it is still the reference
        return importlib.import_module("diffusers.utils.testing_utils")


@pytest.mark.parametrize("shape, scale", [((2, 3), 1.0), ((1, 4, 5, 3), 2.5), ((7,), 0.1)])
def test_floats_tensor_draws_diffusers_values(shape, scale):
    ours = testing_utils.floats_tensor(shape, scale=scale, rng=random.Random(3))
    theirs = _diffusers_testing_utils().floats_tensor(shape, scale=scale, rng=random.Random(3))
    assert isinstance(ours, ms.Tensor) and ours.dtype == ms.float32 and ours.shape == tuple(shape)
    np.testing.assert_array_equal(ours.asnumpy(), theirs.numpy())


def test_capture_logger_sees_the_library_loggers():
    logger = logging.get_logger("mindone.diffusers.pipelines.lumina2")
    with testing_utils.CaptureLogger(logger) as cap:
        logger.warning("first")
        logger.info("below the default level")
    logger.warning("after the block")
    assert cap.out == "first\n"


@pytest.mark.parametrize("value, expected", [("YES", 1), ("on", 1), ("1", 1), ("No", 0), ("false", 0), ("0", 0)])
def test_str_to_bool(value, expected):
    assert testing_utils.str_to_bool(value) == expected


def test_flags_from_the_environment(monkeypatch):
    monkeypatch.delenv("SOME_FLAG", raising=False)
    assert testing_utils.parse_flag_from_env("SOME_FLAG", default=True) is True
    monkeypatch.setenv("SOME_FLAG", "yes")
    assert testing_utils.parse_flag_from_env("SOME_FLAG") is True
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ValueError, match="SOME_FLAG must be yes or no"):
        testing_utils.parse_flag_from_env("SOME_FLAG")


def test_skip_markers(monkeypatch):
    monkeypatch.setattr(testing_utils, "_run_slow_tests", False)

    @testing_utils.slow
    def slow_case():
        pass

    assert slow_case.__unittest_skip__
    monkeypatch.setattr(testing_utils, "_run_slow_tests", True)

    @testing_utils.slow
    def slow_case_enabled():
        pass

    assert not getattr(slow_case_enabled, "__unittest_skip__", False)

    class Newer(unittest.TestCase):
        pass

    assert not getattr(testing_utils.require_peft_version_greater("0.13.0")(Newer), "__unittest_skip__", False)

    class TooNew(unittest.TestCase):
        pass

    assert testing_utils.require_peft_version_greater("99.0")(TooNew).__unittest_skip__


def test_load_numpy_and_image_local_only(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(testing_utils.load_numpy(str(tmp_path / "a.npy")), array)
    assert testing_utils.load_numpy(array) is array
    with pytest.raises(ValueError, match="local files only"):
        testing_utils.load_numpy("https://example.com/a.npy")
    with pytest.raises(ValueError, match="is not a file"):
        testing_utils.load_numpy(str(tmp_path / "missing.npy"))

    PIL.Image.new("L", (5, 4), 7).save(tmp_path / "g.png")
    image = testing_utils.load_image(tmp_path / "g.png")
    assert image.mode == "RGB" and image.size == (5, 4)
    with pytest.raises(ValueError, match="PIL image"):
        testing_utils.load_image(3)


def test_cosine_similarity_distance():
    a = np.array([1.0, 2.0, 3.0])
    assert testing_utils.numpy_cosine_similarity_distance(a, 2 * a) == pytest.approx(0.0, abs=1e-12)
    assert testing_utils.numpy_cosine_similarity_distance(a, -a) == pytest.approx(2.0)


def test_peft_utils_export_the_state_dict_helpers():
    # as `peft.utils` does; imported on first use (the module reaches back into the tuners)
    assert get_peft_model_state_dict is get_state_dict_impl
    assert callable(set_peft_model_state_dict)
    with pytest.raises(AttributeError, match="no attribute 'unknown_helper'"):
        importlib.import_module("mindone.peft.utils").unknown_helper
