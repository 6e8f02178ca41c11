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
"""Adapted from diffusers v0.42.1 `loaders/lora_pipeline.py`; MindSpore changes: only `Lumina2LoraLoaderMixin`;
`lora_state_dict` takes `transformer_config=` (passed by `load_lora_weights`) to split the fused qkv of original-format
LoRAs at any width; unknown keyword arguments raise a `TypeError`; LoRA files are safetensors (pickle is refused)."""

import os
from typing import Callable, Dict, List, Optional, Union

import mindspore as ms
from mindspore import nn

from ..utils import logging
from .lora_base import LORA_WEIGHT_NAME, LORA_WEIGHT_NAME_SAFE, LoraBaseMixin, _fetch_state_dict  # noqa: F401
from .lora_conversion_utils import _convert_non_diffusers_lumina2_lora_to_diffusers

logger = logging.get_logger(__name__)

TRANSFORMER_NAME = "transformer"

_HUB_KWARGS = (
    "cache_dir",
    "force_download",
    "proxies",
    "local_files_only",
    "token",
    "revision",
    "subfolder",
    "weight_name",
    "use_safetensors",
)


class Lumina2LoraLoaderMixin(LoraBaseMixin):
    r"""
    Load LoRA layers into [`Lumina2Transformer2DModel`]. Specific to [`Lumina2Pipeline`].
    """

    _lora_loadable_modules = ["transformer"]
    transformer_name = TRANSFORMER_NAME

    @classmethod
    def lora_state_dict(
        cls,
        pretrained_model_name_or_path_or_dict: Union[str, Dict[str, ms.Tensor]],
        **kwargs,
    ):
        r"""
        Return the LoRA state dict in diffusers' format (keys `transformer.<module>.lora_A.weight`, ...).

        Parameters:
            pretrained_model_name_or_path_or_dict (`str` or `os.PathLike` or `dict`):
                A repo id (resolved through the Hugging Face cache), a folder, a safetensors file, or a state dict.
            weight_name (`str`, *optional*): The LoRA file in the folder / repo (default: guessed, preferring
                `pytorch_lora_weights.safetensors`).
            subfolder, cache_dir, force_download, proxies, local_files_only, token, revision: Hub options.
            use_safetensors (`bool`, *optional*): Only safetensors are read; `False` raises.
            return_lora_metadata (`bool`, *optional*, defaults to `False`): Also return the adapter metadata stored in
                the file (`lora_adapter_metadata`), or `None`.
            transformer_config (*optional*): The config of the transformer the LoRA is for (MindSpore addition). An
                original-format (Lumina-Image-2.0 / ComfyUI) LoRA's fused qkv is split with its q / k / v sizes; without
                it the sizes come from the LoRA's shapes (upstream hard-codes the 2B sizes).

        DoRA `dora_scale` keys are dropped with a warning, as upstream.
        """
        # Load the main state dict first which has the LoRA layers for either of
        # transformer and text encoder or both.
        hub = {name: kwargs.pop(name, None) for name in _HUB_KWARGS}
        hub["force_download"] = bool(hub["force_download"])
        return_lora_metadata = kwargs.pop("return_lora_metadata", False)
        transformer_config = kwargs.pop("transformer_config", None)
        # accepted and ignored as upstream: a saving option, and the alphas `load_lora_weights` reads from the file
        kwargs.pop("safe_serialization", None)
        if kwargs.pop("network_alphas", None) is not None:
            raise TypeError(
                "`network_alphas` is read from the LoRA file by `load_lora_weights` / `lora_state_dict`; pass it to "
                "`transformer.load_lora_adapter(..., network_alphas=...)` to give it yourself."
            )
        if kwargs:
            raise TypeError(
                f"lora_state_dict() got unexpected keyword arguments {sorted(kwargs)}: not options of this loader "
                "(diffusers ignores unknown arguments silently; here a misspelled option is not lost)."
            )

        use_safetensors = hub.pop("use_safetensors")
        allow_pickle = False
        if use_safetensors is None:
            use_safetensors = True
            allow_pickle = True

        user_agent = {"file_type": "attn_procs_weights", "framework": "pytorch"}

        state_dict, metadata = _fetch_state_dict(
            pretrained_model_name_or_path_or_dict=pretrained_model_name_or_path_or_dict,
            use_safetensors=use_safetensors,
            user_agent=user_agent,
            allow_pickle=allow_pickle,
            **hub,
        )

        is_dora_scale_present = any("dora_scale" in k for k in state_dict)
        if is_dora_scale_present:
            warn_msg = "It seems like you are using a DoRA checkpoint that is not compatible in Diffusers at the moment. So, we are going to filter out the keys associated to 'dora_scale` from the state dict. If you think this is a mistake please open an issue https://github.com/huggingface/diffusers/issues/new."
            logger.warning(warn_msg)
            state_dict = {k: v for k, v in state_dict.items() if "dora_scale" not in k}

        # conversion.
        non_diffusers = any(k.startswith("diffusion_model.") for k in state_dict)
        if non_diffusers:
            state_dict = _convert_non_diffusers_lumina2_lora_to_diffusers(state_dict, transformer_config)

        out = (state_dict, metadata) if return_lora_metadata else state_dict
        return out

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: Union[str, Dict[str, ms.Tensor]],
        adapter_name: Optional[str] = None,
        hotswap: bool = False,
        **kwargs,
    ):
        """
        Load the LoRA weights into `self.transformer` as the adapter `adapter_name` (see `lora_state_dict` for the
        sources and `PeftAdapterMixin.load_lora_adapter` for `hotswap`). A dict passed in is not modified.

        Args:
            pretrained_model_name_or_path_or_dict (`str` or `os.PathLike` or `dict`):
                A Hub repo id, a folder, a `.safetensors` file or a state dict, in diffusers / PEFT format or in the
                original Lumina-Image-2.0 / ComfyUI format (see `lora_state_dict`).
            adapter_name (`str`, *optional*):
                The name of the adapter, for `set_adapters`, `delete_adapters`, ... (default: `default_<i>`, `i` the
                number of adapters already loaded, or the next free one).
            hotswap (`bool`, *optional*, defaults to `False`):
                Replace the weights of the loaded adapter `adapter_name` in place instead of adding an adapter, so a
                compiled (GRAPH_MODE) model keeps its graph.
            kwargs (*optional*):
                The source options of `lora_state_dict` (`weight_name`, `subfolder`, `cache_dir`, `revision`, ...).

        Raises:
            `ValueError` (the pipeline is left as it was): keys without `lora`, an adapter name in use, keys that match
                no module of the transformer, LoRA weights missing for a targeted module (`lora_A` without `lora_B`),
                wrong shapes, an incompatible hotswap. diffusers warns instead and loads the rest, leaving what is
                missing randomly initialised.
        """
        kwargs.pop("low_cpu_mem_usage", None)

        # if a dict is passed, copy it instead of modifying it inplace
        if isinstance(pretrained_model_name_or_path_or_dict, dict):
            pretrained_model_name_or_path_or_dict = pretrained_model_name_or_path_or_dict.copy()

        transformer = getattr(self, self.transformer_name) if not hasattr(self, "transformer") else self.transformer
        if transformer is not None:
            kwargs.setdefault("transformer_config", transformer.config)

        # First, ensure that the checkpoint is a compatible one and can be successfully loaded.
        kwargs["return_lora_metadata"] = True
        state_dict, metadata = self.lora_state_dict(pretrained_model_name_or_path_or_dict, **kwargs)

        if not state_dict:  # diffusers warns that no key is for the transformer and loads nothing
            raise ValueError("The LoRA state dict is empty: nothing was loaded.")
        is_correct_format = all("lora" in key for key in state_dict.keys())
        if not is_correct_format:
            raise ValueError("Invalid LoRA checkpoint. Make sure all LoRA param names contain `'lora'` substring.")
        # diffusers loads nothing here, with a warning (keys of no transformer) or silently (keys of other components)
        prefix = f"{self.transformer_name}."
        others = sorted(k for k in state_dict if not k.startswith(prefix))
        if len(others) == len(state_dict):
            peft_prefix = "base_model.model."
            if all(k.startswith(peft_prefix) for k in others):
                advice = (
                    f" Its keys look like a PEFT model's (`{peft_prefix}`): load it into the transformer itself with "
                    f'`pipe.{self.transformer_name}.load_lora_adapter(..., prefix="{peft_prefix[:-1]}")`.'
                )
            else:
                advice = (
                    " If it is a transformer-level LoRA (keys such as `layers.0.attn.to_q.lora_A.weight`, as "
                    f"`save_lora_adapter` writes them), load it with `pipe.{self.transformer_name}.load_lora_adapter(..., "
                    "prefix=None)`."
                )
            raise ValueError(
                f"The LoRA has no `{prefix}` keys (e.g. {others[:3]}): it is neither in diffusers' Lumina2 format nor in "
                "the original Lumina-Image-2.0 one (`diffusion_model.` keys); other formats (kohya `lora_unet_`, ...) "
                f"are not converted. Nothing was loaded.{advice}"
            )
        if others:
            logger.warning(
                f"{len(others)} LoRA keys are not for the {self.transformer_name} (the only LoRA-loadable component of "
                f"{type(self).__name__}) and are not loaded: {others[:5]}{' ...' if len(others) > 5 else ''}"
            )

        self.load_lora_into_transformer(
            state_dict,
            transformer=transformer,
            adapter_name=adapter_name,
            metadata=metadata,
            _pipeline=self,
            hotswap=hotswap,
        )

    @classmethod
    def load_lora_into_transformer(
        cls,
        state_dict,
        transformer,
        adapter_name=None,
        _pipeline=None,
        low_cpu_mem_usage=False,
        hotswap: bool = False,
        metadata=None,
    ):
        """
        Load the `transformer.`-prefixed LoRA weights of `state_dict` into `transformer` (see
        `PeftAdapterMixin.load_lora_adapter`).
        """
        # Load the layers corresponding to transformer.
        logger.info(f"Loading {cls.transformer_name}.")
        transformer.load_lora_adapter(
            state_dict,
            network_alphas=None,
            adapter_name=adapter_name,
            metadata=metadata,
            _pipeline=_pipeline,
            low_cpu_mem_usage=low_cpu_mem_usage,
            hotswap=hotswap,
        )

    @classmethod
    def save_lora_weights(
        cls,
        save_directory: Union[str, os.PathLike],
        transformer_lora_layers: Dict[str, Union[nn.Cell, ms.Tensor]] = None,
        is_main_process: bool = True,
        weight_name: str = None,
        save_function: Callable = None,
        safe_serialization: bool = True,
        transformer_lora_adapter_metadata: Optional[dict] = None,
    ):
        r"""
        Save the LoRA parameters corresponding to the transformer, as a safetensors file diffusers loads too.

        Arguments:
            save_directory (`str` or `os.PathLike`):
                Directory to save LoRA parameters to. Will be created if it doesn't exist.
            transformer_lora_layers (`dict[str, ms.Tensor]` or `nn.Cell`):
                State dict of the LoRA layers corresponding to the `transformer` (e.g.
                `mindone.peft.get_peft_model_state_dict(pipe.transformer, adapter_name=...)`).
            is_main_process (`bool`, *optional*, defaults to `True`):
                Whether the process calling this is the main process or not (only the main process writes).
            weight_name (`str`, *optional*): Name of the file (default `pytorch_lora_weights.safetensors`).
            save_function (`Callable`, *optional*): `save_function(state_dict, path)` replacing the safetensors writer.
            safe_serialization (`bool`, *optional*, defaults to `True`): Safetensors are written either way (`False`, upstream's
                pickle file, logs a warning), unless `save_function` is set.
            transformer_lora_adapter_metadata (`dict`, *optional*):
                LoRA adapter metadata associated with the transformer to be serialized with the state dict (e.g.
                `pipe.transformer.peft_config[adapter_name].to_dict()`).
        """
        lora_layers = {}
        lora_metadata = {}

        if transformer_lora_layers:
            lora_layers[cls.transformer_name] = transformer_lora_layers
            lora_metadata[cls.transformer_name] = transformer_lora_adapter_metadata

        if not lora_layers:
            raise ValueError("You must pass at least one of `transformer_lora_layers` or `text_encoder_lora_layers`.")

        cls._save_lora_weights(
            save_directory=save_directory,
            lora_layers=lora_layers,
            lora_metadata=lora_metadata,
            is_main_process=is_main_process,
            weight_name=weight_name,
            save_function=save_function,
            safe_serialization=safe_serialization,
        )

    def fuse_lora(
        self,
        components: List[str] = ["transformer"],  # noqa: B006 (upstream's default)
        lora_scale: float = 1.0,
        safe_fusing: bool = False,
        adapter_names: Optional[List[str]] = None,
        **kwargs,
    ):
        r"""
        Fuses the LoRA parameters into the original parameters of the transformer.

        Args:
            components (`list[str]`, defaults to `["transformer"]`): LoRA-injectable components to fuse the LoRAs into.
            lora_scale (`float`, defaults to 1.0):
                Controls how much to influence the outputs with the LoRA parameters.
            safe_fusing (`bool`, defaults to `False`):
                Whether to check fused weights for NaN values before fusing and if values are NaN not fusing them
                (a `ValueError` is raised and nothing changes).
            adapter_names (`list[str]`, *optional*):
                Adapter names to be used for fusing. If nothing is passed, all active adapters will be fused.
        """
        super().fuse_lora(
            components=components,
            lora_scale=lora_scale,
            safe_fusing=safe_fusing,
            adapter_names=adapter_names,
            **kwargs,
        )

    def unfuse_lora(self, components: List[str] = ["transformer"], **kwargs):  # noqa: B006 (upstream's default)
        r"""
        Reverses the effect of `pipe.fuse_lora()`: the base weights are restored exactly.

        Args:
            components (`list[str]`, defaults to `["transformer"]`): LoRA-injectable components to unfuse LoRA from.
        """
        super().unfuse_lora(components=components, **kwargs)
