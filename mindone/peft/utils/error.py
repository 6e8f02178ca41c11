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
"""Adapted from peft v0.21 `src/peft/utils/error.py`; MindSpore changes: errors of the state-dict and hotswap paths
added (each subclasses `ValueError`, hotswap's also `RuntimeError` as PEFT raises there)."""


class PeftError(Exception):
    """Base class of the errors raised by `mindone.peft`."""


class NoMatchingPeftModuleError(PeftError, ValueError):
    """The adapter being injected matched no module of the base model (check `target_modules` / `exclude_modules`)."""


class AdapterStateDictError(PeftError, ValueError):
    """A LoRA state dict that does not fit the injected adapter (unknown or missing keys, wrong shapes)."""


class HotswapError(PeftError, RuntimeError, ValueError):
    """Hot-swapping was refused (unexpected keys, incompatible ranks); the model is left unchanged."""
