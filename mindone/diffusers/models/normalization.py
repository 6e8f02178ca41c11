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
"""Normalization layers of the Lumina2 closure.

Adapted from diffusers v0.42.1 `models/normalization.py`; MindSpore changes: RMSNorm is written out (no `mint.nn.RMSNorm`
in MindSpore 2.10 and `ops.rms_norm` has no CPU kernel), with upstream's fp32 variance and dtype rules; `LayerNorm` stands
in for `torch.nn.LayerNorm` because `mint.nn.LayerNorm` (LayerNormExt) has no CPU kernel in MindSpore 2.10.
"""

import numbers
from typing import Optional

import mindspore as ms
from mindspore import Parameter, mint, nn, ops

from .cpu_layers import GroupNorm as GroupNorm  # mindone.diffusers has its GroupNorm cell here
from .cpu_layers import Linear, RunsSharedGraph, _on_cpu, broadcast_add, broadcast_mul, mean_last_axis


class LayerNorm(nn.Cell):
    r"""`torch.nn.LayerNorm` with torch's parameter names (`weight`, `bias`).

    MindSpore 2.10 CPU note: `mint.nn.LayerNorm` (kernel LayerNormExt) fails with "Create kernelmod for op LayerNormExt
    failed" and legacy `nn.LayerNorm` names its parameters gamma/beta, so this wraps the `ops.LayerNorm` primitive.

    Args:
        normalized_shape (`int` or `tuple`): Trailing shape to normalize over.
        eps (`float`, defaults to 1e-5): Added to the variance.
        elementwise_affine (`bool`, defaults to `True`): Learnable `weight` (and `bias`).
        bias (`bool`, defaults to `True`): Learnable `bias` when `elementwise_affine`.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.weight = Parameter(mint.ones(self.normalized_shape), name="weight") if elementwise_affine else None
        self.bias = Parameter(mint.zeros(self.normalized_shape), name="bias") if elementwise_affine and bias else None
        self._ones = mint.ones(self.normalized_shape)
        self._zeros = mint.zeros(self.normalized_shape)
        axis = -len(self.normalized_shape)
        self.layer_norm = ops.LayerNorm(begin_norm_axis=axis, begin_params_axis=axis, epsilon=eps)

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        weight = self.weight if self.weight is not None else self._ones
        bias = self.bias if self.bias is not None else self._zeros
        return self.layer_norm(x, weight.astype(x.dtype), bias.astype(x.dtype))[0]


def _rms_norm(
    hidden_states: ms.Tensor, weight: Optional[ms.Tensor], bias: Optional[ms.Tensor], eps: float, mean_as_gemv: bool
):
    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.astype(ms.float32)
    variance = mean_last_axis(mint.square(hidden_states), mean_as_gemv)  # as a GEMV on CPU: ReduceMean is slow there
    # broadcasting products as tile + Mul (see `cpu_layers.broadcast_mul`)
    hidden_states = broadcast_mul(hidden_states, mint.rsqrt(variance + eps))
    if weight is not None:
        # convert into half-precision if necessary (the weight's dtype decides, as upstream)
        if weight.dtype in (ms.float16, ms.bfloat16):
            hidden_states = hidden_states.astype(weight.dtype)
        hidden_states = broadcast_mul(hidden_states, weight)
        if bias is not None:
            hidden_states = broadcast_add(hidden_states, bias)
    else:
        hidden_states = hidden_states.astype(input_dtype)
    return hidden_states


class RMSNorm(nn.Cell):
    r"""
    RMS Norm as introduced in https://huggingface.co/papers/1910.07467 by Zhang et al.

    Args:
        dim (`int`): Number of dimensions to use for `weights`. Only effective when `elementwise_affine` is True.
        eps (`float`): Small value to use when calculating the reciprocal of the square-root.
        elementwise_affine (`bool`, defaults to `True`):
            Boolean flag to denote if affine transformation should be applied.
        bias (`bool`, defaults to False): If also training the `bias` param.
    """

    def __init__(self, dim, eps: float, elementwise_affine: bool = True, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if isinstance(dim, numbers.Integral):
            dim = (dim,)
        self.dim = tuple(dim)
        self.weight = None
        self.bias = None
        if elementwise_affine:
            self.weight = Parameter(mint.ones(self.dim, dtype=ms.float32), name="weight")
            if bias:
                self.bias = Parameter(mint.zeros(self.dim, dtype=ms.float32), name="bias")
        self.mean_as_gemv = _on_cpu()  # decided here: the device cannot be read inside a compiled construct

    def construct(self, hidden_states: ms.Tensor) -> ms.Tensor:
        return _rms_norm(hidden_states, self.weight, self.bias, self.eps, self.mean_as_gemv)


class LuminaRMSNormZero(nn.Cell):
    """
    Norm layer adaptive RMS normalization zero.

    Parameters:
        embedding_dim (`int`): The size of each embedding vector.
    """

    def __init__(self, embedding_dim: int, norm_eps: float, norm_elementwise_affine: bool):
        super().__init__()
        self.silu = mint.nn.SiLU()
        self.linear = Linear(
            min(embedding_dim, 1024),
            4 * embedding_dim,
            bias=True,
        )
        self.norm = RMSNorm(embedding_dim, eps=norm_eps)

    def construct(self, x: ms.Tensor, emb: Optional[ms.Tensor] = None):
        emb = self.linear(self.silu(emb))
        scale_msa, gate_msa, scale_mlp, gate_mlp = mint.chunk(emb, 4, dim=1)
        x = broadcast_mul(self.norm(x), 1 + scale_msa[:, None])

        return x, gate_msa, scale_mlp, gate_mlp


class LuminaLayerNormContinuous(RunsSharedGraph, nn.Cell):
    def __init__(
        self,
        embedding_dim: int,
        conditioning_embedding_dim: int,
        # NOTE: It is a bit weird that the norm layer can be configured to have scale and shift parameters
        # because the output is immediately scaled and shifted by the projected conditioning embeddings.
        # Note that AdaLayerNorm does not let the norm layer have scale and shift parameters.
        # However, this is how it was implemented in the original code, and it's rather likely you should
        # set `elementwise_affine` to False.
        elementwise_affine=True,
        eps=1e-5,
        bias=True,
        norm_type="layer_norm",
        out_dim: Optional[int] = None,
    ):
        super().__init__()

        # AdaLN
        self.silu = mint.nn.SiLU()
        self.linear_1 = Linear(conditioning_embedding_dim, embedding_dim, bias=bias)

        if norm_type == "layer_norm":
            self.norm = LayerNorm(embedding_dim, eps, elementwise_affine, bias)
        elif norm_type == "rms_norm":
            self.norm = RMSNorm(embedding_dim, eps=eps, elementwise_affine=elementwise_affine)
        else:
            raise ValueError(f"unknown norm_type {norm_type}")

        self.linear_2 = None
        if out_dim is not None:
            self.linear_2 = Linear(embedding_dim, out_dim, bias=bias)

    def construct(self, x: ms.Tensor, conditioning_embedding: ms.Tensor) -> ms.Tensor:
        # convert back to the original dtype in case `conditioning_embedding`` is upcasted to float32 (needed for hunyuanDiT)
        emb = self.linear_1(self.silu(conditioning_embedding).astype(x.dtype))
        scale = emb
        x = broadcast_mul(self.norm(x), (1 + scale)[:, None, :])

        if self.linear_2 is not None:
            x = self.linear_2(x)

        return x
