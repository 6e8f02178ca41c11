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
"""A MindSpore port of PEFT 0.21's LoRA for `mint.nn.Linear` and `nn.Conv2d` layers (no torch).

Mirrors PEFT's module layout and names (`LoraConfig`, `inject_adapter_in_model`, `get_peft_model_state_dict`,
`set_peft_model_state_dict`, `BaseTunerLayer`, hotswap helpers); PEFT's `BaseTuner` methods are functions taking the
model (`set_adapter`, `delete_adapter`, `merge_adapter`, `unmerge_adapter`, `merge_and_unload`, `unload`, ...), and
diffusers' `scale_lora_layers` / `unscale_lora_layers` are here too for the run-time LoRA scale.
"""

from .config import PeftConfig
from .mapping import PEFT_TYPE_TO_CONFIG_MAPPING, get_peft_config, inject_adapter_in_model, inject_and_load_adapter
from .tuners.lora import Conv2d, Linear, LoraConfig, LoraLayer
from .tuners.tuners_utils import (
    BaseTunerLayer,
    check_target_module_exists,
    delete_adapter,
    disable_adapter_layers,
    enable_adapter_layers,
    get_adapter_layer_summary,
    invalidate_compiled_graphs,
    iter_tuner_layers,
    lora_scale,
    merge_adapter,
    merge_and_unload,
    scale_lora_layers,
    set_adapter,
    unload,
    unmerge_adapter,
    unscale_lora_layers,
)
from .utils import (
    AdapterStateDictError,
    HotswapError,
    NoMatchingPeftModuleError,
    PeftType,
    PeftWarning,
    TaskType,
)

# the PEFT release whose LoRA behaviour this follows
from .utils.constants import PEFT_VERSION as __version__  # noqa: F401
from .utils.hotswap import (
    check_hotswap_configs_compatible,
    hotswap_adapter_from_state_dict,
    prepare_model_for_compiled_hotswap,
)
from .utils.save_and_load import get_peft_model_state_dict, set_peft_model_state_dict

__all__ = [
    "PEFT_TYPE_TO_CONFIG_MAPPING",
    "AdapterStateDictError",
    "BaseTunerLayer",
    "Conv2d",
    "HotswapError",
    "Linear",
    "LoraConfig",
    "LoraLayer",
    "NoMatchingPeftModuleError",
    "PeftConfig",
    "PeftType",
    "PeftWarning",
    "TaskType",
    "check_hotswap_configs_compatible",
    "check_target_module_exists",
    "delete_adapter",
    "disable_adapter_layers",
    "enable_adapter_layers",
    "get_adapter_layer_summary",
    "get_peft_config",
    "get_peft_model_state_dict",
    "hotswap_adapter_from_state_dict",
    "inject_adapter_in_model",
    "inject_and_load_adapter",
    "invalidate_compiled_graphs",
    "iter_tuner_layers",
    "lora_scale",
    "merge_adapter",
    "merge_and_unload",
    "prepare_model_for_compiled_hotswap",
    "scale_lora_layers",
    "set_adapter",
    "set_peft_model_state_dict",
    "unload",
    "unmerge_adapter",
    "unscale_lora_layers",
]
