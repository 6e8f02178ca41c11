# Copyright 2025 The HuggingFace Team. All rights reserved.
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
"""AutoModel: load a model folder into the ported class its config names.

Adapted from diffusers v0.42.1 `models/auto_model.py`; MindSpore changes: classes resolve to mindone.diffusers and
mindone.transformers (a transformers config, with `model_type`, goes to `mindone.transformers.AutoModel`), and remote
code is refused (it would be torch). Upstream switches its class attribute `config_name` to look for `model_index.json`
and leaves it switched when it finds one; here it is switched back after each read.
"""

import importlib
import os
from contextlib import contextmanager
from typing import Any, Dict, Optional, Tuple, Union

from ..configuration_utils import ConfigMixin
from ..utils import logging

logger = logging.get_logger(__name__)

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "token")


def _refuse_remote_code(config: Dict[str, Any], trust_remote_code: bool):
    if trust_remote_code or "AutoModel" in config.get("auto_map", {}):
        raise ValueError(
            "Models with custom code (`auto_map` in the config, `trust_remote_code=True`) are not supported: remote "
            "code is written for torch and cannot run here."
        )


def _library_and_class(config: Dict[str, Any], where: str) -> Tuple[str, str]:
    if "_class_name" in config:
        return "diffusers", config["_class_name"]
    if "model_type" in config:
        return "transformers", "AutoModel"
    raise ValueError(
        f"Couldn't find a model class associated with the config of {where}. Make sure the config contains a "
        "`_class_name` (a diffusers model) or `model_type` (a transformers model) key."
    )


def _model_class(library: str, class_name: str, component: Optional[str]):
    if library == "transformers" and class_name == "AutoModel":
        return importlib.import_module("mindone.transformers").AutoModel
    if library == "diffusers" and not hasattr(importlib.import_module("mindone.diffusers"), class_name):
        raise ValueError(f"AutoModel can't find a model linked to {class_name}: mindone.diffusers does not port it.")
    from ..pipelines.pipeline_utils import _get_class_obj

    return _get_class_obj(library, class_name, component or class_name)


def instantiation_error(obj, second_method: str) -> EnvironmentError:
    """What `__init__` of an auto class raises: it is built by its class methods only."""
    name = type(obj).__name__
    return EnvironmentError(
        f"{name} is designed to be instantiated using the `{name}.from_pretrained(pretrained_model_name_or_path)` or "
        f"`{name}.{second_method}` methods."
    )


@contextmanager
def _reading(cls, config_name: str):
    """`cls.load_config` reads `config_name` inside the block."""
    cls.config_name = config_name
    try:
        yield
    finally:
        cls.config_name = "config.json"


class AutoModel(ConfigMixin):
    r"""
    A generic model class: [`AutoModel.from_pretrained`] and [`AutoModel.from_config`] build the mindone class the
    config names (e.g. [`Lumina2Transformer2DModel`], [`AutoencoderKL`], or a `mindone.transformers` text encoder).
    """

    config_name = "config.json"

    def __init__(self, *args, **kwargs):
        raise instantiation_error(self, "from_config(config)")

    @classmethod
    def from_config(cls, pretrained_model_name_or_path_or_dict: Union[str, os.PathLike, dict, None] = None, **kwargs):
        r"""
        Instantiate a model from a config dictionary or a model folder's configuration file, with random weights (no
        pretrained weights are loaded).

        Parameters:
            pretrained_model_name_or_path_or_dict (`str`, `os.PathLike` or `dict`):
                A repo id, a folder with a `config.json`, or a config dictionary.
            subfolder (`str`, *optional*):
                The folder of the model's configuration inside the repository or directory.
            cache_dir, force_download, proxies, local_files_only, token, revision:
                Passed to `huggingface_hub` when a repo id is given.
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Passed to the model class's `from_config` (to override config values).
        """
        subfolder = kwargs.pop("subfolder", None)
        trust_remote_code = kwargs.pop("trust_remote_code", False)
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if pretrained_model_name_or_path_or_dict is None:
            raise ValueError(
                "Please provide a `pretrained_model_name_or_path_or_dict` as the first positional argument."
            )
        if isinstance(pretrained_model_name_or_path_or_dict, (str, os.PathLike)):
            where = os.fspath(pretrained_model_name_or_path_or_dict)
            config = cls.load_config(where, subfolder=subfolder, **hub)
        else:
            where, config = "the config dictionary", dict(pretrained_model_name_or_path_or_dict)
        _refuse_remote_code(config, trust_remote_code)
        library, class_name = _library_and_class(config, where)
        if library == "transformers":
            from transformers import AutoConfig

            model_type = config.pop("model_type")
            return _model_class(library, class_name, None).from_config(
                AutoConfig.for_model(model_type, **config), **kwargs
            )
        model_cls = _model_class(library, class_name, None)
        return model_cls.from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_or_path: Union[str, os.PathLike, None] = None, **kwargs):
        r"""
        Instantiate a pretrained MindSpore model of the class its configuration names.

        With a `subfolder` that the folder's `model_index.json` lists (a pipeline folder), the class comes from that
        entry; otherwise from the `config.json` of the model folder: its `_class_name` (a mindone.diffusers model) or
        its `model_type` (a mindone.transformers model).

        Parameters:
            pretrained_model_or_path (`str` or `os.PathLike`):
                A repo id, or a folder with the model's weights and configuration (or a pipeline folder with
                `subfolder`).
            subfolder (`str`, *optional*):
                The folder of the model inside the repository or directory, e.g. `"transformer"`.
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Passed to the class's `from_pretrained` (e.g. `mindspore_dtype`, `variant`, hub options).

        Example:

        ```py
        >>> from mindone.diffusers import AutoModel

        >>> transformer = AutoModel.from_pretrained("Alpha-VLLM/Lumina-Image-2.0", subfolder="transformer")
        ```
        """
        if pretrained_model_or_path is None:
            raise ValueError("Please provide a `pretrained_model_or_path` as the first positional argument.")
        subfolder = kwargs.pop("subfolder", None)
        trust_remote_code = kwargs.pop("trust_remote_code", False)
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        path = os.fspath(pretrained_model_or_path)

        # A pipeline folder's model_index.json names the class of each component folder
        library = class_name = None
        config = {}
        try:
            with _reading(cls, "model_index.json"):
                index = cls.load_config(path, **hub)
        except EnvironmentError as e:
            logger.debug(e)
        else:
            if subfolder is not None and isinstance(index.get(subfolder), (list, tuple)):
                library, class_name = index[subfolder]
        if library is None:
            config = cls.load_config(path, subfolder=subfolder, **hub)
            where = os.path.join(path, subfolder) if subfolder else path
            library, class_name = _library_and_class(config, where)
        _refuse_remote_code(config, trust_remote_code)

        model_cls = _model_class(library, class_name, subfolder)
        if subfolder is not None:
            kwargs["subfolder"] = subfolder
        return model_cls.from_pretrained(path, **hub, **kwargs)
