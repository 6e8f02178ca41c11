# Copyright 2020 The HuggingFace Team. All rights reserved.
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
"""Model outputs of mindone.transformers.

Adapted from transformers v5.24 `modeling_outputs.py`; MindSpore changes: only the output Gemma2Model returns, built
on `mindone.diffusers.utils.BaseOutput` (attribute, key and tuple access; `None` fields are skipped by `to_tuple`).
"""

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import mindspore as ms

from ..diffusers.utils import BaseOutput


@dataclass
class BaseModelOutputWithPast(BaseOutput):
    """
    Base class for model's outputs that may also contain a past key/values (to speed up sequential decoding).

    Args:
        last_hidden_state (`ms.Tensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Sequence of hidden-states at the output of the last layer of the model (after the final norm).
        cache (`None`):
            Always `None`: this port has no KV cache (kept so the fields match transformers').
        hidden_states (`tuple(ms.Tensor)`, *optional*):
            Returned when `output_hidden_states=True` is passed or when `config.output_hidden_states=True`. Tuple of
            `ms.Tensor` (one for the output of the embeddings + one for the output of each layer) of shape
            `(batch_size, sequence_length, hidden_size)`. The last entry is `last_hidden_state` (after the final
            norm), as in transformers.
        attentions (`tuple(ms.Tensor)`, *optional*, returned when `output_attentions=True` is passed):
            Tuple of `ms.Tensor` (one for each layer) of shape `(batch_size, num_heads, sequence_length,
            sequence_length)`: attention weights after the softmax.
    """

    last_hidden_state: Optional[ms.Tensor] = None
    cache: Optional[Any] = None
    hidden_states: Optional[Tuple[ms.Tensor, ...]] = None
    attentions: Optional[Tuple[ms.Tensor, ...]] = None

    @property
    def past_key_values(self):
        """transformers' deprecated name of `cache`."""
        return self.cache
