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
"""Timestep embeddings and rotary position helpers of the Lumina2 closure.

Adapted from diffusers v0.42.1 `models/embeddings.py`; MindSpore changes: only the Lumina path of the rotary helpers
(`use_real=False`), written in real arithmetic: the complex exponential `freqs_cis` is carried as its real view
(`[..., D/2, 2]`, i.e. `(cos, sin)`) instead of a complex tensor, which compiles in GRAPH_MODE and suits Ascend; the
frequency tables are computed on the host in float64 with NumPy.
"""

import math
from typing import Optional, Union

import numpy as np

import mindspore as ms
from mindspore import mint, nn, ops

from .activations import get_activation
from .cpu_layers import Linear, expand_to, pair_swap_matrix


def get_timestep_embedding(
    timesteps: ms.Tensor,
    embedding_dim: int,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1,
    scale: float = 1,
    max_period: int = 10000,
) -> ms.Tensor:
    """
    This matches the implementation in Denoising Diffusion Probabilistic Models: Create sinusoidal timestep embeddings.

    Args
        timesteps (ms.Tensor):
            a 1-D Tensor of N indices, one per batch element. These may be fractional.
        embedding_dim (int):
            the dimension of the output.
        flip_sin_to_cos (bool):
            Whether the embedding order should be `cos, sin` (if True) or `sin, cos` (if False)
        downscale_freq_shift (float):
            Controls the delta between frequencies between dimensions
        scale (float):
            Scaling factor applied to the embeddings.
        max_period (int):
            Controls the maximum frequency of the embeddings
    Returns
        ms.Tensor: an [N x dim] Tensor of positional embeddings.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"`timesteps` should be a 1d-array, got shape {timesteps.shape}.")

    half_dim = embedding_dim // 2
    emb = _timestep_frequencies(half_dim, downscale_freq_shift, max_period)
    emb = timesteps[:, None].astype(ms.float32) * emb[None, :]

    # scale embeddings
    emb = scale * emb

    # concat sine and cosine embeddings
    emb = mint.cat([mint.sin(emb), mint.cos(emb)], dim=-1)

    # flip sine and cosine embeddings
    if flip_sin_to_cos:
        emb = mint.cat([emb[:, half_dim:], emb[:, :half_dim]], dim=-1)

    # zero pad
    if embedding_dim % 2 == 1:
        emb = ops.pad(emb, (0, 1, 0, 0))
    return emb


def _timestep_frequencies(half_dim: int, downscale_freq_shift: float, max_period: int) -> ms.Tensor:
    # the float32 exponent of upstream, exponentiated on the host: MindSpore 2.10's CPU `exp` kernel is off by up to
    # 4.5e-6 (relative), which large timesteps turn into visible phase errors
    exponent = np.float32(-math.log(max_period)) * np.arange(half_dim, dtype=np.float32)
    exponent = exponent / np.float32(half_dim - downscale_freq_shift)
    return ms.Tensor(np.exp(exponent.astype(np.float64)).astype(np.float32))


def get_1d_rotary_pos_embed(
    dim: int,
    pos: Union[np.ndarray, int],
    theta: float = 10000.0,
    use_real: bool = False,
    linear_factor: float = 1.0,
    ntk_factor: float = 1.0,
    repeat_interleave_real: bool = True,
    freqs_dtype=np.float32,
) -> ms.Tensor:
    """
    Precompute the frequency tensor for complex exponentials (cis) with given dimensions.

    MindSpore change: the complex exponential is returned as its real view, `ops.view_as_real(freqs_cis)`: a float32
    tensor of shape `[S, D/2, 2]` holding `(cos, sin)` of the angles, computed on the host in `freqs_dtype` (float32
    by default, as upstream; Lumina2 asks for float64).

    Args:
        dim (`int`): Dimension of the frequency tensor.
        pos (`np.ndarray` or `int`): Position indices for the frequency tensor. [S] or scalar
        theta (`float`, *optional*, defaults to 10000.0):
            Scaling factor for frequency computation. Defaults to 10000.0.
        use_real (`bool`, *optional*, defaults to `False`):
            Only `False` (the Lumina layout) is supported by this port.
        linear_factor (`float`, *optional*, defaults to 1.0):
            Scaling factor for the context extrapolation. Defaults to 1.0.
        ntk_factor (`float`, *optional*, defaults to 1.0):
            Scaling factor for the NTK-Aware RoPE. Defaults to 1.0.
        repeat_interleave_real (`bool`, *optional*, defaults to `True`):
            Only used with `use_real=True`, which this port does not support.
        freqs_dtype (`np.float32` or `np.float64` (or the MindSpore dtype), *optional*, defaults to `np.float32`):
            the dtype the frequencies and their cosines/sines are computed in.
    Returns:
        `ms.Tensor`: the real view of the complex exponentials, [S, D/2, 2] float32.
    """
    if dim % 2 != 0:
        raise ValueError(f"`dim` must be even for rotary embeddings, got {dim}.")
    if use_real:
        raise ValueError(
            "`use_real=True` (the FLUX/CogVideoX interleaved layout) is not part of this port; only the Lumina layout "
            "`use_real=False` is supported."
        )
    freqs_dtype = {ms.float32: np.float32, ms.float64: np.float64}.get(freqs_dtype, freqs_dtype)
    freqs_dtype = np.dtype(freqs_dtype)
    if isinstance(pos, int):
        pos = np.arange(pos)
    pos = np.asarray(pos)

    theta = theta * ntk_factor
    freqs = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=freqs_dtype) / dim)) / linear_factor  # [D/2]
    freqs = np.outer(pos.astype(freqs_dtype), freqs).astype(freqs_dtype)  # [S, D/2]
    freqs_cis = np.stack([np.cos(freqs), np.sin(freqs)], axis=-1)  # view_as_real(polar(1, freqs)): [S, D/2, 2]
    return ms.Tensor(freqs_cis.astype(np.float32))


def apply_rotary_emb(
    x: ms.Tensor,
    freqs_cis: ms.Tensor,
    use_real: bool = True,
    use_real_unbind_dim: int = -1,
    sequence_dim: int = 2,
) -> ms.Tensor:
    """
    Apply rotary embeddings to input tensors using the given frequency tensor (the Lumina layout: consecutive pairs of
    channels are the real and imaginary parts of a complex number, which is multiplied by `freqs_cis`).

    MindSpore change: only upstream's `use_real=False` path (which Lumina2 takes); `freqs_cis` is best given as the
    real view of the complex exponential (`(cos, sin)` in its last axis; a complex table is converted to it), and the
    complex product is written out in float32 real arithmetic.

    Args:
        x (`ms.Tensor`):
            Query or key tensor of shape `[B, S, H, D]`.
        freqs_cis (`ms.Tensor`):
            Real view of the complex exponentials, `[B, S, D/2, 2]` (or broadcastable, e.g. `[S, D/2, 2]`), or
            upstream's complex `[B, S, D/2]` table.
        use_real (`bool`, defaults to `True`):
            Upstream's default; only `False` (the Lumina layout) is supported by this port: pass it.
        use_real_unbind_dim (`int`, defaults to -1): Unused with `use_real=False`.
        sequence_dim (`int`, defaults to 2): Unused with `use_real=False` (as upstream); `x` is `[B, S, H, D]`.

    Returns:
        `ms.Tensor`: `x` rotated, in the dtype of `x`.
    """
    if use_real:
        raise ValueError(
            "`use_real=True` (upstream's default, the cos / sin layout of FLUX and CogVideoX) is not part of this port: "
            "pass `use_real=False` (the Lumina layout)."
        )
    if freqs_cis.dtype in (ms.complex64, ms.complex128):  # upstream's complex table: its real view
        freqs_cis = ops.stack((ops.real(freqs_cis), ops.imag(freqs_cis)), -1).astype(ms.float32)
    # the complex product (x_re + i x_im)(cos + i sin) channel-wise: x * [cos, cos] + (x_im, x_re) * [-sin, sin], with
    # the tables expanded once ([..., S, 1, D], tiled over heads) and the pairs swapped as a whole, which costs far
    # fewer (slow) kernels on CPU than slicing out the four halves; same float32 products and sums
    cos, sin = freqs_cis[..., 0:1], freqs_cis[..., 1:2]
    table_shape = freqs_cis.shape[:-2] + (1, -1)
    cos = mint.cat([cos, cos], dim=-1).reshape(table_shape)
    sin = mint.cat([-sin, sin], dim=-1).reshape(table_shape)
    x32 = x.astype(ms.float32)
    # (x_im, x_re) pairs as a product with a permutation (exact; `mint.flip` over pairs is a slow CPU kernel)
    head_dim = x.shape[-1]
    swapped = ops.matmul(x32.reshape(-1, head_dim), pair_swap_matrix(head_dim)).reshape(x.shape)
    # the tables tiled over heads (`cpu_layers.broadcast_mul`: broadcasting Mul is slow on CPU)
    return (x32 * expand_to(cos, x.shape) + swapped * expand_to(sin, x.shape)).astype(x.dtype)


class TimestepEmbedding(nn.Cell):
    def __init__(
        self,
        in_channels: int,
        time_embed_dim: int,
        act_fn: str = "silu",
        out_dim: int = None,
        post_act_fn: Optional[str] = None,
        cond_proj_dim=None,
        sample_proj_bias=True,
    ):
        super().__init__()

        self.linear_1 = Linear(in_channels, time_embed_dim, sample_proj_bias)

        if cond_proj_dim is not None:
            self.cond_proj = Linear(cond_proj_dim, in_channels, bias=False)
        else:
            self.cond_proj = None

        self.act = get_activation(act_fn)

        if out_dim is not None:
            time_embed_dim_out = out_dim
        else:
            time_embed_dim_out = time_embed_dim
        self.linear_2 = Linear(time_embed_dim, time_embed_dim_out, sample_proj_bias)

        if post_act_fn is None:
            self.post_act = None
        else:
            self.post_act = get_activation(post_act_fn)

    def construct(self, sample: ms.Tensor, condition: Optional[ms.Tensor] = None) -> ms.Tensor:
        if condition is not None:
            sample = sample + self.cond_proj(condition)
        sample = self.linear_1(sample)

        if self.act is not None:
            sample = self.act(sample)

        sample = self.linear_2(sample)

        if self.post_act is not None:
            sample = self.post_act(sample)
        return sample


class Timesteps(nn.Cell):
    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float, scale: int = 1):
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift
        self.scale = scale

    def construct(self, timesteps: ms.Tensor) -> ms.Tensor:
        t_emb = get_timestep_embedding(
            timesteps,
            self.num_channels,
            flip_sin_to_cos=self.flip_sin_to_cos,
            downscale_freq_shift=self.downscale_freq_shift,
            scale=self.scale,
        )
        return t_emb
