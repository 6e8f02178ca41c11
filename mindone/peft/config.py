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
"""Adapted from peft v0.21 `src/peft/config.py`; MindSpore changes: no Hub download (`from_pretrained` reads a local
directory), no `transformers` PushToHubMixin; `from_dict` is the tolerant constructor PEFT's `from_peft_type` is."""

import json
import os
import warnings
from dataclasses import dataclass, fields
from typing import Optional

from .utils.constants import CONFIG_NAME


@dataclass(init=False)
class PeftConfig:
    """Fields shared by every PEFT config (the common keys of `adapter_config.json`).

    Args:
        peft_type (`str`, *optional*): The PEFT method, `"LORA"` here.
        task_type (`str`, *optional*): Kept for file compatibility; not used by `mindone.peft`.
        inference_mode (`bool`, defaults to `False`): Whether the adapter weights are frozen when activated.
    """

    task_type: Optional[str] = None
    peft_type: Optional[str] = None
    auto_mapping: Optional[dict] = None
    peft_version: Optional[str] = None
    base_model_name_or_path: Optional[str] = None
    revision: Optional[str] = None
    inference_mode: bool = False

    def to_dict(self) -> dict:
        """The configuration as a JSON-ready dictionary (the keys PEFT writes to `adapter_config.json`)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, set):
                value = sorted(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, config_dict: dict) -> "PeftConfig":
        """Build a config from a dictionary, e.g. a parsed `adapter_config.json` or the `lora_adapter_metadata`
        diffusers stores in safetensors files."""
        if not isinstance(config_dict, dict):
            raise TypeError(f"`config_dict` must be a dict, got {type(config_dict).__name__}.")
        if cls is PeftConfig:  # as PEFT's `from_peft_type`: the config class of the dict's `peft_type`
            from .mapping import get_peft_config

            return get_peft_config(config_dict)
        known = cls._config_keys()
        unknown = sorted(k for k in config_dict if k not in known)
        if unknown:
            if "peft_type" not in config_dict:  # as PEFT: not a config of a newer PEFT, not a PEFT config at all
                raise TypeError(
                    f"The {cls.__name__} config that is trying to be loaded is missing required keys: {{'peft_type'}} "
                    f"(and has keys it does not take: {unknown})."
                )
            warnings.warn(
                f"Unexpected keyword arguments {unknown} for class {cls.__name__}, these are ignored. This probably "
                "means that you're loading a configuration file that was saved using a higher version of PEFT."
            )
            config_dict = {k: v for k, v in config_dict.items() if k in known}
        return cls(**config_dict)

    @classmethod
    def _config_keys(cls) -> set:
        """The keys the constructor takes."""
        return {f.name for f in fields(cls)}

    def save_pretrained(self, save_directory: str, **kwargs) -> None:
        """Write `adapter_config.json` to `save_directory` (created if missing)."""
        if os.path.isfile(save_directory):
            raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
        os.makedirs(save_directory, exist_ok=True)
        output = self.to_dict()
        auto_mapping_dict = kwargs.pop("auto_mapping_dict", None)
        if auto_mapping_dict is not None:
            output["auto_mapping"] = auto_mapping_dict
        with open(os.path.join(save_directory, CONFIG_NAME), "w", encoding="utf-8") as writer:
            writer.write(json.dumps(output, indent=2, sort_keys=True))

    @classmethod
    def from_json_file(cls, path_json_file: str) -> dict:
        with open(path_json_file, encoding="utf-8") as file:
            json_object = json.load(file)
        if "runtime_config" in json_object:
            warnings.warn(
                "The configuration file contains a `runtime_config` key. This is ignored. Runtime configurations are "
                "only valid at runtime."
            )
            del json_object["runtime_config"]
        return json_object

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, subfolder: Optional[str] = None, **kwargs):
        """Load `adapter_config.json` from a local directory; `kwargs` override loaded fields."""
        path = os.fspath(pretrained_model_name_or_path)
        if subfolder is not None:
            path = os.path.join(path, subfolder)
        config_file = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(config_file):
            raise ValueError(f"Can't find '{CONFIG_NAME}' at '{path}'")
        loaded = cls.from_json_file(config_file)
        return cls.from_dict({**loaded, **kwargs})
