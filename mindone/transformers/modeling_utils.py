# Copyright 2018 The Google AI Language Team Authors, Facebook AI Research authors and The HuggingFace Inc. team.
# Copyright (c) 2018, NVIDIA CORPORATION.  All rights reserved.
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
"""PreTrainedModel: `from_pretrained` / `save_pretrained` of Hugging Face transformers checkpoints for MindSpore cells.

Adapted from transformers v5.24 `modeling_utils.py`; MindSpore changes: only the loading/saving core (no generation,
tensor parallelism, quantization, hub upload or attention registry). Configs are transformers' own config classes.
Models are built under `no_init_parameters` and filled from safetensors files, read one tensor at a time, by mindone's
core loader (`mindone.diffusers.models.model_loading_utils`), which validates every key and shape before writing.
`mindspore_dtype=` replaces `torch_dtype=`; without it parameters stay float32 (a bf16 checkpoint widens exactly).
"""

import copy
import json
import os
import re
from typing import Optional, Union

import numpy as np

import mindspore as ms
from mindspore import nn
from mindspore.nn.utils import no_init_parameters

from ..diffusers.models.model_loading_utils import (
    add_variant,
    check_save_directory,
    load_checkpoint_into_model,
    load_state_dict_into_model,
    named_parameters,
    resolve_weight_files,
    save_state_dict_sharded,
    warn_if_pickle_requested,
)
from ..diffusers.models.modeling_utils import CellUtilsMixin, cast_cell, reject_unsupported_kwargs
from ..diffusers.utils import dtype_to_str, logging, pop_mindspore_dtype, str_to_dtype
from ..diffusers.utils.unsupported import MODEL_METHODS, add_unsupported_methods, refuse_register_for_auto_class
from ..peft import invalidate_compiled_graphs
from ..safetensors.mindspore import SafetensorError, check_tensors, safe_open

logger = logging.get_logger(__name__)

CONFIG_NAME = "config.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"

# transformers 5 loading options this port has no counterpart for: name -> (transformers' default, what to do instead).
# Refused with the advice unless left at that default (or None / False); diffusers' list is checked too.
_UNSUPPORTED_LOADING_OPTIONS = {
    "key_mapping": (None, "checkpoint keys are read as saved: rename them and pass the dict as `state_dict=`."),
    "fusion_config": (None, "fused modules are not ported."),
    "generation_config": (None, "there is no generation here: Gemma2Model is the text encoder."),
    "gguf_file": (None, "GGUF checkpoints are not read: use a safetensors checkpoint."),
    "adapter_name": ("default", "load adapters with `mindone.peft` after loading the model."),
    "adapter_kwargs": ({}, "load adapters with `mindone.peft` after loading the model."),
    "tp_plan": (None, "there is no tensor parallelism in this port."),
    "tp_size": (None, "there is no tensor parallelism in this port."),
    "device_mesh": (None, "there is no distributed loading in this port."),
    "distributed_config": (None, "there is no distributed loading in this port."),
    "use_kernels": (False, "Hub kernels are not used by this port."),
    "kernel_config": (None, "Hub kernels are not used by this port."),
    "allow_all_kernels": (False, "Hub kernels are not used by this port."),
    "offload_buffers": (False, "there is no offloading in this port."),
}


def _check_config_file_kind(config_file: str, config_class) -> None:
    """A diffusers component's config.json (a pipeline folder's VAE, say): transformers warns and builds a default
    config, and the load then fails on hundreds of missing keys; here the config is named."""
    try:
        with open(config_file, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return  # unreadable: `config_class.from_pretrained` reports it
    if not isinstance(raw, dict):
        return
    # another `model_type` is loaded with transformers' warning (architectures may share weights)
    if "_class_name" in raw:
        found = f"`_class_name` {raw['_class_name']!r} (a diffusers config)"
        raise ValueError(
            f"{config_file} is not a {config_class.__name__} (`model_type` {config_class.model_type!r}): it has "
            f"{found}. Point `from_pretrained` to the {config_class.model_type} model's folder (in a pipeline folder: "
            '`subfolder="text_encoder"`).'
        )


def _checkpoint_keys(files):
    keys = []
    for file in files:
        try:
            keys.extend(safe_open(file).keys())
        except SafetensorError:
            pass  # the core loader reports unreadable files with its own error
    return keys


def _prefix_key_mapping(model: nn.Cell, prefix: str, checkpoint_keys):
    """Checkpoint key -> model key, for checkpoints saved from a model with (or without) the base model prefix.

    A `Gemma2ForCausalLM` checkpoint stores `model.layers.0...` plus head weights (`lm_head.weight`); loading it into
    the base model strips `model.` and drops the keys outside the base model, as transformers does. Returns `None` when
    the checkpoint already uses the model's own names."""
    if not prefix:
        return None
    start = prefix + "."
    model_has_prefix = any(k.startswith(start) for k in named_parameters(model))
    checkpoint_has_prefix = any(k.startswith(start) for k in checkpoint_keys)
    if checkpoint_has_prefix and not model_has_prefix:
        dropped = [k for k in checkpoint_keys if not k.startswith(start)]
        if dropped:
            logger.info(f"Some checkpoint weights are not used by {type(model).__name__}: {sorted(dropped)[:12]}")
        return lambda key: key[len(start) :] if key.startswith(start) else None
    if model_has_prefix and not checkpoint_has_prefix:
        return lambda key: start + key
    return None


_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")


def _layer_index(key: Optional[str]) -> Optional[int]:
    match = _LAYER_KEY.match(key) if key is not None else None
    return int(match.group(1)) if match else None


def _layers_beyond(model_keys, num_layers: Optional[int]) -> set:
    """Indices of the `layers.<i>.` keys at or beyond `num_layers`."""
    if num_layers is None:
        return set()
    indices = {_layer_index(k) for k in model_keys}
    return {i for i in indices if i is not None and i >= num_layers}


_SAFETENSORS_FLOATS = {"F64": ms.float64, "F32": ms.float32, "F16": ms.float16, "BF16": ms.bfloat16}


def _checkpoint_dtype(files=None, state_dict=None):
    """The dtype of the first floating tensor of a checkpoint (transformers' `get_state_dict_dtype`), or None."""
    if state_dict is not None:
        for value in state_dict.values():
            name = str(getattr(value, "dtype", "")).replace("torch.", "").lower()
            if name in ("float64", "float32", "float16", "bfloat16"):
                return str_to_dtype(name)
        return None
    if files:
        with safe_open(files[0], framework="np") as f:
            for key in f.keys():
                if f.get_dtype(key) in _SAFETENSORS_FLOATS:
                    return _SAFETENSORS_FLOATS[f.get_dtype(key)]
    return None


def _requested_dtype(mindspore_dtype, config, files=None, state_dict=None):
    """The dtype to cast to: `mindspore_dtype` (a dtype or its name), or for `"auto"` the one the config records,
    else the checkpoint's (its first floating tensor's, as transformers)."""
    if isinstance(mindspore_dtype, str) and mindspore_dtype == "auto":
        recorded = getattr(config, "dtype", None)
        if recorded is not None:
            return str_to_dtype(str(recorded))
        return _checkpoint_dtype(files, state_dict)
    return str_to_dtype(mindspore_dtype)


def _fp32_modules(cls, dtype):
    """transformers' rule for the parameters kept in float32 when loading in `dtype`: `_keep_in_fp32_modules` for
    float16 only, `_keep_in_fp32_modules_strict` for float16 and bfloat16; patterns (`*` a wildcard) searched in the
    parameter name. A predicate of the name (diffusers matches whole dotted parts instead)."""
    patterns = list(cls._keep_in_fp32_modules or ()) if dtype == ms.float16 else []
    if dtype in (ms.float16, ms.bfloat16):
        patterns += list(cls._keep_in_fp32_modules_strict or ())
    if not patterns:
        return ()
    regex = re.compile("|".join(p.replace("*", ".*") for p in patterns))
    return lambda name: regex.search(name) is not None


def _load_state_dict(model, state_dict, model_keys, dropped_layers, dtype):
    """`from_pretrained(..., state_dict=...)`: the dict's tensors (MindSpore, NumPy or torch) under the model's keys,
    head weights and layers beyond the config's left out, checked and written as a checkpoint file is."""
    values = {}
    for key, value in state_dict.items():
        name = model_keys[key]
        if name is None or _layer_index(name) in dropped_layers:
            continue
        values[name] = value
    load_state_dict_into_model(model, values, strict=True, source="the passed state_dict")
    if dtype is not None:
        cast_cell(model, dtype, _fp32_modules(type(model), dtype))


class PreTrainedModel(CellUtilsMixin):
    r"""
    Base class for all models of mindone.transformers.

    [`PreTrainedModel`] stores the configuration of the model (a transformers `PreTrainedConfig`) and handles loading
    and saving Hugging Face checkpoints.

    Class attributes (overridden by derived classes):

        - **config_class** -- The transformers configuration class of the architecture (e.g. `Gemma2Config`).
        - **base_model_prefix** (`str`) -- The attribute name of the base model in models with a head (e.g. `"model"`),
          used to load head-model checkpoints into the base model.
        - **main_input_name** (`str`) -- The name of the principal input to the model (`input_ids` for NLP models).
    """

    config_class = None
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = None
    _keep_in_fp32_modules = None  # kept in float32 when loading in float16 (transformers' rule, `_fp32_modules`)
    _keep_in_fp32_modules_strict = None  # ... in float16 or bfloat16
    _keys_to_ignore_on_load_unexpected = None
    _keys_to_ignore_on_load_missing = None

    def __init__(self, config, *inputs, **kwargs):
        super().__init__()
        if self.config_class is not None and not isinstance(config, self.config_class):
            raise TypeError(
                f"Parameter `config` in `{type(self).__name__}(config)` should be an instance of "
                f"`{self.config_class.__name__}`, got {type(config).__name__}. To load a pretrained model use "
                f"`{type(self).__name__}.from_pretrained(path_or_repo_id)`."
            )
        if inputs or kwargs:
            raise TypeError(f"{type(self).__name__} takes only `config`, got extra arguments {inputs} {kwargs}.")
        self.config = config
        self.name_or_path = config.name_or_path
        # as transformers: the instance's are sets (loading reads the class attributes)
        self._keep_in_fp32_modules = set(type(self)._keep_in_fp32_modules or [])
        self._keep_in_fp32_modules_strict = set(type(self)._keep_in_fp32_modules_strict or [])

    @classmethod
    def _from_config(cls, config, mindspore_dtype=None, attn_implementation: Optional[str] = None, **kwargs):
        """A model of `config` with randomly initialized weights, in `mindspore_dtype` (default float32), as
        transformers' `_from_config` (which `AutoModel.from_config` calls)."""
        mindspore_dtype = pop_mindspore_dtype(kwargs, mindspore_dtype)
        reject_unsupported_kwargs(kwargs, "_from_config")
        if kwargs:
            raise TypeError(f"{cls.__name__}._from_config got unexpected keyword arguments {sorted(kwargs)}.")
        if attn_implementation not in (None, "eager"):
            raise ValueError(
                f"`attn_implementation` must be None or 'eager' (the only attention path of this port), "
                f"got {attn_implementation!r}."
            )
        model = cls(copy.deepcopy(config))
        dtype = _requested_dtype(mindspore_dtype, config)
        if dtype is not None:
            model.to(dtype)
        model.config.dtype = dtype_to_str(model.dtype)  # as transformers: the dtype the model is in
        return model

    register_for_auto_class = classmethod(refuse_register_for_auto_class)

    def tie_weights(self) -> None:
        """Nothing to tie: the base models this package ports have no language-model head."""

    def post_init(self) -> None:
        """Nothing to do: parameters are initialized when the model is built, or loaded (transformers' `post_init`
        initializes the weights that are not loaded yet)."""

    def enable_input_require_grads(self) -> None:
        """Nothing to do: transformers makes the embeddings' output require gradients so that torch's checkpointed
        layers of a frozen-embedding model get them; MindSpore's recompute does not need it."""

    def disable_input_require_grads(self) -> None:
        """Nothing to do (see `enable_input_require_grads`)."""

    def get_output_embeddings(self) -> Optional[nn.Cell]:
        """The language-model head, `None` for the base models this package ports (as transformers)."""
        return None

    @classmethod
    def can_generate(cls) -> bool:
        """Whether the model can `generate`: never here (no generation, no language-model head)."""
        return False

    def resize_token_embeddings(
        self,
        new_num_tokens: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        mean_resizing: bool = True,
    ) -> nn.Cell:
        """
        Resize the input token embeddings to `new_num_tokens` rows (rounded up to a multiple of `pad_to_multiple_of`),
        as transformers does: the first rows are kept, added rows are drawn (NumPy's global generator) from a normal
        distribution with the old rows' mean and covariance (`mean_resizing=True`) or with the config's
        `initializer_range`, and `config.vocab_size` follows. Returns the (same) embedding cell.
        """
        embeddings = self.get_input_embeddings()
        if not isinstance(getattr(embeddings, "weight", None), ms.Parameter):
            raise TypeError(
                f"`resize_token_embeddings` needs an embedding cell with a `weight` table (the model's own, or "
                f"`mint.nn.Embedding`), got {type(embeddings).__name__}."
            )
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int):
                raise ValueError(
                    f"Asking to pad the embedding matrix to a multiple of `{pad_to_multiple_of}`, which is not and "
                    "integer. Please make sure to pass an integer"
                )
            if new_num_tokens is None:
                new_num_tokens = embeddings.weight.shape[0]
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        if new_num_tokens is None:
            return embeddings
        old = embeddings.weight.astype(ms.float32).asnumpy()
        old_num_tokens, dim = old.shape
        if new_num_tokens != old_num_tokens:
            weight = np.empty((new_num_tokens, dim), dtype=np.float32)
            kept = min(old_num_tokens, new_num_tokens)
            weight[:kept] = old[:kept]
            added = new_num_tokens - old_num_tokens
            if added > 0 and mean_resizing:
                logger.warning(
                    "The new embeddings will be initialized from a multivariate normal distribution that has old "
                    "embeddings' mean and covariance. To disable this, use `mean_resizing=False`"
                )
                mean = old.mean(axis=0)
                covariance = (old - mean).T @ (old - mean) / old_num_tokens
                try:  # transformers samples when 1e-9 * covariance is positive definite, else uses the mean
                    factor = np.linalg.cholesky(1e-9 * covariance.astype(np.float64))
                    weight[old_num_tokens:] = mean + np.random.standard_normal((added, dim)) @ factor.T
                except np.linalg.LinAlgError:
                    weight[old_num_tokens:] = mean
            elif added > 0:
                std = getattr(self.config, "initializer_range", 0.02)
                weight[old_num_tokens:] = np.random.normal(0.0, std, (added, dim))
            embeddings.weight.set_data(ms.Tensor(weight).astype(embeddings.weight.dtype))
            if getattr(embeddings, "padding_idx", None) is not None and new_num_tokens - 1 < embeddings.padding_idx:
                embeddings.padding_idx = None
        embeddings.num_embeddings = new_num_tokens
        self.config.vocab_size = new_num_tokens
        for model in (self, self.base_model):
            if hasattr(model, "vocab_size"):
                model.vocab_size = new_num_tokens
        invalidate_compiled_graphs(self)
        return embeddings

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        """Recompute each decoder layer's activations in the backward pass (in training mode), through
        `mindspore.recompute`. `gradient_checkpointing_kwargs` takes transformers' `{"use_reentrant": ...}` (the
        reentrant form is always used: MindSpore's other form fails in PyNative, see the VAE's `Encoder`)."""
        if not self.supports_gradient_checkpointing:
            raise ValueError(f"{type(self).__name__} does not support gradient checkpointing.")
        unknown = sorted(set(gradient_checkpointing_kwargs or {}) - {"use_reentrant"})
        if unknown:
            raise ValueError(f"`gradient_checkpointing_kwargs` {unknown} are not supported (only `use_reentrant`).")
        self._set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        """Turn gradient checkpointing off."""
        if self.supports_gradient_checkpointing:
            self._set_gradient_checkpointing(False)

    @property
    def base_model(self) -> nn.Cell:
        return getattr(self, self.base_model_prefix, self)

    def get_input_embeddings(self) -> nn.Cell:
        base = self.base_model
        if base is not self:
            return base.get_input_embeddings()
        raise NotImplementedError(f"{type(self).__name__} does not define `get_input_embeddings`.")

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        is_main_process: bool = True,
        state_dict: Optional[dict] = None,
        push_to_hub: bool = False,
        max_shard_size: Union[int, str] = "50GB",
        variant: Optional[str] = None,
        safe_serialization: bool = True,
        **kwargs,
    ):
        """
        Save a model and its configuration file to a directory, so that it can be re-loaded using
        [`~PreTrainedModel.from_pretrained`] (and by transformers' `from_pretrained`).

        Arguments:
            save_directory (`str` or `os.PathLike`):
                Directory to which to save. Will be created if it doesn't exist.
            is_main_process (`bool`, *optional*, defaults to `True`):
                Whether the process calling this is the main process; the others write nothing.
            state_dict (`dict` of `ms.Tensor`, *optional*):
                The state dictionary to save instead of the model's parameters.
            push_to_hub (`bool`, *optional*, defaults to `False`):
                Not supported (no Hub access); must be `False`.
            max_shard_size (`int` or `str`, *optional*, defaults to `"50GB"`):
                The maximum size for a checkpoint before being sharded (e.g. `"5GB"`, `"100MB"`, or bytes).
            variant (`str`, *optional*):
                If specified, weights are saved in the format `model.<variant>.safetensors`.
            safe_serialization (`bool`, *optional*, defaults to `True`):
                Safetensors are always written: `False` (upstream's pickle files) logs a warning and writes safetensors.
        """
        check_save_directory(save_directory, max_shard_size)
        warn_if_pickle_requested(safe_serialization, f"the {type(self).__name__}")
        if push_to_hub:
            raise NotImplementedError("`push_to_hub=True` is not supported: upload the folder with huggingface_hub.")
        unsupported = sorted(k for k, v in kwargs.items() if k not in ("token", "save_peft_format") and v)
        if unsupported:
            raise TypeError(f"`save_pretrained` got unsupported arguments {unsupported}.")
        if state_dict is not None:
            check_tensors(state_dict)  # before the config is written
        os.makedirs(save_directory, exist_ok=True)
        if not is_main_process:
            return  # as transformers: only the saving rank writes (config and weights)
        config = copy.deepcopy(self.config)
        config.architectures = [type(self).__name__]
        config.dtype = dtype_to_str(self.dtype)
        config.save_pretrained(save_directory)
        tensors = state_dict if state_dict is not None else self.state_dict()
        save_state_dict_sharded(
            tensors,
            save_directory,
            add_variant(SAFE_WEIGHTS_NAME, variant),
            add_variant(SAFE_WEIGHTS_INDEX_NAME, variant),
            max_shard_size,
            metadata={"format": "pt"},
            index_metadata={"total_parameters": self.num_parameters()},
        )
        logger.info(f"Model weights saved in {save_directory}")

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *model_args,
        config=None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: Optional[Union[str, bool]] = None,
        revision: str = "main",
        use_safetensors: Optional[bool] = None,
        mindspore_dtype=None,
        subfolder: str = "",
        variant: Optional[str] = None,
        attn_implementation: Optional[str] = None,
        **kwargs,
    ):
        r"""
        Instantiate a pretrained MindSpore model from a Hugging Face checkpoint (safetensors).

        Parameters:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A repo id (e.g. `google/gemma-2-2b`) resolved through the Hugging Face cache, or a path to a directory
                with `config.json` and `model.safetensors` (or `model.safetensors.index.json` and its shards), saved by
                transformers or by this class. Checkpoints of the model with a head (keys prefixed with
                `base_model_prefix`, e.g. `Gemma2ForCausalLM`) load into the base model; head weights are ignored.
            config (`PreTrainedConfig`, `str` or `os.PathLike`, *optional*):
                A config instance or a path to its directory, used instead of the checkpoint's `config.json`.
            cache_dir (`str` or `os.PathLike`, *optional*):
                Path to the Hugging Face cache directory to use.
            force_download (`bool`, *optional*, defaults to `False`):
                Whether to force the (re-)download of the files.
            local_files_only (`bool`, *optional*, defaults to `False`):
                Whether to only look at local files (no download).
            token (`str` or `bool`, *optional*):
                The token to use as HTTP bearer authorization for remote files.
            revision (`str`, *optional*, defaults to `"main"`):
                The specific model version to use (branch name, tag name or commit id).
            use_safetensors (`bool`, *optional*):
                Only safetensors are read; `False` raises.
            mindspore_dtype (`ms.Type` or `str`, *optional*):
                Cast the floating parameters to this dtype. `"auto"` uses the `dtype` recorded in `config.json`.
                Defaults to float32.
            subfolder (`str`, *optional*, defaults to `""`):
                The subfolder of the model files in the repo or directory (e.g. `"text_encoder"`).
            variant (`str`, *optional*):
                Load weights from a variant file name such as `model.fp16.safetensors`.
            attn_implementation (`str`, *optional*):
                Only the eager math path exists: `None` or `"eager"`.
            output_loading_info (`bool`, *optional*, defaults to `False`):
                Also return upstream's loading report: a dict of `missing_keys`, `unexpected_keys` (the head weights of
                a checkpoint with a head), `mismatched_keys` and `error_msgs`. Other key problems raise instead.
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Update the configuration after it is loaded (e.g. `num_hidden_layers=2`).
        """
        mindspore_dtype = pop_mindspore_dtype(kwargs, mindspore_dtype)
        reject_unsupported_kwargs(kwargs, "from_pretrained")  # False is transformers' default of several of them
        for name, (default, hint) in _UNSUPPORTED_LOADING_OPTIONS.items():
            reject_unsupported_kwargs(kwargs, "from_pretrained", {name: hint}, accepted=(None, False, default))
        output_loading_info = kwargs.pop("output_loading_info", False)
        state_dict = kwargs.pop("state_dict", None)
        if pretrained_model_name_or_path is None and (
            state_dict is None or config is None or isinstance(config, (str, os.PathLike))
        ):
            raise ValueError(
                "`pretrained_model_name_or_path` is None: pass a folder or repo id, or a config instance and a "
                "`state_dict` (transformers' `from_pretrained(None, config=config, state_dict=state_dict)`)."
            )
        for name in ("trust_remote_code", "from_tf", "from_flax"):
            if kwargs.pop(name, False):
                raise ValueError(f"`{name}=True` is not supported by mindone's `from_pretrained`.")
        # options without effect here (`weights_only`, `disable_mmap`: pickle files and memory maps are not used)
        ignored = ("low_cpu_mem_usage", "proxies", "_from_pipeline", "_from_auto", "user_agent", "max_memory")
        for name in ignored + ("weights_only", "disable_mmap", "tqdm_class", "_commit_hash"):
            kwargs.pop(name, None)
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no extra positional arguments, got {model_args}.")
        if use_safetensors is False:
            raise ValueError("`use_safetensors=False` is not supported: only safetensors checkpoints are read.")
        if attn_implementation not in (None, "eager"):
            raise ValueError(
                f"`attn_implementation` must be None or 'eager' (the only attention path of this port), "
                f"got {attn_implementation!r}."
            )
        hub = dict(
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            revision=revision,
        )

        # 1. config
        if config is None or isinstance(config, (str, os.PathLike)):
            config_path = pretrained_model_name_or_path if config is None else config
            local_folder = os.path.join(os.fspath(config_path), subfolder or "")
            config_file = os.path.join(local_folder, CONFIG_NAME)
            if os.path.isdir(local_folder) and not os.path.isfile(config_file):
                # transformers 5 would go on with a default config, then miss most of the checkpoint's keys
                raise EnvironmentError(
                    f"{local_folder} has no {CONFIG_NAME}: save the model's config there, or pass `config=`."
                )
            if os.path.isfile(config_file):
                _check_config_file_kind(config_file, cls.config_class)
            try:
                config, unused = cls.config_class.from_pretrained(
                    config_path, subfolder=subfolder, return_unused_kwargs=True, **hub, **kwargs
                )
            except OSError as e:
                if os.path.isfile(config_file):
                    raise EnvironmentError(
                        f"Cannot read {config_file} as a {cls.config_class.__name__}: {e}"
                    ) from None
                raise EnvironmentError(
                    f"Cannot load the {cls.config_class.__name__} of {os.fspath(config_path)!r} "
                    f"(subfolder={subfolder!r}): no config.json in that folder, and it is not a repo id available "
                    f"in the Hugging Face cache or on the Hub. ({e})"
                ) from None
        else:
            if not isinstance(config, cls.config_class):
                raise TypeError(
                    f"`config` must be a {cls.config_class.__name__}, a path or None, got {type(config).__name__}."
                )
            config = copy.deepcopy(config)
            unused = {}
            for key, value in kwargs.items():
                if hasattr(config, key):
                    setattr(config, key, value)
                else:
                    unused[key] = value
        if unused:
            raise TypeError(
                f"{cls.__name__}.from_pretrained got unexpected keyword arguments {sorted(unused)} (neither loading "
                f"options nor attributes of {cls.config_class.__name__})."
            )
        if pretrained_model_name_or_path is not None:
            config.name_or_path = os.fspath(pretrained_model_name_or_path)
        num_layers, layer_types = getattr(config, "num_hidden_layers", None), getattr(config, "layer_types", None)
        if isinstance(num_layers, int) and isinstance(layer_types, list) and len(layer_types) > num_layers:
            # fewer layers than the checkpoint's config: transformers keeps all its `layer_types`, and then refuses to
            # save the config; the first ones are the loaded layers'
            config.layer_types = layer_types[:num_layers]

        # 2. weight files (single file or shard index), or the passed state dict, and dtype
        files = None
        if state_dict is None:
            files = resolve_weight_files(
                pretrained_model_name_or_path,
                SAFE_WEIGHTS_NAME,
                SAFE_WEIGHTS_INDEX_NAME,
                subfolder=subfolder or None,
                variant=variant,
                prefer_single_file=True,  # transformers reads model.safetensors before an index beside it
                **hub,
            )
        mindspore_dtype = _requested_dtype(mindspore_dtype, config, files, state_dict)

        # 3. build without initializing parameters, then fill them from the checkpoint
        with no_init_parameters():
            model = cls(config)
        checkpoint_keys = _checkpoint_keys(files) if state_dict is None else list(state_dict)
        key_mapping = _prefix_key_mapping(model, cls.base_model_prefix, checkpoint_keys)
        model_keys = {k: key_mapping(k) if key_mapping is not None else k for k in checkpoint_keys}  # None: a head's
        # a config with fewer layers than the checkpoint (`num_hidden_layers=...`): transformers loads the first
        # layers and reports the others as unexpected keys
        dropped_layers = _layers_beyond(model_keys.values(), getattr(config, "num_hidden_layers", None))
        if dropped_layers:
            logger.warning(
                f"{cls.__name__} has {config.num_hidden_layers} layers: the checkpoint's layers {sorted(dropped_layers)} "
                "are not loaded."
            )
        if state_dict is not None:
            _load_state_dict(model, state_dict, model_keys, dropped_layers, mindspore_dtype)
        else:
            load_checkpoint_into_model(
                model,
                files,
                dtype=mindspore_dtype,
                keep_in_fp32_modules=_fp32_modules(cls, mindspore_dtype),
                ignore_unexpected=list(cls._keys_to_ignore_on_load_unexpected or ())
                + [rf"^layers\.{index}\." for index in sorted(dropped_layers)],
                ignore_missing=cls._keys_to_ignore_on_load_missing or (),
                key_mapping=key_mapping,
            )
        model.set_train(False)
        # as transformers: the dtype the model is in (float32 by default here, whatever the checkpoint recorded)
        model.config.dtype = dtype_to_str(model.dtype)
        if mindspore_dtype is not None:
            logger.info(f"Loaded {cls.__name__} in {dtype_to_str(mindspore_dtype)}.")
        if output_loading_info:
            # any other missing, unexpected or mismatched key has raised `CheckpointError` above
            unexpected = {k for k, key in model_keys.items() if key is None or _layer_index(key) in dropped_layers}
            return model, {
                "missing_keys": set(),
                "unexpected_keys": unexpected,
                "mismatched_keys": set(),
                "error_msgs": [],
            }
        return model


_NO_ADAPTERS = (
    "transformers' PEFT integration is not ported: this package's LoRA engine (`mindone.peft`) adapts the transformer."
)
add_unsupported_methods(
    PreTrainedModel,
    {
        "push_to_hub": MODEL_METHODS["push_to_hub"],
        "cpu": MODEL_METHODS["cpu"],
        "cuda": MODEL_METHODS["cuda"],
        "set_attn_implementation": "attention always takes the math path ('eager'); there is no implementation to choose.",
        **{
            name: _NO_ADAPTERS
            for name in (
                "add_adapter",
                "load_adapter",
                "set_adapter",
                "enable_adapters",
                "disable_adapters",
                "active_adapters",
                "get_adapter_state_dict",
                "delete_adapter",
            )
        },
    },
)
