"""Test helpers under the names of ``diffusers.utils.testing_utils`` (as mindone has them), for test suites written
against diffusers / mindone: random inputs, slow-test markers, log capture, local arrays and images.

Nothing here downloads: arrays and images load from local paths (or the Hugging Face cache, through
``huggingface_hub``), since tests here run offline.
"""

import io
import logging
import os
import random
import unittest
from typing import Optional, Union

import numpy as np
import PIL.Image
from packaging import version

import mindspore as ms

from . import loading_utils

global_rng = random.Random()


def str_to_bool(value: str) -> int:
    """1 for y / yes / t / true / on / 1, 0 for n / no / f / false / off / 0 (any case); anything else is an error."""
    value = value.lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return 1
    if value in ("n", "no", "f", "false", "off", "0"):
        return 0
    raise ValueError(f"invalid truth value {value!r}")


def parse_flag_from_env(key: str, default: bool = False) -> bool:
    if key not in os.environ:
        return default
    try:
        return bool(str_to_bool(os.environ[key]))
    except ValueError:
        raise ValueError(f"If set, {key} must be yes or no.") from None


_run_slow_tests = parse_flag_from_env("RUN_SLOW")
_run_nightly_tests = parse_flag_from_env("RUN_NIGHTLY")


def slow(test_case):
    """Skips the test unless ``RUN_SLOW`` is set to a truthy value."""
    return unittest.skipUnless(_run_slow_tests, "test is slow")(test_case)


def nightly(test_case):
    """Skips the test unless ``RUN_NIGHTLY`` is set to a truthy value."""
    return unittest.skipUnless(_run_nightly_tests, "test is nightly")(test_case)


def require_peft_version_greater(peft_version: str):
    """Skips the test unless the LoRA engine (`mindone.peft`, which follows PEFT's version) is newer than
    ``peft_version``."""

    def decorator(test_case):
        from mindone.peft import __version__ as engine_version

        newer = version.parse(engine_version) > version.parse(peft_version)
        return unittest.skipUnless(newer, f"test requires PEFT newer than {peft_version}")(test_case)

    return decorator


def floats_tensor(shape, scale: float = 1.0, rng: Optional[random.Random] = None, name=None) -> ms.Tensor:
    """A float32 tensor of uniform [0, scale) values drawn from a Python ``random.Random`` (the module's by default),
    value by value in C order, as diffusers' helper draws them: the same ``rng`` state gives the same values."""
    rng = rng or global_rng
    shape = tuple(int(d) for d in shape)
    values = [rng.random() * scale for _ in range(int(np.prod(shape)))]
    return ms.Tensor(np.asarray(values, dtype=np.float32).reshape(shape))


def numpy_cosine_similarity_distance(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    similarity = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(1.0 - similarity.mean())


class CaptureLogger:
    """Captures what ``logger`` writes inside the ``with`` block into ``.out``.

    A handler is attached to the logger itself, so it works with the library's loggers, which do not propagate to the
    root logger (pytest's ``caplog`` does not see them).

    >>> from mindone.diffusers.utils import logging
    >>> logger = logging.get_logger("mindone.diffusers.pipelines")
    >>> with CaptureLogger(logger) as cap:
    ...     logger.warning("careful")
    >>> cap.out
    'careful\\n'
    """

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.io = io.StringIO()
        self.handler = logging.StreamHandler(self.io)
        self.out = ""

    def __enter__(self):
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.out = self.io.getvalue()

    def __repr__(self):
        return f"captured: {self.out}\n"


def _local_file(path: Union[str, os.PathLike], what: str) -> str:
    path = os.fspath(path)
    if path.startswith(("http://", "https://")):
        raise ValueError(f"{path} is a URL: this package loads test {what} from local files only; download it first.")
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a file.")
    return path


def load_numpy(array: Union[str, os.PathLike, np.ndarray]) -> np.ndarray:
    """An array, or one loaded from a local ``.npy`` file (no downloads: tests here run offline)."""
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, (str, os.PathLike)):
        return np.load(_local_file(array, "arrays"))
    raise ValueError(f"Expected a numpy array or the path of a .npy file, got {type(array).__name__}.")


def load_image(image: Union[str, os.PathLike, PIL.Image.Image]) -> PIL.Image.Image:
    """A PIL image in RGB (EXIF orientation applied), from a PIL image or a local file (`utils.load_image`, without
    URLs: tests here run offline)."""
    if isinstance(image, (str, os.PathLike)):
        image = _local_file(image, "images")
    return loading_utils.load_image(image)


def load_downloaded_numpy_from_hf_hub(repo_id: str, filename: str, subfolder=None, repo_type: str = "dataset"):
    """A ``.npy`` file from a Hub repository, through ``huggingface_hub`` (offline: its local cache)."""
    from huggingface_hub import hf_hub_download

    return load_numpy(hf_hub_download(repo_id=repo_id, filename=filename, subfolder=subfolder, repo_type=repo_type))


def load_downloaded_image_from_hf_hub(repo_id: str, filename: str, subfolder=None, repo_type: str = "dataset"):
    """An image file from a Hub repository, through ``huggingface_hub`` (offline: its local cache)."""
    from huggingface_hub import hf_hub_download

    return load_image(hf_hub_download(repo_id=repo_id, filename=filename, subfolder=subfolder, repo_type=repo_type))
