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
"""Adapted from peft v0.21 `src/peft/utils/save_and_load.py`; MindSpore changes: LoRA only; keys are mapped
structurally (the parameters of the LoRA layers), values may be `ms.Tensor` or NumPy arrays and are cast to the
parameter dtype. `set_peft_model_state_dict` validates every key and shape before writing anything and, by default
(`strict=True`), refuses unknown keys and missing adapter weights, so a failed load leaves the model as it was."""

import re
from typing import Dict, List, Optional, Tuple

import mindspore as ms
from mindspore import nn

from ..tuners.tuners_utils import (
    IncompatibleKeys,
    invalidate_compiled_graphs,
    iter_tuner_layers,
    set_parameter_data,
    to_tensor,
)
from .error import AdapterStateDictError

_PEFT_PREFIX = "base_model.model."


def _remove_adapter_name_from_state_dict_key(key: str, adapter_name: str) -> str:
    """`to_q.lora_A.<adapter>.weight` -> `to_q.lora_A.weight` (only the adapter name right before the last part)."""
    if "." not in key:
        return key
    if key.endswith(f".{adapter_name}"):
        return key[: -len(adapter_name) - 1]
    key, _, suffix = key.rpartition(".")
    key = re.sub(re.escape(f".{adapter_name}") + r"$", "", key)
    return f"{key}.{suffix}"


def _adapter_parameters(model: nn.Cell, adapter_name: str) -> Dict[str, ms.Parameter]:
    """Model key -> parameter of the LoRA weights of `adapter_name` (`...lora_A.<adapter>.weight`, ...)."""
    out = {}
    for layer_name, layer in iter_tuner_layers(model):
        for attr in layer.adapter_layer_names:
            container = getattr(layer, attr)
            if adapter_name not in container:
                continue
            for param_name, param in container[adapter_name].parameters_and_names():
                out[f"{layer_name}.{attr}.{adapter_name}.{param_name}"] = param
    return out


def _bias_parameters(model: nn.Cell, bias: str) -> Dict[str, ms.Parameter]:
    """The base biases PEFT saves with `bias="all"` (every bias but those of the adapters' own layers) or
    `bias="lora_only"` (biases of LoRA layers)."""
    if bias == "all":
        adapter_prefixes = tuple(f"{name}." for name, _ in iter_tuner_layers(model))
        return {
            k: p
            for k, p in model.parameters_and_names()
            if (k == "bias" or k.endswith(".bias"))
            and not any(
                k.startswith(prefix) and not k.startswith(f"{prefix}base_layer.") for prefix in adapter_prefixes
            )
        }
    if bias == "lora_only":
        params = dict(model.parameters_and_names())
        out = {}
        for layer_name, _ in iter_tuner_layers(model):
            name = f"{layer_name}.base_layer.bias"
            if name in params:
                out[name] = params[name]
        return out
    return {}


def _config_of(model: nn.Cell, adapter_name: str):
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or adapter_name not in configs:
        available = sorted(configs) if isinstance(configs, dict) else []
        raise ValueError(
            f"Adapter {adapter_name!r} is not in the model (`model.peft_config` has {available}); inject it first "
            "with `inject_adapter_in_model`."
        )
    return configs[adapter_name]


def get_peft_model_state_dict(
    model: nn.Cell,
    state_dict: Optional[Dict[str, ms.Tensor]] = None,
    adapter_name: str = "default",
    unwrap_compiled: bool = False,
    save_embedding_layers="auto",
) -> Dict[str, ms.Tensor]:
    """The weights of one adapter, keyed as PEFT saves them: the adapter name removed
    (`blocks.0.attn.to_q.lora_A.weight`), plus the base biases when the config has `bias="all"` / `"lora_only"`.

    Args:
        model (`nn.Cell`): A model with the adapter injected.
        state_dict (`dict`, *optional*): Take the values from this dict (keyed like `model.parameters_and_names()`)
            instead of the model's parameters.
        adapter_name (`str`, defaults to `"default"`): The adapter to export.
        unwrap_compiled, save_embedding_layers: accepted for signature compatibility (no effect here).

    Returns:
        `dict[str, ms.Tensor]`: the parameters themselves (no copies), like PEFT's state-dict views.
    """
    config = _config_of(model, adapter_name)
    params = _adapter_parameters(model, adapter_name)
    params.update(_bias_parameters(model, config.bias))
    if state_dict is not None:
        params = {k: state_dict[k] for k in params if k in state_dict}
    return {_remove_adapter_name_from_state_dict_key(k, adapter_name): v for k, v in params.items()}


def _shape_of(value) -> Tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _match_state_dict(
    expected: Dict[str, Tuple[str, Tuple[int, ...]]],
    adapter_keys: List[str],
    state_dict: Dict[str, object],
    adapter_name: str,
    model_name: str,
    ignore_mismatched_sizes: bool,
    strict: bool,
):
    """Pair the state dict with the model: `expected` maps checkpoint keys to (model key, shape); `adapter_keys` are
    the model keys that must be loaded in strict mode. Raises `AdapterStateDictError` listing every problem."""
    plan, unexpected, mismatched, skipped = [], [], [], set()
    for key, value in state_dict.items():
        target = expected.get(key)
        if target is None and key.startswith(_PEFT_PREFIX):
            target = expected.get(key[len(_PEFT_PREFIX) :])
        if target is None:
            unexpected.append(key)
            continue
        model_key, shape = target
        if _shape_of(value) != tuple(shape):
            mismatched.append((key, _shape_of(value), tuple(shape)))
            skipped.add(model_key)
            continue
        plan.append((model_key, value))
    loaded = {model_key for model_key, _ in plan}
    missing = [k for k in adapter_keys if k not in loaded]
    # entries skipped for their shape are reported as such (or ignored with `ignore_mismatched_sizes`), not as missing
    strictly_missing = [k for k in missing if k not in skipped]
    problems = []
    if mismatched and not ignore_mismatched_sizes:
        problems += [f"- {k}: shape {s} in the state dict, {m} in the model" for k, s, m in mismatched]
    if strict and unexpected:
        problems.append(f"- keys that match no weight of adapter {adapter_name!r}: {sorted(unexpected)}")
    if strict and strictly_missing:
        problems.append(
            f"- weights of adapter {adapter_name!r} missing from the state dict: {sorted(strictly_missing)}"
        )
    if problems:
        raise AdapterStateDictError(
            f"Cannot load the LoRA state dict into adapter {adapter_name!r} of {model_name}; nothing was loaded:\n"
            + "\n".join(problems)
        )
    return plan, missing, unexpected + [k for k, _, _ in mismatched]


def set_peft_model_state_dict(
    model: nn.Cell,
    peft_model_state_dict: Dict[str, object],
    adapter_name: str = "default",
    ignore_mismatched_sizes: bool = False,
    low_cpu_mem_usage: bool = False,
    strict: bool = True,
):
    """Load adapter weights saved in PEFT's format (keys without the adapter name, as `get_peft_model_state_dict`
    returns them) into the injected adapter `adapter_name`. Keys may carry PEFT's `base_model.model.` prefix.

    Args:
        model (`nn.Cell`): A model with the adapter injected (`inject_adapter_in_model`).
        peft_model_state_dict (`dict`): Key -> `ms.Tensor` / NumPy array; values are cast to the parameter dtype.
        adapter_name (`str`, defaults to `"default"`): The adapter receiving the weights (may differ from the name
            used when saving).
        ignore_mismatched_sizes (`bool`, defaults to `False`): Skip entries whose shape differs (reported in the
            returned `unexpected_keys`) instead of raising.
        low_cpu_mem_usage (`bool`): accepted for signature compatibility.
        strict (`bool`, defaults to `True`): Raise `AdapterStateDictError` (a `ValueError`) listing unknown keys and
            adapter weights missing from the dict. With `False`, PEFT's behaviour: load what matches and return them.

    Returns:
        `IncompatibleKeys(missing_keys, unexpected_keys)`: adapter parameters (model keys) left untouched, and keys of
        the dict that were not loaded.

    Raises:
        `AdapterStateDictError`: shape mismatches (unless `ignore_mismatched_sizes`), unknown or missing keys (with
            `strict`). Nothing is written when it raises.
    """
    if not isinstance(peft_model_state_dict, dict):
        raise TypeError(f"`peft_model_state_dict` must be a dict, got {type(peft_model_state_dict).__name__}.")
    config = _config_of(model, adapter_name)
    targets = _adapter_parameters(model, adapter_name)
    params = dict(targets)
    params.update(_bias_parameters(model, config.bias))
    expected = {}
    for model_key, param in params.items():
        expected[model_key] = (model_key, tuple(param.shape))  # keys with the adapter name load too, as in PEFT
        key = _remove_adapter_name_from_state_dict_key(model_key, adapter_name) if model_key in targets else model_key
        expected[key] = (model_key, tuple(param.shape))
    plan, missing, unexpected = _match_state_dict(
        expected,
        list(targets),
        peft_model_state_dict,
        adapter_name,
        type(model).__name__,
        ignore_mismatched_sizes,
        strict,
    )
    replaced = False
    for model_key, value in plan:
        param = params[model_key]
        # in place where possible: an `ms.jit` graph keeps the storage it was compiled with
        replaced |= set_parameter_data(param, to_tensor(value, param.dtype))
    if replaced:
        invalidate_compiled_graphs(model)
    return IncompatibleKeys(missing_keys=missing, unexpected_keys=unexpected)


def check_state_dict_fits_injection(
    model: nn.Cell,
    peft_config,
    targets: List[str],
    state_dict: Dict[str, object],
    adapter_name: str,
    ignore_mismatched_sizes: bool = False,
    strict: bool = True,
) -> None:
    """Check `state_dict` against the weights an injection of `targets` would create (shapes from the targets' in /
    out features and the config's rank patterns), before anything is injected; raises like
    `set_peft_model_state_dict`."""
    from ..tuners.lora.model import _rank_and_alpha
    from .other import get_submodule

    expected, adapter_keys = {}, []
    for key in targets:
        cell = get_submodule(model, key)
        base = cell.get_base_layer() if hasattr(cell, "get_base_layer") else cell
        # Linear (out, in); Conv2d (out, in, kh, kw): `lora_A` keeps the kernel, `lora_B` is 1x1
        out_features, in_features, *kernel = (int(d) for d in base.weight.shape)
        r, _ = _rank_and_alpha(peft_config, key)
        shapes = {
            "lora_A.weight": (r, in_features, *kernel),
            "lora_B.weight": (out_features, r, *(1 for _ in kernel)),
        }
        if peft_config.lora_bias:
            shapes["lora_B.bias"] = (out_features,)
        for suffix, shape in shapes.items():
            attr, _, param_name = suffix.partition(".")
            model_key = f"{key}.{attr}.{adapter_name}.{param_name}"
            expected[f"{key}.{suffix}"] = expected[model_key] = (model_key, shape)
            adapter_keys.append(model_key)
    if peft_config.bias != "none":
        targeted = set(targets)
        for name, param in _bias_parameters(model, "all").items():
            owner = name.rpartition(".")[0]
            if owner in targeted:
                name = f"{owner}.base_layer.bias"
            elif peft_config.bias == "lora_only" and not name.endswith(".base_layer.bias"):
                continue
            expected[name] = (name, tuple(param.shape))
    _match_state_dict(
        expected, adapter_keys, state_dict, adapter_name, type(model).__name__, ignore_mismatched_sizes, strict
    )
