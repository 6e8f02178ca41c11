from . import logging
from .constants import (
    CONFIG_NAME,
    DIFFUSERS_REFERENCE_VERSION,
    PICKLE_SUFFIXES,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    WEIGHTS_NAME,
)
from .hub_utils import local_subfolder, resolve_file
from .loading_utils import load_image
from .mindspore_utils import dtype_to_str, is_ascend, pop_mindspore_dtype, randn_tensor, str_to_dtype
from .outputs import BaseOutput
from .pil_utils import make_image_grid

__all__ = [
    "logging",
    "CONFIG_NAME",
    "PICKLE_SUFFIXES",
    "DIFFUSERS_REFERENCE_VERSION",
    "SAFE_WEIGHTS_INDEX_NAME",
    "SAFETENSORS_WEIGHTS_NAME",
    "WEIGHTS_NAME",
    "load_image",
    "local_subfolder",
    "make_image_grid",
    "resolve_file",
    "dtype_to_str",
    "is_ascend",
    "pop_mindspore_dtype",
    "randn_tensor",
    "str_to_dtype",
    "BaseOutput",
]
