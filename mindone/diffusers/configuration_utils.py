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
"""ConfigMixin base class and utilities.

Adapted from diffusers v0.42.1 `configuration_utils.py`; MindSpore changes: files resolve through
`utils.hub_utils.resolve_file`, `_diffusers_version` records the diffusers release this port follows, and attributes
are set with `object.__setattr__` so the mixin works on a `mindspore.nn.Cell` before `Cell.__init__` runs.
"""

import functools
import importlib
import inspect
import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

from .utils import DIFFUSERS_REFERENCE_VERSION, local_subfolder, logging, resolve_file
from .utils.hub_utils import extract_commit_hash
from .utils.mindspore_utils import _NO_DEVICES
from .utils.unsupported import refuse_register_for_auto_class

logger = logging.get_logger(__name__)


class FrozenDict(OrderedDict):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            setattr(self, key, value)
        self.__frozen = True

    def __delitem__(self, *args, **kwargs):
        raise Exception(f"You cannot use ``__delitem__`` on a {self.__class__.__name__} instance.")

    def setdefault(self, *args, **kwargs):
        raise Exception(f"You cannot use ``setdefault`` on a {self.__class__.__name__} instance.")

    def pop(self, *args, **kwargs):
        raise Exception(f"You cannot use ``pop`` on a {self.__class__.__name__} instance.")

    def update(self, *args, **kwargs):
        raise Exception(f"You cannot use ``update`` on a {self.__class__.__name__} instance.")

    def __setattr__(self, name, value):
        if hasattr(self, "__frozen") and self.__frozen:
            raise Exception(f"You cannot use ``__setattr__`` on a {self.__class__.__name__} instance.")
        super().__setattr__(name, value)

    def __setitem__(self, name, value):
        if hasattr(self, "__frozen") and self.__frozen:
            raise Exception(f"You cannot use ``__setattr__`` on a {self.__class__.__name__} instance.")
        super().__setitem__(name, value)


def deprecated_config_attribute(obj, name: str, example: str):
    """Upstream's deprecated access of a config value as an attribute (`scheduler.num_train_timesteps`): the value,
    with a FutureWarning, when `name` is in `obj`'s config and not one of its attributes; otherwise None."""
    internal = obj.__dict__.get("_internal_dict")
    # upstream's `hasattr(internal, name)`: the entries the FrozenDict was built with (its attributes), not keys set
    # later (`_class_name` / `_diffusers_version` written by `to_json_string`), nor dict methods
    if internal is None or name not in vars(internal) or name in obj.__dict__:
        return None
    warnings.warn(
        f"Accessing config attribute `{name}` directly via '{type(obj).__name__}' object attribute is deprecated. "
        f"Please access '{name}' over '{type(obj).__name__}'s config object instead, e.g. '{example}.config.{name}'.",
        FutureWarning,
        stacklevel=3,
    )
    return (internal[name],)


def missing_attribute(obj, name: str) -> AttributeError:
    """The error for an attribute `obj` does not have; for `device` (upstream's models and pipelines have one) it says
    what to do instead."""
    hint = f": {_NO_DEVICES}" if name == "device" else ""
    return AttributeError(f"'{type(obj).__name__}' object has no attribute '{name}'{hint}")


class ConfigMixin:
    r"""
    Base class for all configuration classes. All configuration parameters are stored under `self.config`. Also
    provides the [`~ConfigMixin.from_config`] and [`~ConfigMixin.save_config`] methods for loading, downloading, and
    saving classes that inherit from [`ConfigMixin`].

    Class attributes:
        - **config_name** (`str`) -- A filename under which the config should stored when calling
          [`~ConfigMixin.save_config`] (should be overridden by parent class).
        - **ignore_for_config** (`List[str]`) -- A list of attributes that should not be saved in the config (should be
          overridden by subclass).
        - **has_compatibles** (`bool`) -- Whether the class has compatible classes (should be overridden by subclass).
    """

    config_name = None
    ignore_for_config = []
    has_compatibles = False
    _compatibles = []
    _deprecated_kwargs = []

    register_for_auto_class = classmethod(refuse_register_for_auto_class)

    def register_to_config(self, **kwargs):
        if self.config_name is None:
            raise NotImplementedError(f"Make sure that {self.__class__} has defined a class name `config_name`")
        kwargs.pop("kwargs", None)
        if "_internal_dict" not in self.__dict__:
            internal_dict = kwargs
        else:
            internal_dict = {**self.__dict__["_internal_dict"], **kwargs}
        object.__setattr__(self, "_internal_dict", FrozenDict(internal_dict))

    @property
    def config(self) -> FrozenDict:
        """The config of the class as a frozen dictionary."""
        if "_internal_dict" not in self.__dict__:
            raise AttributeError(
                f"'{type(self).__name__}' object has no attribute 'config' (its `__init__` is not decorated with "
                "`@register_to_config`)."
            )
        return self.__dict__["_internal_dict"]

    def __getattr__(self, name: str) -> Any:
        found = deprecated_config_attribute(self, name, "scheduler")
        if found is None:
            raise missing_attribute(self, name)
        return found[0]

    def save_config(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False, **kwargs):
        """Save a configuration object to `save_directory` so that it can be reloaded with `from_config`.

        Args:
            save_directory (`str` or `os.PathLike`):
                Directory where the configuration JSON file is saved (will be created if it does not exist).
            push_to_hub (`bool`, *optional*, defaults to `False`):
                Not supported by this port (no Hub access); raises if `True`.
        """
        if os.path.isfile(save_directory):
            raise AssertionError(f"Provided path ({save_directory}) should be a directory, not a file")
        if push_to_hub:
            raise NotImplementedError(
                "`push_to_hub=True` is not supported: upload the saved folder with huggingface_hub."
            )
        os.makedirs(save_directory, exist_ok=True)
        output_config_file = os.path.join(save_directory, self.config_name)
        self.to_json_file(output_config_file)
        logger.info(f"Configuration saved in {output_config_file}")

    @classmethod
    def from_config(
        cls, config: Union[FrozenDict, Dict[str, Any]] = None, return_unused_kwargs: bool = False, **kwargs
    ):
        r"""Instantiate a Python class from a config dictionary.

        Args:
            config (`Dict[str, Any]`):
                A config dictionary from which the Python class is instantiated. A path or repo id is still read
                (with `load_config`) but deprecated, as upstream.
            return_unused_kwargs (`bool`, *optional*, defaults to `False`):
                Whether kwargs that are not consumed by the Python class should be returned or not.
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Can be used to update the configuration object (after it is loaded) and initiate the Python class.
        """
        if "pretrained_model_name_or_path" in kwargs:
            config = kwargs.pop("pretrained_model_name_or_path")
        if config is None:
            raise ValueError("Please make sure to provide a config as the first positional argument.")
        if isinstance(config, (str, os.PathLike)):
            # upstream's deprecated form: a path or repo id, read with `load_config`
            warnings.warn(
                "It is deprecated to pass a pretrained model name or path to `from_config`: use "
                f"`{cls.__name__}.from_config({cls.__name__}.load_config(...))` (or `from_pretrained`) instead. This "
                "functionality will be removed in v1.0.0.",
                FutureWarning,
            )
            config, kwargs = cls.load_config(config, return_unused_kwargs=True, **kwargs)
        if not isinstance(config, dict):
            raise ValueError(
                f"`from_config` expects a config dictionary (e.g. `model.config`), got {type(config).__name__}. "
                "To load a config file use `load_config` first."
            )
        init_dict, unused_kwargs, hidden_dict = cls.extract_init_dict(config, **kwargs)
        # Allow dtype to be specified on initialization
        if "dtype" in unused_kwargs:
            init_dict["dtype"] = unused_kwargs.pop("dtype")
        # add possible deprecated kwargs
        for deprecated_kwarg in cls._deprecated_kwargs:
            if deprecated_kwarg in unused_kwargs:
                init_dict[deprecated_kwarg] = unused_kwargs.pop(deprecated_kwarg)

        model = cls(**init_dict)
        # make sure to also save config parameters that might be used for compatible classes
        if "_class_name" in hidden_dict:
            hidden_dict["_class_name"] = cls.__name__
        model.register_to_config(**hidden_dict)
        # add hidden kwargs of compatible classes to unused_kwargs
        unused_kwargs = {**unused_kwargs, **hidden_dict}
        if return_unused_kwargs:
            return (model, unused_kwargs)
        return model

    @classmethod
    def get_config_dict(cls, *args, **kwargs):
        # upstream's deprecated name of `load_config`
        warnings.warn(
            f" The function get_config_dict is deprecated. Please use {cls}.load_config instead. This function will be"
            " removed in version v1.0.0",
            FutureWarning,
            stacklevel=2,
        )
        return cls.load_config(*args, **kwargs)

    @classmethod
    def load_config(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        return_unused_kwargs: bool = False,
        return_commit_hash: bool = False,
        **kwargs,
    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        r"""Load a model or scheduler configuration.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`, *optional*):
                A repo id of a model in the Hugging Face cache, a directory containing the config file, or the file.
            subfolder (`str`, *optional*): The subfolder location of the config file.
            cache_dir, local_files_only, revision, token, force_download, proxies:
                Passed to `huggingface_hub` when a repo id is given.
        """
        cache_dir = kwargs.pop("cache_dir", None)
        local_files_only = kwargs.pop("local_files_only", False)
        revision = kwargs.pop("revision", None)
        token = kwargs.pop("token", None)
        force_download = kwargs.pop("force_download", False)
        proxies = kwargs.pop("proxies", None)
        subfolder = kwargs.pop("subfolder", None)
        kwargs.pop("user_agent", None)
        # upstream pops these too; `local_dir` is not used here (a repo id is downloaded to the cache)
        for ignored in ("mirror", "local_dir", "local_dir_use_symlinks"):
            kwargs.pop(ignored, None)
        kwargs.pop("_from_pipeline", None)
        kwargs.pop("_from_auto", None)
        kwargs.pop("_commit_hash", None)

        if cls.config_name is None:
            raise ValueError(
                "`self.config_name` is not defined. Note that one should not load a config from "
                "`ConfigMixin`. Please make sure to define `config_name` in a class inheriting from `ConfigMixin`"
            )
        path = os.fspath(pretrained_model_name_or_path)
        subfolder = local_subfolder(path, subfolder, cls.config_name)
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, subfolder or "", cls.config_name)):
            raise EnvironmentError(
                f"Error no file named {cls.config_name} found in directory {os.path.join(path, subfolder) if subfolder else path}."
            )
        config_file = resolve_file(
            path,
            cls.config_name,
            subfolder=subfolder,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            revision=revision,
            token=token,
            force_download=force_download,
            proxies=proxies,
        )
        try:
            config_dict = cls._dict_from_json_file(config_file)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise EnvironmentError(f"It looks like the config file at '{config_file}' is not a valid JSON file.")
        if not isinstance(config_dict, dict):
            raise EnvironmentError(f"The config file at '{config_file}' does not hold a JSON object.")

        if not (return_unused_kwargs or return_commit_hash):
            return config_dict
        outputs = (config_dict,)
        if return_unused_kwargs:
            outputs += (kwargs,)
        if return_commit_hash:
            outputs += (extract_commit_hash(config_file),)
        return outputs

    @staticmethod
    def _get_init_keys(input_class):
        return set(dict(inspect.signature(input_class.__init__).parameters).keys())

    @classmethod
    def _get_compatibles(cls):
        compatible_classes_str = list(set([cls.__name__] + cls._compatibles))
        library = importlib.import_module("mindone.diffusers")
        return [getattr(library, c) for c in compatible_classes_str if hasattr(library, c)]

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        # Skip keys that were not present in the original config, so default __init__ values were used
        used_defaults = config_dict.get("_use_default_values", [])
        config_dict = {k: v for k, v in config_dict.items() if k not in used_defaults and k != "_use_default_values"}
        original_dict = dict(config_dict.items())

        expected_keys = cls._get_init_keys(cls)
        expected_keys.remove("self")
        expected_keys.discard("kwargs")
        if len(cls.ignore_for_config) > 0:
            expected_keys = expected_keys - set(cls.ignore_for_config)

        compatible_classes = cls._get_compatibles() if cls.has_compatibles else []
        expected_keys_comp_cls = set()
        for c in compatible_classes:
            expected_keys_comp_cls = expected_keys_comp_cls.union(cls._get_init_keys(c))
        expected_keys_comp_cls = expected_keys_comp_cls - cls._get_init_keys(cls)
        config_dict = {k: v for k, v in config_dict.items() if k not in expected_keys_comp_cls}

        orig_cls_name = config_dict.pop("_class_name", cls.__name__)
        library = importlib.import_module("mindone.diffusers")
        if isinstance(orig_cls_name, str) and orig_cls_name != cls.__name__ and hasattr(library, orig_cls_name):
            orig_cls = getattr(library, orig_cls_name)
            unexpected_keys_from_orig = cls._get_init_keys(orig_cls) - expected_keys
            config_dict = {k: v for k, v in config_dict.items() if k not in unexpected_keys_from_orig}
        elif not isinstance(orig_cls_name, (str, list, tuple)):
            raise ValueError(
                "Make sure that the `_class_name` is of type string or list of string (for custom pipelines)."
            )

        # remove private attributes and quantization configs
        config_dict = {k: v for k, v in config_dict.items() if not k.startswith("_") and k != "quantization_config"}

        init_dict = {}
        for key in expected_keys:
            if key in kwargs and key in config_dict:
                config_dict[key] = kwargs.pop(key)
            if key in kwargs:
                init_dict[key] = kwargs.pop(key)
            elif key in config_dict:
                init_dict[key] = config_dict.pop(key)

        if len(config_dict) > 0:
            # a config saved by another class that this package does not have (e.g. EulerDiscreteScheduler's, loaded
            # into FlowMatchEulerDiscreteScheduler): upstream knows that class and drops its keys silently
            foreign = (
                isinstance(orig_cls_name, str)
                and orig_cls_name != cls.__name__
                and not hasattr(library, orig_cls_name)
            )
            (logger.info if foreign else logger.warning)(
                f"The config attributes {config_dict} were passed to {cls.__name__}, "
                "but are not expected and will be ignored. Please verify your "
                f"{cls.config_name} configuration file."
            )
        passed_keys = set(init_dict.keys())
        if len(expected_keys - passed_keys) > 0:
            logger.info(
                f"{expected_keys - passed_keys} was not found in config. Values will be initialized to default values."
            )
        unused_kwargs = {**config_dict, **kwargs}
        hidden_config_dict = {k: v for k, v in original_dict.items() if k not in init_dict}
        return init_dict, unused_kwargs, hidden_config_dict

    @classmethod
    def _dict_from_json_file(cls, json_file: Union[str, os.PathLike]):
        with open(json_file, "r", encoding="utf-8") as reader:
            return json.loads(reader.read())

    def __repr__(self):
        return f"{self.__class__.__name__} {self.to_json_string()}"

    def to_json_string(self) -> str:
        """Serializes the configuration instance to a JSON string (the format diffusers reads)."""
        # as upstream, into the live config (FrozenDict allows item assignment): after a save or a repr, `obj.config`
        # holds the class name and version too
        config_dict = self.__dict__.get("_internal_dict", {})
        config_dict["_class_name"] = self.__class__.__name__
        config_dict["_diffusers_version"] = DIFFUSERS_REFERENCE_VERSION

        def to_json_saveable(value):
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, Path):
                value = value.as_posix()
            elif hasattr(value, "to_dict") and callable(value.to_dict):
                value = value.to_dict()
            elif isinstance(value, (list, tuple)):
                value = [to_json_saveable(v) for v in value]
            return value

        config_dict = {k: to_json_saveable(v) for k, v in config_dict.items()}
        config_dict.pop("_ignore_files", None)
        config_dict.pop("_use_default_values", None)
        config_dict.pop("_pre_quantization_dtype", None)
        return json.dumps(config_dict, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: Union[str, os.PathLike]):
        """Save the configuration instance's parameters to a JSON file."""
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(self.to_json_string())


def register_to_config(init):
    r"""
    Decorator to apply on the init of classes inheriting from [`ConfigMixin`] so that all the arguments are
    automatically sent to `self.register_for_config`. To ignore a specific argument accepted by the init but that
    shouldn't be registered in the config, use the `ignore_for_config` class variable

    Warning: Once decorated, all private arguments (beginning with an underscore) are trashed and not sent to the init!
    """

    @functools.wraps(init)
    def inner_init(self, *args, **kwargs):
        init_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        config_init_kwargs = {k: v for k, v in kwargs.items() if k.startswith("_")}
        if not isinstance(self, ConfigMixin):
            raise RuntimeError(
                f"`@register_for_config` was applied to {self.__class__.__name__} init method, but this class does "
                "not inherit from `ConfigMixin`."
            )
        ignore = getattr(self, "ignore_for_config", [])
        new_kwargs = {}
        signature = inspect.signature(init)
        parameters = {
            name: p.default for i, (name, p) in enumerate(signature.parameters.items()) if i > 0 and name not in ignore
        }
        for arg, name in zip(args, parameters.keys()):
            new_kwargs[name] = arg
        new_kwargs.update(
            {
                k: init_kwargs.get(k, default)
                for k, default in parameters.items()
                if k not in ignore and k not in new_kwargs
            }
        )
        if len(set(new_kwargs.keys()) - set(init_kwargs)) > 0:
            new_kwargs["_use_default_values"] = list(set(new_kwargs.keys()) - set(init_kwargs))
        new_kwargs = {**config_init_kwargs, **new_kwargs}
        getattr(self, "register_to_config")(**new_kwargs)
        init(self, *args, **init_kwargs)

    return inner_init
