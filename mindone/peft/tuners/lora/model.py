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
"""Adapted from peft v0.21 `src/peft/tuners/lora/model.py` and `BaseTuner.inject_adapter` of
`src/peft/tuners/tuners_utils.py`; MindSpore changes: no `LoraModel` wrapper (injection works on the model in place, as
`peft.inject_adapter_in_model` does), Linear and Conv2d layers only, and every check runs before the first layer is
replaced, so a failed injection leaves the model untouched."""

import re
import warnings
from typing import Dict, List, Optional

from mindspore import mint, nn

from ...utils.constants import INCLUDE_LINEAR_LAYERS_SHORTHAND
from ...utils.error import NoMatchingPeftModuleError
from ...utils.other import _get_submodules, _set_submodule, get_pattern_key, type_name
from ...utils.save_and_load import _bias_parameters
from ..tuners_utils import (
    BaseTunerLayer,
    _ExcludedModule,
    _structural_change,
    check_dropout_with_recompute,
    check_target_module_exists,
    iter_tuner_layers,
    set_adapter,
)
from .config import LoraConfig
from .layer import Conv2d, Linear, LoraLayer, conv2d_lora_unsupported

prefix = "lora_"


def _check_adapter_name(adapter_name) -> None:
    # MindSpore is stricter than torch here: parameter names are ASCII words, and `nn.CellDict` (which holds the
    # adapters' layers) refuses keys that are attributes of a Cell (`construct`, `cells`, `phase`, ...)
    if not isinstance(adapter_name, str) or re.fullmatch(r"[0-9A-Za-z_\-]+", adapter_name) is None:
        raise ValueError(
            "`adapter_name` must be a non-empty string of ASCII letters, digits, '_' and '-' (it becomes part of "
            f"MindSpore parameter names); got {adapter_name!r}."
        )
    if hasattr(nn.CellDict(), adapter_name):
        raise ValueError(
            f"`adapter_name` {adapter_name!r} is the name of an attribute of MindSpore's `nn.Cell`, which cannot key "
            "the adapter's layers: choose another name."
        )


def _maybe_include_all_linear_layers(peft_config: LoraConfig, model: nn.Cell) -> None:
    """`target_modules="all-linear"` -> the names of all Linear layers (not those inside LoRA layers)."""
    if not (
        isinstance(peft_config.target_modules, str)
        and peft_config.target_modules.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND
    ):
        return
    names = set()
    inner_prefixes = [name + "." for name, _ in iter_tuner_layers(model)]
    for name, cell in model.cells_and_names():
        if any(name.startswith(p) for p in inner_prefixes):
            continue
        if isinstance(cell, (mint.nn.Linear, LoraLayer)):
            names.add(name)
    peft_config.target_modules = names


def _rank_and_alpha(lora_config: LoraConfig, current_key: str):
    r_key = get_pattern_key(lora_config.rank_pattern.keys(), current_key)
    alpha_key = get_pattern_key(lora_config.alpha_pattern.keys(), current_key)
    r = lora_config.rank_pattern.get(r_key, lora_config.r)
    alpha = lora_config.alpha_pattern.get(alpha_key, lora_config.lora_alpha)
    return r, alpha


def _create_and_replace(lora_config: LoraConfig, adapter_name: str, target, target_name: str, parent, current_key):
    """Add the adapter to an existing LoRA layer, or wrap the Linear / Conv2d `target` in a new one (rank and alpha
    from `rank_pattern` / `alpha_pattern` by the module name)."""
    r, alpha = _rank_and_alpha(lora_config, current_key)
    if isinstance(target, LoraLayer):
        target.update_layer(adapter_name, r, lora_alpha=alpha, config=lora_config, target_name=current_key)
    else:
        cls = Conv2d if isinstance(target, nn.Conv2d) else Linear
        new_module = cls(target, adapter_name, lora_config, r=r, lora_alpha=alpha, target_name=current_key)
        _set_submodule(parent, target_name, new_module)


def _check_supported(key: str, target) -> None:
    base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
    if isinstance(base, nn.Conv2d):
        reason = conv2d_lora_unsupported(base)
        if reason is not None:
            raise ValueError(
                f"Target module {key} ({type(base).__name__}) is not supported: LoRA on a Conv2d with {reason}."
            )
        return
    if not isinstance(base, mint.nn.Linear):
        raise ValueError(
            f"Target module {key} ({type(target).__name__}) is not supported. Currently, only the following modules "
            "are supported: `mindspore.mint.nn.Linear`, `mindspore.nn.Conv2d`."
        )


def resolve_targets(
    model: nn.Cell, peft_config: LoraConfig, adapter_name: str, state_dict: Optional[Dict[str, object]] = None
) -> List[str]:
    """The names of the modules `inject_adapter` would adapt, after every check it makes (nothing is changed; PEFT's
    warnings are emitted here)."""
    if not isinstance(peft_config, LoraConfig):
        raise TypeError(f"`peft_config` must be a mindone.peft LoraConfig, got {type_name(peft_config)}.")
    _check_adapter_name(adapter_name)
    existing_configs = getattr(model, "peft_config", None)
    existing_configs = existing_configs if isinstance(existing_configs, dict) else {}
    tuner_layers = list(iter_tuner_layers(model))
    if adapter_name in existing_configs or any(adapter_name in layer.lora_A for _, layer in tuner_layers):
        raise ValueError(f"Adapter with name {adapter_name} already exists. Please use a different name.")
    if peft_config.bias != "none" and any(getattr(c, "bias", "none") != "none" for c in existing_configs.values()):
        raise ValueError(
            "LoraModel supports only 1 adapter with bias. When using multiple adapters, set bias to 'none' for all "
            "adapters."
        )
    if peft_config.fan_in_fan_out:
        warnings.warn(
            "fan_in_fan_out is set to True but the target module is `mint.nn.Linear`. Setting fan_in_fan_out to False."
        )
        peft_config.fan_in_fan_out = False
    if peft_config.target_modules is None:
        raise ValueError("Please specify `target_modules` in `peft_config`")
    _maybe_include_all_linear_layers(peft_config, model)
    check_dropout_with_recompute(model, new_dropout=peft_config.lora_dropout)

    # ---- matching (nothing is changed before all checks passed) ----
    tuner_prefixes = [name + "." for name, _ in tuner_layers]
    module_names = None
    if state_dict is not None:
        # module names from the keys, e.g. `blocks.0.to_q.lora_A.weight` -> `blocks.0.to_q`
        module_names = {k.rsplit("." + prefix, 1)[0].removeprefix("_orig_mod.") for k in state_dict}
    targeted: List[str] = []
    excluded: List[str] = []
    unmatched: List[str] = []
    targeted_from_config: List[str] = []
    cells = dict(model.cells_and_names())
    for key in cells:
        if not key or any(key.startswith(p) for p in tuner_prefixes):
            continue
        if state_dict is None:
            result = check_target_module_exists(peft_config, key)
            if isinstance(result, _ExcludedModule):
                excluded.append(key)
            elif not result:
                unmatched.append(key)
            else:
                targeted.append(key)
        else:
            if key in module_names:
                targeted.append(key)
            else:
                unmatched.append(key)
            if check_target_module_exists(peft_config, key):
                targeted_from_config.append(key)

    if not targeted:
        if excluded and not unmatched:
            raise NoMatchingPeftModuleError(
                "All modules were excluded. This is likely unintended. "
                "Check your `target_modules`, `exclude_modules` and `modules_to_save` configuration."
            )
        if not excluded and unmatched and not peft_config.target_modules:
            raise NoMatchingPeftModuleError(
                "No `target_modules` passed but also no `target_parameters` found. Please check the values for "
                "these arguments."
            )
        if not excluded:
            error_msg = (
                f"Target modules {peft_config.target_modules} not found in the base model. "
                f"Please check the target modules and try again."
            )
        else:
            error_msg = (
                "No modules were targeted for adaptation. "
                "This might be caused by a combination of mismatched target modules and excluded modules. "
                "Please check your `target_modules` and `exclude_modules` configuration."
            )
        if state_dict is not None:
            error_msg += f" (matched by the state_dict keys, module names {sorted(module_names)[:8]})"
        if peft_config.layers_to_transform is not None:
            error_msg += f" Note: You specified 'layers_to_transform': {peft_config.layers_to_transform}."
        if peft_config.layers_pattern is not None:
            error_msg += f" You also specified 'layers_pattern': {peft_config.layers_pattern}."
        raise NoMatchingPeftModuleError(error_msg)
    for key in targeted:
        _check_supported(key, cells[key])

    # ---- warnings, as PEFT ----
    if state_dict is not None:
        diff_config = set(targeted_from_config) - set(targeted)
        diff_state_dict = set(targeted) - set(targeted_from_config)
        if diff_config or diff_state_dict:
            msg = (
                "While injecting the PEFT adapters, an inconsistency was discovered between the PEFT config and the "
                "provided state_dict. This is not necessarily an issue and can be ignored if this was the intent. "
            )
            if diff_config:
                msg += f"The PEFT config contained these additional target modules: {sorted(diff_config)}. "
            if diff_state_dict:
                msg += f"The state_dict contained these additional target modules: {sorted(diff_state_dict)}. "
            warnings.warn(msg, RuntimeWarning)
    elif peft_config.exclude_modules and not excluded:
        warnings.warn(
            f"You have passed exclude_modules={peft_config.exclude_modules} but no modules were excluded. "
            "Please check that exclude_modules was set correctly."
        )
    for pattern_attr in ("rank_pattern", "alpha_pattern"):
        patterns = getattr(peft_config, pattern_attr)
        matched = {p for p in patterns if any(re.match(rf"(.*\.)?({p})$", name) for name in targeted)}
        unmatched_patterns = sorted(set(patterns) - matched)
        if unmatched_patterns:
            warnings.warn(
                f"The following {pattern_attr} keys did not match any targeted module and were ignored: "
                f"{unmatched_patterns}.",
                RuntimeWarning,
            )

    return targeted


def inject_adapter(
    model: nn.Cell,
    peft_config: LoraConfig,
    adapter_name: str = "default",
    low_cpu_mem_usage: bool = False,
    state_dict: Optional[Dict[str, object]] = None,
    targets: Optional[List[str]] = None,
) -> nn.Cell:
    """Create the LoRA layers of `adapter_name` in `model` (in place); see `mindone.peft.inject_adapter_in_model`.
    `targets` (from `resolve_targets`) skips the matching."""
    targeted = resolve_targets(model, peft_config, adapter_name, state_dict) if targets is None else targets
    first_injection = not any(True for _ in iter_tuner_layers(model))
    requires_grad_before = {id(p): (p, p.requires_grad) for _, p in model.parameters_and_names()}
    replaced = []  # (parent, name, original cell)
    updated = []  # existing LoRA layers that received the adapter
    try:
        for key in targeted:
            parent, target, target_name = _get_submodules(model, key)
            _create_and_replace(peft_config, adapter_name, target, target_name, parent, current_key=key)
            (updated if isinstance(target, LoraLayer) else replaced).append((parent, target_name, target))
    except Exception:
        for parent, target_name, target in replaced:
            _set_submodule(parent, target_name, target)
        for _, _, layer in updated:
            if adapter_name in layer.lora_A:
                layer.delete_adapter(adapter_name)
        _structural_change(model)
        raise

    if isinstance(getattr(model, "peft_config", None), dict):
        model.peft_config[adapter_name] = peft_config
    else:
        model.peft_config = {adapter_name: peft_config}
    # as PEFT: the new adapter becomes the (only) active adapter of every LoRA layer
    set_adapter(model, [adapter_name], inference_mode=peft_config.inference_mode)
    # as PEFT: the first injection freezes the base model; later ones keep the trainability of existing parameters
    for _, param in model.parameters_and_names():
        if id(param) in requires_grad_before:
            param.requires_grad = False if first_injection else requires_grad_before[id(param)][1]
    # as PEFT: the base biases that `bias` names ("all" / "lora_only") are trained (and saved) with the adapter
    for param in _bias_parameters(model, peft_config.bias).values():
        param.requires_grad = True
    _structural_change(model)
    return model
