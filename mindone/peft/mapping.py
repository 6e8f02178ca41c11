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
"""Adapted from peft v0.21 `src/peft/mapping.py`; MindSpore changes: LoRA only."""

from typing import Any, Dict, Optional

from mindspore import nn

from .config import PeftConfig
from .tuners.lora.config import LoraConfig
from .tuners.lora.model import inject_adapter, resolve_targets
from .utils.peft_types import PeftType
from .utils.save_and_load import check_state_dict_fits_injection, set_peft_model_state_dict

PEFT_TYPE_TO_CONFIG_MAPPING = {PeftType.LORA.value: LoraConfig}
PEFT_TYPE_TO_PREFIX_MAPPING = {PeftType.LORA.value: "lora_"}


def get_peft_config(config_dict: Dict[str, Any]) -> PeftConfig:
    """A config object from a dictionary (e.g. a parsed `adapter_config.json`)."""
    peft_type = config_dict.get("peft_type", PeftType.LORA.value)
    peft_type = str(getattr(peft_type, "value", peft_type))  # this package's or PEFT's `PeftType` member, or a str
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise ValueError(f"`peft_type` {peft_type!r} is not supported; mindone.peft implements 'LORA'.")
    return PEFT_TYPE_TO_CONFIG_MAPPING[peft_type].from_dict(config_dict)


def inject_adapter_in_model(
    peft_config: PeftConfig,
    model: nn.Cell,
    adapter_name: str = "default",
    low_cpu_mem_usage: bool = False,
    state_dict: Optional[Dict[str, Any]] = None,
) -> nn.Cell:
    r"""
    Create LoRA layers and inject them into the model in place (PEFT's `inject_adapter_in_model`).

    Every `mint.nn.Linear` or `nn.Conv2d` whose name matches `peft_config.target_modules` (or, when `state_dict` is
    passed, whose name appears in its keys) is replaced by a `mindone.peft.tuners.lora.Linear` / `Conv2d` holding the
    adapter; a module that is already a LoRA layer receives the additional adapter. Afterwards `adapter_name` is the
    only active adapter of all LoRA layers, `model.peft_config[adapter_name]` is `peft_config`, and parameters are
    named `<module>.base_layer.weight`, `<module>.lora_A.<adapter_name>.weight`,
    `<module>.lora_B.<adapter_name>.weight`.

    Args:
        peft_config (`LoraConfig`):
            Configuration of the adapter.
        model (`nn.Cell`):
            The model to inject the adapter into.
        adapter_name (`str`, defaults to `"default"`):
            Name of the new adapter; must not exist yet and must not contain '.'.
        low_cpu_mem_usage (`bool`, defaults to `False`):
            Accepted for signature compatibility; adapter weights are always allocated (they are small).
        state_dict (`dict`, *optional*):
            If passed, the modules named by its keys (`<module>.lora_A.weight`, ...) are adapted instead of those
            matching `target_modules`; only the keys are used.

    Raises:
        `ValueError` (nothing changed): the adapter name exists, no module matches (`NoMatchingPeftModuleError`), a
            matched module is not a Linear or Conv2d layer (or a Conv2d with groups or dilation), `target_modules` is
            missing.
    """
    return inject_adapter(
        model, peft_config, adapter_name=adapter_name, low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict
    )


def inject_and_load_adapter(
    peft_config: PeftConfig,
    model: nn.Cell,
    state_dict: Dict[str, Any],
    adapter_name: str = "default",
    strict: bool = True,
    ignore_mismatched_sizes: bool = False,
):
    """`inject_adapter_in_model(peft_config, model, adapter_name, state_dict=state_dict)` followed by
    `set_peft_model_state_dict(model, state_dict, adapter_name)`, atomically: the state dict is checked against the
    weights the injection would create (keys, shapes) before anything is injected, so on any error the model is left
    exactly as it was (what a loader such as diffusers' `load_lora_adapter` needs).

    Returns:
        `IncompatibleKeys(missing_keys, unexpected_keys)` of `set_peft_model_state_dict` (empty with `strict=True`).

    Raises:
        `ValueError` subclasses (`NoMatchingPeftModuleError`, `AdapterStateDictError`, ...), model unchanged.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"`state_dict` must be a dict, got {type(state_dict).__name__}.")
    targets = resolve_targets(model, peft_config, adapter_name, state_dict)
    check_state_dict_fits_injection(
        model,
        peft_config,
        targets,
        state_dict,
        adapter_name,
        ignore_mismatched_sizes=ignore_mismatched_sizes,
        strict=strict,
    )
    inject_adapter(model, peft_config, adapter_name=adapter_name, state_dict=state_dict, targets=targets)
    return set_peft_model_state_dict(
        model, state_dict, adapter_name, ignore_mismatched_sizes=ignore_mismatched_sizes, strict=strict
    )
