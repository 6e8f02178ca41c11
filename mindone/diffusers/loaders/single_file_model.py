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
"""`FromOriginalModelMixin`: load (and write) single-file checkpoints in their original layout.

Adapted from diffusers v0.42.1 `loaders/single_file_model.py`; MindSpore changes: `mindspore_dtype=` replaces
`torch_dtype=`; only `Lumina2Transformer2DModel` and `AutoencoderKL` are mapped; safetensors only (pickle files are
refused); without `config=` the config is inferred from the tensor shapes (upstream downloads a reference repo's
config); the model is built under `no_init_parameters` and filled tensor by tensor from the file after
every key and shape was checked; `save_single_file` writes the original layout back (new).
"""

import os
from typing import Any, Dict, Mapping, Optional, Union

from mindspore.nn.utils import no_init_parameters

from ...safetensors.mindspore import save_file
from ..models.model_loading_utils import load_state_dict_into_model, named_parameters
from ..models.modeling_utils import reject_unsupported_kwargs
from ..utils import PICKLE_SUFFIXES, logging, pop_mindspore_dtype, str_to_dtype
from ..utils.mindspore_utils import auto_dtype_as_float32
from .single_file_utils import (
    COMFYUI_TRANSFORMER_PREFIX,
    LDM_VAE_KEYS,
    CheckpointReader,
    LazyTensor,
    SingleFileComponentError,
    TensorSource,
    _count_blocks,
    convert_ldm_vae_key_plan,
    convert_lumina2_diffusers_to_original,
    convert_lumina2_diffusers_to_original_plan,
    convert_lumina2_key_plan,
    convert_vae_diffusers_to_ldm,
    convert_vae_diffusers_to_ldm_plan,
    create_lumina2_diffusers_config_from_checkpoint,
    create_vae_diffusers_config_from_checkpoint,
    describe_components,
    detect_checkpoint_components,
    load_single_file_checkpoint,
    original_shapes_from_diffusers,
    read_config_file,
    vae_diffusers_keys,
)

logger = logging.get_logger(__name__)

_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
_UNSUPPORTED_KWARGS = {
    "torch_dtype": "use `mindspore_dtype=` (e.g. `mindspore_dtype=ms.bfloat16`).",
    "device": "MindSpore places tensors through `ms.set_context(device_target=...)`.",
    "device_map": "MindSpore places tensors through the context; there is no device map.",
    "quantization_config": "quantized checkpoints are not supported by this port.",
    "original_config": "original (yaml) configs are not read; pass `config=` (a dict, a config.json, or a diffusers "
    "folder / repo id) or nothing to infer the config from the weights.",
}
# accepted and ignored, as upstream's `from_single_file` ignores them (a single file has no variant; it is read as
# safetensors whatever `use_safetensors` says, and pickle files are refused when opened)
_IGNORED_KWARGS = ("low_cpu_mem_usage", "disable_mmap", "user_agent", "use_safetensors", "variant")


def _lumina2_infer_from_diffusers(shapes, source, overrides=None):
    plan = convert_lumina2_diffusers_to_original_plan(shapes, source)
    original = original_shapes_from_diffusers(shapes, plan)
    return create_lumina2_diffusers_config_from_checkpoint(original, source, overrides)


def _vae_infer_from_diffusers(shapes, source, overrides=None):
    config = {"up_block_types": ["UpDecoderBlock2D"] * _count_blocks(shapes, "decoder.up_blocks")}
    plan = convert_vae_diffusers_to_ldm_plan(shapes, config, source)
    return create_vae_diffusers_config_from_checkpoint(original_shapes_from_diffusers(shapes, plan), source, overrides)


# class name -> how its single files are read and written
SINGLE_FILE_LOADABLE_CLASSES = {
    "Lumina2Transformer2DModel": {
        "component": "Lumina-Image-2.0 transformer",
        # families recognised in a file -> whether their keys need converting
        "families": {"lumina2": True, "lumina2-diffusers": False},
        "prefixes": ["", COMFYUI_TRANSFORMER_PREFIX],
        "checkpoint_mapping_fn": convert_lumina2_key_plan,
        "config_mapping_fn": create_lumina2_diffusers_config_from_checkpoint,
        "diffusers_config_mapping_fn": _lumina2_infer_from_diffusers,
        "reverse_mapping_fn": lambda state, config, prefix: convert_lumina2_diffusers_to_original(state, prefix),
        "default_subfolder": "transformer",
        "comfyui_prefix": COMFYUI_TRANSFORMER_PREFIX,
    },
    "AutoencoderKL": {
        "component": "VAE (FLUX `ae.safetensors` / LDM layout)",
        "families": {"ldm-vae": True, "vae-diffusers": False},
        "prefixes": [""] + LDM_VAE_KEYS,
        "checkpoint_mapping_fn": convert_ldm_vae_key_plan,
        "config_mapping_fn": create_vae_diffusers_config_from_checkpoint,
        "diffusers_config_mapping_fn": _vae_infer_from_diffusers,
        "diffusers_keys_fn": vae_diffusers_keys,
        "reverse_mapping_fn": convert_vae_diffusers_to_ldm,
        "default_subfolder": "vae",
        # ComfyUI's VAE loader reads FLUX's `ae.safetensors` layout as is (all-in-one files use `first_stage_model.`)
        "comfyui_prefix": "",
    },
}


def _get_single_file_loadable_mapping_class(cls) -> Optional[str]:
    for klass in cls.__mro__:
        if klass.__name__ in SINGLE_FILE_LOADABLE_CLASSES:
            return klass.__name__
    return None


def _select_component(reader: CheckpointReader, spec: Dict[str, Any]):
    """The view of ``reader`` holding the component of ``spec`` and whether its keys need converting."""
    keys = reader.keys()
    found = detect_checkpoint_components(keys)
    mine = [(f, p) for f, p in found if f in spec["families"] and p in spec["prefixes"]]
    if not mine:
        advice = " Load it with the matching model class."
        # the component under a prefix no format uses (e.g. `diffusion_model.`, `net.`): name it
        for head in sorted({k.split(".", 1)[0] for k in keys if "." in k}):
            inner = [k[len(head) + 1 :] for k in keys if k.startswith(head + ".")]
            if any(f in spec["families"] and p in spec["prefixes"] for f, p in detect_checkpoint_components(inner)):
                advice = (
                    f" It holds one under the prefix `{head}.`, which is not read: save its tensors without the prefix"
                    f" (or pass the state dict with `{head}.` removed from the keys)."
                )
                break
        raise SingleFileComponentError(
            f"{reader.source} does not hold a {spec['component']} checkpoint: it holds {describe_components(found, keys)}."
            + advice
        )
    if len({p for _, p in mine}) > 1:
        # upstream takes the VAE under its last listed prefix without a word (and fails on two transformers)
        where = ", ".join(f"`{p}`" if p else "without a prefix" for _, p in mine)
        raise SingleFileComponentError(
            f"{reader.source} holds a {spec['component']} checkpoint more than once ({where}), so which one to load is "
            "ambiguous: save the one to load in a file of its own (or pass a state dict of its keys only)."
        )
    family, prefix = mine[0]
    view = reader.with_prefix(prefix)
    if not prefix:
        # leave out the other components of an all-in-one file (e.g. `vae.` keys next to unprefixed transformer keys)
        others = tuple(p for _, p in found if p)
        if others:
            shapes = {k: reader.get_shape(k) for k in keys if not k.startswith(others)}
            view = CheckpointReader(reader.source, shapes, reader.get_numpy)
    return view, spec["families"][family]


def _is_path_like(name: str) -> bool:
    """A string that can only be a local path (a Hub repo id is `name` or `org/name`)."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.endswith(".json") or name.count("/") > 1


def _resolve_config(cls, config, subfolder, spec, hub, mapping_class_name) -> Dict[str, Any]:
    if isinstance(config, Mapping):
        config = dict(config)
        where = "the `config` dict"
    elif isinstance(config, (str, os.PathLike)):
        where = os.fspath(config)
        if os.path.isfile(where):
            config = read_config_file(where)
        elif not os.path.exists(where) and _is_path_like(where):
            raise OSError(
                f"`config` {where} does not exist: pass the path of a config.json, of a diffusers model or pipeline "
                "folder, a Hub repo id, or a dict."
            )
        else:
            try:
                config = cls.load_config(where, subfolder=subfolder, **hub)
            except EnvironmentError as first:
                if subfolder is not None:
                    raise
                # a pipeline folder / repo: its model config lives in the default subfolder (`transformer`, `vae`)
                default = spec["default_subfolder"]
                try:
                    config = cls.load_config(where, subfolder=default, **hub)
                except EnvironmentError as second:
                    raise OSError(
                        f"No config.json for `config`={where!r}: looked for it at the top of {where} ({first}) and in "
                        f"its `{default}` subfolder, as in a pipeline ({second}). Pass `subfolder=` if it is elsewhere."
                    ) from None
    else:
        raise TypeError(
            f"`config` must be a dict, a path to a config.json, or a diffusers folder / repo id, got "
            f"{type(config).__name__}."
        )
    class_name = config.get("_class_name")
    if class_name is not None and class_name not in (cls.__name__, mapping_class_name):
        raise ValueError(f"The config from {where} is for `{class_name}`, not `{cls.__name__}`.")
    return config


class FromOriginalModelMixin:
    """
    Load pretrained weights saved as one `.safetensors` file in a model's original layout (the Lumina-Image-2.0 release,
    ComfyUI repacks, FLUX's `ae.safetensors`), and write a model back in that layout.
    """

    @classmethod
    def from_single_file(
        cls, pretrained_model_link_or_path_or_dict: Optional[Union[str, os.PathLike, Dict]] = None, **kwargs
    ):
        r"""
        Instantiate a model from pretrained weights saved in the original single-file `.safetensors` format. The model
        is set in evaluation mode.

        For [`Lumina2Transformer2DModel`] the original Lumina-Image-2.0 layout (fused `attention.qkv`,
        `attention_norm1`, `adaLN_modulation`, `final_layer`, `cap_embedder`, `t_embedder`, ...) is read, bare or under
        ComfyUI's `model.diffusion_model.` prefix (the transformer of an all-in-one ComfyUI file is picked out). The
        fused qkv is split with sizes derived from the config (`hidden_size`, `num_attention_heads`, `num_kv_heads`),
        so widths other than the 2B release load too. For [`AutoencoderKL`] the FLUX `ae.safetensors` / LDM layout is
        read (bare or under `first_stage_model.` / `vae.`). A file already in diffusers layout loads as is.

        Without `config`, the config is inferred from the tensor shapes. For the transformer: hidden size, layer and
        refiner counts, caption width, in/out channels (patch size 2 as released), feed-forward width, and the heads —
        `head_dim` is the length of the per-head `q_norm` weight, so `num_attention_heads = hidden_size / head_dim` and
        the qkv rows give `num_kv_heads`. What no weight stores comes from the 2B release (`axes_lens`, `norm_eps`,
        `sample_size`); the RoPE split `axes_dim_rope` is known only for the released head size 96 -> (32, 32, 32):
        other head sizes need `config=`. For the VAE: widths, block and layer counts, channels; the latent scaling
        (`scaling_factor` 0.3611, `shift_factor` 0.1159) is FLUX's and is assumed only for 16 latent channels without
        quant convs: any other VAE needs `config=`.

        Parameters:
            pretrained_model_link_or_path_or_dict (`str`, `os.PathLike` or `dict`):
                A local `.safetensors` file, a Hub link (`https://huggingface.co/<repo_id>/blob/main/<file>.safetensors`,
                resolved through the Hugging Face cache), or a state dict of NumPy arrays / MindSpore tensors. Pickle
                files (`.pth`, `.pt`, `.bin`, `.ckpt`) are refused with instructions to convert them.
            config (`dict` or `str`, *optional*):
                The diffusers config of the model: a dict, a path to a `config.json`, or a diffusers model folder / repo
                id whose `config.json` is read (under `subfolder`; a pipeline folder falls back to `transformer/` or
                `vae/`). Inferred from the weights when omitted (see above).
            subfolder (`str`, *optional*):
                The subfolder of `config` holding the model's `config.json`.
            mindspore_dtype (`ms.Type` or `str`, *optional*):
                Load the model with this dtype (e.g. `ms.bfloat16`); by default parameters are float32 (a bf16 file is
                widened exactly).
            cache_dir, force_download, proxies, local_files_only, token, revision:
                Passed to `huggingface_hub` for Hub links and repo ids (`config_revision` is the revision of `config`).
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Config entries that override the loaded or inferred config (e.g. `sample_size=64`).

        Examples:

        ```py
        >>> import mindspore as ms
        >>> from mindone.diffusers import Lumina2Transformer2DModel

        >>> transformer = Lumina2Transformer2DModel.from_single_file(
        ...     "lumina_2_model_bf16.safetensors", mindspore_dtype=ms.bfloat16
        ... )
        ```
        """
        mapping_class_name = _get_single_file_loadable_mapping_class(cls)
        if mapping_class_name is None:
            raise ValueError(
                f"FromOriginalModelMixin is currently only compatible with {', '.join(SINGLE_FILE_LOADABLE_CLASSES)}, "
                f"not {cls.__name__}."
            )
        spec = SINGLE_FILE_LOADABLE_CLASSES[mapping_class_name]
        if pretrained_model_link_or_path_or_dict is None:
            pretrained_model_link_or_path_or_dict = kwargs.pop("pretrained_model_link_or_path", None)
        if pretrained_model_link_or_path_or_dict is None:
            raise ValueError("`from_single_file` needs a checkpoint file, a Hub link or a state dict.")

        reject_unsupported_kwargs(kwargs, "from_single_file", _UNSUPPORTED_KWARGS, accepted=(None,))
        for name in _IGNORED_KWARGS:
            kwargs.pop(name, None)
        config = kwargs.pop("config", None)
        subfolder = kwargs.pop("subfolder", None)
        mindspore_dtype = str_to_dtype(auto_dtype_as_float32(pop_mindspore_dtype(kwargs)))
        config_revision = kwargs.pop("config_revision", None)
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        init_keys = cls._get_init_keys(cls) - {"self", "kwargs"}
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in init_keys}
        if kwargs:
            raise TypeError(
                f"`{cls.__name__}.from_single_file` got unexpected keyword arguments {sorted(kwargs)}; config entries "
                f"of this model are {sorted(init_keys)}."
            )

        # 1. Open the file (nothing is read but its header) and pick out this model's keys
        if isinstance(pretrained_model_link_or_path_or_dict, Mapping):
            reader = CheckpointReader.from_dict(pretrained_model_link_or_path_or_dict)
        else:
            reader = load_single_file_checkpoint(pretrained_model_link_or_path_or_dict, **hub)
        component, needs_conversion = _select_component(reader, spec)
        # the keys this model reads -> the keys of the file
        if needs_conversion or "diffusers_keys_fn" not in spec:
            file_keys = {k: k for k in component.keys()}
        else:
            file_keys = spec["diffusers_keys_fn"](component.keys(), reader.source)
        shapes = {k: component.get_shape(f) for k, f in file_keys.items()}

        # 2. The config: given, or inferred from the shapes
        if config is None:
            infer = spec["config_mapping_fn"] if needs_conversion else spec["diffusers_config_mapping_fn"]
            config = infer(shapes, reader.source, overrides)  # the overrides supply what the weights do not store
        else:
            config_hub = dict(hub)
            if config_revision is not None:
                config_hub["revision"] = config_revision
            config = _resolve_config(cls, config, subfolder, spec, config_hub, mapping_class_name)
        config.update(overrides)

        # 3. The key plan (validates the keys and the fused splits against the config)
        if needs_conversion:
            plan = spec["checkpoint_mapping_fn"](shapes, config, reader.source)
        else:
            plan = {k: TensorSource(f) for k, f in file_keys.items()}
        if not plan:
            raise SingleFileComponentError(f"{reader.source}: the {spec['component']} weights appear to be missing.")

        # 4. Build without initialising, check every key and shape, then stream the tensors in
        with no_init_parameters():
            model = cls.from_config(config)
        if mindspore_dtype is not None:
            model.to(mindspore_dtype)
        state = {k: LazyTensor(component, source) for k, source in plan.items()}
        load_state_dict_into_model(model, state, strict=True, source=reader.source)
        for _, param in model.parameters_and_names():
            if param.has_init:  # parameters no checkpoint stores
                param.init_data()
        if not isinstance(pretrained_model_link_or_path_or_dict, Mapping):
            model.register_to_config(_name_or_path=os.fspath(pretrained_model_link_or_path_or_dict))
        model.set_train(False)
        return model

    def save_single_file(
        self,
        path: Union[str, os.PathLike],
        prefix: Optional[str] = None,
        comfyui: bool = False,
        metadata: Optional[Dict[str, str]] = None,
    ) -> str:
        """Write this model as one `.safetensors` file in its original layout; see [`save_single_file`]."""
        return save_single_file(self, path, prefix=prefix, comfyui=comfyui, metadata=metadata)


def save_single_file(
    model,
    path: Union[str, os.PathLike],
    prefix: Optional[str] = None,
    comfyui: bool = False,
    metadata: Optional[Dict[str, str]] = None,
) -> str:
    r"""
    Write a model as one `.safetensors` file in its original layout, the exact inverse of `from_single_file`.

    [`Lumina2Transformer2DModel`] is written in the Lumina-Image-2.0 layout (q/k/v fused into `attention.qkv`, the
    original names, plus the unused `norm_final.weight` as ones so the key set equals the original release);
    [`AutoencoderKL`] in FLUX's `ae.safetensors` layout (attention projections as 1x1 convolutions).

    Args:
        model: A [`Lumina2Transformer2DModel`] or [`AutoencoderKL`].
        path (`str` or `os.PathLike`): The `.safetensors` file to write (replaced atomically).
        prefix (`str`, *optional*): A prefix for every key, e.g. `"model.diffusion_model."` or `"first_stage_model."`.
        comfyui (`bool`, defaults to `False`): Use ComfyUI's layout: the `model.diffusion_model.` prefix for the
            transformer; ComfyUI's VAE loader reads the bare FLUX layout, so no prefix for the VAE.
        metadata (`dict`, *optional*): Extra string metadata for the file header.

    Returns:
        `str`: The path written.
    """
    mapping_class_name = _get_single_file_loadable_mapping_class(type(model))
    if mapping_class_name is None:
        raise ValueError(
            f"`save_single_file` supports {', '.join(SINGLE_FILE_LOADABLE_CLASSES)}, not {type(model).__name__}."
        )
    spec = SINGLE_FILE_LOADABLE_CLASSES[mapping_class_name]
    try:
        model._check_no_lora_layers()  # adapters have no place in the original layout
    except ValueError as e:
        raise SingleFileComponentError(f"Cannot write {type(model).__name__} as a single file: {e}") from None
    if comfyui and prefix is not None:
        raise ValueError(f"Pass either `comfyui=True` or `prefix=` (got prefix={prefix!r}), not both.")
    prefix = spec["comfyui_prefix"] if comfyui else (prefix or "")
    path = os.fspath(path)
    if path.endswith(PICKLE_SUFFIXES) or not path.endswith(".safetensors"):
        raise ValueError(f"`path` must name a .safetensors file (pickle formats are never written), got {path!r}.")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("`metadata` must be a dict of str -> str.")
    tensors = spec["reverse_mapping_fn"](named_parameters(model), model.config, prefix)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata={"format": "pt", **(metadata or {})})
    logger.info(f"{type(model).__name__} written in its original single-file layout to {path}")
    return path


__all__ = ["FromOriginalModelMixin", "SINGLE_FILE_LOADABLE_CLASSES", "save_single_file"]
