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
"""Adapted from peft v0.21 `src/peft/tuners/tuners_utils.py`; MindSpore changes: the LoRA closure only. PEFT's
`BaseTuner` methods (`merge_adapter`, `unmerge_adapter`, `merge_and_unload`, `unload`, `set_adapter`, ...) are plain
functions taking the model, because `inject_adapter_in_model` returns the model itself. Model-level merges are atomic
(a failing safe merge leaves every layer as it was). Structural changes (adapters added or removed, layers unwrapped)
invalidate compiled graphs of the model's cells (`invalidate_compiled_graphs`); numeric state (scales, active and
disabled adapters, merged flags) lives in per-adapter scale parameters that compiled graphs read at run time, so it
never goes stale and never triggers a recompilation. diffusers' `scale_lora_layers` / `unscale_lora_layers` are
included for the run-time `scale` of `attention_kwargs`."""

import contextlib
import re
import warnings
from collections import Counter, namedtuple
from collections.abc import Mapping
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

import mindspore as ms
from mindspore import nn
from mindspore.graph.api import _cell_graph_executor

from ..utils.other import _get_submodules, _set_submodule, match_target_against_key, type_name


class _ExcludedModule:
    """Marks a module excluded by `exclude_modules` in `check_target_module_exists` (falsy)."""

    def __bool__(self):
        return False


def check_target_module_exists(config, key: str):
    """Whether the module named `key` is targeted by `config` (PEFT's matching rules).

    A list of `target_modules` matches a name equal to an entry or ending with `"." + entry`; a string is a regex
    matched against the whole name. `exclude_modules` wins over `target_modules`; `layers_to_transform` /
    `layers_pattern` further restrict list matches to the given layer indices.

    Returns:
        `True` / a `re.Match` when targeted, `False` / `None` when not, an `_ExcludedModule` (falsy) when excluded.
    """
    exclude_modules = getattr(config, "exclude_modules", None)
    if exclude_modules:
        if isinstance(exclude_modules, str):
            if re.fullmatch(exclude_modules, key):
                return _ExcludedModule()
        elif key in exclude_modules or any(key.endswith(f".{exclude_key}") for exclude_key in exclude_modules):
            return _ExcludedModule()

    if config.target_modules is None:
        return False
    if isinstance(config.target_modules, str):
        return match_target_against_key(config.target_modules, key)
    if key in config.target_modules:
        return True

    target_module_found = any(key.endswith(f".{target_key}") for target_key in config.target_modules)
    layer_indexes = getattr(config, "layers_to_transform", None)
    layers_pattern = getattr(config, "layers_pattern", None)
    is_using_layer_indexes = layer_indexes is not None and (
        len(layer_indexes) != 0 if isinstance(layer_indexes, list) else True
    )
    if is_using_layer_indexes and target_module_found:
        match = None
        if layers_pattern is None or len(layers_pattern) == 0:
            # lazy .*? picks the first numbered segment (the layer index), not a nested one
            match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
        else:
            patterns = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
            for pattern in patterns:
                match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
                if match is not None:
                    break
        layer_index = match.groupdict().get("idx") if match else None
        if layer_index is None:
            target_module_found = False
        else:
            layer_index = int(layer_index)
            if isinstance(layer_indexes, int):
                target_module_found = layer_index == layer_indexes
            else:
                target_module_found = layer_index in layer_indexes
    return target_module_found


def check_adapters_to_merge(module: "BaseTunerLayer", adapter_names: Optional[List[str]] = None) -> List[str]:
    """The adapters of `adapter_names` (default: the active ones) that are not merged yet; warns about the others."""
    if adapter_names is None:
        adapter_names = module.active_adapters
    if isinstance(adapter_names, str):
        raise TypeError(f"adapter_names should be a list of strings, got {adapter_names!r}.")
    if module.merged:
        merged_adapters = set(module.merged_adapters)
        adapter_names = [name for name in adapter_names if name not in merged_adapters]
        if adapter_names:
            warnings.warn(
                f"Already following adapters were merged {','.join(module.merged_adapters)}. "
                f"You are now additionally merging {','.join(adapter_names)}."
            )
        else:
            warnings.warn("All adapters are already merged, nothing to do.")
    return list(adapter_names)


class BaseTunerLayer:
    """Mixin of the adapter layers (PEFT's `BaseTunerLayer`): active adapters, enable/disable, delete.

    Subclasses list their per-adapter containers in `adapter_layer_names` (CellDicts of sub-cells) and their
    per-adapter Python dicts in `other_param_names`, and implement `_adapter_state_changed` to publish the numeric
    state that `construct` reads.
    """

    adapter_layer_names: Tuple[str, ...] = ()
    other_param_names: Tuple[str, ...] = ()
    _disable_adapters: bool = False
    _active_adapter: Union[str, List[str]] = "default"
    merged_adapters: List[str] = []

    def get_base_layer(self) -> nn.Cell:
        """The wrapped layer (recursively, should a tuner layer wrap another one)."""
        base_layer = self
        while hasattr(base_layer, "base_layer"):
            base_layer = base_layer.base_layer
        return base_layer

    @property
    def weight(self):
        return self.get_base_layer().weight

    @property
    def bias(self):
        return self.get_base_layer().bias

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    @property
    def disable_adapters(self) -> bool:
        return self._disable_adapters

    @property
    def active_adapter(self) -> Union[str, List[str]]:
        return self._active_adapter

    @property
    def active_adapters(self) -> List[str]:
        if isinstance(self.active_adapter, str):
            return [self.active_adapter]
        return list(self.active_adapter)

    def _adapter_state_changed(self) -> None:
        """Called after every change of scales, active / disabled / merged adapters."""

    def _get_available_adapters(self) -> set:
        adapters = set()
        for layer_name in self.adapter_layer_names:
            adapters.update(getattr(self, layer_name).keys())
        return adapters

    def _all_available_adapter_names(self) -> List[str]:
        names = set()
        for attr_name in self.adapter_layer_names + self.other_param_names:
            attr = getattr(self, attr_name)
            if hasattr(attr, "keys"):
                names.update(attr.keys())
        return sorted(names)

    def enable_adapters(self, enabled: bool) -> None:
        """Enable (`True`) or disable (`False`) all adapters of this layer; disabled, the layer is its base layer.

        Disabling a merged layer unmerges it (PEFT does so at the next forward, which a compiled graph cannot)."""
        if enabled:
            self.set_adapter(self.active_adapters)
            self._disable_adapters = False
        else:
            if self.merged:
                self.unmerge()
            for layer_name in self.adapter_layer_names:
                for layer in getattr(self, layer_name).values():
                    _set_requires_grad(layer, False)
            self._disable_adapters = True
        self._adapter_state_changed()

    def set_adapter(self, adapter_names: Union[str, List[str]], inference_mode: bool = False) -> None:
        """Set the active adapter(s); adapters this layer does not hold are kept in the list and skipped."""
        if isinstance(adapter_names, str):
            adapter_names = [adapter_names]
        for layer_name in self.adapter_layer_names:
            for key, layer in getattr(self, layer_name).items():
                _set_requires_grad(layer, (key in adapter_names) and not inference_mode)
        self._active_adapter = list(adapter_names)
        self._adapter_state_changed()

    def delete_adapter(self, adapter_name: str) -> None:
        """Delete an adapter from this layer; if it was active, the remaining active ones (or else the first other
        adapter, or none) become active, as in PEFT."""
        if adapter_name in self.merged_adapters:
            raise ValueError(
                f"Cannot delete adapter(s) {[adapter_name]} while they are merged. Please unmerge them first."
            )
        for attr in self.adapter_layer_names + self.other_param_names:
            container = getattr(self, attr)
            if adapter_name in container:
                del container[adapter_name]
        if adapter_name in self.active_adapters:
            active_adapters = [name for name in self.active_adapters if name != adapter_name]
            if active_adapters:
                self.set_adapter(active_adapters)
            else:
                remaining_adapters = self._all_available_adapter_names()
                if not remaining_adapters:
                    self.set_adapter([])
                else:
                    new_active_adapter = remaining_adapters[0]
                    warnings.warn(
                        f"Adapter {adapter_name} was active which is now deleted. Setting active adapter to "
                        f"{new_active_adapter}."
                    )
                    self.set_adapter(new_active_adapter)
        self._adapter_state_changed()


def _set_requires_grad(cell: nn.Cell, requires_grad: bool) -> None:
    for _, param in cell.parameters_and_names():
        param.requires_grad = requires_grad


# ---------------------------------------------------------------------------------------------------------------------
# model-level helpers (PEFT's BaseTuner methods and tuners_utils functions, taking the model)
# ---------------------------------------------------------------------------------------------------------------------


def iter_tuner_layers(model: nn.Cell) -> Iterator[Tuple[str, BaseTunerLayer]]:
    """(name, layer) of every tuner layer of `model` (not those nested inside another tuner layer)."""
    layer_names = set()
    for name, cell in model.cells_and_names():
        if _is_key_under_prefixes(name.rpartition(".")[0], layer_names):
            continue
        if isinstance(cell, BaseTunerLayer):
            layer_names.add(name)
            yield name, cell


def _is_key_under_prefixes(key: str, prefixes: set) -> bool:
    """Whether `key` equals or lies under (at a "." boundary) one of `prefixes`, in O(depth of the key)."""
    if not prefixes:
        return False
    while key:
        if key in prefixes:
            return True
        key = key.rpartition(".")[0]
    return "" in prefixes


def check_dropout_with_recompute(
    model: nn.Cell, training: Optional[bool] = None, checkpointing: Optional[bool] = None, new_dropout: float = 0.0
) -> None:
    """Raise when dropout (`nn.Dropout` with p > 0: LoRA dropout, Gemma2's attention dropout, or `new_dropout` about to
    be added) would run under gradient checkpointing in training. `training` / `checkpointing` are the states about
    to be set (default: the model's). MindSpore's `recompute` restores the generator state, but `nn.Dropout`'s kernel
    keeps its own: recomputing a block in the backward pass draws new masks, and the gradients would not belong to the
    forward pass (torch's checkpoint replays the same masks)."""
    training = model.training if training is None else training
    if not training:
        return
    if checkpointing is None:
        checkpointing = any(getattr(cell, "gradient_checkpointing", False) for _, cell in model.cells_and_names())
    if not checkpointing:
        return
    rates = [new_dropout] if new_dropout > 0 else []
    rates += [cell.p for _, cell in model.cells_and_names() if isinstance(cell, nn.Dropout) and (cell.p or 0) > 0]
    if rates:
        raise ValueError(
            f"Dropout (p={max(rates)}) under gradient checkpointing in training is not supported: MindSpore's recompute "
            "draws new dropout masks when it runs a block again in the backward pass, so the gradients would not "
            "belong to the forward pass. Set the dropout to 0 (`lora_dropout=0`, `attention_dropout=0`) or disable "
            "gradient checkpointing. Nothing was changed."
        )


def invalidate_compiled_graphs(cell: nn.Cell, recursive: bool = True) -> None:
    """Make compiled graphs of `cell` and of every sub-cell (only `cell`'s own with `recursive=False`) recompile at
    their next call.

    MindSpore caches a GRAPH_MODE / `ms.jit` graph per top-level cell (keyed by its creation time and the input
    signature) and folds the Python attributes read in `construct` into it. The engine calls this after every
    structural change (adapters injected or deleted, LoRA layers unwrapped, ranks padded). Call it yourself on a cell
    that *contains* the model (a wrapper compiled as a whole) after such a change.
    """
    for _, sub_cell in cell.cells_and_names() if recursive else [("", cell)]:
        stale_phases = sub_cell.__dict__.get("_compile_cache")
        if stale_phases:  # free the stale graphs (what `Cell.__del__` does)
            _cell_graph_executor.del_net_res(sub_cell, set(stale_phases))
            stale_phases.clear()
        object.__setattr__(sub_cell, "_create_time", sub_cell.create_time + 1)


# torch's `load_state_dict` result
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def check_tensor_dict(state_dict, what: str = "state dict") -> None:
    """A state dict passed in memory: a mapping of names to tensors (MindSpore, NumPy or torch). Raises a `TypeError`
    naming the first entry that is not one, before anything reads it."""
    what = what[4:] if what.startswith("the ") else what
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"The {what} must be a dict of parameter names to tensors, got {type_name(state_dict)}.")
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"The {what} has a key that is not a string: {key!r} ({type_name(key)}).")
        if isinstance(value, np.ndarray):
            # numbers, and ml_dtypes' bfloat16 / float8 (kind "V"), which `to_tensor` reads through float32
            if value.dtype.kind in "biuf" or value.dtype.name.startswith(("bfloat16", "float8")):
                continue
        elif hasattr(value, "shape") and (hasattr(value, "__array__") or hasattr(value, "detach")):
            continue  # MindSpore and torch tensors, lazily read arrays
        kind = f"{type_name(value)} of {value.dtype}" if isinstance(value, np.ndarray) else type_name(value)
        raise TypeError(
            f"The {what} entry {key!r} is a {kind}: values must be tensors (mindspore.Tensor, numeric NumPy arrays "
            "or torch tensors)."
        )


def to_tensor(value, dtype) -> ms.Tensor:
    """A state-dict value as a MindSpore tensor of `dtype`: MindSpore, NumPy, or a torch tensor handed over by user
    code (read through float32, which holds bfloat16 exactly: NumPy has no bfloat16)."""
    if isinstance(value, ms.Tensor):
        return value.astype(dtype)
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return ms.Tensor(np.asarray(value)).astype(dtype)


def set_parameter_data(param: ms.Parameter, tensor: ms.Tensor) -> bool:
    """Replace a parameter's value (and dtype, when it changes). An initialized parameter of the same shape and dtype
    is written in place: a graph compiled by `ms.jit` keeps reading the storage it was compiled with, and `set_data`
    gives the parameter a new one (the graph would go on computing with the old values). Returns whether the storage
    was replaced: the caller then invalidates the compiled graphs of the model (`invalidate_compiled_graphs`)."""
    if not param.has_init and param.dtype == tensor.dtype and tuple(param.shape) == tuple(tensor.shape):
        param.copy_(tensor)
        return False
    if param.dtype != tensor.dtype:
        param.set_dtype(tensor.dtype)
    param.set_data(tensor)
    return True


def _sync_parameter_names(model: nn.Cell) -> None:
    """Give every parameter its structural name: MindSpore renames a parameter with the attribute name each time its
    cell is assigned to a parent, so wrapping and unwrapping layers would leave short, duplicated names. The prefix a
    parent cell gave the model's parameters (a user cell holding it as `self.a`: `a.`) is kept, read off the
    parameters that still carry it: two such models in one cell would otherwise share names."""
    named = list(model.parameters_and_names())
    prefixes = Counter(
        param.name[: len(param.name) - len(name)]
        for name, param in named
        if param.name == name or param.name.endswith("." + name)
    )
    prefix = prefixes.most_common(1)[0][0] if prefixes else ""
    for name, param in named:
        if param.name != prefix + name:
            param.name = prefix + name


def _structural_change(model: nn.Cell) -> None:
    _sync_parameter_names(model)
    invalidate_compiled_graphs(model)


def set_adapter(
    model: nn.Cell,
    adapter_name: Union[str, List[str]],
    inference_mode: bool = False,
    layer_cls: type = BaseTunerLayer,
) -> None:
    """Set the active adapter(s) of every tuner layer of `model` (merged layers are unmerged first, with a warning)."""
    for _, module in iter_tuner_layers(model):
        if isinstance(module, layer_cls):
            if module.merged:
                warnings.warn("Adapter cannot be set when the model is merged. Unmerging the model first.")
                module.unmerge()
            module.set_adapter(adapter_name, inference_mode=inference_mode)


def _check_adapters_not_merged(model: nn.Cell, adapter_names: Union[str, Sequence[str]]) -> None:
    if isinstance(adapter_names, str):
        adapter_names = [adapter_names]
    merged = {name for _, module in iter_tuner_layers(model) for name in module.merged_adapters}
    still_merged = sorted(set(adapter_names) & merged)
    if still_merged:
        raise ValueError(f"Cannot delete adapter(s) {still_merged} while they are merged. Please unmerge them first.")


def delete_adapter(
    model: nn.Cell, adapter_name: str, prefix: str = "lora_", layer_cls: type = BaseTunerLayer
) -> Optional[List[str]]:
    """Delete `adapter_name` from every tuner layer of `model`; returns the active adapters left (or `None` when no
    tuner layer exists). Like PEFT's function it leaves `model.peft_config` alone (callers pop it, as diffusers
    does); a layer left without adapters stays a tuner layer (use `unload` to remove them)."""
    _check_adapters_not_merged(model, adapter_name)
    new_adapter = None
    for _, target in iter_tuner_layers(model):
        if isinstance(target, layer_cls):
            target.delete_adapter(adapter_name)
            if new_adapter is None:
                new_adapter = target.active_adapters[:]
    _structural_change(model)
    return new_adapter


def enable_adapter_layers(model: nn.Cell) -> None:
    """Enable the adapters of every tuner layer (diffusers' `enable_lora`)."""
    for _, module in iter_tuner_layers(model):
        module.enable_adapters(True)


def disable_adapter_layers(model: nn.Cell) -> None:
    """Disable every tuner layer: the model computes the base model's output (diffusers' `disable_lora`)."""
    configs = getattr(model, "peft_config", None) or {}
    for name, config in configs.items():
        if getattr(config, "bias", "none") != "none":
            warnings.warn(
                f"Careful, disabling adapter layers with bias configured to be '{config.bias}' does not produce the "
                "same output as the base model would without adaption."
            )
    for _, module in iter_tuner_layers(model):
        module.enable_adapters(False)


def merge_adapter(model: nn.Cell, adapter_names: Optional[List[str]] = None, safe_merge: bool = False) -> None:
    """Merge the adapters (default: the active ones) into the base weights of every tuner layer.

    With `safe_merge=True` a non-finite merged weight raises a `ValueError`. The merge is atomic over the model: every
    layer is checked before the first one is written, so after an error no layer has changed."""
    layers = [module for _, module in iter_tuner_layers(model)]
    if any(module.disable_adapters for module in layers):
        # PEFT merges them, and the next forward of a disabled layer unmerges it again: the same outputs, but an
        # `unload` (no forward) in between kept the merged weights there
        warnings.warn(
            "The adapters are disabled: nothing is merged into the disabled layers (enable the adapters first to "
            "fuse them; `merge_and_unload` merges them anyway)."
        )
    _merge_layers(layers, adapter_names, safe_merge)


def _merge_layers(layers: List[BaseTunerLayer], adapter_names: Optional[List[str]], safe_merge: bool) -> None:
    for module in layers:
        module._check_merge(adapter_names=adapter_names, safe_merge=safe_merge)
    for module in layers:
        module.merge(adapter_names=adapter_names, safe_merge=False)


def unmerge_adapter(model: nn.Cell) -> None:
    """Restore the base weights of every merged tuner layer (exactly: the weights from before the first merge)."""
    for _, module in iter_tuner_layers(model):
        if module.merged:
            module.unmerge()


def _unload_and_optionally_merge(
    model: nn.Cell, merge: bool = True, safe_merge: bool = False, adapter_names: Optional[List[str]] = None
) -> nn.Cell:
    layers = list(iter_tuner_layers(model))
    if merge:
        # as PEFT's `merge`, whether or not the adapters are disabled (the layers are unwrapped next)
        disabled = [module for _, module in layers if module._disable_adapters]
        for module in disabled:
            module._disable_adapters = False
        try:
            _merge_layers([module for _, module in layers], adapter_names, safe_merge)
        except Exception:
            for module in disabled:
                module._disable_adapters = True
            raise
    for key, target in layers:
        parent, _, target_name = _get_submodules(model, key)
        base_layer = target.get_base_layer()
        target._release()
        _set_submodule(parent, target_name, base_layer)
    if hasattr(model, "peft_config"):
        del model.peft_config
    _structural_change(model)
    return model


def merge_and_unload(
    model: nn.Cell, progressbar: bool = False, safe_merge: bool = False, adapter_names: Optional[List[str]] = None
) -> nn.Cell:
    """Merge the adapters into the base weights and replace every tuner layer by its base layer (in place; returns
    `model`). Parameter names are the original ones again (`to_q.weight`)."""
    return _unload_and_optionally_merge(model, merge=True, safe_merge=safe_merge, adapter_names=adapter_names)


def unload(model: nn.Cell) -> nn.Cell:
    """Replace every tuner layer by its base layer without merging (in place; returns `model`): the model is the
    base model again, with its original parameter objects and names, and `model.peft_config` is removed."""
    return _unload_and_optionally_merge(model, merge=False)


def scale_lora_layers(model: nn.Cell, weight: float) -> None:
    """Multiply the scale of the active adapters of every LoRA layer by `weight` (diffusers' `scale_lora_layers`).

    Only the run-time scale parameters change, so a compiled graph uses the new scale without recompiling."""
    if weight == 1.0:
        return
    for _, module in iter_tuner_layers(model):
        module.scale_layer(weight)


def unscale_lora_layers(model: nn.Cell, weight: Optional[float] = None) -> None:
    """Undo `scale_lora_layers(model, weight)` (diffusers' `unscale_lora_layers`); `weight=0` resets the scale of the
    active adapters to `lora_alpha / r`."""
    if weight is None or weight == 1.0:
        return
    for _, module in iter_tuner_layers(model):
        if weight != 0:
            module.unscale_layer(weight)
        else:
            for adapter_name in module.active_adapters:
                module.set_scale(adapter_name, 1.0)


@contextlib.contextmanager
def lora_scale(model: nn.Cell, scale: float):
    """Context manager: every active LoRA output of `model` is multiplied by `scale` inside the block (what diffusers
    does around a forward that receives `attention_kwargs={"scale": scale}`). Works for compiled graphs: call the
    compiled cell inside the block, not inside its `construct`."""
    scale_lora_layers(model, scale)
    try:
        yield model
    finally:
        unscale_lora_layers(model, scale)


def get_adapter_layer_summary(model: nn.Cell) -> Dict[str, Dict[str, object]]:
    """Per tuner layer: active adapters, available adapters, merged adapters, disabled flag (for inspection)."""
    return {
        name: {
            "active_adapters": module.active_adapters,
            "available_adapters": module._all_available_adapter_names(),
            "merged_adapters": list(module.merged_adapters),
            "disabled": module.disable_adapters,
        }
        for name, module in iter_tuner_layers(model)
    }
