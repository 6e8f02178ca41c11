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
"""ModelMixin: `from_pretrained` / `save_pretrained` for MindSpore cells.

Adapted from diffusers v0.42.1 `models/modeling_utils.py`; MindSpore changes: `mindspore_dtype=` replaces
`torch_dtype=`, models are built under `no_init_parameters` and filled straight from safetensors files, one tensor at a
time (no random init, no second copy), only safetensors are read and written, and device/offload/quantization arguments
do not exist.
"""

import os
import weakref
from typing import Any, Dict, List, Optional, Union

import mindspore as ms
from mindspore import mint, nn
from mindspore.nn.utils import no_init_parameters

from ...peft import invalidate_compiled_graphs
from ...peft.tuners.tuners_utils import IncompatibleKeys, check_dropout_with_recompute
from ..configuration_utils import deprecated_config_attribute, missing_attribute
from ..utils import (
    CONFIG_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    dtype_to_str,
    local_subfolder,
    logging,
    str_to_dtype,
)
from ..utils.mindspore_utils import auto_dtype_as_float32, pop_mindspore_dtype, to_arguments
from ..utils.unsupported import MODEL_METHODS, add_unsupported_methods
from .cpu_layers import ReleasesHeapAfterCompile
from .model_loading_utils import (
    add_variant,
    check_save_directory,
    keeps_fp32,
    load_checkpoint_into_model,
    load_state_dict_into_model,
    named_parameters,
    resolve_weight_files,
    save_state_dict_sharded,
    set_parameter_data,
    warn_if_pickle_requested,
)

logger = logging.get_logger(__name__)

_FLOAT_DTYPES = (ms.float16, ms.float32, ms.bfloat16, ms.float64)
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
_UNSUPPORTED_KWARGS = {
    "torch_dtype": "use `mindspore_dtype=` (e.g. `mindspore_dtype=ms.float32`).",
    "ignore_mismatched_sizes": "the checkpoint's shapes must match the model's (a mismatch raises `CheckpointError`).",
    "device_map": "MindSpore places tensors through the context; there is no device map.",
    "device": "MindSpore places tensors through `ms.set_context(device_target=...)`.",
    "quantization_config": "quantized checkpoints are not supported by this port.",
    "use_flashpack": "FlashPack checkpoints are not supported by this port.",
    "offload_folder": "there is no offloading in this port.",
    "offload_state_dict": "there is no offloading in this port.",
    "dduf_file": "DDUF files are not supported: use the diffusers folder format.",
}


def reject_unsupported_kwargs(
    kwargs: Dict[str, Any], method: str, unsupported: Dict[str, str] = _UNSUPPORTED_KWARGS, accepted=(None, False)
) -> None:
    """Raise a `TypeError` naming `method` and saying what to do instead (`unsupported`: name -> advice) on an upstream
    argument this port does not support, set to a value not in `accepted` (upstream's defaults); drop the others."""
    for name, hint in unsupported.items():
        if kwargs.get(name) not in accepted:
            raise TypeError(f"`{name}` is not supported by mindone's `{method}`: {hint}")
        kwargs.pop(name, None)


_DEPRECATED_ATTENTION_NAMES = (("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0"))


def _deprecated_attention_key_mapping(model: nn.Cell):
    """Upstream's `_fix_state_dict_keys_on_load`: attention blocks flagged `_from_deprecated_attn_block` (a VAE's
    mid-block) read checkpoints written before diffusers 0.14, which named their layers query / key / value /
    proj_attn. Returns a checkpoint key -> model key function, or None when the model has no such block."""
    renames = {}
    for path, cell in model.cells_and_names():
        if getattr(cell, "_from_deprecated_attn_block", False):
            for old, new in _DEPRECATED_ATTENTION_NAMES:
                for kind in ("weight", "bias"):
                    renames[f"{path}.{old}.{kind}"] = f"{path}.{new}.{kind}"
    if not renames:
        return None
    return lambda key: renames.get(key, key)


def cast_cell(cell: nn.Cell, dtype: ms.Type, keep_in_fp32_modules=()) -> nn.Cell:
    """Cast every floating parameter of ``cell`` to ``dtype`` in place (``keep_in_fp32_modules`` stay float32)."""
    cast = False
    for name, param in named_parameters(cell).items():
        if param.dtype not in _FLOAT_DTYPES:
            continue
        target = ms.float32 if keeps_fp32(name, keep_in_fp32_modules) else dtype
        if param.dtype != target:
            if param.has_init:
                param.set_dtype(target)
            else:
                set_parameter_data(param, param.astype(target))
            cast = True
    if cast:
        # a compiled graph keeps the storage and dtypes it was compiled with, and one keyed by integer inputs (Gemma2's
        # token ids) would be reused over the new storage
        invalidate_compiled_graphs(cell)
    return cell


def _is_embedding(cell: nn.Cell) -> bool:
    # MindSpore's embedding cells, and ports of torch `nn.Embedding` subclasses that mark themselves
    return isinstance(cell, (nn.Embedding, mint.nn.Embedding)) or getattr(cell, "is_embedding", False)


# the models alive (`CellUtilsMixin` instances), for `invalidate_models_containing`
_LIVE_MODELS = weakref.WeakSet()


def invalidate_models_containing(cell: nn.Cell, recursive: bool = True) -> None:
    """Make `cell` and every live model that holds it recompile their graphs: a graph of the model compiled before
    folded in what changed on `cell` (an attention processor set with `set_processor`). `recursive=False` for what
    only `cell`'s own methods read: the graphs of its sub-cells, and of the models' other cells, stay."""
    invalidate_compiled_graphs(cell, recursive)
    for model in list(_LIVE_MODELS):
        if model is not cell and any(sub_cell is cell for _, sub_cell in model.cells_and_names()):
            invalidate_compiled_graphs(model, recursive)


class CellUtilsMixin(ReleasesHeapAfterCompile, nn.Cell):
    """dtype helpers and state dict shared by `ModelMixin` and mindone.transformers' `PreTrainedModel`; the C heap freed
    by compiling the model's graph is released before it runs (`ReleasesHeapAfterCompile`)."""

    _keep_in_fp32_modules = None
    # attributes the model's own `construct` and methods read (a model lists its own), folded into compiled graphs of
    # the model as constants (not read by its sub-cells: their graphs stay when one changes)
    _GRAPH_OPTIONS = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _LIVE_MODELS.add(self)

    def __setstate__(self, state):
        # `copy.deepcopy` builds the copy without `__init__`
        super().__setstate__(state)
        _LIVE_MODELS.add(self)

    def __setattr__(self, name: str, value: Any) -> None:
        # a sub-cell replaced (`set_input_embeddings`, `model.norm = ...`) or a graph option changed after a first
        # call: the graphs compiled before would go on with the old one
        if isinstance(value, nn.Cell):
            if self.__dict__.get("_cells", {}).get(name, value) is not value:
                super().__setattr__(name, value)
                invalidate_compiled_graphs(self)
                return
        elif name in self._GRAPH_OPTIONS and name in self.__dict__ and self.__dict__[name] != value:
            super().__setattr__(name, value)
            # read by the model's own methods (the VAE's tiling options), not by its sub-cells: their graphs stay
            invalidate_models_containing(self, recursive=False)
            return
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            # torch's wording (upstream's tests compare it), not MindSpore's "The 'X' object has no attribute"
            raise missing_attribute(self, name) from None

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether gradient checkpointing is on in any sub-cell."""
        return any(getattr(cell, "gradient_checkpointing", False) for _, cell in self.cells_and_names())

    def _set_gradient_checkpointing(self, enable: bool) -> None:
        if enable:
            check_dropout_with_recompute(self, checkpointing=True)
        for _, cell in self.cells_and_names():
            if hasattr(cell, "gradient_checkpointing"):
                cell.gradient_checkpointing = enable
        invalidate_compiled_graphs(self)  # the flag is read in `construct`: compiled graphs folded the old value

    @property
    def dtype(self) -> ms.Type:
        """The dtype of the module (the dtype of its first floating parameter)."""
        for _, param in self.parameters_and_names():
            if param.dtype in _FLOAT_DTYPES:
                return param.dtype
        return ms.float32

    def to(self, *args, **kwargs):
        """`.to(dtype)` / `.to(dtype=...)`: cast floating parameters to ``dtype``. As torch's `Module.to`, every
        parameter: `_keep_in_fp32_modules` stay float32 only when loading (`from_pretrained`). No dtype (or `None`)
        changes nothing, as torch's `to()`. A device (`.to("cuda")`, `device=`) raises a `TypeError`: MindSpore has no
        device placement."""
        dtype = to_arguments(args, kwargs)
        if dtype is None:
            return self
        return cast_cell(self, dtype)

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the model's parameters, as upstream's `return_buffers=False`: constants that torch keeps as
        buffers (rotary frequencies, say) are not parameters here and are not counted."""
        # the state dict's parameters: not the LoRA layers' run-time scales (constants PEFT keeps as Python floats)
        return sum(param.size * param.itemsize for param in named_parameters(self).values())

    def float(self):
        """Cast floating parameters to float32."""
        return cast_cell(self, ms.float32)

    def half(self):
        """Cast floating parameters to float16."""
        return cast_cell(self, ms.float16)

    def bfloat16(self):
        """Cast floating parameters to bfloat16."""
        return cast_cell(self, ms.bfloat16)

    def set_train(self, mode: bool = True):
        """MindSpore's `set_train`; a change of mode also makes compiled graphs recompile: `ms.jit` graphs are keyed by
        each cell's phase, which `set_train` sets on the cell it is called on only (a graph compiled for inference was
        reused in training, LoRA dropout never applied, and the other way round)."""
        if mode:
            check_dropout_with_recompute(self, training=True)
        changed = any(cell.training != mode for _, cell in self.cells_and_names())
        super().set_train(mode)
        if changed:
            invalidate_compiled_graphs(self)
        return self

    def eval(self):
        """Inference mode (`set_train(False)`); returns the model."""
        self.set_train(False)
        return self

    def train(self, mode: bool = True):
        """`set_train(mode)`; returns the model."""
        self.set_train(mode)
        return self

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Number of parameters (only those with `requires_grad` if `only_trainable`; without the weights of
        embedding lookups, as upstream's `nn.Embedding` modules, if `exclude_embeddings`)."""
        skip = set()
        if exclude_embeddings:
            # `nn.Embedding` keeps its table in `embedding_table`
            skip = {
                id(cell.weight if hasattr(cell, "weight") else cell.embedding_table)
                for _, cell in self.cells_and_names()
                if _is_embedding(cell)
            }
        return sum(
            int(p.size)
            for p in named_parameters(self).values()
            if (not only_trainable or p.requires_grad) and id(p) not in skip
        )

    def state_dict(self) -> Dict[str, ms.Parameter]:
        """Structural parameter names -> parameters: the keys checkpoints are written with and read by."""
        return named_parameters(self)

    def load_state_dict(self, state_dict: Dict[str, Any], strict: bool = True) -> IncompatibleKeys:
        """torch's `load_state_dict` over the keys of `state_dict()`: values (`ms.Tensor`, NumPy arrays or torch
        tensors) are checked first and copied into the parameters in place, cast to their dtypes; any mismatched shape,
        or with `strict` any missing or unexpected key, raises `CheckpointError` and writes nothing.
        `nn.Cell.load_state_dict` would give each parameter new storage, which a graph compiled by `ms.jit` does not
        see."""
        missing, unexpected = load_state_dict_into_model(self, state_dict, strict=strict)
        return IncompatibleKeys(missing_keys=missing, unexpected_keys=unexpected)


class ModelMixin(CellUtilsMixin):
    r"""
    Base class for all models.

    [`ModelMixin`] takes care of storing the model configuration and provides methods for loading, downloading and
    saving models.

        - **config_name** ([`str`]) -- Filename to save a model to when calling [`~models.ModelMixin.save_pretrained`].
    """

    config_name = CONFIG_NAME
    _automatically_saved_args = ["_diffusers_version", "_class_name", "_name_or_path"]
    _supports_gradient_checkpointing = False
    _keys_to_ignore_on_load_unexpected = None
    _keep_in_fp32_modules = None
    _no_split_modules = None
    _skip_layerwise_casting_patterns = None

    def __init__(self):
        super().__init__()

    @property
    def dtype(self) -> ms.Type:
        """The dtype of the module: under layerwise casting the compute dtype (as upstream), otherwise the dtype of its
        first floating parameter."""
        from ..hooks.layerwise_casting import layerwise_compute_dtype

        return layerwise_compute_dtype(self) or super().dtype

    def enable_layerwise_casting(
        self,
        storage_dtype: Optional[ms.Type] = None,
        compute_dtype: Optional[ms.Type] = None,
        skip_modules_pattern: Optional[tuple] = None,
        skip_modules_classes: Optional[tuple] = None,
        non_blocking: bool = False,
    ) -> None:
        r"""
        Store the weights of the model's linear and convolution layers in `storage_dtype` and compute them in
        `compute_dtype` (upstream's layerwise casting): less memory for the weights, some quality loss. As upstream,
        the patterns of `DEFAULT_SKIP_MODULES_PATTERN` (normalization, patch and position embeddings), the model's
        `_skip_layerwise_casting_patterns` and `_keep_in_fp32_modules`, and LoRA's `lora_A` / `lora_B` layers are
        skipped unless `skip_modules_pattern` is given. It cannot be undone: load the model again for the original
        weights.

        Args:
            storage_dtype (`ms.Type`, *optional*, defaults to `ms.float8_e4m3fn`): The dtype the weights are kept
                in. MindSpore has no float8 cast on CPU: there use `ms.bfloat16` (or `ms.float16`).
            compute_dtype (`ms.Type`, *optional*): The dtype the layers compute in; defaults to the model's dtype.
            skip_modules_pattern (`tuple[str, ...]`, *optional*): Name patterns (`re.search`) of layers to skip.
            skip_modules_classes (`tuple[type, ...]`, *optional*): Layer classes to skip.
            non_blocking (`bool`): Accepted for upstream's signature (no effect).

        ```py
        >>> transformer = Lumina2Transformer2DModel.from_pretrained(path, subfolder="transformer")  # float32
        >>> transformer.enable_layerwise_casting(storage_dtype=ms.bfloat16, compute_dtype=ms.float32)
        ```
        """
        from ..hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN, apply_layerwise_casting

        if storage_dtype is None:
            storage_dtype = ms.float8_e4m3fn  # upstream's default (refused on CPU)
        user_provided_patterns = skip_modules_pattern is not None
        if not user_provided_patterns:
            skip_modules_pattern = DEFAULT_SKIP_MODULES_PATTERN
        skip_modules_pattern = tuple(skip_modules_pattern)
        if self._keep_in_fp32_modules is not None:
            skip_modules_pattern += tuple(self._keep_in_fp32_modules)
        if self._skip_layerwise_casting_patterns is not None:
            skip_modules_pattern += tuple(self._skip_layerwise_casting_patterns)
        if not user_provided_patterns:
            # as upstream, which skips PEFT's adapter layers by default (small, and kept at their precision)
            from ...peft.tuners.lora import LoraLayer

            skip_modules_pattern += tuple(LoraLayer.adapter_layer_names)
        skip_modules_pattern = tuple(set(skip_modules_pattern))
        if compute_dtype is None:
            logger.info("`compute_dtype` not provided when enabling layerwise casting. Using dtype of the model.")
            compute_dtype = self.dtype
        apply_layerwise_casting(self, storage_dtype, compute_dtype, skip_modules_pattern, skip_modules_classes)

    def to(self, *args, **kwargs):
        """`.to(dtype)`: see `CellUtilsMixin.to`; warns, as upstream, when the model has modules to keep in float32."""
        if to_arguments(args, kwargs) is not None and self._keep_in_fp32_modules:
            # upstream warns even when the list is empty
            logger.warning(
                f"There are modules in {self.__class__.__name__} that should be kept in float32: "
                f"{self._keep_in_fp32_modules}. Casting directly with `to()` can lead to inconsistent results; set "
                "`mindspore_dtype` in `from_pretrained()` instead to keep these modules in float32."
            )
        return super().to(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # `nn.Cell.__getattr__` (parameters, sub-cells) first, then upstream's deprecated config-value access
        try:
            return super().__getattr__(name)
        except AttributeError:
            found = deprecated_config_attribute(self, name, "unet")
            if found is None:
                raise
            return found[0]

    def enable_gradient_checkpointing(self, gradient_checkpointing_func=None) -> None:
        """
        Recompute activations in the backward pass instead of storing them (gradient checkpointing), as upstream: in
        the sub-cells that support it (those with a `gradient_checkpointing` attribute), through `mindspore.recompute`,
        in training mode (`model.set_train(True)`). In GRAPH_MODE the flag is read when the graph is built: set it
        before the first compiled call.

        Args:
            gradient_checkpointing_func: not supported (upstream's hook for a custom torch checkpoint function).
        """
        if not self._supports_gradient_checkpointing:
            raise ValueError(
                f"{self.__class__.__name__} does not support gradient checkpointing. Please make sure to set the "
                "boolean attribute `_supports_gradient_checkpointing` to `True` in the class definition."
            )
        if gradient_checkpointing_func is not None:
            raise ValueError(
                "`gradient_checkpointing_func` is not supported: MindSpore's `mindspore.recompute` is used."
            )
        self._set_gradient_checkpointing(True)

    def disable_gradient_checkpointing(self) -> None:
        """Store the activations again (the default)."""
        if self._supports_gradient_checkpointing:
            self._set_gradient_checkpointing(False)

    def _check_no_lora_layers(self) -> None:
        """`save_pretrained` writes plain models only. Upstream writes the adapter-wrapped names
        (`to_q.base_layer.weight`, `to_q.lora_A...`): a folder whose base layers load back randomly initialised."""
        from ...peft import BaseTunerLayer  # the LoRA engine imports this module

        wrapped = [name for name, cell in self.cells_and_names() if isinstance(cell, BaseTunerLayer)]
        if wrapped:
            raise ValueError(
                f"{type(self).__name__} has LoRA layers ({len(wrapped)}, e.g. `{wrapped[0]}`): save the adapters with "
                "`save_lora_adapter` (or the pipeline's `save_lora_weights`), and the base model after `unload_lora()` "
                "(`fuse_lora()` first to keep the adapters in its weights)."
            )

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        is_main_process: bool = True,
        save_function=None,
        safe_serialization: bool = True,
        variant: Optional[str] = None,
        max_shard_size: Union[int, str] = "10GB",
        push_to_hub: bool = False,
        **kwargs,
    ):
        """
        Save a model and its configuration file to a directory so that it can be reloaded using the
        [`~models.ModelMixin.from_pretrained`] class method (and by diffusers' `from_pretrained`).

        Arguments:
            save_directory (`str` or `os.PathLike`):
                Directory to save a model and its configuration file to. Will be created if it doesn't exist.
            is_main_process (`bool`, *optional*, defaults to `True`):
                Whether the process calling this is the main process; only it writes the config.
            save_function (`Callable`, *optional*):
                Ignored, as upstream does with safetensors (e.g. `accelerator.save` passed by training scripts).
            safe_serialization (`bool`, *optional*, defaults to `True`):
                Safetensors are always written: `False` (upstream's pickle files) logs a warning and writes safetensors.
            variant (`str`, *optional*):
                If specified, weights are saved in the format `diffusion_pytorch_model.<variant>.safetensors`.
            max_shard_size (`int` or `str`, defaults to `"10GB"`):
                The maximum size for a checkpoint before being sharded (e.g. `"5GB"`, `"100MB"`, or bytes).
            push_to_hub (`bool`, *optional*, defaults to `False`):
                Not supported (no Hub access); must be `False`.
        """
        check_save_directory(save_directory, max_shard_size)
        reject_unsupported_kwargs({"use_flashpack": kwargs.get("use_flashpack")}, "save_pretrained")
        warn_if_pickle_requested(safe_serialization, f"the {type(self).__name__}")
        if push_to_hub:
            raise NotImplementedError("`push_to_hub=True` is not supported: upload the folder with huggingface_hub.")
        self._check_no_lora_layers()
        os.makedirs(save_directory, exist_ok=True)
        if is_main_process:
            self.save_config(save_directory)
        weights_name = add_variant(SAFETENSORS_WEIGHTS_NAME, variant)
        index_name = add_variant(SAFE_WEIGHTS_INDEX_NAME, variant)
        save_state_dict_sharded(
            self.state_dict(), save_directory, weights_name, index_name, max_shard_size, metadata={"format": "pt"}
        )
        logger.info(f"Model weights saved in {save_directory}")

    @classmethod
    def _pop_loading_kwargs(cls, kwargs: Dict[str, Any]):
        reject_unsupported_kwargs(kwargs, "from_pretrained")
        if kwargs.pop("use_safetensors", None) is False:
            raise ValueError("`use_safetensors=False` is not supported: only safetensors checkpoints are read.")
        for name in ("low_cpu_mem_usage", "user_agent", "_from_pipeline", "mirror", "disable_mmap", "max_memory"):
            kwargs.pop(name, None)
        if kwargs.pop("allow_pickle", False):
            raise ValueError("`allow_pickle=True` is not supported: pickle checkpoints are never read.")
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        return hub

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs):
        r"""
        Instantiate a pretrained MindSpore model from a pretrained model configuration.

        Parameters:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A repo id (e.g. `Alpha-VLLM/Lumina-Image-2.0`) resolved through the Hugging Face cache, or a path to a
                directory containing weights saved with `save_pretrained` (by this port or by diffusers).
            cache_dir (`str` or `os.PathLike`, *optional*):
                Path to a directory where a downloaded pretrained model configuration is cached.
            mindspore_dtype (`ms.Type`, *optional*):
                Override the default `ms.float32` and load the model with another dtype.
            force_download (`bool`, *optional*, defaults to `False`):
                Whether or not to force the (re-)download of the model weights and configuration files.
            proxies (`Dict[str, str]`, *optional*):
                A dictionary of proxy servers to use by protocol or endpoint.
            local_files_only (`bool`, *optional*, defaults to `False`):
                Whether to only load local model weights and configuration files or not.
            token (`str` or *bool*, *optional*):
                The token to use as HTTP bearer authorization for remote files.
            revision (`str`, *optional*, defaults to `"main"`):
                The specific model version to use.
            subfolder (`str`, *optional*, defaults to `""`):
                The subfolder location of a model file within a larger model repository on the Hub or locally.
            variant (`str`, *optional*):
                Load weights from a specified `variant` filename such as `"fp16"`.
            output_loading_info (`bool`, *optional*, defaults to `False`):
                Also return upstream's dict of missing, unexpected and mismatched keys and error messages (all empty
                here: any of them raises `CheckpointError`).
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Update the configuration object after it is loaded (e.g. `norm_eps=1e-6`). The checkpoint must
                still fit the model: an override that drops weights (a smaller `num_layers`) raises `CheckpointError`,
                where diffusers loads the first layers with a warning.
        """
        # upstream: a `torch_dtype` that is not a dtype loads in float32, with a warning
        mindspore_dtype = str_to_dtype(auto_dtype_as_float32(pop_mindspore_dtype(kwargs)))
        subfolder = local_subfolder(pretrained_model_name_or_path, kwargs.pop("subfolder", None), cls.config_name)
        variant = kwargs.pop("variant", None)
        output_loading_info = kwargs.pop("output_loading_info", False)
        hub = cls._pop_loading_kwargs(kwargs)

        config, unused_kwargs = cls.load_config(
            pretrained_model_name_or_path,
            subfolder=subfolder,
            return_unused_kwargs=True,
            return_commit_hash=False,  # passed by the user: a TypeError naming it, as upstream
            **hub,
            **kwargs,
        )
        files = resolve_weight_files(
            pretrained_model_name_or_path,
            SAFETENSORS_WEIGHTS_NAME,
            SAFE_WEIGHTS_INDEX_NAME,
            subfolder=subfolder,
            variant=variant,
            **hub,
        )
        try:
            with no_init_parameters():
                model = cls.from_config(config, **unused_kwargs)
        except (TypeError, ValueError) as e:
            other = config.get("_class_name") if isinstance(config, dict) else None
            if other and other != cls.__name__:
                raise ValueError(
                    f"{pretrained_model_name_or_path} (subfolder={subfolder!r}) holds the config of a {other}, which "
                    f"does not build a {cls.__name__} ({e}). Load it with {other} (or `AutoModel`)."
                ) from e
            raise
        load_checkpoint_into_model(
            model,
            files,
            dtype=mindspore_dtype,
            keep_in_fp32_modules=cls._keep_in_fp32_modules or (),
            ignore_unexpected=cls._keys_to_ignore_on_load_unexpected or (),
            key_mapping=_deprecated_attention_key_mapping(model),
        )
        model.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
        model.set_train(False)
        if mindspore_dtype is not None:
            logger.info(f"Loaded {cls.__name__} in {dtype_to_str(mindspore_dtype)}.")
        if output_loading_info:
            # any missing, unexpected or mismatched key has raised `CheckpointError` above
            return model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
        return model

    def load_weights(self, files: Union[str, os.PathLike, List[str]], mindspore_dtype=None) -> "ModelMixin":
        """Load safetensors file(s) into this model with the checks of `from_pretrained` (no change on failure)."""
        if isinstance(files, (str, os.PathLike)):  # one file
            files = [files]
        if not files:
            raise ValueError("`load_weights` needs at least one safetensors file, got none.")
        load_checkpoint_into_model(
            self,
            [os.fspath(f) for f in files],
            dtype=str_to_dtype(mindspore_dtype),
            keep_in_fp32_modules=self._keep_in_fp32_modules or (),
            ignore_unexpected=self._keys_to_ignore_on_load_unexpected or (),
            key_mapping=_deprecated_attention_key_mapping(self),
        )
        return self


add_unsupported_methods(ModelMixin, MODEL_METHODS)
