# Copyright 2025 The HuggingFace Team. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Layerwise casting: weights stored in a small dtype, computed in a wider one.

Adapted from diffusers v0.42.1 `hooks/layerwise_casting.py`; MindSpore changes: no hooks. Upstream casts a layer's
parameters to the compute dtype before its forward and back to the storage dtype after it; a compiled graph cannot
change its parameters' dtypes, so the supported layers (`cpu_layers.Linear`, `cpu_layers.Conv2d`) hold the storage
dtype and compute with cast copies (`cpu_layers.compute_weights`), the same values. Float8 storage has no CPU cast
kernel in MindSpore 2.10: on CPU store in bfloat16 or float16.
"""

import re
from typing import Optional, Tuple, Type, Union

import mindspore as ms
from mindspore import mint, nn

from ..models.cpu_layers import Conv2d, Linear, _on_cpu
from ..models.modeling_utils import cast_cell, invalidate_models_containing

# fmt: off
DEFAULT_SKIP_MODULES_PATTERN = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")
# fmt: on

# what upstream hooks (`_GO_LC_SUPPORTED_PYTORCH_LAYERS`: torch's Linear, Conv, ConvTranspose and Embedding layers)
# and this port's layers that take their place
SUPPORTED_LAYERS = (Linear, Conv2d)
# MindSpore layers of those kinds that the port's models do not use (PEFT's `lora_A` / `lora_B` are `mint.nn.Linear`)
_OTHER_CASTABLE_LAYERS = (
    mint.nn.Linear,
    nn.Dense,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Conv1dTranspose,
    nn.Conv2dTranspose,
    nn.Conv3dTranspose,
    nn.Embedding,
    mint.nn.Embedding,
)
_FLOAT8 = tuple(getattr(ms, name) for name in ("float8_e4m3fn", "float8_e5m2", "hifloat8") if hasattr(ms, name))
_FLOATS = (ms.float16, ms.bfloat16, ms.float32, ms.float64) + _FLOAT8


def apply_layerwise_casting(
    module: nn.Cell,
    storage_dtype: ms.Type,
    compute_dtype: ms.Type,
    skip_modules_pattern: Union[str, Tuple[str, ...], None] = "auto",
    skip_modules_classes: Optional[Tuple[Type[nn.Cell], ...]] = None,
    non_blocking: bool = False,
) -> None:
    r"""
    Store the weights of `module`'s linear and convolution layers in `storage_dtype` and compute them in
    `compute_dtype`, skipping layers whose name (relative to `module`) matches one of `skip_modules_pattern`
    (`re.search`; `"auto"`: `DEFAULT_SKIP_MODULES_PATTERN`) or whose class is one of `skip_modules_classes`. With
    neither (both `None`), `module` itself must be such a layer. Everything is checked before any parameter changes.

    Args:
        module (`nn.Cell`): The model or layer.
        storage_dtype (`ms.Type`): The dtype the weights are kept in (bfloat16 or float16 on CPU).
        compute_dtype (`ms.Type`): The dtype they are used in (float32 on CPU).
        skip_modules_pattern (`tuple[str, ...]`, *optional*, defaults to `"auto"`): Name patterns to skip.
        skip_modules_classes (`tuple[type, ...]`, *optional*): Layer classes to skip.
        non_blocking (`bool`): Accepted for upstream's signature; MindSpore casts are queued anyway.
    """
    del non_blocking
    if skip_modules_pattern == "auto":
        skip_modules_pattern = DEFAULT_SKIP_MODULES_PATTERN
    elif isinstance(skip_modules_pattern, str):
        skip_modules_pattern = (skip_modules_pattern,)
    _check_dtypes(storage_dtype, compute_dtype)
    if skip_modules_classes is None and skip_modules_pattern is None:
        if not isinstance(module, SUPPORTED_LAYERS):
            raise ValueError(
                f"Without skip patterns or classes, layerwise casting applies to `module` itself, which must be a "
                f"{' or '.join(c.__name__ for c in SUPPORTED_LAYERS)} (got {type(module).__name__}): pass the "
                "model with `skip_modules_pattern=()` to cast all of its layers."
            )
        layers = [module]
    else:
        layers = _layers_to_cast(module, tuple(skip_modules_pattern or ()), skip_modules_classes, "")
    for layer in layers:
        cast_cell(layer, storage_dtype)
        layer.layerwise_compute_dtype = compute_dtype
    # compiled graphs folded in the old dtypes; models holding `module` (a pipeline's) recompile too
    invalidate_models_containing(module)


def _check_dtypes(storage_dtype, compute_dtype) -> None:
    for name, dtype in (("storage_dtype", storage_dtype), ("compute_dtype", compute_dtype)):
        if dtype not in _FLOATS:
            raise TypeError(f"`{name}` must be a MindSpore floating dtype (such as ms.bfloat16), got {dtype!r}.")
    if compute_dtype in _FLOAT8:
        raise TypeError(f"`compute_dtype` cannot be a float8 dtype ({compute_dtype}): compute in a wider dtype.")
    if _on_cpu() and storage_dtype in _FLOAT8:
        raise TypeError(
            f"`storage_dtype={storage_dtype}` needs a float8 cast kernel, which MindSpore does not have on CPU: store "
            "in `ms.bfloat16` or `ms.float16` there."
        )
    if _on_cpu() and compute_dtype == ms.bfloat16:
        raise TypeError(
            "`compute_dtype=ms.bfloat16`: MindSpore cannot compute bfloat16 on CPU (no bfloat16 MatMul kernel); "
            "compute in `ms.float32` there."
        )


def _layers_to_cast(module, patterns, classes, prefix):
    """upstream's `_apply_layerwise_casting` walk: the layers to cast; a castable layer of another class raises, as
    the port could not cast it."""
    if (classes is not None and isinstance(module, classes)) or any(re.search(p, prefix) for p in patterns):
        return []
    if isinstance(module, SUPPORTED_LAYERS):
        return [module]
    if isinstance(module, _OTHER_CASTABLE_LAYERS):
        raise NotImplementedError(
            f"Layerwise casting of `{prefix}` ({type(module).__name__}) is not ported: this port casts its own "
            f"{' and '.join(c.__name__ for c in SUPPORTED_LAYERS)} layers. Skip it with `skip_modules_pattern` "
            "(nothing was changed)."
        )
    layers = []
    for name, child in module.name_cells().items():
        layers += _layers_to_cast(child, patterns, classes, f"{prefix}.{name}" if prefix else name)
    return layers


def layerwise_compute_dtype(module: nn.Cell) -> Optional[ms.Type]:
    """The compute dtype of the first layer of `module` under layerwise casting (`None` if none is), as upstream's
    `get_parameter_dtype` reads its first layerwise-casting hook."""
    for _, cell in module.cells_and_names():
        dtype = cell.__dict__.get("layerwise_compute_dtype")
        if dtype is not None:
            return dtype
    return None
