# Copyright 2023-present the HuggingFace Inc. team.
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
"""Adapted from peft v0.21 `src/peft/utils/hotswap.py`; MindSpore changes: Linear and Conv2d LoRA only; state-dict keys
may carry the adapter name (as diffusers passes them) or not; every key and shape is checked before the first write and
the weights are replaced in place, so a compiled graph keeps running without recompilation. A new adapter of larger
rank than the loaded (or padded) one is refused with a `HotswapError` (PEFT swaps the tensor, which a compiled graph
cannot follow): pad first with `prepare_model_for_compiled_hotswap(model, target_rank=...)`."""

import math
import warnings
from typing import Dict, Optional

import numpy as np

import mindspore as ms
from mindspore import mint, nn

from ..config import PeftConfig
from ..tuners.lora.config import LoraConfig
from ..tuners.lora.layer import LoraLayer, _to_host
from ..tuners.tuners_utils import _structural_change, iter_tuner_layers
from .error import HotswapError
from .other import type_name

CONFIG_KEYS_TO_CHECK = {"LORA": ["use_rslora", "lora_dropout", "alpha_pattern", "use_dora"]}


def _is_compiled(model: nn.Cell) -> bool:
    return any(cell.__dict__.get("_compile_cache") for _, cell in model.cells_and_names())


def _padded_adapter_layer(layer: LoraLayer, lora_module: nn.Cell, target_rank: int, is_lora_A: bool) -> nn.Cell:
    """A copy of a LoRA A (rank = rows) or B (rank = columns) Linear / Conv2d of `layer`, zero-padded to
    `target_rank`."""
    weight = lora_module.weight
    original_rank = weight.shape[0] if is_lora_A else weight.shape[1]
    if original_rank == target_rank:
        return lora_module
    if original_rank > target_rank:
        raise ValueError(
            f"Trying to pad the adapter to the target rank {target_rank}, but the original rank is larger "
            f"({original_rank}). This is not possible."
        )
    has_bias = getattr(lora_module, "bias", None) is not None
    host = weight.astype(ms.float32).asnumpy()
    if is_lora_A:
        padded = np.zeros((target_rank,) + host.shape[1:], np.float32)
        padded[:original_rank] = host
        new_layer = layer._new_lora_A(target_rank, weight.dtype)
    else:
        padded = np.zeros((host.shape[0], target_rank) + host.shape[2:], np.float32)
        padded[:, :original_rank] = host
        new_layer = layer._new_lora_B(target_rank, has_bias, weight.dtype)
    new_layer.weight.set_data(ms.Tensor(padded).astype(weight.dtype))
    new_layer.weight.requires_grad = weight.requires_grad
    if has_bias:
        new_layer.bias.set_data(ms.Tensor(_to_host(lora_module.bias)).astype(lora_module.bias.dtype))
        new_layer.bias.requires_grad = lora_module.bias.requires_grad
    return new_layer


def _pad_lora_weights(model: nn.Cell, target_rank: int) -> bool:
    found_adapter = False
    for _, module in iter_tuner_layers(model):
        if not isinstance(module, LoraLayer):
            continue
        for adapter_name in list(module.lora_A.keys()):
            module.lora_A[adapter_name] = _padded_adapter_layer(
                module, module.lora_A[adapter_name], target_rank, is_lora_A=True
            )
            module.lora_B[adapter_name] = _padded_adapter_layer(
                module, module.lora_B[adapter_name], target_rank, is_lora_A=False
            )
        found_adapter = True
    return found_adapter


def prepare_model_for_compiled_hotswap(
    model: nn.Cell,
    *,
    target_rank: Optional[int] = None,
    config=None,
    check_compiled: str = "error",
) -> None:
    """Pad the loaded LoRA weights to `target_rank` (the largest rank that will be hot-swapped in), so later
    hot-swaps of adapters with other ranks write in place. Call it after loading the first adapter and before the
    model runs in GRAPH_MODE. Scales need no conversion here: they are run-time values already.

    Args:
        model (`nn.Cell`): The model with the first adapter loaded.
        target_rank (`int`, *optional*): Rank to pad to.
        config (`LoraConfig` or `dict[str, LoraConfig]`, *optional*): Configs whose `r` / `rank_pattern` are set to
            `target_rank`.
        check_compiled (`str`, defaults to `"error"`): What to do if the model already ran compiled: `"error"`,
            `"warn"` or `"ignore"`.
    """
    if check_compiled not in ("error", "warn", "ignore"):
        raise ValueError(
            f"check_compiles should be one of 'error', 'warn', or 'ignore', got '{check_compiled}' instead."
        )
    if _is_compiled(model):
        if check_compiled == "error":
            raise ValueError("Call prepare_model_for_compiled_hotswap *before* compiling the model")
        if check_compiled == "warn":
            warnings.warn(
                "prepare_model_for_compiled_hotswap was called with a model that is already compiled. This will "
                "likely result in re-compilation, hurting performance. Call the function before compiling the model."
            )
    found_adapter = any(isinstance(module, LoraLayer) for _, module in iter_tuner_layers(model))
    if target_rank is not None:
        found_adapter = _pad_lora_weights(model, target_rank) or found_adapter
        _structural_change(model)
    if not found_adapter:
        raise ValueError(
            "No adapter layers found on the model, make sure call `prepare_model_for_compiled_hotswap` after loading "
            "the first adapter and before loading the second adapter."
        )
    if not config or target_rank is None:
        return
    configs = config if isinstance(config, dict) else {"dummy": config}
    for lora_config in configs.values():
        lora_config.r = target_rank
        for key in lora_config.rank_pattern:
            lora_config.rank_pattern[key] = target_rank


def check_hotswap_configs_compatible(config0: PeftConfig, config1: PeftConfig) -> None:
    """Raise a `ValueError` if two adapter configs differ in an option hot-swapping cannot change."""
    if config0.peft_type != config1.peft_type:
        raise ValueError(f"Incompatible PEFT types found: {config0.peft_type} and {config1.peft_type}")
    if str(config0.peft_type) not in CONFIG_KEYS_TO_CHECK:
        raise ValueError(
            f"Hotswapping only supports {', '.join(CONFIG_KEYS_TO_CHECK)} but {config0.peft_type} was passed."
        )
    dict0, dict1 = config0.to_dict(), config1.to_dict()
    sentinel = object()
    for key in CONFIG_KEYS_TO_CHECK[str(config0.peft_type)]:
        val0, val1 = dict0.get(key, sentinel), dict1.get(key, sentinel)
        if val0 != val1:
            raise ValueError(f"Configs are incompatible: for {key}, {val0} != {val1}")


def _model_key(key: str, adapter_name: str, known: Dict[str, object]) -> Optional[str]:
    """`...lora_A.<adapter>.weight` (PEFT/diffusers hotswap format) or `...lora_A.weight` -> the model key."""
    if key in known:
        return key
    stem, _, suffix = key.rpartition(".")
    candidate = f"{stem}.{adapter_name}.{suffix}"
    return candidate if candidate in known else None


def hotswap_adapter_from_state_dict(
    model: nn.Cell,
    state_dict: Dict[str, object],
    adapter_name: str,
    config: LoraConfig,
    parameter_prefix: str = "lora_",
) -> None:
    """Replace the weights (and scales) of the loaded adapter `adapter_name` by those of another adapter, in place.

    Layers of the old adapter the new one does not cover get zero weights. A new weight of smaller rank is written
    into the leading rows / columns of a zeroed tensor (the padding `prepare_model_for_compiled_hotswap` creates);
    a larger rank raises. Scales become `lora_alpha / r` of the new config (per module via the patterns).

    Raises:
        `HotswapError` (a `RuntimeError` and `ValueError`), model unchanged: keys that match no weight of the adapter,
        incompatible shapes, the adapter is merged.
    """
    from ..tuners.lora.model import _rank_and_alpha

    if not isinstance(config, LoraConfig):
        raise TypeError(f"`config` must be a mindone.peft LoraConfig, got {type_name(config)}.")
    layers = dict(iter_tuner_layers(model))
    if any(adapter_name in module.merged_adapters for module in layers.values()):
        raise HotswapError(
            f"Cannot hot-swap adapter '{adapter_name}' because it is currently merged into the base weights. "
            "Please unmerge the adapter first (for diffusers models, `unfuse_lora()`)."
        )
    params = {}
    owners = {}
    for layer_name, module in layers.items():
        for attr in module.adapter_layer_names:
            container = getattr(module, attr)
            if adapter_name in container:
                for param_name, param in container[adapter_name].parameters_and_names():
                    key = f"{layer_name}.{attr}.{adapter_name}.{param_name}"
                    params[key] = param
                    owners[key] = layer_name

    plan, unexpected, bad_shapes, malformed, misshapen = [], [], [], [], set()
    new_ranks = {}  # layer name -> {"lora_A": rank, "lora_B": rank} of the new weights
    for key, value in state_dict.items():
        model_key = _model_key(key, adapter_name, params)
        if model_key is None:
            unexpected.append(key)
            continue
        old_shape, new_shape = tuple(params[model_key].shape), tuple(int(d) for d in value.shape)
        kind = next((k for k in ("lora_A", "lora_B") if f".{k}.{adapter_name}.weight" in model_key), None)
        # the rank axis (rows of lora_A, columns of lora_B) may be smaller (padding); every other axis is the module's
        rank_axis = {"lora_A": 0, "lora_B": 1}.get(kind)
        if len(old_shape) != len(new_shape) or any(
            n != o for axis, (o, n) in enumerate(zip(old_shape, new_shape)) if axis != rank_axis
        ):
            needed = tuple("r" if axis == rank_axis else d for axis, d in enumerate(old_shape))
            malformed.append(f"{key}: shape {new_shape}, the module takes {needed}".replace("'r'", "r"))
            misshapen.add(owners[model_key])
            continue
        if rank_axis is not None and new_shape[rank_axis] > old_shape[rank_axis]:
            bad_shapes.append((key, new_shape, old_shape, new_shape[rank_axis], old_shape[rank_axis]))
            continue
        if kind is not None:
            new_ranks.setdefault(owners[model_key], {})[kind] = new_shape[rank_axis]
        plan.append((model_key, value))
    if unexpected:
        raise HotswapError(
            f"Hot swapping the adapter did not succeed, unexpected keys found: {', '.join(unexpected)}."
        )
    # what a normal load refuses (PEFT's hotswap does not check it)
    for layer_name, ranks in sorted(new_ranks.items()):
        if layer_name in misshapen:
            continue
        if len(ranks) == 1:
            (given,) = ranks
            other = "lora_B" if given == "lora_A" else "lora_A"
            malformed.append(f"{layer_name}: {given} without {other} (they come in pairs)")
        elif ranks["lora_A"] != ranks["lora_B"]:
            malformed.append(f"{layer_name}: lora_A of rank {ranks['lora_A']}, lora_B of rank {ranks['lora_B']}")
        else:
            config_rank = _rank_and_alpha(config, layer_name)[0]
            if config_rank != ranks["lora_A"]:
                malformed.append(
                    f"{layer_name}: weights of rank {ranks['lora_A']}, but the adapter's config gives it r={config_rank}"
                )
    if malformed:
        details = "; ".join(malformed[:5]) + (f"; and {len(malformed) - 5} more" if len(malformed) > 5 else "")
        raise HotswapError(
            f"Hot swapping adapter '{adapter_name}' did not succeed, the new LoRA weights do not fit the model: "
            f"{details}. The model was not changed."
        )
    if bad_shapes:
        details = "; ".join(f"{k}: new {n} vs loaded {o}" for k, n, o, _, _ in bad_shapes[:3])
        if len(bad_shapes) > 3:
            details += f"; and {len(bad_shapes) - 3} more"
        # only the rank axis can be larger here (every other axis was checked above)
        needed = f" (rank {max(b[3] for b in bad_shapes)} against the loaded {max(b[4] for b in bad_shapes)})"
        # unlike PEFT, which reassigns the tensors of an uncompiled model, weights are written in place: compiled
        # graphs keep their shapes
        raise HotswapError(
            f"Incompatible shapes found for LoRA weights ({details}). The new adapter has a larger rank than adapter "
            f"'{adapter_name}' as loaded{needed}, and hot-swapping writes the weights in place. "
            "`enable_lora_hotswap(target_rank=...)` (on the pipeline or the model), called before the first LoRA is "
            "loaded, pads that first adapter to `target_rank`, as diffusers does; to hot-swap into an adapter loaded "
            "later, pad it after loading with `mindone.peft.prepare_model_for_compiled_hotswap(model, "
            'target_rank=...)` (at least the largest rank; with `check_compiled="warn"` once the model has run '
            "compiled, which then compiles again), then hot-swap. The model was not changed."
        )

    written = {model_key for model_key, _ in plan}
    for key, param in params.items():
        if key not in written:
            param.copy_(mint.zeros(param.shape, dtype=param.dtype))
    for model_key, value in plan:
        param = params[model_key]
        host = value.astype(ms.float32).asnumpy() if isinstance(value, ms.Tensor) else np.asarray(value, np.float32)
        if tuple(host.shape) != tuple(param.shape):
            padded = np.zeros(param.shape, np.float32)
            padded[tuple(slice(0, d) for d in host.shape)] = host
            host = padded
        param.copy_(ms.Tensor(host).astype(param.dtype))
    for layer_name in {owners[k] for k, _ in plan}:
        module = layers[layer_name]
        rank, alpha = _rank_and_alpha(config, layer_name)
        module.r[adapter_name] = rank
        module.lora_alpha[adapter_name] = alpha
        module.use_rslora[adapter_name] = bool(config.use_rslora)
        module.scaling[adapter_name] = alpha / math.sqrt(rank) if config.use_rslora else alpha / rank
