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
"""Feed-forward layers of the Lumina2 closure.

Adapted from diffusers v0.42.1 `models/attention.py` (and `FP32SiLU` from `models/activations.py`); MindSpore changes:
only `LuminaFeedForward` is ported, with `cpu_layers.Linear` layers (`mint.nn.Linear` with a faster CPU matmul).
"""

from typing import Optional

import mindspore as ms
from mindspore import mint, nn

from .cpu_layers import Linear


class FP32SiLU(nn.Cell):
    r"""
    SiLU activation function with input upcasted to float32.
    """

    def construct(self, inputs: ms.Tensor) -> ms.Tensor:
        return mint.nn.functional.silu(inputs.astype(ms.float32)).astype(inputs.dtype)


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

        self.linear_1 = Linear(dim, inner_dim, bias=False)
        self.linear_2 = Linear(inner_dim, dim, bias=False)
        self.linear_3 = Linear(dim, inner_dim, bias=False)
        self.silu = FP32SiLU()

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        return self.linear_2(self.silu(self.linear_1(x)) * self.linear_3(x))
