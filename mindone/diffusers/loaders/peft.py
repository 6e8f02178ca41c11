# coding=utf-8
# Copyright 2025 The HuggingFace Inc. team.
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
"""Adapted from diffusers v0.42.1 `loaders/peft.py` (with the helpers it uses from `utils/peft_utils.py` and
`utils/state_dict_utils.py`); MindSpore changes: the backend is `mindone.peft` (LoRA on `mint.nn.Linear`; LoKr, DoRA
and control LoRAs are refused with a `ValueError`); loading validates keys and shapes before anything is injected, and
every failure (including a failed hotswap, which upstream answers by deleting the adapter) leaves the model exactly as
it was; `fuse_lora` is atomic (a NaN with `safe_fusing=True` changes no weight and no scale); unknown adapter names
raise; `save_lora_adapter(upcast_before_saving=True)` upcasts the saved tensors, not the model; no offloading hooks."""

import json
import numbers
import os
from pathlib import Path
from typing import Dict, List, Literal, Optional, Union

import mindspore as ms

from ...peft import (
    LoraConfig,
    PeftConfig,
    check_hotswap_configs_compatible,
    delete_adapter,
    disable_adapter_layers,
    enable_adapter_layers,
    get_peft_model_state_dict,
    hotswap_adapter_from_state_dict,
    inject_adapter_in_model,
    inject_and_load_adapter,
    iter_tuner_layers,
    merge_adapter,
    prepare_model_for_compiled_hotswap,
    unload,
    unmerge_adapter,
)
from ...peft.tuners.tuners_utils import _check_adapters_not_merged
from ...safetensors.mindspore import save_file
from ..models.model_loading_utils import check_save_directory
from ..utils import logging
from .lora_base import _fetch_state_dict, check_lora_weight_name_to_write

logger = logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# helpers of diffusers' utils/peft_utils.py and utils/state_dict_utils.py


# We need to define a proper mapping for Unet since it uses different output keys than text encoder
# e.g. to_q_lora -> q_proj / to_q
UNET_TO_DIFFUSERS = {
    ".to_out_lora.up": ".to_out.0.lora_B",
    ".to_out_lora.down": ".to_out.0.lora_A",
    ".to_q_lora.down": ".to_q.lora_A",
    ".to_q_lora.up": ".to_q.lora_B",
    ".to_k_lora.down": ".to_k.lora_A",
    ".to_k_lora.up": ".to_k.lora_B",
    ".to_v_lora.down": ".to_v.lora_A",
    ".to_v_lora.up": ".to_v.lora_B",
    ".lora.up": ".lora_B",
    ".lora.down": ".lora_A",
    ".to_out.lora_magnitude_vector": ".to_out.0.lora_magnitude_vector",
}
KEYS_TO_ALWAYS_REPLACE = {".processor.": "."}


def convert_state_dict(state_dict, mapping):
    """Replace the first pattern of `mapping` found in each key (after `KEYS_TO_ALWAYS_REPLACE`)."""
    converted_state_dict = {}
    for k, v in state_dict.items():
        for pattern, new_pattern in KEYS_TO_ALWAYS_REPLACE.items():
            if pattern in k:
                k = k.replace(pattern, new_pattern)
        for pattern, new_pattern in mapping.items():
            if pattern in k:
                k = k.replace(pattern, new_pattern)
                break
        converted_state_dict[k] = v
    return converted_state_dict


def convert_unet_state_dict_to_peft(state_dict):
    r"""Converts a state dict in the old diffusers LoRA format (`to_q_lora.down`, `lora.up`) to the PEFT format."""
    return convert_state_dict(state_dict, UNET_TO_DIFFUSERS)


def get_peft_kwargs(rank_dict, network_alpha_dict, peft_state_dict, is_unet=True):
    """`LoraConfig` arguments inferred from a PEFT-format state dict: the most frequent rank as `r` (others in
    `rank_pattern`), alphas from `network_alpha_dict` or equal to the ranks, target modules from the keys."""
    import collections

    rank_pattern = {}
    alpha_pattern = {}
    r = lora_alpha = list(rank_dict.values())[0]
    has_alphas = network_alpha_dict is not None and len(network_alpha_dict) > 0

    if len(set(rank_dict.values())) > 1:
        # get the rank occurring the most number of times
        r = collections.Counter(rank_dict.values()).most_common()[0][0]

        # for modules with rank different from the most occurring rank, add it to the `rank_pattern`
        rank_pattern = dict(filter(lambda x: x[1] != r, rank_dict.items()))
        rank_pattern = {k.split(".lora_B.")[0]: v for k, v in rank_pattern.items()}

        if not has_alphas:
            # No alpha data in the checkpoint: the diffusers/PEFT convention is
            # `W_eff = W + lora_B @ lora_A`, i.e. alpha == rank per module (scale 1.0).
            # Mirror the ranks into the alphas so every module keeps scale 1.0.
            lora_alpha = r
            alpha_pattern = dict(rank_pattern)

    if has_alphas:
        if len(set(network_alpha_dict.values())) > 1:
            # get the alpha occurring the most number of times
            lora_alpha = collections.Counter(network_alpha_dict.values()).most_common()[0][0]

            # for modules with alpha different from the most occurring alpha, add it to the `alpha_pattern`
            alpha_pattern = dict(filter(lambda x: x[1] != lora_alpha, network_alpha_dict.items()))
            if is_unet:
                alpha_pattern = {
                    ".".join(k.split(".lora_A.")[0].split(".")).replace(".alpha", ""): v
                    for k, v in alpha_pattern.items()
                }
            else:
                alpha_pattern = {".".join(k.split(".down.")[0].split(".")[:-1]): v for k, v in alpha_pattern.items()}
        else:
            lora_alpha = set(network_alpha_dict.values()).pop()

    target_modules = list({name.split(".lora")[0] for name in peft_state_dict.keys()})
    use_dora = any("lora_magnitude_vector" in k for k in peft_state_dict)
    # for now we know that the "bias" keys are only associated with `lora_B`.
    lora_bias = any("lora_B" in k and k.endswith(".bias") for k in peft_state_dict)

    return {
        "r": r,
        "lora_alpha": lora_alpha,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "target_modules": target_modules,
        "use_dora": use_dora,
        "lora_bias": lora_bias,
    }


def _create_lora_config(state_dict, network_alphas, metadata, rank_pattern_dict, is_unet=True):
    if any("lora_magnitude_vector" in k for k in state_dict) or (metadata or {}).get("use_dora"):
        raise ValueError(
            "This LoRA is a DoRA (it has `lora_magnitude_vector` weights or `use_dora=True` in its metadata), which "
            "mindone.peft does not support: it implements plain LoRA only. Nothing was loaded."
        )
    if metadata is not None:
        lora_config_kwargs = dict(metadata)
    else:
        lora_config_kwargs = get_peft_kwargs(
            rank_pattern_dict, network_alpha_dict=network_alphas, peft_state_dict=state_dict, is_unet=is_unet
        )
    try:
        return LoraConfig(**lora_config_kwargs)
    except TypeError as e:
        raise TypeError(f"`LoraConfig` class could not be instantiated: {e}") from e


def _maybe_warn_for_unhandled_keys(incompatible_keys, adapter_name: str) -> None:
    warn_msg = ""
    if incompatible_keys is not None:
        # Check only for unexpected keys.
        unexpected_keys = getattr(incompatible_keys, "unexpected_keys", None)
        if unexpected_keys:
            lora_unexpected_keys = [k for k in unexpected_keys if ".lora_" in k]
            if lora_unexpected_keys:
                warn_msg = (
                    f"Loading adapter weights from state_dict led to unexpected keys found in the model:"
                    f" {', '.join(lora_unexpected_keys)}. "
                )

        # Filter missing keys specific to the current adapter.
        missing_keys = getattr(incompatible_keys, "missing_keys", None)
        if missing_keys:
            lora_missing_keys = [k for k in missing_keys if ".lora_" in k and adapter_name in k]
            if lora_missing_keys:
                warn_msg += (
                    f"Loading adapter weights from state_dict led to missing keys in the model:"
                    f" {', '.join(lora_missing_keys)}."
                )

    if warn_msg:
        logger.warning(warn_msg)


def get_adapter_name(model) -> str:
    # upstream counts the adapters of the first LoRA layer, which names an adapter already loaded when the adapters
    # target different modules or one was deleted (diffusers then merges the new LoRA into it): the first free name
    # from the number of adapters on
    taken = set(getattr(model, "peft_config", None) or ())
    index = len(taken)
    while f"default_{index}" in taken:
        index += 1
    return f"default_{index}"


def set_weights_and_activate_adapters(model, adapter_names, weights):
    """Activate `adapter_names` on every LoRA layer and set their scales (`weight * lora_alpha / r`). A weight may be a
    dict `{module-name substring: weight}` (unmatched modules: upstream's UNet block key, else 1.0)."""

    def get_module_weight(weight_for_adapter, module_name):
        if not isinstance(weight_for_adapter, dict):
            # If weight_for_adapter is a single number, always return it.
            return weight_for_adapter
        for layer_name, weight_ in weight_for_adapter.items():
            if layer_name in module_name:
                return weight_
        parts = module_name.split(".")
        # upstream's fallback to UNet block keys (`down_blocks.1.attentions.0`), read for transformer modules too
        # (`layers.1.attentions.to_q` for `layers.1.attn.to_q`); on names of fewer than four parts (`x_embedder`)
        # upstream fails with an IndexError, here they get 1.0
        if len(parts) < 4:
            return 1.0
        return weight_for_adapter.get(f"{parts[0]}.{parts[1]}.attentions.{parts[3]}", 1.0)

    # every weight resolved and checked before the first layer changes: upstream fails halfway on a weight that is no
    # number (a tuple of weights, a string), leaving some layers switched to the new adapters
    plan = []
    for module_name, module in iter_tuner_layers(model):
        scales = []
        for adapter_name, weight in zip(adapter_names, weights):
            scale = get_module_weight(weight, module_name)
            if not isinstance(scale, numbers.Real):
                raise TypeError(
                    f"The weight of adapter {adapter_name!r} for {module_name} is {scale!r} "
                    f"({type(scale).__name__}): a weight is a number, None, or a dict of module-name substrings to "
                    "numbers; several adapters take a list with one weight each. Nothing was changed."
                )
            scales.append((adapter_name, scale))
        plan.append((module, scales))
    for module, scales in plan:
        module.set_adapter(adapter_names)
        for adapter_name, scale in scales:
            module.set_scale(adapter_name, scale)


# ---------------------------------------------------------------------------------------------------------------------
# PeftAdapterMixin


class PeftAdapterMixin:
    """
    A class containing all functions for loading and using adapters weights that are supported in PEFT library (here
    `mindone.peft`, LoRA on Linear layers). For more details about adapters and injecting them in a base model, check
    out the PEFT [documentation](https://huggingface.co/docs/peft/index).

    Use this mixin to:

    - Attach new adapters in the model.
    - Attach multiple adapters and iteratively activate/deactivate them.
    - Activate/deactivate all adapters from the model.
    - Get a list of the active adapters.

    Every state change (scales, active adapters, enable/disable, fuse) is read by compiled graphs at run time; adding,
    deleting or unloading adapters makes the model recompile at its next GRAPH_MODE call.
    """

    _hf_peft_config_loaded = False
    # kwargs for prepare_model_for_compiled_hotswap, if required
    _prepare_lora_hotswap_kwargs: Optional[dict] = None

    def load_lora_adapter(
        self, pretrained_model_name_or_path_or_dict, prefix="transformer", hotswap: bool = False, **kwargs
    ):
        r"""
        Loads a LoRA adapter into the underlying model.

        Parameters:
            pretrained_model_name_or_path_or_dict (`str` or `os.PathLike` or `dict`):
                Can be either:

                    - A string, the *model id* of a LoRA repository on the Hub (resolved through the Hugging Face
                      cache).
                    - A path to a *directory* or to a safetensors *file* holding the LoRA weights.
                    - A state dict (`dict[str, ms.Tensor]`, NumPy arrays work too).

            prefix (`str`, *optional*): Prefix to filter the state dict (`None`: take every key).
            cache_dir (`str | os.PathLike`, *optional*):
                Path to a directory where a downloaded pretrained model configuration is cached if the standard cache
                is not used.
            force_download (`bool`, *optional*, defaults to `False`):
                Whether or not to force the (re-)download of the model weights and configuration files.
            proxies (`dict[str, str]`, *optional*):
                A dictionary of proxy servers to use by protocol or endpoint.
            local_files_only (`bool`, *optional*, defaults to `False`):
                Whether to only load local model weights and configuration files or not.
            token (`str` or *bool*, *optional*):
                The token to use as HTTP bearer authorization for remote files.
            revision (`str`, *optional*, defaults to `"main"`):
                The specific model version to use.
            subfolder (`str`, *optional*, defaults to `""`):
                The subfolder location of a model file within a larger model repository on the Hub or locally.
            weight_name (`str`, *optional*):
                The LoRA file name (default: guessed, preferring `pytorch_lora_weights.safetensors`).
            adapter_name (`str`, *optional*):
                Name of the adapter (default: `default_<number of adapters loaded>`).
            network_alphas (`dict[str, float]`):
                The value of the network alpha used for stable learning and preventing underflow. This value has the
                same meaning as the `--network_alpha` option in the kohya-ss trainer script.
            low_cpu_mem_usage (`bool`, *optional*):
                Accepted for compatibility (adapter weights are small and always allocated).
            hotswap (`bool`, *optional*, defaults to `False`):
                Whether to substitute an existing (LoRA) adapter with the newly loaded adapter
                in-place: the weights of the loaded adapter `adapter_name` are overwritten, so a model running in
                GRAPH_MODE keeps its compiled graph. If the new adapter has a larger rank than the loaded one, call
                `enable_lora_hotswap(target_rank=max_rank)` before loading the first adapter.
            metadata:
                LoRA adapter metadata. When supplied, the metadata inferred through the state dict isn't used to
                initialize `LoraConfig`.

        Raises:
            `ValueError` (the model is left exactly as it was): the adapter name is in use (or missing, with
                `hotswap=True`), keys that match no module, missing LoRA weights, wrong shapes, an incompatible hotswap.
        """
        cache_dir = kwargs.pop("cache_dir", None)
        force_download = kwargs.pop("force_download", False)
        proxies = kwargs.pop("proxies", None)
        local_files_only = kwargs.pop("local_files_only", None)
        token = kwargs.pop("token", None)
        revision = kwargs.pop("revision", None)
        subfolder = kwargs.pop("subfolder", None)
        weight_name = kwargs.pop("weight_name", None)
        use_safetensors = kwargs.pop("use_safetensors", None)
        adapter_name = kwargs.pop("adapter_name", None)
        network_alphas = kwargs.pop("network_alphas", None)
        kwargs.pop("_pipeline", None)
        kwargs.pop("low_cpu_mem_usage", False)
        metadata = kwargs.pop("metadata", None)
        kwargs.pop("safe_serialization", None)  # a saving option, which upstream's loaders accept and ignore
        if kwargs:
            raise TypeError(
                f"load_lora_adapter() got unexpected keyword arguments {sorted(kwargs)}: not options of this loader "
                "(diffusers ignores unknown arguments silently; here a misspelled option is not lost)."
            )
        allow_pickle = False

        user_agent = {"file_type": "attn_procs_weights", "framework": "pytorch"}
        state_dict, metadata = _fetch_state_dict(
            pretrained_model_name_or_path_or_dict=pretrained_model_name_or_path_or_dict,
            weight_name=weight_name,
            use_safetensors=use_safetensors,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            force_download=force_download,
            proxies=proxies,
            token=token,
            revision=revision,
            subfolder=subfolder,
            user_agent=user_agent,
            allow_pickle=allow_pickle,
            metadata=metadata,
        )
        if network_alphas is not None and prefix is None:
            raise ValueError("`network_alphas` cannot be None when `prefix` is None.")
        if network_alphas and metadata:
            raise ValueError("Both `network_alphas` and `metadata` cannot be specified.")

        metadata_given = bool(metadata)
        if prefix is not None:
            state_dict = {k.removeprefix(f"{prefix}."): v for k, v in state_dict.items() if k.startswith(f"{prefix}.")}
            if metadata is not None:
                metadata = {k.removeprefix(f"{prefix}."): v for k, v in metadata.items() if k.startswith(f"{prefix}.")}

        if len(state_dict) > 0:
            if metadata is not None and not metadata:
                # upstream fails building its LoraConfig from the empty dict; inferring the config instead would
                # silently load another alpha than the one the metadata was meant to give
                raise ValueError(
                    "The LoRA adapter metadata has no entry for these weights"
                    # emptied by the prefix filter above, or empty as given
                    + (f" (none of its keys starts with `{prefix}.`)" if metadata_given else " (it is empty)")
                    + ": prefix its keys as the state dict's, or load the weights without it to infer the config "
                    "from their shapes (a file's metadata is read from its header: pass "
                    "`mindone.safetensors.mindspore.load_file(path)`, a state dict, with no `metadata`)."
                )
            if adapter_name in getattr(self, "peft_config", {}) and not hotswap:
                raise ValueError(
                    f"Adapter name {adapter_name} already in use in the model - please select a new adapter name."
                )
            elif adapter_name not in getattr(self, "peft_config", {}) and hotswap:
                raise ValueError(
                    f"Trying to hotswap LoRA adapter '{adapter_name}' but there is no existing adapter by that name. "
                    "Please choose an existing adapter name or set `hotswap=False` to prevent hotswapping."
                )

            if adapter_name is None:
                adapter_name = get_adapter_name(self)

            if any(".lokr_" in k for k in state_dict):
                raise ValueError("LoKr adapters are not supported by mindone.peft, which implements LoRA only.")
            # check with first key if is not in peft format
            first_key = next(iter(state_dict.keys()))
            if "lora_A" not in first_key:
                state_dict = convert_unet_state_dict_to_peft(state_dict)
            if "lora_controlnet" in state_dict:
                raise ValueError("Control LoRAs are not supported by mindone.peft.")

            rank = {}
            for key, val in state_dict.items():
                # Cannot figure out rank from lora layers that don't have at least 2 dimensions.
                # Bias layers in LoRA only have a single dimension
                if "lora_B" in key and val.ndim > 1:
                    # Check out https://github.com/huggingface/peft/pull/2419 for the `^` symbol.
                    # We may run into some ambiguous configuration values when a model has module
                    # names, sharing a common prefix (`proj_out.weight` and `blocks.transformer.proj_out.weight`,
                    # for example) and they have different LoRA ranks.
                    rank[f"^{key}"] = val.shape[1]
            if not rank and not metadata:
                raise ValueError(
                    "The LoRA state dict has no `lora_B` weights to infer the ranks from (keys: "
                    f"{sorted(state_dict)[:8]}). Make sure all LoRA param names contain `lora_A` / `lora_B`."
                )

            if network_alphas is not None and len(network_alphas) >= 1:
                alpha_keys = [k for k in network_alphas.keys() if k.startswith(f"{prefix}.")]
                network_alphas = {
                    k.removeprefix(f"{prefix}."): v for k, v in network_alphas.items() if k in alpha_keys
                }

            # create LoraConfig
            adapter_config = _create_lora_config(state_dict, network_alphas, metadata, rank)

            if hotswap:
                # For hotswapping, we need the adapter name to be present in the state dict keys
                def map_state_dict_for_hotswap(sd):
                    new_sd = {}
                    for k, v in sd.items():
                        if k.endswith("lora_A.weight") or k.endswith("lora_B.weight"):
                            k = k[: -len(".weight")] + f".{adapter_name}.weight"
                        elif k.endswith("lora_B.bias"):  # lora_bias=True option
                            k = k[: -len(".bias")] + f".{adapter_name}.bias"
                        new_sd[k] = v
                    return new_sd

                state_dict = map_state_dict_for_hotswap(state_dict)
                check_hotswap_configs_compatible(self.peft_config[adapter_name], adapter_config)
                try:
                    hotswap_adapter_from_state_dict(
                        model=self, state_dict=state_dict, adapter_name=adapter_name, config=adapter_config
                    )
                except Exception as e:
                    logger.error(f"Hotswapping {adapter_name} was unsuccessful with the following error: \n{e}")
                    raise
                # the hotswap function raises if there are incompatible keys, so if we reach this point we can set
                # it to None
                incompatible_keys = None
            else:
                had_tuner_layers = any(True for _ in iter_tuner_layers(self))
                if self._prepare_lora_hotswap_kwargs is not None:
                    # upstream finds this while padding, after the injection: checked first here, so a refused
                    # adapter does not inject and undo (which would make compiled graphs recompile)
                    target_rank = self._prepare_lora_hotswap_kwargs["target_rank"]
                    too_large = sorted(key[1:].split(".lora_B")[0] for key, r in rank.items() if r > target_rank)
                    if too_large:
                        raise ValueError(
                            f"Trying to pad the adapter to the target rank {target_rank}, but the original rank is "
                            f"larger ({max(rank.values())}, e.g. for {too_large[0]}). This is not possible: call "
                            f"`enable_lora_hotswap(target_rank={max(rank.values())})` or more before loading. "
                            "Nothing was loaded."
                        )
                try:
                    incompatible_keys = inject_and_load_adapter(adapter_config, self, state_dict, adapter_name)
                except Exception as e:
                    # nothing was injected (the state dict is checked first)
                    logger.error(f"Loading {adapter_name} was unsuccessful with the following error: \n{e}")
                    raise
                if self._prepare_lora_hotswap_kwargs is not None:
                    # For hotswapping of compiled models or adapters with different ranks.
                    # If the user called enable_lora_hotswap, we need to ensure it is called:
                    # - after the first adapter was loaded
                    # - before the model is compiled and the 2nd adapter is being hotswapped in
                    # Therefore, it needs to be called here
                    try:
                        prepare_model_for_compiled_hotswap(
                            self, config=adapter_config, **self._prepare_lora_hotswap_kwargs
                        )
                    except Exception as e:
                        self._remove_adapter_after_failed_load(adapter_name, had_tuner_layers)
                        logger.error(f"Loading {adapter_name} was unsuccessful with the following error: \n{e}")
                        raise
                    # We only want to call prepare_model_for_compiled_hotswap once
                    self._prepare_lora_hotswap_kwargs = None

            # Set peft config loaded flag to True if module has been successfully injected and incompatible keys retrieved
            if not self._hf_peft_config_loaded:
                self._hf_peft_config_loaded = True

            _maybe_warn_for_unhandled_keys(incompatible_keys, adapter_name)

        if prefix is not None and not state_dict:
            model_class_name = self.__class__.__name__
            logger.warning(
                f"No LoRA keys associated to {model_class_name} found with the {prefix=}. "
                "This is safe to ignore if LoRA state dict didn't originally have any "
                f"{model_class_name} related params. You can also try specifying `prefix=None` "
                "to resolve the warning. Otherwise, open an issue if you think it's unexpected: "
                "https://github.com/huggingface/diffusers/issues/new"
            )

    def _remove_adapter_after_failed_load(self, adapter_name: str, had_tuner_layers: bool) -> None:
        if had_tuner_layers:
            delete_adapter(self, adapter_name)
            self.peft_config.pop(adapter_name, None)
        else:
            unload(self)

    def save_lora_adapter(
        self,
        save_directory,
        adapter_name: str = "default",
        upcast_before_saving: bool = False,
        safe_serialization: bool = True,
        weight_name: Optional[str] = None,
    ):
        """
        Save the LoRA parameters corresponding to the underlying model (PEFT keys without prefix, the adapter config
        as `lora_adapter_metadata`), as a safetensors file diffusers loads too.

        Arguments:
            save_directory (`str` or `os.PathLike`):
                Directory to save LoRA parameters to. Will be created if it doesn't exist.
            adapter_name (`str`, defaults to `"default"`): The name of the adapter to serialize. Useful when the
                underlying model has multiple adapters loaded.
            upcast_before_saving (`bool`, defaults to `False`):
                Whether to save the weights in `ms.float32`.
            safe_serialization (`bool`, *optional*, defaults to `True`):
                Safetensors are always written: `False` (upstream's pickle files) logs a warning and writes safetensors.
            weight_name (`str`, *optional*, defaults to `None`): Name of the file to serialize the state dict with.
        """
        from .lora_base import LORA_ADAPTER_METADATA_KEY, LORA_WEIGHT_NAME_SAFE

        if adapter_name is None:
            adapter_name = get_adapter_name(self)

        if adapter_name not in getattr(self, "peft_config", {}):
            raise ValueError(f"Adapter name {adapter_name} not found in the model.")
        check_lora_weight_name_to_write(weight_name, safe_serialization, "the LoRA adapter")

        lora_adapter_metadata = self.peft_config[adapter_name].to_dict()

        lora_layers_to_save = get_peft_model_state_dict(self, adapter_name=adapter_name)
        if upcast_before_saving:
            lora_layers_to_save = {k: v.astype(ms.float32) for k, v in lora_layers_to_save.items()}
        check_save_directory(save_directory)

        # Inject framework format.
        metadata = {"format": "pt"}
        for key, value in lora_adapter_metadata.items():
            if isinstance(value, set):
                lora_adapter_metadata[key] = sorted(value)
        metadata[LORA_ADAPTER_METADATA_KEY] = json.dumps(lora_adapter_metadata, indent=2, sort_keys=True)

        os.makedirs(save_directory, exist_ok=True)
        if weight_name is None:
            weight_name = LORA_WEIGHT_NAME_SAFE

        save_path = Path(save_directory, weight_name).as_posix()
        save_file(lora_layers_to_save, save_path, metadata=metadata)
        logger.info(f"Model weights saved in {save_path}")

    def _check_adapter_names(self, adapter_names: List[str]) -> None:
        missing = [name for name in adapter_names if name not in getattr(self, "peft_config", {})]
        if missing:
            raise ValueError(
                f"Following adapter(s) could not be found: {', '.join(missing)}. Make sure you are passing the correct "
                f"adapter name(s). current loaded adapters are: {list(getattr(self, 'peft_config', {}).keys())}"
            )

    def set_adapters(
        self,
        adapter_names: Union[List[str], str],
        weights: Optional[Union[float, Dict, List[float], List[Dict], List[None]]] = None,
    ):
        """
        Set the currently active adapters for use in the diffusion network (e.g. transformer).

        Args:
            adapter_names (`list[str]` or `str`):
                The names of the adapters to use.
            weights (`Union[List[float], float]`, *optional*):
                The adapter(s) weights to use with the transformer. If `None`, the weights are set to `1.0` for all
                the adapters.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/cinematic", adapter_name="cinematic")
        pipeline.load_lora_weights("path/to/pixel", adapter_name="pixel")
        pipeline.transformer.set_adapters(["cinematic", "pixel"], weights=[0.5, 0.5])
        ```
        """
        adapter_names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)

        # Expand weights into a list, one entry per adapter
        # examples for e.g. 2 adapters:  [{...}, 7] -> [7,7] ; None -> [None, None]
        if not isinstance(weights, list):
            weights = [weights] * len(adapter_names)

        if len(adapter_names) != len(weights):
            raise ValueError(
                f"Length of adapter names {len(adapter_names)} is not equal to the length of their weights {len(weights)}."
            )
        self._check_adapter_names(adapter_names)
        repeated = sorted({name for name in adapter_names if adapter_names.count(name) > 1})
        if repeated:
            # PEFT would add such an adapter once per mention, each time with the last weight given for it
            raise ValueError(f"Adapter names must be unique, got {repeated} more than once in {adapter_names}.")

        # Set None values to default of 1.0
        # e.g. [{...}, 7] -> [{...}, 7] ; [None, None] -> [1.0, 1.0]
        weights = [w if w is not None else 1.0 for w in weights]

        set_weights_and_activate_adapters(self, adapter_names, weights)

    def add_adapter(self, adapter_config, adapter_name: str = "default") -> None:
        r"""
        Adds a new adapter to the current model for training. If no adapter name is passed, a default name is assigned
        to the adapter to follow the convention of the PEFT library.

        Args:
            adapter_config ([`~mindone.peft.PeftConfig`]):
                The configuration of the adapter to add (a `mindone.peft.LoraConfig`).
            adapter_name (`str`, *optional*, defaults to `"default"`):
                The name of the adapter to add. If no name is passed, a default name is assigned to the adapter.
        """
        if self._hf_peft_config_loaded and adapter_name in getattr(self, "peft_config", {}):
            raise ValueError(f"Adapter with name {adapter_name} already exists. Please use a different name.")

        if not isinstance(adapter_config, PeftConfig):
            raise ValueError(
                f"adapter_config should be an instance of PeftConfig. Got {type(adapter_config)} instead."
            )

        # Unlike transformers, here we don't need to retrieve the name_or_path of the unet as the loading logic is
        # handled by the `load_lora_layers` or `StableDiffusionLoraLoaderMixin`. Therefore we set it to `None` here.
        adapter_config.base_model_name_or_path = None
        inject_adapter_in_model(adapter_config, self, adapter_name)
        self._hf_peft_config_loaded = True
        self.set_adapter(adapter_name)

    def set_adapter(self, adapter_name: Union[str, List[str]]) -> None:
        """
        Sets a specific adapter by forcing the model to only use that adapter and disables the other adapters.

        Args:
            adapter_name (`str` or `list[str]`):
                The list of adapters to set or the adapter name in the case of a single adapter.
        """
        if not self._hf_peft_config_loaded:
            raise ValueError("No adapter loaded. Please load an adapter first.")

        if isinstance(adapter_name, str):
            adapter_name = [adapter_name]

        missing = set(adapter_name) - set(self.peft_config)
        if len(missing) > 0:
            raise ValueError(
                f"Following adapter(s) could not be found: {', '.join(missing)}. Make sure you are passing the correct adapter name(s)."
                f" current loaded adapters are: {list(self.peft_config.keys())}"
            )

        _adapters_has_been_set = False
        for _, module in iter_tuner_layers(self):
            module.set_adapter(adapter_name)
            _adapters_has_been_set = True

        if not _adapters_has_been_set:
            raise ValueError(
                "Did not succeeded in setting the adapter. Please make sure you are using a model that supports adapters."
            )

    def disable_adapters(self) -> None:
        r"""
        Disable all adapters attached to the model and fallback to inference with the base model only.
        """
        if not self._hf_peft_config_loaded:
            raise ValueError("No adapter loaded. Please load an adapter first.")
        for _, module in iter_tuner_layers(self):
            module.enable_adapters(enabled=False)

    def enable_adapters(self) -> None:
        """
        Enable adapters that are attached to the model. The model uses `self.active_adapters()` to retrieve the list of
        adapters to enable.
        """
        if not self._hf_peft_config_loaded:
            raise ValueError("No adapter loaded. Please load an adapter first.")
        for _, module in iter_tuner_layers(self):
            module.enable_adapters(enabled=True)

    def active_adapters(self) -> List[str]:
        """
        Gets the current list of active adapters of the model.
        """
        if not self._hf_peft_config_loaded:
            raise ValueError("No adapter loaded. Please load an adapter first.")
        for _, module in iter_tuner_layers(self):
            return module.active_adapter

    def fuse_lora(self, lora_scale=1.0, safe_fusing=False, adapter_names=None):
        """
        Merge the LoRA weights (scaled by `lora_scale`) into the base weights; the adapters stay loaded (and the scales
        of those not fused yet multiplied by `lora_scale`, as upstream) so `unfuse_lora` can restore the base weights
        exactly.

        Args:
            lora_scale (`float`, defaults to 1.0): Multiplies the scale of the active adapters before merging.
            safe_fusing (`bool`, defaults to `False`): Check the fused weights for NaN/inf first; if any, raise a
                `ValueError` and change nothing.
            adapter_names (`list[str]`, *optional*): Adapters to fuse (default: the active ones).
        """
        if isinstance(adapter_names, str):
            adapter_names = [adapter_names]
        if adapter_names is not None:
            self._check_adapter_names(adapter_names)
        layers = [module for _, module in iter_tuner_layers(self)]
        scalings = [dict(module.scaling) for module in layers]
        try:
            if lora_scale != 1.0:
                # upstream's `scale_layer`, but an adapter already merged into a layer keeps its scale: upstream
                # multiplies it again, so a second `fuse_lora` (which merges nothing) changed the unfused adapter
                for module in layers:
                    for name in module.active_adapters:
                        if name in module.lora_A and name not in module.merged_adapters:
                            module.scaling[name] *= lora_scale
            merge_adapter(self, adapter_names=adapter_names, safe_merge=safe_fusing)
        except Exception:
            # the merge is atomic (nothing merged); restore the scales exactly
            for module, scaling in zip(layers, scalings):
                for name, value in scaling.items():
                    if module.scaling.get(name) != value:
                        module.scaling[name] = value
            raise

    def unfuse_lora(self):
        """Restore the base weights from before `fuse_lora` (exactly)."""
        unmerge_adapter(self)

    def unload_lora(self):
        """Replace every LoRA layer by its base layer and forget the adapters (the base model again)."""
        if any(True for _ in iter_tuner_layers(self)):  # (no LoRA layer: keep compiled graphs)
            unload(self)
        if hasattr(self, "peft_config"):
            del self.peft_config
        if hasattr(self, "_hf_peft_config_loaded"):
            self._hf_peft_config_loaded = None

    def disable_lora(self):
        """
        Disables the active LoRA layers of the underlying model.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/lora", adapter_name="cinematic")
        pipeline.transformer.disable_lora()
        ```
        """
        disable_adapter_layers(self)

    def enable_lora(self):
        """
        Enables the active LoRA layers of the underlying model.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/lora", adapter_name="cinematic")
        pipeline.transformer.enable_lora()
        ```
        """
        enable_adapter_layers(self)

    def delete_adapters(self, adapter_names: Union[List[str], str]):
        """
        Delete an adapter's LoRA layers from the underlying model.

        Args:
            adapter_names (`list[str, str]`):
                The names (single string or list of strings) of the adapter to delete.

        Example:

        ```py
        pipeline.load_lora_weights("path/to/lora", adapter_name="cinematic")
        pipeline.transformer.delete_adapters("cinematic")
        ```
        """
        if isinstance(adapter_names, str):
            adapter_names = [adapter_names]
        self._check_adapter_names(adapter_names)
        _check_adapters_not_merged(self, adapter_names)

        for adapter_name in adapter_names:
            delete_adapter(self, adapter_name)

            # Pop also the corresponding adapter from the config
            if hasattr(self, "peft_config"):
                self.peft_config.pop(adapter_name, None)
                # In case all adapters are deleted, we need to delete the config
                # and make sure to set the flag to False
                if len(self.peft_config) == 0:
                    del self.peft_config
                    self._hf_peft_config_loaded = None

    def enable_lora_hotswap(
        self, target_rank: int = 128, check_compiled: Literal["error", "warn", "ignore"] = "error"
    ) -> None:
        """Enables the possibility to hotswap LoRA adapters.

        Calling this method is only required when hotswapping adapters and if the model is compiled or if the ranks of
        the loaded adapters differ.

        Args:
            target_rank (`int`, *optional*, defaults to `128`):
                The highest rank among all the adapters that will be loaded.

            check_compiled (`str`, *optional*, defaults to `"error"`):
                How to handle the case when the model is already compiled, which should generally be avoided. The
                options are:
                  - "error" (default): raise an error
                  - "warn": issue a warning
                  - "ignore": do nothing
        """
        if getattr(self, "peft_config", {}):
            if check_compiled == "error":
                raise RuntimeError("Call `enable_lora_hotswap` before loading the first adapter.")
            elif check_compiled == "warn":
                logger.warning(
                    "It is recommended to call `enable_lora_hotswap` before loading the first adapter to avoid recompilation."
                )
            elif check_compiled != "ignore":
                raise ValueError(
                    f"check_compiles should be one of 'error', 'warn', or 'ignore', got '{check_compiled}' instead."
                )

        self._prepare_lora_hotswap_kwargs = {"target_rank": target_rank, "check_compiled": check_compiled}
