# Copyright 2025 HuggingFace Inc.
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
"""Activation lookup by name, and `FP32SiLU`.

Adapted from diffusers v0.42.1 `models/activations.py`; MindSpore changes: only `get_activation` (the VAE blocks use
it) and `FP32SiLU` (the Lumina2 embeddings use it); `mint.nn.GELU` (GeluExt) and `mint.nn.Mish` (MishExt) have no CPU kernel in MindSpore 2.10, so the legacy
`nn.GELU(approximate=False)` and `nn.Mish` stand in for them.
"""

import mindspore as ms
from mindspore import mint, nn

ACT2CLS = {
    "swish": mint.nn.SiLU,
    "silu": mint.nn.SiLU,
    "mish": nn.Mish,
    "gelu": lambda: nn.GELU(approximate=False),
    "relu": mint.nn.ReLU,
}


def get_activation(act_fn: str) -> nn.Cell:
    """Helper function to get activation function from string.

    Args:
        act_fn (str): Name of activation function.

    Returns:
        nn.Cell: Activation function.
    """

    act_fn = act_fn.lower()
    if act_fn in ACT2CLS:
        return ACT2CLS[act_fn]()
    else:
        raise ValueError(f"activation function {act_fn} not found in ACT2FN mapping {list(ACT2CLS.keys())}")


class FP32SiLU(nn.Cell):
    r"""
    SiLU activation function with input upcasted to float32.
    """

    def construct(self, inputs: ms.Tensor) -> ms.Tensor:
        return mint.nn.functional.silu(inputs.astype(ms.float32)).astype(inputs.dtype)
