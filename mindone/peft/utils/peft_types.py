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
"""Adapted from peft v0.21 `src/peft/utils/peft_types.py`; MindSpore changes: only the LoRA type (the task types are
kept for config files; `mindone.peft` has no task-specific models)."""

import enum


class PeftType(str, enum.Enum):
    """The PEFT methods this port implements (the value is what `adapter_config.json` stores as `peft_type`)."""

    LORA = "LORA"


class TaskType(str, enum.Enum):
    """The task types a PEFT config may name (`task_type`); kept for file compatibility."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"
