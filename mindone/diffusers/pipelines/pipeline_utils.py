# Copyright 2025 The HuggingFace Inc. team.
# Copyright (c) 2022, NVIDIA CORPORATION.  All rights reserved.
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
"""DiffusionPipeline: load, save and hold the components of a pipeline.

Adapted from diffusers v0.42.1 `pipelines/pipeline_utils.py` (and the parts of `pipelines/pipeline_loading_utils.py`
it needs); MindSpore changes: `mindspore_dtype=` replaces `torch_dtype=`, components listed as `diffusers` load from
`mindone.diffusers`, `transformers` models load from `mindone.transformers` while tokenizers load from `transformers`
unchanged, and what we save is recorded under the same library names so diffusers loads it. Only safetensors are read;
device placement, offloading, quantization, ONNX, Flax, DDUF and custom (remote-code) pipelines do not exist here.
"""

import importlib
import inspect
import os
import re
import typing
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import PIL.Image
from huggingface_hub import HfApi, snapshot_download
from tqdm.auto import tqdm

import mindspore as ms
from mindspore import nn

from ..configuration_utils import ConfigMixin
from ..models.model_loading_utils import check_save_directory, warn_if_pickle_requested
from ..models.modeling_utils import ModelMixin, reject_unsupported_kwargs
from ..utils import BaseOutput, dtype_to_str, logging, str_to_dtype
from ..utils.mindspore_utils import auto_dtype_as_float32, pop_mindspore_dtype, to_arguments
from ..utils.unsupported import PIPELINE_METHODS, add_unsupported_methods

logger = logging.get_logger(__name__)

# What `model_index.json` may name, per library, and the (save, load) methods of each base class. The base classes of
# "diffusers" are looked up in `mindone.diffusers`; "transformers" models in `mindone.transformers`, every other
# transformers class (tokenizers) in `transformers` itself.
LOADABLE_CLASSES = {
    "diffusers": {
        "ModelMixin": ["save_pretrained", "from_pretrained"],
        "SchedulerMixin": ["save_pretrained", "from_pretrained"],
        "DiffusionPipeline": ["save_pretrained", "from_pretrained"],
    },
    "transformers": {
        "PreTrainedModel": ["save_pretrained", "from_pretrained"],
        "PreTrainedTokenizerBase": ["save_pretrained", "from_pretrained"],
    },
}
# Files a pipeline download never needs: pickles (never read here) and other frameworks' weights.
_IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5", "*.onnx", "*.pb", "*.onnx_data"]
_SHARD_RE = re.compile(r"^\d{5}-of-\d{5}$")
_UNSUPPORTED_KWARGS = {
    "torch_dtype": "use `mindspore_dtype=` (e.g. `mindspore_dtype=ms.float32`).",
    "device_map": "MindSpore places tensors through the context; there is no device map.",
    "custom_pipeline": "custom (remote-code) pipelines are not supported by this port.",
    "quantization_config": "quantized checkpoints are not supported by this port.",
    "use_onnx": "ONNX pipelines are not supported by this port.",
    "dduf_file": "DDUF files are not supported: use the diffusers folder format.",
    "use_flashpack": "FlashPack checkpoints are not supported by this port.",
    "trust_remote_code": "components defined by code in the repository are never imported.",
    "provider": "ONNX pipelines are not supported by this port.",
    "sess_options": "ONNX pipelines are not supported by this port.",
    "provider_options": "ONNX pipelines are not supported by this port.",
    "load_connected_pipeline": "connected (prior / decoder) pipelines are not supported by this port.",
    "offload_folder": "there is no offloading in this port.",
    "offload_state_dict": "there is no offloading in this port.",
    "from_flax": "Flax checkpoints are not supported: use safetensors.",
}


@dataclass
class ImagePipelineOutput(BaseOutput):
    """
    Output class for image pipelines.

    Args:
        images (`List[PIL.Image.Image]`, `np.ndarray` or `ms.Tensor`):
            List of denoised PIL images of length `batch_size`, a NumPy array of shape `(batch_size, height, width,
            num_channels)`, or (`output_type="ms"`) a tensor of shape `(batch_size, num_channels, height, width)`.
    """

    images: Union[List[PIL.Image.Image], np.ndarray, ms.Tensor]


def numpy_to_pil(images: np.ndarray) -> List[PIL.Image.Image]:
    """Convert a NumPy image or a batch of images (values in [0, 1], channels last) to PIL images."""
    if images.ndim == 3:
        images = images[None, ...]
    images = (images * 255).round().astype("uint8")
    if images.shape[-1] == 1:
        # special case for grayscale (single channel) images
        return [PIL.Image.fromarray(image.squeeze(), mode="L") for image in images]
    return [PIL.Image.fromarray(image) for image in images]


def _fetch_class_library_tuple(module) -> Tuple[str, str]:
    """The `[library, class_name]` entry `model_index.json` records for a component, as diffusers writes it.

    Our classes are recorded under the library they port (`mindone.diffusers.X` -> `diffusers`,
    `mindone.transformers.X` -> `transformers`), so diffusers loads a folder we saved with its own classes.
    """
    cls = module if isinstance(module, type) else module.__class__
    parts = cls.__module__.split(".")
    if parts[0] == "mindone" and len(parts) > 1:
        parts = parts[1:]
    library = parts[0]
    # a component defined inside a pipeline folder is recorded under that folder's name, as upstream
    if library == "diffusers" and len(parts) > 3 and parts[1] == "pipelines":
        library = parts[-2]
    elif library not in LOADABLE_CLASSES:
        library = cls.__module__
    return library, cls.__name__


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "spiece.model")


def _is_model_class(cls) -> bool:
    return isinstance(cls, type) and issubclass(cls, nn.Cell)


# transformers classes loaded as the base model they wrap (a `model_index.json` may name the causal LM)
_BASE_MODEL_OF = {"Gemma2ForCausalLM": "Gemma2Model"}


def _get_class_obj(library_name: str, class_name: str, component: str):
    """The class a `model_index.json` entry names: our port of it, or the transformers tokenizer it names."""
    if library_name == "diffusers":
        library = importlib.import_module("mindone.diffusers")
        class_obj = getattr(library, class_name, None)
        if class_obj is None:
            raise ValueError(
                f"Component `{component}` is a diffusers `{class_name}`, which mindone.diffusers does not port. Pass "
                f"your own instance to `from_pretrained` (`{component}=...`) or `{component}=None` to skip it."
            )
        return class_obj
    if library_name == "transformers":
        ported = importlib.import_module("mindone.transformers")
        class_obj = getattr(ported, class_name, None)
        if class_obj is not None:
            return class_obj
        if class_name in _BASE_MODEL_OF:
            # diffusers loads the LM class; its pipelines read only hidden states, which the base model (which loads
            # the LM checkpoint, without its head) gives the same
            logger.info(
                f"Component `{component}` is a transformers `{class_name}`: loading its base model "
                f"`{_BASE_MODEL_OF[class_name]}` (the language-model head is not used by the pipeline)."
            )
            return getattr(ported, _BASE_MODEL_OF[class_name])
        import transformers

        class_obj = getattr(transformers, class_name, None)
        if class_obj is None:
            raise ValueError(f"Component `{component}`: `transformers` has no class `{class_name}`.")
        if any(base.__name__ == "PreTrainedModel" for base in class_obj.__mro__):
            raise ValueError(
                f"Component `{component}` is the transformers model `{class_name}`, which mindone.transformers does "
                f"not port (a torch model cannot run here). Pass a MindSpore instance as `{component}=...`."
            )
        return class_obj
    try:
        module = importlib.import_module(f"mindone.diffusers.pipelines.{library_name}")
    except ImportError:
        raise ValueError(
            f"Component `{component}` comes from library `{library_name}`, which this port cannot load (only "
            "`diffusers`, `transformers` and mindone pipeline folders). Pass the component to `from_pretrained`."
        ) from None
    class_obj = getattr(module, class_name, None) or getattr(
        importlib.import_module("mindone.diffusers"), class_name, None
    )
    if class_obj is None:
        raise ValueError(f"Component `{component}`: mindone.diffusers.pipelines.{library_name} has no `{class_name}`.")
    return class_obj


def _expected_base(class_obj):
    """The loadable base class (from `LOADABLE_CLASSES`) a passed component of this slot must derive from."""
    for base in class_obj.__mro__:
        for library_classes in LOADABLE_CLASSES.values():
            if base.__name__ in library_classes:
                return base
    return None


def _weight_variant(filename: str):
    """The variant tag of a safetensors weight or index file (`None` for plain weights), `False` for other files.

    `model.fp16.safetensors`, `model.fp16-00001-of-00002.safetensors`, `model.safetensors.index.fp16.json` -> "fp16".
    """
    pieces = os.path.basename(filename).split(".")
    if pieces[-1] == "safetensors":
        return pieces[1].split("-")[0] if len(pieces) == 3 else None
    if pieces[-1] == "json" and pieces[1:3] == ["safetensors", "index"]:
        return pieces[3] if len(pieces) == 5 else None
    return False


def _component_variant(folder: str, name: str, variant: Optional[str]) -> Optional[str]:
    """`variant` if the component folder holds files of that variant, else `None` (as upstream, per component)."""
    path = os.path.join(folder, name)
    if variant is None or not os.path.isdir(path):
        return None
    for filename in os.listdir(path):
        pieces = filename.split(".")
        if len(pieces) > 2 and pieces[-2].split("-")[0] == variant:
            return variant
    return None


class DiffusionPipeline(ConfigMixin):
    r"""
    Base class for all pipelines.

    [`DiffusionPipeline`] stores all components (models, schedulers, and processors) for diffusion pipelines and
    provides methods for loading, downloading and saving models. It also includes methods to:

        - cast all MindSpore models to the dtype of your choice
        - enable/disable the progress bar for the denoising iteration

    Class attributes:

        - **config_name** (`str`) -- The configuration filename that stores the class and module names of all the
          diffusion pipeline's components.
        - **_optional_components** (`List[str]`) -- List of all optional components that don't have to be passed to the
          pipeline to function (should be overridden by subclasses).
    """

    config_name = "model_index.json"
    model_cpu_offload_seq = None
    _optional_components = []

    def register_modules(self, **kwargs):
        for name, module in kwargs.items():
            if module is None or isinstance(module, (tuple, list)) and module[0] is None:
                register_dict = {name: (None, None)}
            else:
                register_dict = {name: _fetch_class_library_tuple(module)}
            # save model index config
            self.register_to_config(**register_dict)
            # set models
            setattr(self, name, module)

    def __setattr__(self, name: str, value: Any):
        if name in self.__dict__ and "_internal_dict" in self.__dict__ and hasattr(self.config, name):
            # We need to overwrite the config if name exists in config
            if isinstance(getattr(self.config, name), (tuple, list)):
                if value is not None and self.config[name][0] is not None:
                    class_library_tuple = _fetch_class_library_tuple(value)
                else:
                    class_library_tuple = (None, None)
                self.register_to_config(**{name: class_library_tuple})
            else:
                self.register_to_config(**{name: value})
        super().__setattr__(name, value)

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        safe_serialization: bool = True,
        variant: Optional[str] = None,
        max_shard_size: Optional[Union[int, str]] = None,
        push_to_hub: bool = False,
        **kwargs,
    ):
        """
        Save all saveable variables of the pipeline to a directory. A pipeline variable can be saved and loaded if its
        class implements both a save and loading method. The pipeline is easily reloaded using the
        [`~DiffusionPipeline.from_pretrained`] class method, and the folder loads in diffusers as well.

        Arguments:
            save_directory (`str` or `os.PathLike`):
                Directory to save a pipeline to. Will be created if it doesn't exist.
            safe_serialization (`bool`, *optional*, defaults to `True`):
                Safetensors are always written: `False` (upstream's pickle files) logs a warning and writes safetensors.
            variant (`str`, *optional*):
                If specified, weights are saved in the format `diffusion_pytorch_model.<variant>.safetensors`.
            max_shard_size (`int` or `str`, defaults to `None`):
                The maximum size for a checkpoint before being sharded (e.g. `"5GB"`, or bytes as an integer).
            push_to_hub (`bool`, *optional*, defaults to `False`):
                Not supported (no Hub upload); must be `False`.
        """
        check_save_directory(save_directory, max_shard_size)
        if push_to_hub:
            raise NotImplementedError(
                "`push_to_hub=True` is not supported: upload the saved folder with huggingface_hub."
            )
        warn_if_pickle_requested(safe_serialization, f"the {type(self).__name__}")
        safe_serialization = True  # warned once here, not again by each component
        model_index_dict = dict(self.config)
        for key in ("_class_name", "_diffusers_version", "_module", "_name_or_path"):
            model_index_dict.pop(key, None)

        expected_modules, _ = self._get_signature_keys(self)

        def is_saveable_module(name, value):
            if name not in expected_modules:
                return False
            if name in self._optional_components and value[0] is None:
                return False
            return True

        model_index_dict = {k: v for k, v in model_index_dict.items() if is_saveable_module(k, v)}
        # before anything is written: a model with LoRA layers is refused (`ModelMixin.save_pretrained`)
        for component_name in model_index_dict:
            check = getattr(getattr(self, component_name, None), "_check_no_lora_layers", None)
            if check is not None:
                check()
        os.makedirs(save_directory, exist_ok=True)
        for component_name in model_index_dict:
            sub_model = getattr(self, component_name)
            save_method = getattr(sub_model, "save_pretrained", None)
            if not callable(save_method):
                logger.warning(f"self.{component_name}={sub_model} of type {type(sub_model)} cannot be saved.")
                # make sure that unsaveable components are not tried to be loaded afterward
                self.register_to_config(**{component_name: (None, None)})
                continue
            parameters = inspect.signature(save_method).parameters
            save_kwargs = {}
            if "safe_serialization" in parameters:
                save_kwargs["safe_serialization"] = safe_serialization
            if "variant" in parameters:
                save_kwargs["variant"] = variant
            if "max_shard_size" in parameters and max_shard_size is not None:
                save_kwargs["max_shard_size"] = max_shard_size
            save_method(os.path.join(save_directory, component_name), **save_kwargs)

        # finally save the config
        self.save_config(save_directory)

    def to(self, *args, **kwargs):
        r"""
        `.to(dtype)` / `.to(dtype=...)`: cast every MindSpore model of the pipeline to `dtype`. MindSpore places
        tensors through its context, so a device (`.to("cuda")`, `device=`) raises a `TypeError` saying so.

        Arguments:
            dtype (`ms.Type` or `str`, *optional*):
                The dtype of the models' floating parameters, e.g. `ms.float32` (none or `None`: nothing changes, as
                upstream's `to()`).
        """
        dtype = to_arguments(args, kwargs)
        if dtype is None:
            return self
        self._validate_mindspore_dtype(dtype)
        for module in self._models():
            module.to(dtype)
        return self

    def _models(self) -> List[nn.Cell]:
        module_names, _ = self._get_signature_keys(self)
        modules = [getattr(self, n, None) for n in module_names]
        return [m for m in modules if isinstance(m, nn.Cell)]

    @property
    def dtype(self) -> ms.Type:
        r"""
        Returns:
            `ms.Type`: The dtype of the pipeline's first model (`ms.float32` when it holds none).
        """
        for module in self._models():
            return module.dtype
        return ms.float32

    @classmethod
    def _validate_mindspore_dtype(cls, dtype: Optional[ms.Type]):
        """Hook for pipelines to reject or warn about a compute dtype before anything is loaded."""

    @classmethod
    def download(cls, pretrained_model_name: str, **kwargs) -> str:
        r"""
        Download and cache the files a pipeline needs from the Hub (or find them in the cache offline) and return the
        local folder: `model_index.json` and the folders of its components, without pickle or non-PyTorch weights.

        Parameters:
            pretrained_model_name (`str`):
                A repo id such as `Alpha-VLLM/Lumina-Image-2.0`.
            subfolder (`str`, *optional*):
                The folder of the pipeline inside the repository.
            cache_dir, force_download, proxies, local_files_only, token, revision:
                Passed to `huggingface_hub`.
            variant (`str`, *optional*):
                Fetch the `variant` weights of the components that have them (e.g. `"fp16"`), the others otherwise.
        """
        subfolder = kwargs.pop("subfolder", None)
        variant = kwargs.pop("variant", None)
        hub = {
            k: kwargs.pop(k)
            for k in ("cache_dir", "force_download", "local_files_only", "token", "revision")
            if k in kwargs
        }
        prefix = f"{subfolder.strip('/')}/" if subfolder else ""
        # model_index.json first: its component names decide which folders are fetched
        index_folder = snapshot_download(pretrained_model_name, allow_patterns=[f"{prefix}{cls.config_name}"], **hub)
        index_file = os.path.join(index_folder, prefix, cls.config_name)
        if not os.path.isfile(index_file):
            raise EnvironmentError(
                f"{pretrained_model_name} has no {prefix}{cls.config_name}: it is not a diffusers pipeline."
            )
        config = cls._dict_from_json_file(index_file)
        folders = [k for k, v in config.items() if isinstance(v, (list, tuple)) and len(v) == 2 and v[0] is not None]
        allow = [f"{prefix}{cls.config_name}"] + [f"{prefix}{name}/*" for name in folders]
        ignore = list(_IGNORE_PATTERNS)
        if not hub.get("local_files_only"):
            try:
                files = HfApi().list_repo_files(
                    pretrained_model_name, revision=hub.get("revision"), token=hub.get("token")
                )
                ignore += cls._variant_ignore_patterns(files, prefix, folders, variant)
            except Exception as e:  # offline: fall back to the cached snapshot below
                logger.info(f"Could not list the files of {pretrained_model_name} ({e}); using the cache.")
                hub["local_files_only"] = True
        return snapshot_download(pretrained_model_name, allow_patterns=allow, ignore_patterns=ignore, **hub)

    @staticmethod
    def _variant_ignore_patterns(files, prefix, folders, variant) -> List[str]:
        """Per component: skip the non-variant weights when `variant` files exist, and the variant files otherwise."""
        ignore = []
        for name in folders:
            weights = [f for f in files if f.startswith(f"{prefix}{name}/") and _weight_variant(f) is not False]
            has_variant = variant is not None and any(_weight_variant(f) == variant for f in weights)
            for f in weights:
                tag = _weight_variant(f)
                if (has_variant and tag != variant) or (not has_variant and tag is not None):
                    ignore.append(f)
        return ignore

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs):
        r"""
        Instantiate a MindSpore diffusion pipeline from pretrained pipeline weights (a folder written by diffusers'
        or this port's `save_pretrained`, or a Hub repo id).

        Parameters:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A repo id (for example `Alpha-VLLM/Lumina-Image-2.0`), downloaded and cached through huggingface_hub,
                or a path to a directory containing `model_index.json` and one folder per component.
            mindspore_dtype (`ms.Type`, `str` or `Dict[str, ms.Type]`, *optional*):
                The dtype of the models' floating parameters (default: `ms.float32`, whatever the checkpoint stores). A
                dict gives one dtype per component, with `"default"` for the others (e.g. `{"transformer":
                ms.bfloat16, "default": ms.float32}`). `"auto"`, as upstream, is float32 with a warning; as a dict
                value it goes to that component (a text encoder then takes the dtype its config records).
            subfolder (`str`, *optional*):
                The folder of the pipeline inside the repository or directory.
            variant (`str`, *optional*):
                Load weights from a specified variant filename such as `"fp16"` (for the components that have it).
            cache_dir (`str` or `os.PathLike`, *optional*):
                Path to a directory where downloaded files are cached if the standard cache is not used.
            force_download (`bool`, *optional*, defaults to `False`):
                Whether or not to force the (re-)download of the model weights and configuration files.
            proxies (`Dict[str, str]`, *optional*):
                Not used (configure proxies through huggingface_hub's environment variables).
            local_files_only (`bool`, *optional*, defaults to `False`):
                Whether to only load local files (the cache) and never download.
            token (`str` or `bool`, *optional*):
                The token to use as HTTP bearer authorization for remote files.
            revision (`str`, *optional*, defaults to `"main"`):
                The specific model version to use (branch name, tag name or commit id).
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Components to use instead of loading them (for example `scheduler=my_scheduler`, or `text_encoder=None`
                to skip one), passed directly to the pipeline's `__init__`.

        Examples:

        ```py
        >>> import mindspore as ms
        >>> from mindone.diffusers import DiffusionPipeline

        >>> pipe = DiffusionPipeline.from_pretrained("Alpha-VLLM/Lumina-Image-2.0", mindspore_dtype=ms.bfloat16)
        ```
        """
        reject_unsupported_kwargs(kwargs, "DiffusionPipeline.from_pretrained", _UNSUPPORTED_KWARGS)
        if kwargs.pop("use_safetensors", None) is False:
            raise ValueError("`use_safetensors=False` is not supported: only safetensors checkpoints are read.")
        for name in ("low_cpu_mem_usage", "disable_mmap", "max_memory"):
            kwargs.pop(name, None)
        mindspore_dtype = pop_mindspore_dtype(kwargs)
        if isinstance(mindspore_dtype, dict):
            # "auto" goes to the component as is: models load it in float32 with a warning, text encoders in the
            # dtype their config records
            mindspore_dtype = {k: v if v == "auto" else str_to_dtype(v) for k, v in mindspore_dtype.items()}
        else:
            # upstream: a `dtype` that is neither a dtype nor a dict loads every component in float32, with a warning
            mindspore_dtype = str_to_dtype(auto_dtype_as_float32(mindspore_dtype))
        subfolder = kwargs.pop("subfolder", None)
        variant = kwargs.pop("variant", None)
        hub = {
            k: kwargs.pop(k)
            for k in ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision")
            if k in kwargs
        }

        # 1. Find (or download) the folder
        path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(path):
            cached_folder = os.path.join(path, subfolder) if subfolder else path
        else:
            if path.count("/") > 1:  # as upstream (repo ids may hold dots: "Alpha-VLLM/Lumina-Image-2.0")
                raise ValueError(
                    f'The provided pretrained_model_name_or_path "{path}" is neither a valid local path nor a valid'
                    " repo id. Please check the parameter."
                )
            folder = cls.download(path, subfolder=subfolder, variant=variant, **hub)
            cached_folder = os.path.join(folder, subfolder) if subfolder else folder
        config_dict = cls.load_config(cached_folder)
        config_dict.pop("_ignore_files", None)
        components = [k for k, v in config_dict.items() if not k.startswith("_") and isinstance(v, (list, tuple))]
        if variant is not None and not any(_component_variant(cached_folder, name, variant) for name in components):
            raise ValueError(
                f"You are trying to load the model files of the `variant={variant}`, but no such modeling files are"
                f" available in {cached_folder}. Drop `variant` to load the plain weights."
            )

        # 2. The pipeline class: `cls`, or the one the config names when called on `DiffusionPipeline`
        pipeline_class = cls
        if cls.__name__ == "DiffusionPipeline":
            class_name = config_dict.get("_class_name")
            pipeline_class = getattr(importlib.import_module("mindone.diffusers"), str(class_name), None)
            if pipeline_class is None:
                raise ValueError(
                    f"`{class_name}` (the `_class_name` of {cached_folder}) is not ported to mindone.diffusers."
                )
        # fail early (before loading anything) on a dtype the pipeline cannot run in
        for dtype in mindspore_dtype.values() if isinstance(mindspore_dtype, dict) else [mindspore_dtype]:
            if dtype != "auto":
                pipeline_class._validate_mindspore_dtype(dtype)

        # 3. Components passed by the caller, and those to load
        expected_modules, optional_kwargs = cls._get_signature_keys(pipeline_class)
        for name, value in config_dict.items():
            # upstream unpacks these entries unchecked ("not enough values to unpack", "attribute name must be string")
            if name in expected_modules:  # other keys are warned about and ignored below, as upstream
                if not (
                    isinstance(value, (list, tuple))
                    and len(value) == 2
                    and all(item is None or isinstance(item, str) for item in value)
                ):
                    raise ValueError(
                        f"The `model_index.json` of {cached_folder} has {name!r}: {value!r}, where a component entry "
                        f'is [library, class name], e.g. ["diffusers", "AutoencoderKL"] (or [null, null] for none).'
                    )
        passed_class_obj = {k: kwargs.pop(k) for k in expected_modules if k in kwargs}
        passed_pipe_kwargs = {k: kwargs.pop(k) for k in optional_kwargs if k in kwargs}
        init_dict, unused_kwargs, _ = pipeline_class.extract_init_dict(config_dict, **kwargs)
        init_kwargs = {
            k: init_dict.pop(k)
            for k in optional_kwargs
            if k in init_dict and k not in pipeline_class._optional_components
        }
        init_kwargs = {**init_kwargs, **passed_pipe_kwargs}

        def load_module(name, value):
            if value[0] is None:
                return False
            if name in passed_class_obj and passed_class_obj[name] is None:
                return False
            return True

        init_dict = {k: v for k, v in init_dict.items() if load_module(k, v)}
        if len(unused_kwargs) > 0:
            logger.warning(
                f"Keyword arguments {unused_kwargs} are not expected by {pipeline_class.__name__} and will be ignored."
            )

        # 4. Load each component
        for name, (library_name, class_name) in init_dict.items():
            if name in passed_class_obj:
                try:
                    class_obj = _get_class_obj(library_name, class_name, name)
                except ValueError:  # a class not ported here: the passed instance replaces it, unchecked
                    init_kwargs[name] = passed_class_obj[name]
                    continue
                expected = _expected_base(class_obj)
                passed = passed_class_obj[name]
                if expected is not None and not isinstance(passed, expected):
                    raise ValueError(
                        # upstream's wording ("is of type: ..., but should be ..."), naming the component
                        f"`{name}` is of type: {type(passed)}, but should be {expected.__module__}.{expected.__name__}"
                        f" (the folder lists {library_name}.{class_name})."
                    )
                init_kwargs[name] = passed
                continue
            class_obj = _get_class_obj(library_name, class_name, name)
            load_method = getattr(class_obj, "from_pretrained", None)
            if load_method is None:
                raise ValueError(f"The component {class_obj} of {pipeline_class} has no `from_pretrained` method.")
            loading_kwargs = {}
            if _is_model_class(class_obj):
                sub_dtype = mindspore_dtype
                if isinstance(mindspore_dtype, dict):
                    sub_dtype = mindspore_dtype.get(name, mindspore_dtype.get("default", None))
                if sub_dtype is not None:
                    loading_kwargs["mindspore_dtype"] = sub_dtype
                component_variant = _component_variant(cached_folder, name, variant)
                if component_variant is not None:
                    loading_kwargs["variant"] = component_variant
            component_folder = os.path.join(cached_folder, name)
            if os.path.isdir(component_folder):
                init_kwargs[name] = load_method(component_folder, **loading_kwargs)
            else:
                try:  # as upstream: a component without its folder is looked for in the pipeline folder itself
                    if "Tokenizer" in class_name and not any(
                        os.path.isfile(os.path.join(cached_folder, f)) for f in _TOKENIZER_FILES
                    ):
                        # transformers builds an empty tokenizer from a folder without its files (diffusers loads it)
                        raise EnvironmentError(f"no tokenizer files ({', '.join(_TOKENIZER_FILES)}) there")
                    init_kwargs[name] = load_method(cached_folder, **loading_kwargs)
                except EnvironmentError as e:
                    raise EnvironmentError(
                        f"The pipeline folder {cached_folder} lists the component `{name}` ({library_name}."
                        f"{class_name}) but has no `{name}` folder, and the folder itself does not hold it ({e}). "
                        f"Add the folder, or pass `{name}=...` (or `{name}=None` for an optional component)."
                    ) from None
            logger.info(f"Loaded {name} as {class_name} from `{name}` subfolder of {path}.")

        # 5. Potentially add passed objects if expected
        missing_modules = set(expected_modules) - set(init_kwargs.keys())
        passed_modules = list(passed_class_obj.keys())
        optional_modules = pipeline_class._optional_components
        if len(missing_modules) > 0 and missing_modules <= set(passed_modules + optional_modules):
            for module in missing_modules:
                init_kwargs[module] = passed_class_obj.get(module, None)
        elif len(missing_modules) > 0:
            passed_modules = set(list(init_kwargs.keys()) + list(passed_class_obj.keys())) - set(optional_kwargs)
            raise ValueError(
                f"Pipeline {pipeline_class} expected {expected_modules}, but only {passed_modules} were passed."
            )

        # 6. As upstream, warn about components of another type than `__init__` annotates (schedulers and tokenizers
        # are not checked: their annotations rarely list every compatible class)
        expected_types = pipeline_class._get_signature_types()
        for name, component in init_kwargs.items():
            if "scheduler" in name or "tokenizer" in name or component is None:
                continue
            allowed = expected_types.get(name, ())
            classes = tuple(a for a in allowed if inspect.isclass(a) and a is not inspect.Signature.empty)
            if classes and not isinstance(component, classes):
                logger.warning(f"Expected types for {name}: {allowed}, got {type(component)}.")

        # 7. Instantiate the pipeline
        model = pipeline_class(**init_kwargs)
        model.register_to_config(_name_or_path=path)
        if mindspore_dtype is not None and not isinstance(mindspore_dtype, dict):
            logger.info(f"Loaded {pipeline_class.__name__} in {dtype_to_str(mindspore_dtype)}.")
        return model

    @property
    def name_or_path(self) -> str:
        return getattr(self.config, "_name_or_path", None)

    @classmethod
    def _get_signature_keys(cls, obj):
        parameters = inspect.signature(obj.__init__).parameters
        required_parameters = {k: v for k, v in parameters.items() if v.default == inspect._empty}
        optional_parameters = set({k for k, v in parameters.items() if v.default != inspect._empty})
        expected_modules = set(required_parameters.keys()) - {"self"}

        optional_names = list(optional_parameters)
        for name in optional_names:
            if name in cls._optional_components:
                expected_modules.add(name)
                optional_parameters.remove(name)

        return sorted(expected_modules), sorted(optional_parameters)

    @classmethod
    def _get_signature_types(cls):
        """{argument of `__init__`: tuple of the types its annotation allows}, `(inspect.Signature.empty,)` for an
        unannotated one (as upstream)."""
        try:
            hints = typing.get_type_hints(cls.__init__)
        except Exception:
            hints = {
                k: v.annotation
                for k, v in inspect.signature(cls.__init__).parameters.items()
                if v.annotation is not inspect.Parameter.empty
            }
        signature_types = {}
        for name in inspect.signature(cls.__init__).parameters:
            if name == "self":
                continue
            annotation = hints.get(name, inspect.Parameter.empty)
            if inspect.isclass(annotation):
                signature_types[name] = (annotation,)
            elif typing.get_origin(annotation) is Union:
                signature_types[name] = typing.get_args(annotation)
            else:
                signature_types[name] = (inspect.Signature.empty,)
        return signature_types

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        r"""
        Create a new pipeline from the components of `pipeline` (shared, not copied), as diffusers does.

        Arguments:
            pipeline (`DiffusionPipeline`):
                The pipeline whose components and configuration the new one takes.
            mindspore_dtype (`ms.Type` or `str`, *optional*, defaults to `ms.float32`):
                As upstream, the new pipeline is cast to this dtype, which casts the shared models in place (and so the
                models of `pipeline` too): pass the dtype `pipeline` runs in to keep it.
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Components (e.g. `scheduler=...`) or `__init__` arguments replacing those of `pipeline`.

        Examples:

        ```py
        >>> from mindone.diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline

        >>> pipe = Lumina2Pipeline.from_pretrained("Alpha-VLLM/Lumina-Image-2.0")
        >>> scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=3.0)
        >>> shifted = Lumina2Pipeline.from_pipe(pipe, scheduler=scheduler)  # same weights, another scheduler
        ```
        """
        reject_unsupported_kwargs(kwargs, "DiffusionPipeline.from_pipe", _UNSUPPORTED_KWARGS)
        dtype = str_to_dtype(pop_mindspore_dtype(kwargs)) or ms.float32
        new_pipeline = cls._from_pipe(pipeline, **kwargs)
        new_pipeline.to(dtype)
        return new_pipeline

    @classmethod
    def _from_pipe(cls, pipeline, **kwargs):
        """`from_pipe` without the final cast (which `AutoPipelineForText2Image.from_pipe` does not do upstream)."""
        original_config = dict(pipeline.config)
        expected_modules, optional_kwargs = cls._get_signature_keys(cls)
        # components with a default in the signature need not be passed to `__init__`
        parameters = inspect.signature(cls.__init__).parameters
        true_optional_modules = {
            k for k, v in parameters.items() if v.default != inspect._empty and k in expected_modules
        }
        component_types = cls._get_signature_types()
        pretrained_model_name_or_path = original_config.pop("_name_or_path", None)

        passed_class_obj = {k: kwargs.pop(k) for k in expected_modules if k in kwargs}
        original_class_obj = {}
        for name, component in pipeline.components.items():
            if name in expected_modules and name not in passed_class_obj:
                # a model is not switched over to a pipeline whose signature expects another class
                if (
                    not isinstance(component, ModelMixin)
                    or type(component) in component_types[name]
                    or (component is None and name in cls._optional_components)
                ):
                    original_class_obj[name] = component
                else:
                    logger.warning(
                        f"component {name} is not switched over to new pipeline because type does not match the "
                        f"expected. {name} is {type(component)} while the new pipeline expect {component_types[name]}."
                        f" please pass the component of the correct type to the new pipeline. "
                        f"`from_pipe(..., {name}={name})`"
                    )

        passed_pipe_kwargs = {k: kwargs.pop(k) for k in optional_kwargs if k in kwargs}
        original_pipe_kwargs = {
            k: original_config[k] for k in original_config if k in optional_kwargs and k not in passed_pipe_kwargs
        }
        # config values another pipeline class had (kept private by an earlier `from_pipe`) that this one accepts
        for k in [
            k[1:]
            for k in original_config
            if k.startswith("_") and k[1:] in optional_kwargs and k[1:] not in passed_pipe_kwargs
        ]:
            original_pipe_kwargs[k] = original_config.pop(f"_{k}")

        pipeline_kwargs = {
            **passed_class_obj,
            **original_class_obj,
            **passed_pipe_kwargs,
            **original_pipe_kwargs,
            **kwargs,
        }
        unused_original_config = {
            f"{'' if k.startswith('_') else '_'}{k}": v for k, v in original_config.items() if k not in pipeline_kwargs
        }
        missing_modules = (
            set(expected_modules)
            - set(getattr(pipeline, "_optional_components", None) or [])
            - set(pipeline_kwargs)
            - true_optional_modules
        )
        if missing_modules:
            raise ValueError(
                f"Pipeline {cls} expected {expected_modules}, but only "
                f"{set(list(passed_class_obj.keys()) + list(original_class_obj.keys()))} were passed"
            )

        new_pipeline = cls(**pipeline_kwargs)
        if pretrained_model_name_or_path is not None:
            new_pipeline.register_to_config(_name_or_path=pretrained_model_name_or_path)
        new_pipeline.register_to_config(**unused_original_config)
        return new_pipeline

    def maybe_free_model_hooks(self):
        r"""Upstream frees the offloading hooks after a call; there is no offloading here, so nothing to free."""

    def remove_all_hooks(self):
        r"""Upstream removes the offloading hooks; there are none here."""

    def reset_device_map(self):
        r"""Upstream drops the `device_map` a pipeline was loaded with; there is none here."""

    def enable_attention_slicing(self, slice_size: Union[str, int, None] = "auto"):
        r"""
        Upstream's attention slicing: `set_attention_slice(slice_size)` on every model of the pipeline that has it. As
        in diffusers, Lumina2's transformer and VAE have none, so this changes nothing for them (on CPU this port
        already computes large attentions in chunks); it is here so that code written for diffusers runs unchanged.
        """
        self.set_attention_slice(slice_size)

    def disable_attention_slicing(self):
        r"""Undo `enable_attention_slicing` (`set_attention_slice(None)` on the models that have it)."""
        self.enable_attention_slicing(None)

    def set_attention_slice(self, slice_size: Union[str, int, None]):
        for module in self._models():
            if hasattr(module, "set_attention_slice"):
                module.set_attention_slice(slice_size)

    @property
    def components(self) -> Dict[str, Any]:
        r"""
        The `self.components` property can be useful to run different pipelines with the same weights and
        configurations without reallocating additional memory.

        Returns (`dict`):
            A dictionary containing all the modules needed to initialize the pipeline.

        Examples:

        ```py
        >>> from mindone.diffusers import Lumina2Pipeline

        >>> pipe = Lumina2Pipeline.from_pretrained("Alpha-VLLM/Lumina-Image-2.0")
        >>> same_weights = Lumina2Pipeline(**pipe.components)
        ```
        """
        expected_modules, optional_parameters = self._get_signature_keys(self)
        components = {
            k: getattr(self, k) for k in self.config.keys() if not k.startswith("_") and k not in optional_parameters
        }

        actual = sorted(set(components.keys()))
        expected = sorted(expected_modules)
        if actual != expected:
            raise ValueError(
                f"{self} has been incorrectly initialized or {self.__class__} is incorrectly implemented. Expected"
                f" {expected} to be defined, but {actual} are defined."
            )
        return components

    @staticmethod
    def numpy_to_pil(images):
        """
        Convert a NumPy image or a batch of images to a PIL image.
        """
        return numpy_to_pil(images)

    def progress_bar(self, iterable=None, total=None):
        if not hasattr(self, "_progress_bar_config"):
            self._progress_bar_config = {}
        elif not isinstance(self._progress_bar_config, dict):
            raise ValueError(
                f"`self._progress_bar_config` should be of type `dict`, but is {type(self._progress_bar_config)}."
            )

        if iterable is not None:
            return tqdm(iterable, **self._progress_bar_config)
        elif total is not None:
            return tqdm(total=total, **self._progress_bar_config)
        else:
            raise ValueError("Either `total` or `iterable` has to be defined.")

    def set_progress_bar_config(self, **kwargs):
        self._progress_bar_config = kwargs


add_unsupported_methods(DiffusionPipeline, PIPELINE_METHODS)
