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
"""Feed-forward layers of the Lumina2 closure, and the processor part of `AttentionMixin`.

Adapted from diffusers v0.42.1 `models/attention.py`; MindSpore changes:
of the feed-forward layers only `LuminaFeedForward` is ported, with `cpu_layers.Linear` layers (`mint.nn.Linear` with
a faster CPU matmul), and it runs large inputs in chunks of rows (`FEED_FORWARD_CHUNK_ELEMENTS`). `AttentionMixin` has
no QKV fusion, checks a processor dict before it changes anything, and invalidates compiled graphs.
"""

from typing import Any, Dict, Optional, Union

import mindspore as ms
from mindspore import mint, nn, ops

from ...peft import invalidate_compiled_graphs
from .activations import FP32SiLU  # noqa: F401 (upstream's attention module has it too)
from .cpu_layers import Linear

# `LuminaFeedForward` runs its input in equal chunks of rows whose inner activations hold at most this many elements
# each. The three inner-width activations of the whole input (2 x 1152 tokens at the 2B widths: 81 MB each) were the
# peak of a transformer block; in four chunks of 576 rows a compiled real-width block grew by 0.37 GB instead of 0.65,
# at the same speed (three or six chunks were a few % slower) and with the same result bit for bit (an output row
# depends on its input row only)
FEED_FORWARD_CHUNK_ELEMENTS = 6 << 20


class AttentionMixin:
    """upstream's `AttentionMixin` without QKV fusion: the attention processors of every `Attention` layer."""

    @property
    def attn_processors(self) -> Dict[str, Any]:
        r"""
        Returns:
            `dict` of attention processors: A dictionary containing all attention processors used in the model with
            indexed by its weight name.
        """
        return {
            f"{name}.processor": cell.get_processor()
            for name, cell in self.cells_and_names()
            if name and hasattr(cell, "get_processor")
        }

    def set_attn_processor(self, processor: Union[Any, Dict[str, Any]]):
        r"""
        Sets the attention processor to use to compute attention.

        Parameters:
            processor (`dict` of `AttentionProcessor` or only `AttentionProcessor`):
                The instantiated processor class or a dictionary of processor classes that will be set as the processor
                for **all** `Attention` layers.

                If `processor` is a dict, the key needs to define the path to the corresponding cross attention
                processor. This is strongly recommended when setting trainable attention processors.
        """
        names = list(self.attn_processors)
        if isinstance(processor, dict):
            if len(processor) != len(names):
                raise ValueError(
                    f"A dict of processors was passed, but the number of processors {len(processor)} does not match"
                    f" the number of attention layers: {len(names)}. Please make sure to pass {len(names)} processor"
                    " classes."
                )
            # checked before any layer changes (upstream fails with a KeyError part way)
            unknown = sorted(set(processor) - set(names))
            if unknown:
                raise ValueError(f"Unknown attention processor keys {unknown}: the model's keys are {names}.")
        for name, cell in self.cells_and_names():
            if name and hasattr(cell, "set_processor"):
                cell.set_processor(processor[f"{name}.processor"] if isinstance(processor, dict) else processor)
        # compiled graphs (GRAPH_MODE, the compiled CPU paths) folded the old processors in
        invalidate_compiled_graphs(self)


class LuminaFeedForward(nn.Cell):
    r"""
    A feed-forward layer.

    Parameters:
        dim (`int`):
            The dimensionality of the hidden layers in the model. This parameter determines the width of the model's
            hidden representations.
        inner_dim (`int`): The intermediate dimension of the feedforward layer.
        multiple_of (`int`, *optional*, defaults to 256): Value to ensure hidden dimension is a multiple
            of this value.
        ffn_dim_multiplier (float, *optional*): Custom multiplier for hidden
            dimension. Defaults to None.
    """

    def __init__(
        self,
        dim: int,
        inner_dim: int,
        multiple_of: Optional[int] = 256,
        ffn_dim_multiplier: Optional[float] = None,
    ):
        super().__init__()
        # custom hidden_size factor multiplier
        if ffn_dim_multiplier is not None:
            inner_dim = int(ffn_dim_multiplier * inner_dim)
        inner_dim = multiple_of * ((inner_dim + multiple_of - 1) // multiple_of)

        self.inner_dim = inner_dim
        self.linear_1 = Linear(dim, inner_dim, bias=False)
        self.linear_2 = Linear(inner_dim, dim, bias=False)
        self.linear_3 = Linear(dim, inner_dim, bias=False)
        self.silu = FP32SiLU()

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        rows = x.size // x.shape[-1]
        chunks = -(-rows * self.inner_dim // FEED_FORWARD_CHUNK_ELEMENTS)
        if chunks <= 1:
            return self._feed_forward(x)
        step = -(-rows // chunks)  # equal chunks
        # chunks of rows, ordered with `ops.depend` so that a compiled graph runs them one after the other and reuses
        # their memory
        outputs, previous = [], None
        for part in mint.split(x.reshape(rows, x.shape[-1]), step, dim=0):
            if previous is not None:
                part = ops.depend(part, previous)
            previous = self._feed_forward(part)
            outputs.append(previous)
        return mint.cat(outputs, dim=0).reshape(x.shape[:-1] + (-1,))

    def _feed_forward(self, x: ms.Tensor) -> ms.Tensor:
        return self.linear_2(self.silu(self.linear_1(x)) * self.linear_3(x))
