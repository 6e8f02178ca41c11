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
from .constants import CONFIG_NAME, INCLUDE_LINEAR_LAYERS_SHORTHAND, SAFETENSORS_WEIGHTS_NAME
from .error import AdapterStateDictError, HotswapError, NoMatchingPeftModuleError, PeftError
from .other import get_pattern_key
from .peft_types import PeftType, TaskType
from .warning import PeftWarning

__all__ = [
    "CONFIG_NAME",
    "INCLUDE_LINEAR_LAYERS_SHORTHAND",
    "SAFETENSORS_WEIGHTS_NAME",
    "AdapterStateDictError",
    "HotswapError",
    "NoMatchingPeftModuleError",
    "PeftError",
    "PeftType",
    "PeftWarning",
    "TaskType",
    "get_pattern_key",
    "get_peft_model_state_dict",
    "set_peft_model_state_dict",
]


def __getattr__(name):
    # as in PEFT, `peft.utils` exports the state-dict helpers; imported on first use because `save_and_load` needs the
    # tuners, whose import reaches back into this package
    if name in ("get_peft_model_state_dict", "set_peft_model_state_dict"):
        from . import save_and_load

        return getattr(save_and_load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
