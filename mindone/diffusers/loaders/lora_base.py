# Copyright 2026 The HuggingFace Team. All rights reserved.
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
"""Adapted from diffusers v0.42.1 `loaders/lora_base.py`; MindSpore changes: the PEFT backend is `mindone.peft`;
LoRA files are read and written as safetensors without torch (a pickle `.bin` LoRA is refused with a conversion hint
instead of being unpickled); no text-encoder LoRA, offloading hooks or `set_lora_device` (Lumina2 adapts its
transformer only, and MindSpore has no devices to move adapters between); in offline mode a repo id in the Hugging
Face cache is searched for a LoRA file when no `weight_name` is given (upstream requires `weight_name` offline);
`write_lora_layers` raises on a file path (upstream logs an error and returns) and honours `is_main_process`."""

import copy
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import mindspore as ms
from mindspore import nn

from ...peft import iter_tuner_layers
from ...peft.tuners.tuners_utils import check_tensor_dict
from ...safetensors.mindspore import SafetensorError, load_file, load_metadata, save_file
from ..models.model_loading_utils import check_save_directory, warn_if_pickle_requested
from ..models.modeling_utils import ModelMixin
from ..utils import PICKLE_SUFFIXES, logging, resolve_file
from ..utils.hub_utils import not_a_path_or_repo_id

logger = logging.get_logger(__name__)

LORA_WEIGHT_NAME = "pytorch_lora_weights.bin"
LORA_WEIGHT_NAME_SAFE = "pytorch_lora_weights.safetensors"
LORA_ADAPTER_METADATA_KEY = "lora_adapter_metadata"

_PICKLE_LORA_HINT = (
    "Pickle LoRA files are never read here: unpickling can run arbitrary code and needs torch. Convert the file once "
    "with torch, e.g. `safetensors.torch.save_file(torch.load(path, weights_only=True), "
    "'pytorch_lora_weights.safetensors')`, and load the .safetensors file."
)


# ---------------------------------------------------------------------------------------------------------------------
# fetching state dicts (dir / file / repo id / dict)


def _load_sft_file_metadata(model_file: str) -> dict:
    """A safetensors file's own `__metadata__`, minus safetensors' `format` entry."""
    metadata = dict(load_metadata(model_file) or {})
    metadata.pop("format", None)
    return metadata


def _load_sft_state_dict_metadata(model_file: str) -> Optional[dict]:
    """The LoRA adapter metadata diffusers stores under `lora_adapter_metadata` (parsed), or `None`."""
    raw = _load_sft_file_metadata(model_file).get(LORA_ADAPTER_METADATA_KEY)
    if not raw:
        return None
    # upstream raises json's own error, which names neither the file nor the header entry
    try:
        parsed = json.loads(raw)
        problem = None if isinstance(parsed, dict) else "no JSON object"
    except json.JSONDecodeError as e:
        problem = f"invalid JSON ({e})"
    if problem:
        raise ValueError(
            f"The `{LORA_ADAPTER_METADATA_KEY}` entry of the header of {model_file} is {problem}: save the LoRA again "
            "(`save_lora_weights`), or remove that entry from the file's metadata."
        )
    return parsed


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_repo_files(repo_id: str, cache_dir=None, revision=None) -> Optional[List[str]]:
    """Files (paths relative to the snapshot) of a repo id's snapshot in the Hugging Face cache, or `None` if the repo
    is not cached."""
    from huggingface_hub import snapshot_download

    try:
        root = snapshot_download(repo_id, cache_dir=cache_dir, revision=revision, local_files_only=True)
    except Exception:  # not cached (or not a valid repo id)
        return None
    files = []
    for folder, _, names in os.walk(root):
        for name in names:
            files.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return sorted(files)


def _best_guess_weight_name(
    pretrained_model_name_or_path_or_dict, file_extension=".safetensors", local_files_only=False, cache_dir=None
):
    """The LoRA file of a folder or repo id when `weight_name` is not given: files with `file_extension`, without
    "scheduler", "optimizer" or "checkpoint" in their name, preferring diffusers' default names; `None` if none."""
    targeted_files = []

    if os.path.isfile(pretrained_model_name_or_path_or_dict):
        return
    elif os.path.isdir(pretrained_model_name_or_path_or_dict):
        targeted_files = [f for f in os.listdir(pretrained_model_name_or_path_or_dict) if f.endswith(file_extension)]
    elif local_files_only or _hub_offline():
        # MindSpore change: look into the cached snapshot before giving up (upstream raises right away)
        files_in_cache = _cached_repo_files(pretrained_model_name_or_path_or_dict, cache_dir=cache_dir)
        if files_in_cache is None:
            raise ValueError(
                f"When using the offline mode, you must specify a `weight_name`: {pretrained_model_name_or_path_or_dict}"
                " is not a local file or folder, and no snapshot of it is in the Hugging Face cache to look into "
                "(check the path, or download the repository first)."
            )
        targeted_files = [f for f in files_in_cache if f.endswith(file_extension)]
    else:
        from huggingface_hub import model_info

        files_in_repo = model_info(pretrained_model_name_or_path_or_dict).siblings
        targeted_files = [f.rfilename for f in files_in_repo if f.rfilename.endswith(file_extension)]
    if len(targeted_files) == 0:
        return

    # "scheduler" does not correspond to a LoRA checkpoint.
    # "optimizer" does not correspond to a LoRA checkpoint
    # only top-level checkpoints are considered and not the other ones, hence "checkpoint".
    unallowed_substrings = {"scheduler", "optimizer", "checkpoint"}
    targeted_files = list(
        filter(lambda x: all(substring not in x for substring in unallowed_substrings), targeted_files)
    )

    if any(f.endswith(LORA_WEIGHT_NAME) for f in targeted_files):
        targeted_files = list(filter(lambda x: x.endswith(LORA_WEIGHT_NAME), targeted_files))
    elif any(f.endswith(LORA_WEIGHT_NAME_SAFE) for f in targeted_files):
        targeted_files = list(filter(lambda x: x.endswith(LORA_WEIGHT_NAME_SAFE), targeted_files))

    if len(targeted_files) == 0:
        return
    if len(targeted_files) > 1:
        logger.warning(
            f"Provided path contains more than one weights file in the {file_extension} format. `{targeted_files[0]}` "
            "is going to be loaded, for precise control, specify a `weight_name` in `load_lora_weights`."
        )
    weight_name = targeted_files[0]
    return weight_name


def _get_model_file(pretrained_model_name_or_path, weights_name, subfolder=None, **hub_kwargs) -> str:
    """The path of `weights_name`: the path itself if it is a file; in a folder `<dir>/<weights_name>`, then
    `<dir>/<subfolder>/<weights_name>` (upstream's order); else the file of a repo id through the Hub cache."""
    path = os.fspath(pretrained_model_name_or_path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, weights_name)):
        return os.path.join(path, weights_name)
    return resolve_file(path, weights_name, subfolder=subfolder, **hub_kwargs)


def _may_be_repo_id(path: str) -> bool:
    """Whether `path` (not a local file or folder) can name a Hub repo: not an absolute or relative path, not a file
    name with a weights suffix, and valid for the Hub."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if os.path.isabs(path) or path.startswith(("./", "../", "~")) or path.endswith(".safetensors"):
        return False
    try:
        validate_repo_id(path)
    except HFValidationError:
        return False
    return True


def _fetch_state_dict(
    pretrained_model_name_or_path_or_dict,
    weight_name,
    use_safetensors,
    local_files_only,
    cache_dir,
    force_download,
    proxies,
    token,
    revision,
    subfolder,
    user_agent,
    allow_pickle,
    metadata=None,
    return_file_metadata=False,
):
    """
    The LoRA state dict (and its adapter metadata) from a dict, a file, a folder or a repo id.

    `metadata` is diffusers' own LoRA adapter metadata, parsed out of the file's `__metadata__`. With
    `return_file_metadata`, that `__metadata__` is returned in full as a third element. It is `None` whenever the
    weights did not come from a safetensors file (a state dict passed in memory).

    MindSpore change: values are `ms.Tensor`s; where upstream falls back to a pickle `.bin` file (`allow_pickle`), a
    `ValueError` explains how to convert it.
    """
    file_metadata = None
    if isinstance(pretrained_model_name_or_path_or_dict, dict):
        state_dict = pretrained_model_name_or_path_or_dict
        check_tensor_dict(state_dict, "LoRA state dict")
        if return_file_metadata:
            return state_dict, metadata, file_metadata
        return state_dict, metadata

    if not isinstance(pretrained_model_name_or_path_or_dict, (str, os.PathLike)):
        raise TypeError(
            "`pretrained_model_name_or_path_or_dict` must be a path, a repo id or a dict of tensors, got "
            f"{type(pretrained_model_name_or_path_or_dict).__name__}."
        )
    path = os.fspath(pretrained_model_name_or_path_or_dict)
    if not os.path.exists(path) and not path.endswith(PICKLE_SUFFIXES) and not _may_be_repo_id(path):
        # upstream asks the Hub about it (a validation or network error, or in offline mode "specify a weight_name")
        raise not_a_path_or_repo_id(path)
    hub_kwargs = dict(
        cache_dir=cache_dir,
        force_download=force_download,
        proxies=proxies,
        local_files_only=bool(local_files_only),
        token=token,
        revision=revision,
    )
    if weight_name is not None and weight_name.endswith(PICKLE_SUFFIXES):
        raise ValueError(f"`weight_name={weight_name!r}` names a pickle file. {_PICKLE_LORA_HINT}")
    if use_safetensors is False:
        raise ValueError(f"`use_safetensors=False` asks for a pickle LoRA file. {_PICKLE_LORA_HINT}")
    if path.endswith(PICKLE_SUFFIXES):
        sibling = os.path.splitext(path)[0] + ".safetensors"
        if not os.path.isfile(path) and os.path.isfile(sibling):  # what `save_lora_weights` wrote for it
            raise ValueError(
                f"{path} does not exist, but {sibling} does: this port writes safetensors even when asked for pickle "
                "files (`safe_serialization=False`). Load that file."
            )
        raise ValueError(f"{path} is a pickle file. {_PICKLE_LORA_HINT}")

    try:
        # Here we're relaxing the loading check to enable more Inference API
        # friendliness where sometimes, it's not at all possible to automatically
        # determine `weight_name`.
        if weight_name is None:
            weight_name = _best_guess_weight_name(
                path, file_extension=".safetensors", local_files_only=local_files_only, cache_dir=cache_dir
            )
        model_file = _get_model_file(path, weight_name or LORA_WEIGHT_NAME_SAFE, subfolder=subfolder, **hub_kwargs)
        state_dict = load_file(model_file)
        metadata = _load_sft_state_dict_metadata(model_file)
        if return_file_metadata:
            file_metadata = _load_sft_file_metadata(model_file)
    except (EnvironmentError, SafetensorError) as e:
        if allow_pickle and weight_name is None:
            # upstream would unpickle a `.bin` LoRA now: say so if there is one
            pickle_name = None
            if os.path.isdir(path):
                pickle_name = _best_guess_weight_name(path, file_extension=".bin")
            if pickle_name is not None:
                raise ValueError(f"{path} holds the pickle LoRA file {pickle_name!r}. {_PICKLE_LORA_HINT}") from None
        raise e

    if return_file_metadata:
        return state_dict, metadata, file_metadata
    return state_dict, metadata


def check_lora_weight_name_to_write(weight_name: Optional[str], safe_serialization: bool, what: str) -> None:
    """Safetensors are written whatever `safe_serialization` says (with a warning for `False`); a pickle file name is
    refused rather than given safetensors content."""
    if weight_name is not None and weight_name.endswith(PICKLE_SUFFIXES):
        raise ValueError(
            f"`weight_name={weight_name!r}` names a pickle file, which this port never writes: use a `.safetensors` "
            "name (the default is pytorch_lora_weights.safetensors)."
        )
    warn_if_pickle_requested(safe_serialization, what)


def _pack_dict_with_prefix(state_dict, prefix):
    sd_with_prefix = {f"{prefix}.{key}": value for key, value in state_dict.items()}
    return sd_with_prefix


# ---------------------------------------------------------------------------------------------------------------------
# LoraBaseMixin


class LoraBaseMixin:
    """Utility class for handling LoRAs."""

    _lora_loadable_modules = []
    _merged_adapters = set()

    @property
    def lora_scale(self) -> float:
        """
        Returns the lora scale which can be set at run time by the pipeline. # if `_lora_scale` has not been set,
        return 1.
        """
        return self._lora_scale if hasattr(self, "_lora_scale") else 1.0

    @property
    def num_fused_loras(self):
        """Returns the number of LoRAs that have been fused."""
        return len(self._merged_adapters)

    @property
    def fused_loras(self):
        """Returns names of the LoRAs that have been fused."""
        return self._merged_adapters

    def _lora_models(self, components=None):
        """(name, model) of the LoRA-loadable components that are set and are diffusers models."""
        names = self._lora_loadable_modules if components is None else components
        out = []
        for component in names:
            model = getattr(self, component, None)
            if model is not None and isinstance(model, ModelMixin):
                out.append((component, model))
        return out

    @staticmethod
    def _warn_deprecated_component_kwargs(kwargs, names, function):
        for name in names:
            if name in kwargs:
                logger.warning(
                    f"Passing `{name}` to `{function}()` is deprecated and will be ignored. Please use the "
                    f"`components` argument. `{name}` will be removed in a future version."
                )
                kwargs.pop(name)
        if kwargs:
            raise TypeError(f"{function}() got unexpected keyword arguments {sorted(kwargs)}.")

    def unload_lora_weights(self):
        """
        Unloads the LoRA parameters: every LoRA layer is replaced by its base layer again (the original parameters, by
        name and value), and the adapters are forgotten.

        Examples:

        ```python
        >>> # Assuming `pipeline` is already loaded with the LoRA parameters.
        >>> pipeline.unload_lora_weights()
        >>> ...
        ```
        """
        for _, model in self._lora_models():
            model.unload_lora()

    def fuse_lora(
        self,
        components: Optional[List[str]] = None,
        lora_scale: float = 1.0,
        safe_fusing: bool = False,
        adapter_names: Optional[List[str]] = None,
        **kwargs,
    ):
        r"""
        Fuses the LoRA parameters into the original parameters of the corresponding blocks.

        Args:
            components (`list[str]`): list of LoRA-injectable components to fuse the LoRAs into.
            lora_scale (`float`, defaults to 1.0):
                Controls how much to influence the outputs with the LoRA parameters.
            safe_fusing (`bool`, defaults to `False`):
                Whether to check fused weights for NaN values before fusing and if values are NaN not fusing them.
            adapter_names (`list[str]`, *optional*):
                Adapter names to be used for fusing. If nothing is passed, all active adapters will be fused.

        Example:

        ```py
        import mindspore as ms
        from mindone.diffusers import Lumina2Pipeline

        pipeline = Lumina2Pipeline.from_pretrained("Alpha-VLLM/Lumina-Image-2.0", mindspore_dtype=ms.float32)
        pipeline.load_lora_weights("path/to/lora", weight_name="pytorch_lora_weights.safetensors", adapter_name="a")
        pipeline.fuse_lora(lora_scale=0.7)
        ```
        """
        if components is None:
            components = []
        self._warn_deprecated_component_kwargs(
            kwargs, ("fuse_unet", "fuse_transformer", "fuse_text_encoder"), "fuse_lora"
        )

        if len(components) == 0:
            raise ValueError("`components` cannot be an empty list.")

        # Need to retrieve the names as `adapter_names` can be None. So we cannot directly use it
        # in `self._merged_adapters = self._merged_adapters | merged_adapter_names`.
        merged_adapter_names = set()
        for fuse_component in components:
            if fuse_component not in self._lora_loadable_modules:
                raise ValueError(f"{fuse_component} is not found in {self._lora_loadable_modules=}.")

        for _, model in self._lora_models(components):
            model.fuse_lora(lora_scale, safe_fusing=safe_fusing, adapter_names=adapter_names)
            for _, module in iter_tuner_layers(model):
                merged_adapter_names.update(set(module.merged_adapters))

        self._merged_adapters = self._merged_adapters | merged_adapter_names

    def unfuse_lora(self, components: Optional[List[str]] = None, **kwargs):
        r"""
        Reverses the effect of [`pipe.fuse_lora()`]: the base weights are restored exactly.

        Args:
            components (`list[str]`): list of LoRA-injectable components to unfuse LoRA from.
        """
        if components is None:
            components = []
        self._warn_deprecated_component_kwargs(
            kwargs, ("unfuse_unet", "unfuse_transformer", "unfuse_text_encoder"), "unfuse_lora"
        )

        if len(components) == 0:
            raise ValueError("`components` cannot be an empty list.")

        for fuse_component in components:
            if fuse_component not in self._lora_loadable_modules:
                raise ValueError(f"{fuse_component} is not found in {self._lora_loadable_modules=}.")

        for _, model in self._lora_models(components):
            model.unfuse_lora()

        # Only remove an adapter from _merged_adapters once it is no longer
        # physically merged in any remaining loadable component.
        remaining_merged = set()
        for _, component_model in self._lora_models():
            for _, module in iter_tuner_layers(component_model):
                remaining_merged.update(module.merged_adapters)
        self._merged_adapters = self._merged_adapters & remaining_merged

    def set_adapters(
        self,
        adapter_names: Union[List[str], str],
        adapter_weights: Optional[Union[float, Dict, List[float], List[Dict]]] = None,
    ):
        """
        Set the currently active adapters for use in the pipeline.

        Args:
            adapter_names (`list[str]` or `str`):
                The names of the adapters to use.
            adapter_weights (`list[float, float]`, *optional*):
                The adapter(s) weights to use with the transformer. If `None`, the weights are set to `1.0` for all
                the adapters.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/cinematic", adapter_name="cinematic")
        pipeline.load_lora_weights("path/to/pixel", adapter_name="pixel")
        pipeline.set_adapters(["cinematic", "pixel"], adapter_weights=[0.5, 0.5])
        ```
        """
        if isinstance(adapter_weights, dict):
            components_passed = set(adapter_weights.keys())
            lora_components = set(self._lora_loadable_modules)

            invalid_components = sorted(components_passed - lora_components)
            if invalid_components:
                logger.warning(
                    f"The following components in `adapter_weights` are not part of the pipeline: {invalid_components}. "
                    f"Available components that are LoRA-compatible: {self._lora_loadable_modules}. So, weights belonging "
                    "to the invalid components will be removed and ignored."
                )
                adapter_weights = {k: v for k, v in adapter_weights.items() if k not in invalid_components}

        adapter_names = [adapter_names] if isinstance(adapter_names, str) else adapter_names
        adapter_weights = copy.deepcopy(adapter_weights)

        # Expand weights into a list, one entry per adapter
        if not isinstance(adapter_weights, list):
            adapter_weights = [adapter_weights] * len(adapter_names)

        if len(adapter_names) != len(adapter_weights):
            raise ValueError(
                f"Length of adapter names {len(adapter_names)} is not equal to the length of the weights {len(adapter_weights)}"
            )

        list_adapters = self.get_list_adapters()  # eg {"transformer": ["adapter1", "adapter2"]}
        # eg ["adapter1", "adapter2"]
        all_adapters = {adapter for adapters in list_adapters.values() for adapter in adapters}
        missing_adapters = set(adapter_names) - all_adapters
        if len(missing_adapters) > 0:
            raise ValueError(
                f"Adapter name(s) {missing_adapters} not in the list of present adapters: {all_adapters}."
            )

        # eg {"adapter1": ["transformer"]}
        invert_list_adapters = {
            adapter: [part for part, adapters in list_adapters.items() if adapter in adapters]
            for adapter in all_adapters
        }

        # Decompose weights into weights per component.
        _component_adapter_weights = {}
        for component, model in self._lora_models():
            for adapter_name, weights in zip(adapter_names, adapter_weights):
                if isinstance(weights, dict):
                    component_adapter_weights = weights.pop(component, None)
                    if component_adapter_weights is not None and component not in invert_list_adapters[adapter_name]:
                        logger.warning(
                            (
                                f"Lora weight dict for adapter '{adapter_name}' contains {component},"
                                f"but this will be ignored because {adapter_name} does not contain weights for {component}."
                                f"Valid parts for {adapter_name} are: {invert_list_adapters[adapter_name]}."
                            )
                        )

                else:
                    component_adapter_weights = weights

                _component_adapter_weights.setdefault(component, [])
                _component_adapter_weights[component].append(component_adapter_weights)

            model.set_adapters(adapter_names, _component_adapter_weights[component])

    def disable_lora(self):
        """
        Disables the active LoRA layers of the pipeline: outputs are those of the base models.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/lora", adapter_name="cinematic")
        pipeline.disable_lora()
        ```
        """
        for _, model in self._lora_models():
            model.disable_lora()

    def enable_lora(self):
        """
        Enables the active LoRA layers of the pipeline.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/lora", adapter_name="cinematic")
        pipeline.enable_lora()
        ```
        """
        for _, model in self._lora_models():
            model.enable_lora()

    def delete_adapters(self, adapter_names: Union[List[str], str]):
        """
        Delete an adapter's LoRA layers from the pipeline.

        Args:
            adapter_names (`list[str, str]`):
                The names of the adapters to delete.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/lora", adapter_name="cinematic")
        pipeline.delete_adapters("cinematic")
        ```
        """
        if isinstance(adapter_names, str):
            adapter_names = [adapter_names]

        for _, model in self._lora_models():
            model.delete_adapters(adapter_names)

    def get_active_adapters(self) -> List[str]:
        """
        Gets the list of the current active adapters.

        Example:

        ```python
        pipeline.load_lora_weights("path/to/lora", adapter_name="toy")
        pipeline.get_active_adapters()  # ["toy"]
        ```
        """
        active_adapters = []

        for _, model in self._lora_models():
            for _, module in iter_tuner_layers(model):
                active_adapters = module.active_adapters
                break

        return active_adapters

    def get_list_adapters(self) -> Dict[str, List[str]]:
        """
        Gets the current list of all available adapters in the pipeline.
        """
        set_adapters = {}

        for component, model in self._lora_models():
            if getattr(model, "peft_config", None):
                set_adapters[component] = list(model.peft_config.keys())

        return set_adapters

    def enable_lora_hotswap(self, **kwargs) -> None:
        """
        Hotswap adapters without triggering recompilation of a model or if the ranks of the loaded adapters are
        different.

        Args:
            target_rank (`int`):
                The highest rank among all the adapters that will be loaded.
            check_compiled (`str`, *optional*, defaults to `"error"`):
                How to handle a model that is already compiled. The check can return the following messages:
                  - "error" (default): raise an error
                  - "warn": issue a warning
                  - "ignore": do nothing
        """
        for key, component in self.components.items():
            if hasattr(component, "enable_lora_hotswap") and (key in self._lora_loadable_modules):
                component.enable_lora_hotswap(**kwargs)

    @staticmethod
    def pack_weights(layers, prefix):
        layers_weights = dict(layers.parameters_and_names()) if isinstance(layers, nn.Cell) else layers
        return _pack_dict_with_prefix(layers_weights, prefix)

    @staticmethod
    def write_lora_layers(
        state_dict: Dict[str, ms.Tensor],
        save_directory: str,
        is_main_process: bool,
        weight_name: str,
        save_function: Callable,
        safe_serialization: bool,
        lora_adapter_metadata: Optional[dict] = None,
    ):
        """Writes the state dict of the LoRA layers (optionally with metadata) to disk, as a safetensors file that
        diffusers (torch) loads as well."""
        check_save_directory(save_directory)

        if lora_adapter_metadata and not safe_serialization:
            raise ValueError("`lora_adapter_metadata` cannot be specified when not using `safe_serialization`.")
        if lora_adapter_metadata and not isinstance(lora_adapter_metadata, dict):
            raise TypeError("`lora_adapter_metadata` must be of type `dict`.")

        if save_function is None:
            check_lora_weight_name_to_write(weight_name, safe_serialization, "the LoRA state dict")

            def save_function(weights, filename):
                # Inject framework format.
                metadata = {"format": "pt"}
                if lora_adapter_metadata:
                    for key, value in lora_adapter_metadata.items():
                        if isinstance(value, set):
                            lora_adapter_metadata[key] = sorted(value)
                    metadata[LORA_ADAPTER_METADATA_KEY] = json.dumps(lora_adapter_metadata, indent=2, sort_keys=True)

                return save_file(weights, filename, metadata=metadata)

        if not is_main_process:
            return
        os.makedirs(save_directory, exist_ok=True)

        if weight_name is None:
            weight_name = LORA_WEIGHT_NAME_SAFE

        save_path = Path(save_directory, weight_name).as_posix()
        save_function(state_dict, save_path)
        logger.info(f"Model weights saved in {save_path}")

    @classmethod
    def _save_lora_weights(
        cls,
        save_directory: Union[str, os.PathLike],
        lora_layers: Dict[str, Union[Dict[str, ms.Tensor], nn.Cell]],
        lora_metadata: Dict[str, Optional[dict]],
        is_main_process: bool = True,
        weight_name: str = None,
        save_function: Callable = None,
        safe_serialization: bool = True,
    ):
        """
        Helper method to pack and save LoRA weights and metadata. This method centralizes the saving logic for all
        pipeline types.
        """
        state_dict = {}
        final_lora_adapter_metadata = {}

        for prefix, layers in lora_layers.items():
            state_dict.update(cls.pack_weights(layers, prefix))

        for prefix, metadata in lora_metadata.items():
            if metadata:
                final_lora_adapter_metadata.update(_pack_dict_with_prefix(metadata, prefix))

        cls.write_lora_layers(
            state_dict=state_dict,
            save_directory=save_directory,
            is_main_process=is_main_process,
            weight_name=weight_name,
            save_function=save_function,
            safe_serialization=safe_serialization,
            lora_adapter_metadata=final_lora_adapter_metadata if final_lora_adapter_metadata else None,
        )
