# Copyright 2024 Google Inc. HuggingFace Inc. team. All rights reserved.
#
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
"""Gemma2 text model (the Lumina-Image-2.0 text encoder).

Adapted from transformers v5.24 `models/gemma2/modeling_gemma2.py`; MindSpore changes: the base model only (no
generation, no KV cache, no LM head), the eager attention math written inline (fp32 softmax, logit soft-capping), the
2D padding mask expanded inside `construct` (causal, padding and sliding-window masks as `masking_utils.eager_mask`;
a 4D mask is used as it is),
input checks and output packing in `Gemma2Model.__call__` so that `construct` compiles in GRAPH_MODE, and
`output_hidden_states` collected directly instead of through forward hooks.
"""

import math
from typing import Optional, Sequence, Union

import numpy as np
from transformers import Gemma2Config

import mindspore as ms
from mindspore import Parameter, mint, nn, ops
from mindspore.common.initializer import Normal, initializer

from ....diffusers.models.cpu_layers import (
    Linear,
    _on_cpu,
    broadcast_add,
    broadcast_mul,
    check_batch_inputs,
    check_cpu_compute_dtype,
    check_input_dtype,
    compile_this_call,
    expand_to,
    mean_last_axis,
)
from ....diffusers.utils import is_ascend
from ....diffusers.utils.mindspore_utils import tanh, type_name
from ...modeling_outputs import BaseModelOutputWithPast
from ...modeling_utils import PreTrainedModel

# PyNative on CPU, inference: from this many elements in the hidden states (batch x tokens x hidden size), the forward
# runs as one compiled graph (`Cell.compile_and_run`). Op by op, MindSpore's asynchronous launch queue spins on a
# core the kernels need and every op pays Python dispatch: 26 layers at 256 tokens took 2.7x torch's time, compiled
# 1.2x (op by op with `launch_blocking()`: 1.2x too). `float("inf")` keeps every call op by op.
COMPILE_ON_CPU_ELEMENTS = 1 << 19

_FLOAT_DTYPES = (ms.float16, ms.bfloat16, ms.float32, ms.float64)
_INT_DTYPES = (ms.int8, ms.int16, ms.int32, ms.int64, ms.uint8, ms.uint16, ms.uint32, ms.uint64)
# transformers' ACT2FN names (`hidden_activation`) -> the function of `Gemma2MLP.act_fn` (the gelu-tanh variants are the
# same formula with other rounding); "prelu" and "xielu" have learnable parameters and are not supported
_ACTIVATIONS = {
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_10": "gelu_10",
    "quick_gelu": "quick_gelu",
    "silu": "silu",
    "swish": "silu",
    "relu": "relu",
    "relu2": "relu2",
    "relu6": "relu6",
    "leaky_relu": "leaky_relu",
    "hardswish": "hardswish",
    "mish": "mish",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "laplace": "laplace",
    "sqrtsoftplus": "sqrtsoftplus",
    "linear": "linear",
}


def _softplus(x, in_float64: bool):
    """torch's `softplus` (beta 1, threshold 20: linear above it), in float64 when `in_float64` (on CPU: MindSpore
    2.10's CPU Log1p returns 0 for inputs below ~1e-8 and its float32 Exp is off by up to 8e-6; Ascend has few float64
    kernels, so float32 there); below -16 softplus is `exp(x)` to float32."""
    wide = x.astype(ms.float64 if in_float64 else ms.float32)
    exp = mint.exp(mint.clamp(wide, max=20.0))
    return mint.where(wide > 20.0, wide, mint.where(wide < -16.0, exp, mint.log(1.0 + exp))).astype(x.dtype)


def _dtype_min(dtype):
    """`torch.finfo(dtype).min`: the additive value of masked positions (a constant when compiled)."""
    if dtype == ms.float16:
        return -65504.0
    if dtype == ms.bfloat16:
        return -3.3895313892515355e38
    if dtype == ms.float64:
        return -1.7976931348623157e308
    return -3.4028234663852886e38


def _linear(in_features: int, out_features: int, bias: bool, std: float) -> mint.nn.Linear:
    """`mint.nn.Linear` initialized as transformers' `_init_weights` (normal weights, zero bias)."""
    return Linear(in_features, out_features, bias=bias, weight_init=Normal(std), bias_init="zeros")


class Gemma2RMSNorm(nn.Cell):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(initializer("zeros", (dim,), ms.float32), name="weight")
        self.mean_as_gemv = _on_cpu()  # decided here: the device cannot be read inside a compiled construct

    def _norm(self, x):
        # the mean as a GEMV on CPU and the product as tile + Mul (`cpu_layers`: ReduceMean and broadcasting Mul are
        # slow on CPU)
        return broadcast_mul(x, mint.rsqrt(mean_last_axis(x.pow(2), self.mean_as_gemv) + self.eps))

    def construct(self, x):
        output = self._norm(x.astype(ms.float32))
        # Llama does x.to(float16) * w whilst Gemma2 is (x * w).to(float16)
        # See https://github.com/huggingface/transformers/pull/29402
        output = broadcast_mul(output, 1.0 + self.weight.astype(ms.float32))
        return output.astype(x.dtype)

    def extend_repr(self):
        return f"{tuple(self.weight.shape)}, eps={self.eps}"


class Gemma2MLP(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.intermediate_size = config.intermediate_size
        std = config.initializer_range
        self.gate_proj = _linear(self.hidden_size, self.intermediate_size, False, std)
        self.up_proj = _linear(self.hidden_size, self.intermediate_size, False, std)
        self.down_proj = _linear(self.intermediate_size, self.hidden_size, False, std)
        if config.hidden_activation not in _ACTIVATIONS:
            raise ValueError(
                f"`hidden_activation` must be one of {sorted(_ACTIVATIONS)}, got {config.hidden_activation!r}."
            )
        self.activation = _ACTIVATIONS[config.hidden_activation]
        self.precise_tanh = not is_ascend()  # float64 tanh / softplus on CPU; decided here: no device read in a graph

    def act_fn(self, x):
        act = self.activation
        if act == "gelu_tanh":
            return ops.gelu(x, approximate="tanh")
        if act == "gelu":
            return ops.gelu(x, approximate="none")
        if act == "gelu_10":
            return mint.clamp(ops.gelu(x, approximate="none"), -10.0, 10.0)
        if act == "quick_gelu":
            return x * mint.sigmoid(1.702 * x)
        if act == "silu":
            return mint.nn.functional.silu(x)
        if act == "relu2":
            return mint.square(mint.nn.functional.relu(x))
        if act == "relu6":
            return mint.clamp(x, 0.0, 6.0)
        if act == "leaky_relu":
            return mint.where(x >= 0, x, x * 0.01)  # torch's nn.LeakyReLU() slope
        if act == "hardswish":
            return x * mint.clamp(x + 3.0, 0.0, 6.0) / 6.0
        if act == "mish":
            return x * tanh(_softplus(x, self.precise_tanh), self.precise_tanh)
        if act == "tanh":
            return tanh(x, self.precise_tanh)
        if act == "sigmoid":
            return mint.sigmoid(x)
        if act == "laplace":
            return 0.5 * (1.0 + mint.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0))))
        if act == "sqrtsoftplus":
            return mint.sqrt(_softplus(x, self.precise_tanh))
        if act == "linear":
            return x
        return mint.nn.functional.relu(x)

    def construct(self, x):
        down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return down_proj


class Gemma2RotaryEmbedding(nn.Cell):
    def __init__(self, config: Gemma2Config):
        super().__init__()
        self.max_seq_len_cached = config.max_position_embeddings
        self.original_max_seq_len = config.max_position_embeddings

        rope_parameters = config.rope_parameters or {}
        self.rope_type = rope_parameters.get("rope_type", "default")
        if self.rope_type not in _ROPE_TYPES:
            raise ValueError(
                f"`rope_parameters['rope_type']` must be one of {sorted(_ROPE_TYPES)} in this port, got "
                f"{self.rope_type!r}."
            )
        missing = [k for k in ("rope_theta",) + _ROPE_REQUIRED_KEYS[self.rope_type] if rope_parameters.get(k) is None]
        if missing:
            # transformers fails later with a bare TypeError (no rope_theta) or KeyError
            raise ValueError(
                f"`rope_parameters` {dict(rope_parameters)} lacks {missing}, which the {self.rope_type!r} rotary "
                "embedding needs: give them in `rope_parameters` (Gemma2's `rope_theta` is 10000.0; a config override "
                "such as `rope_parameters={...}` replaces the whole dict)."
            )
        self.rope_parameters = dict(rope_parameters)
        inv_freq, self.attention_scaling = self.compute_default_rope_parameters(config)
        if self.rope_type != "default":
            inv_freq, self.attention_scaling = _ROPE_TYPES[self.rope_type](inv_freq, config, rope_parameters)
        self.original_inv_freq = inv_freq
        self._call_inv_freq = inv_freq  # "dynamic": the inverse frequencies of the longest call so far
        # a constant of the graph (transformers' non-persistent buffer): not a parameter, not in checkpoints
        self.inv_freq = ms.Tensor(inv_freq, ms.float32)

    @property
    def depends_on_length(self) -> bool:
        """Whether the inverse frequencies change with the positions of a call (`call_inv_freq`)."""
        return self.rope_type in ("dynamic", "longrope")

    def call_inv_freq(self, max_position: int) -> np.ndarray:
        """Host-side, before a call whose largest position id is `max_position`: transformers'
        `dynamic_rope_update` of a "dynamic" (NTK, kept across calls) or "longrope" rotary embedding."""
        seq_len = int(max_position) + 1
        if self.rope_type == "longrope":
            original_max = self.rope_parameters["original_max_position_embeddings"]
            long = seq_len > original_max
            return _longrope_inv_freq(self.original_inv_freq, self.rope_parameters, long)
        if seq_len > self.max_seq_len_cached:  # growth
            self._call_inv_freq = _dynamic_inv_freq(
                self.original_inv_freq, self.rope_parameters, self.original_max_seq_len, seq_len
            )
            self.max_seq_len_cached = seq_len
        elif seq_len < self.original_max_seq_len < self.max_seq_len_cached:  # reset
            self._call_inv_freq = self.original_inv_freq
            self.max_seq_len_cached = self.original_max_seq_len
        return self._call_inv_freq

    @staticmethod
    def compute_default_rope_parameters(config: Gemma2Config):
        """
        Computes the inverse frequencies according to the original RoPE implementation
        Args:
            config ([`~transformers.PreTrainedConfig`]):
                The model configuration.
        Returns:
            Tuple of (`np.ndarray`, `float`), containing the inverse frequencies for the RoPE embeddings and the
            post-processing scaling factor applied to the computed cos/sin (unused in this type of RoPE).
        """
        base = config.rope_parameters["rope_theta"]
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if dim % 2:
            # transformers fails at the first call, on a shape mismatch between the rotated halves and cos / sin
            raise ValueError(
                f"The rotary embedding rotates pairs of channels: `head_dim` must be even, got {dim} (from "
                "`head_dim`, or `hidden_size // num_attention_heads` when `head_dim` is not set)."
            )

        attention_factor = 1.0  # Unused in this type of RoPE
        # Compute the inverse frequencies (float32, as torch computes them: the reciprocal of the float32 power; a
        # reciprocal taken in float64 moved cos / sin by 1.2e-6 at 256 positions)
        inv_freq = np.float32(1.0) / _rope_powers(base, dim)
        return inv_freq, attention_factor

    def __call__(self, x, position_ids, inv_freq=None):
        if inv_freq is None and self.depends_on_length:
            # called on its own (the model passes the frequencies of its call): transformers' `dynamic_rope_update`
            inv_freq = ms.Tensor(self.call_inv_freq(position_ids.asnumpy().max()), ms.float32)
            self.inv_freq = inv_freq
        return super().__call__(x, position_ids, inv_freq)

    def construct(self, x, position_ids, inv_freq=None):
        inv_freq = self.inv_freq if inv_freq is None else inv_freq
        freqs = position_ids[..., None].astype(ms.float32) * inv_freq
        emb = mint.cat((freqs, freqs), dim=-1)
        cos = mint.cos(emb) * self.attention_scaling
        sin = mint.sin(emb) * self.attention_scaling
        return cos.astype(x.dtype), sin.astype(x.dtype)


def _rope_powers(base: float, dim: int) -> np.ndarray:
    """`base ** (2i / dim)` for the `dim // 2` rotary pairs, float32 as torch computes them (the float32 exponent, the
    power rounded once)."""
    exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    return (np.float64(base) ** exponent.astype(np.float64)).astype(np.float32)


# transformers' `ROPE_INIT_FUNCTIONS` at construction, in NumPy float32 as torch computes them: `(default inverse
# frequencies, config, rope_parameters) -> (inverse frequencies, attention scaling)`; "dynamic" and "longrope" are
# computed again for each call (`Gemma2RotaryEmbedding.call_inv_freq`)


def _linear_rope(inv_freq, config, params):
    """`_compute_linear_scaling_rope_parameters`."""
    return inv_freq / np.float32(params["factor"]), 1.0


def _llama3_rope(inv_freq, config, params):
    """`_compute_llama3_parameters`."""
    factor, low_freq_factor, high_freq_factor = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    old_context_len = params.get("original_max_position_embeddings", config.max_position_embeddings)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    # torch's `scalar / tensor` is `tensor.reciprocal() * scalar` (one more rounding than a division)
    wavelen = (np.float32(1.0) / inv_freq) * np.float32(2 * math.pi)
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / np.float32(factor), inv_freq)
    smooth_factor = ((np.float32(1.0) / wavelen) * np.float32(old_context_len) - np.float32(low_freq_factor)) / (
        np.float32(high_freq_factor - low_freq_factor)
    )
    smoothed = (1 - smooth_factor) * inv_freq_llama / np.float32(factor) + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed, inv_freq_llama).astype(np.float32), 1.0


def _yarn_rope(inv_freq, config, params):
    """`_compute_yarn_parameters`."""
    base = params["rope_theta"]
    dim = 2 * inv_freq.shape[0]
    original_max = params.get("original_max_position_embeddings", config.max_position_embeddings)
    factor = params.get("factor") or config.max_position_embeddings / original_max
    attention_factor, mscale, mscale_all_dim = (
        params.get(k) for k in ("attention_factor", "mscale", "mscale_all_dim")
    )

    def get_mscale(scale, m=1):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(num_rotations):
        return (dim * math.log(original_max / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # as upstream: no singularity
    pos_freqs = _rope_powers(base, dim)
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    extrapolation_factor = 1 - ramp
    interpolation = np.float32(1.0) / (np.float32(factor) * pos_freqs)
    extrapolation = np.float32(1.0) / pos_freqs
    inv_freq = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv_freq.astype(np.float32), attention_factor


def _dynamic_inv_freq(inv_freq, params, max_position_embeddings, seq_len):
    """`_compute_dynamic_ntk_parameters` at `seq_len` (float32 steps as torch's; torch's float32 `pow` is not
    correctly rounded, so the result may be an ulp from transformers')."""
    base, factor = params["rope_theta"], params["factor"]
    dim = 2 * inv_freq.shape[0]
    seq_len = max(seq_len, max_position_embeddings)
    ratio = np.float32(factor) * np.float32(seq_len) / np.float32(max_position_embeddings) - np.float32(factor - 1)
    base = np.float32(base) * np.float32(np.float64(ratio) ** (dim / (dim - 2)))
    return np.float32(1.0) / _rope_powers(base, dim)


def _dynamic_rope(inv_freq, config, params):
    """`_compute_dynamic_ntk_parameters` at construction: at `max_position_embeddings` the base is unchanged."""
    if inv_freq.shape[0] < 2:
        # the NTK base is raised to `dim / (dim - 2)` (transformers: a bare ZeroDivisionError at construction)
        raise ValueError(
            f"The 'dynamic' rotary embedding needs a head_dim of at least 4, got {2 * inv_freq.shape[0]}: use another "
            "`rope_type` or a larger `head_dim`."
        )
    return inv_freq, 1.0


def _longrope_inv_freq(inv_freq, params, long: bool):
    """`_compute_longrope_parameters`' inverse frequencies: the long factors past the original length, else the short."""
    base = params["rope_theta"]
    dim = 2 * inv_freq.shape[0]
    ext_factors = np.asarray(params["long_factor"] if long else params["short_factor"], np.float32)
    powers = _rope_powers(base, dim)
    return np.float32(1.0) / (ext_factors * powers)


def _longrope(inv_freq, config, params):
    """`_compute_longrope_parameters` at construction (short factors)."""
    original_max = params["original_max_position_embeddings"]
    factor = params.get("factor") or config.max_position_embeddings / original_max
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original_max))
    return _longrope_inv_freq(inv_freq, params, long=False), attention_factor


_ROPE_TYPES = {
    "default": None,
    "linear": _linear_rope,
    "llama3": _llama3_rope,
    "yarn": _yarn_rope,
    "dynamic": _dynamic_rope,
    "longrope": _longrope,
}
# the `rope_parameters` keys each type reads without a default (`rope_theta` for all of them)
_ROPE_REQUIRED_KEYS = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor"),
    "yarn": (),
    "dynamic": ("factor",),
    "longrope": ("original_max_position_embeddings", "long_factor", "short_factor"),
}


def rotate_half(x):
    """Rotates half the hidden dims of the input."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return mint.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    """Applies Rotary Position Embedding to the query and key tensors.

    Args:
        q (`ms.Tensor`): The query tensor.
        k (`ms.Tensor`): The key tensor.
        cos (`ms.Tensor`): The cosine part of the rotary embedding.
        sin (`ms.Tensor`): The sine part of the rotary embedding.
        unsqueeze_dim (`int`, *optional*, defaults to 1):
            The dimension along which to unsqueeze cos and sin so that they broadcast to q and k (`[batch_size,
            heads, seq_len, head_dim]` with `unsqueeze_dim=1`).
    Returns:
        `tuple(ms.Tensor)` comprising of the query and key tensors rotated using the Rotary Position Embedding.
    """
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    # the tables tiled over heads first (`broadcast_mul`); the same products
    q_cos, q_sin = expand_to(cos, q.shape), expand_to(sin, q.shape)
    k_cos, k_sin = (q_cos, q_sin) if k.shape == q.shape else (expand_to(cos, k.shape), expand_to(sin, k.shape))
    q_embed = (q * q_cos) + (rotate_half(q) * q_sin)
    k_embed = (k * k_cos) + (rotate_half(k) * k_sin)
    return q_embed, k_embed


def repeat_kv(hidden_states: ms.Tensor, n_rep: int) -> ms.Tensor:
    """
    The equivalent of `repeat_interleave(x, dim=1, repeats=n_rep)`. The hidden states go from (batch,
    num_key_value_heads, seqlen, head_dim) to (batch, num_attention_heads, seqlen, head_dim)
    """
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].broadcast_to((batch, num_key_value_heads, n_rep, slen, head_dim))
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


_batch_matmul_nt = ops.BatchMatMul(transpose_b=True)


def eager_attention_forward(
    query: ms.Tensor,
    key: ms.Tensor,
    value: ms.Tensor,
    attention_mask: Optional[ms.Tensor],
    num_key_value_groups: int,
    scaling: float,
    softcap: Optional[float] = None,
    precise_tanh: bool = False,
    dropout: Optional[nn.Cell] = None,
):
    """transformers' eager attention: scores in the input dtype, tanh soft-capping, additive mask, fp32 softmax,
    dropout of the weights (`dropout`, a cell: identity outside training).

    (`mindone.diffusers.models.attention_processor.scaled_dot_product_attention` has no soft-capping step.)"""
    key_states = repeat_kv(key, num_key_value_groups)
    value_states = repeat_kv(value, num_key_value_groups)

    # BatchMatMul with a transposed second operand reads the keys in place (no transposed copy)
    attn_weights = _batch_matmul_nt(query, key_states) * scaling

    if softcap is not None:
        attn_weights = attn_weights / softcap
        attn_weights = tanh(attn_weights, precise_tanh)
        attn_weights = attn_weights * softcap
    if attention_mask is not None:
        attn_weights = broadcast_add(attn_weights, attention_mask)

    # upcast attention to fp32
    attn_weights = mint.softmax(attn_weights.astype(ms.float32), dim=-1).astype(query.dtype)
    if dropout is not None:
        attn_weights = dropout(attn_weights)
    attn_output = mint.matmul(attn_weights, value_states)
    attn_output = mint.swapaxes(attn_output, 1, 2)
    return attn_output, attn_weights


class Gemma2Attention(nn.Cell):
    """Multi-headed attention from 'Attention Is All You Need' paper"""

    def __init__(self, config: Gemma2Config, layer_idx: int):
        super().__init__()
        self.layer_type = config.layer_types[layer_idx]
        self.layer_idx = layer_idx
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.query_pre_attn_scalar**-0.5
        self.attention_dropout = config.attention_dropout
        # `nn.Dropout`: `mint.nn.Dropout` (DropoutExt) has no CPU kernel in MindSpore 2.10
        self.attn_dropout = nn.Dropout(p=float(config.attention_dropout)) if config.attention_dropout > 0 else None

        std, bias = config.initializer_range, config.attention_bias
        self.q_proj = _linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias, std)
        self.k_proj = _linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias, std)
        self.v_proj = _linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias, std)
        self.o_proj = _linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias, std)
        self.attn_logit_softcapping = config.attn_logit_softcapping
        self.sliding_window = config.sliding_window if self.layer_type == "sliding_attention" else None
        self.precise_tanh = not is_ascend()  # decided at construction: the device cannot be read inside a graph

    def construct(self, hidden_states, position_embeddings, attention_mask=None):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = input_shape + (-1, self.head_dim)

        # `mint.swapaxes` (a view): `Tensor.swapaxes` (Transpose) keeps output-sized buffers per call site in a
        # compiled CPU graph
        query_states = mint.swapaxes(self.q_proj(hidden_states).view(hidden_shape), 1, 2)
        key_states = mint.swapaxes(self.k_proj(hidden_states).view(hidden_shape), 1, 2)
        value_states = mint.swapaxes(self.v_proj(hidden_states).view(hidden_shape), 1, 2)

        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)

        attn_output, attn_weights = eager_attention_forward(
            query_states,
            key_states,
            value_states,
            attention_mask,
            self.num_key_value_groups,
            self.scaling,
            softcap=self.attn_logit_softcapping,
            precise_tanh=self.precise_tanh,
            dropout=self.attn_dropout,
        )

        attn_output = attn_output.reshape(input_shape + (-1,))
        attn_output = self.o_proj(attn_output)
        return attn_output, attn_weights


class Gemma2DecoderLayer(nn.Cell):
    def __init__(self, config: Gemma2Config, layer_idx: int):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.attention_type = config.layer_types[layer_idx]
        self.is_sliding = self.attention_type == "sliding_attention"
        self.self_attn = Gemma2Attention(config=config, layer_idx=layer_idx)
        self.mlp = Gemma2MLP(config)
        self.input_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

        self.pre_feedforward_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_feedforward_layernorm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def construct(self, hidden_states, position_embeddings, attention_mask=None):
        residual = hidden_states

        hidden_states = self.input_layernorm(hidden_states)

        # Self Attention
        # positional: MindSpore 2.10 never frees a cell that a compiled graph called with keyword arguments (a
        # deleted model kept its weights)
        hidden_states, attn_weights = self.self_attn(hidden_states, position_embeddings, attention_mask)
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = residual + hidden_states

        residual = hidden_states
        hidden_states = self.pre_feedforward_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        hidden_states = self.post_feedforward_layernorm(hidden_states)
        hidden_states = residual + hidden_states

        return hidden_states, attn_weights


class _NormalWithZeroRow(Normal):
    """Normal initialization with one row set to zero (torch's `nn.Embedding(padding_idx=...)` after init)."""

    def __init__(self, sigma: float, zero_row: int):
        super().__init__(sigma=sigma)
        self.zero_row = zero_row

    def _initialize(self, arr):
        super()._initialize(arr)
        arr[self.zero_row] = 0


class Gemma2TextScaledWordEmbedding(nn.Cell):
    """
    An embedding lookup multiplied by `embed_scale` (cast to the weight dtype, as transformers does).

    `mint.nn.Embedding` has no CPU kernel in MindSpore 2.10: the rows of `weight` are gathered with `ops.gather`.
    """

    is_embedding = True  # a torch `nn.Embedding` upstream (`num_parameters(exclude_embeddings=True)`)

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: Optional[int] = None,
        embed_scale: float = 1.0,
        init_std: float = 0.02,
    ):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        init = Normal(init_std) if padding_idx is None else _NormalWithZeroRow(init_std, padding_idx)
        self.weight = Parameter(initializer(init, (num_embeddings, embedding_dim), ms.float32), name="weight")
        self.scalar_embed_scale = embed_scale

    def construct(self, input_ids):
        embed_scale = ms.Tensor(self.scalar_embed_scale, ms.float32).astype(self.weight.dtype)
        embeds = ops.gather(self.weight, input_ids, 0)
        if self.padding_idx is not None:
            # torch's `padding_idx`: the padding row gets no gradient (the forward is unchanged)
            is_padding = (input_ids == self.padding_idx).expand_dims(-1)
            embeds = mint.where(is_padding, ops.stop_gradient(embeds), embeds)
        return embeds * embed_scale


class Gemma2PreTrainedModel(PreTrainedModel):
    config_class = Gemma2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Gemma2DecoderLayer"]


class Gemma2Model(Gemma2PreTrainedModel):
    r"""
    The bare Gemma2 model outputting raw hidden-states without any specific head on top.

    Calling it returns a tuple `(last_hidden_state, hidden_states?, attentions?)` (entries only when requested), or a
    [`BaseModelOutputWithPast`] with `return_dict=True`. `hidden_states` has `num_hidden_layers + 1` entries: the
    scaled embeddings, the output of each layer, the last one after the final norm (equal to `last_hidden_state`), as
    transformers returns them. Lumina2 uses the penultimate one: `model(ids, attention_mask=mask,
    output_hidden_states=True, return_dict=True).hidden_states[-2]` (or `[1][-2]` of the tuple).

    Args:
        config ([`Gemma2Config`]): transformers' model configuration.
    """

    def __init__(self, config: Gemma2Config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.hidden_size = config.hidden_size
        self.num_hidden_layers = config.num_hidden_layers
        self._check_config(config)
        # Gemma2 downcasts the below to bfloat16, causing sqrt(3072)=55.4256 to become 55.5. See https://github.com/huggingface/transformers/pull/29402
        self.embed_tokens = Gemma2TextScaledWordEmbedding(
            config.vocab_size,
            config.hidden_size,
            self.padding_idx,
            embed_scale=config.hidden_size**0.5,
            init_std=config.initializer_range,
        )
        self.layers = nn.CellList(
            [Gemma2DecoderLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)]
        )
        self.norm = Gemma2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = Gemma2RotaryEmbedding(config)
        self.sliding_window = config.sliding_window
        self.has_sliding_layers = any(layer.is_sliding for layer in self.layers)
        # PyNative on CPU: large inference calls run as one compiled graph (`COMPILE_ON_CPU_ELEMENTS`)
        self.compile_on_cpu = _on_cpu()
        self.gradient_checkpointing = False
        if getattr(config, "gradient_checkpointing", False):  # as transformers' `post_init`
            self.gradient_checkpointing = True

    @staticmethod
    def _check_config(config):
        layer_types = config.layer_types
        if layer_types is None or len(layer_types) < config.num_hidden_layers:
            raise ValueError(
                f"`layer_types` must name the attention of each of the {config.num_hidden_layers} layers, got "
                f"{layer_types!r}."
            )
        unknown = sorted(set(layer_types[: config.num_hidden_layers]) - {"sliding_attention", "full_attention"})
        if unknown:
            raise ValueError(f"`layer_types` entries must be 'sliding_attention' or 'full_attention', got {unknown}.")
        if "sliding_attention" in layer_types[: config.num_hidden_layers] and not config.sliding_window:
            raise ValueError(
                f"`sliding_window` must be a positive int for sliding layers, got {config.sliding_window!r}."
            )
        if config.num_attention_heads % config.num_key_value_heads != 0:
            raise ValueError(
                f"`num_attention_heads` ({config.num_attention_heads}) must be a multiple of `num_key_value_heads` "
                f"({config.num_key_value_heads})."
            )
        if getattr(config, "use_bidirectional_attention", None):
            raise ValueError(
                "`use_bidirectional_attention=True` (transformers' bidirectional windows) is not ported: for "
                "bidirectional attention use `is_causal=False` (the call argument or `config.is_causal`), whose "
                "sliding layers see the keys with |q - k| <= sliding_window."
            )

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def _update_masks(self, attention_mask, inputs_embeds, is_causal=True, packed_sequence_ids=None):
        """2D padding mask -> the additive 4D masks of the full and sliding layers (`masking_utils.eager_mask`): 0
        where a query may attend a key, the dtype minimum elsewhere, shape `(batch or 1, 1, seq, seq)`. Causal, or
        bidirectional with `is_causal=False` (`create_bidirectional_mask`, sliding `|q - k| <= window`); keys of
        another packed sequence (`packed_sequence_ids`, one id per token) are masked too. A 4D mask (floating point,
        additive) is the caller's own, used by every layer as it is, as transformers does (`_preprocess_mask_arguments`
        returns it unchanged)."""
        seq_len = inputs_embeds.shape[1]
        dtype = inputs_embeds.dtype
        if attention_mask is not None and attention_mask.ndim == 4:
            custom = attention_mask.astype(dtype)
            return custom, custom
        q_idx = ops.arange(seq_len).reshape(seq_len, 1)
        kv_idx = ops.arange(seq_len).reshape(1, seq_len)
        if is_causal:
            allowed = (kv_idx <= q_idx)[None, None]
            in_window = kv_idx > q_idx - self.sliding_window if self.has_sliding_layers else None
        else:
            allowed = mint.ones((1, 1, seq_len, seq_len), dtype=ms.bool_)
            in_window = mint.abs(q_idx - kv_idx) <= self.sliding_window if self.has_sliding_layers else None
        if attention_mask is not None:
            padding = attention_mask.astype(ms.bool_)[:, None, None, :]
            allowed = mint.logical_and(allowed, padding)
        if packed_sequence_ids is not None:
            same_sequence = packed_sequence_ids[:, None, :, None] == packed_sequence_ids[:, None, None, :]
            allowed = mint.logical_and(allowed, same_sequence)
        # 0 / dtype min by arithmetic, not `mint.where(allowed, 0-d, 0-d)`: MindSpore 2.9 (and earlier) compiles that
        # wrongly when `allowed` is a constant of the graph (bidirectional without a padding mask)
        masked = -_dtype_min(dtype)
        full_mask = (allowed.astype(dtype) - 1) * masked
        sliding_mask = full_mask
        if self.has_sliding_layers:
            sliding_mask = (mint.logical_and(allowed, in_window[None, None]).astype(dtype) - 1) * masked
        return full_mask, sliding_mask

    def construct(
        self,
        input_ids: Optional[ms.Tensor] = None,
        attention_mask: Optional[ms.Tensor] = None,
        position_ids: Optional[ms.Tensor] = None,
        inputs_embeds: Optional[ms.Tensor] = None,
        output_attentions: bool = False,
        is_causal: bool = True,
        packed_sequence_ids: Optional[ms.Tensor] = None,
        rope_inv_freq: Optional[ms.Tensor] = None,
    ):
        """The tensor program (compiled in GRAPH_MODE). Returns `(last_hidden_state, all_hidden_states,
        all_attentions)`; `all_hidden_states` ends with the last layer's output before the final norm, and
        `all_attentions` is `()` unless `output_attentions`. Call the model instead, which checks
        the inputs, finds packed sequences and packs the outputs."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)

        if position_ids is None:
            position_ids = ops.arange(inputs_embeds.shape[1]).reshape(1, -1)

        full_mask, sliding_mask = self._update_masks(attention_mask, inputs_embeds, is_causal, packed_sequence_ids)

        # embed positions
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids, rope_inv_freq)

        all_hidden_states = (hidden_states,)
        all_attentions = ()
        for decoder_layer in self.layers:
            layer_mask = sliding_mask if decoder_layer.is_sliding else full_mask
            if self.gradient_checkpointing and self.training:
                # reentrant, as the VAE's `Encoder` (MindSpore 2.10 PyNative fails with the other form)
                hidden_states, attn_weights = ms.recompute(
                    decoder_layer, hidden_states, position_embeddings, layer_mask, use_reentrant=True
                )
            else:
                hidden_states, attn_weights = decoder_layer(
                    hidden_states,
                    position_embeddings=position_embeddings,
                    attention_mask=layer_mask,
                )
            all_hidden_states = all_hidden_states + (hidden_states,)
            if output_attentions:
                all_attentions = all_attentions + (attn_weights,)

        hidden_states = self.norm(hidden_states)
        return hidden_states, all_hidden_states, all_attentions

    def __call__(
        self,
        input_ids: Optional[ms.Tensor] = None,
        attention_mask: Optional[ms.Tensor] = None,
        position_ids: Optional[ms.Tensor] = None,
        cache=None,
        inputs_embeds: Optional[ms.Tensor] = None,
        use_cache: Optional[bool] = None,
        *,  # transformers' positional order up to `use_cache`; the rest are its keyword arguments
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[Union[bool, int, Sequence[int]]] = None,
        return_dict: Optional[bool] = None,
        past_key_values=None,
        cache_position: Optional[ms.Tensor] = None,
        is_causal: Optional[bool] = None,
        **kwargs,
    ):
        r"""
        Args:
            input_ids (`ms.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                Indices of input sequence tokens in the vocabulary (integers in `[0, vocab_size)`).
            attention_mask (`ms.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                Mask to avoid attending to padding tokens: 1 (or `True`) for tokens to attend, 0 for padding. Or, as
                in transformers, a custom 4D mask of shape `(batch_size or 1, 1 or num_heads, sequence_length,
                sequence_length)` that every layer uses as it is (no causal or sliding-window mask is added): floating
                point, added to the attention scores (0 to attend, a large negative value to mask).
            position_ids (`ms.Tensor` of shape `(batch_size or 1, sequence_length)`, *optional*):
                Positions of the tokens for the rotary embeddings. Defaults to `0 .. sequence_length - 1`.
            inputs_embeds (`ms.Tensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
                Embeddings used instead of `input_ids` (not scaled by `sqrt(hidden_size)`, as in transformers).
            output_attentions (`bool`, *optional*, defaults to `config.output_attentions`):
                Whether to return the attention weights of every layer.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*, defaults to `config.output_hidden_states`):
                Whether to return the hidden states of all layers; an index or list of indices (negative allowed)
                keeps only those entries, the others being `None`, as transformers does (which also returns no
                hidden states for `0` or `[]`). The last entry is the output after the final norm unless
                `config.tie_last_hidden_states` is `False`.
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether to return a [`BaseModelOutputWithPast`] instead of a plain tuple.
            use_cache, cache, past_key_values:
                Not supported (no KV cache): must be `None`/`False`.
            cache_position (`ms.Tensor` of shape `(sequence_length,)`, *optional*):
                Without a cache, only the default `0 .. sequence_length - 1` (accepted, as transformers does).
            is_causal (`bool`, *optional*, defaults to `config.is_causal`, else `True`):
                `False` for bidirectional attention (sliding layers: keys within `sliding_window` on both sides).

        As transformers does, `position_ids` without `attention_mask` and without a cache (`use_cache=False`, or
        `config.use_cache=False`, or training with gradient checkpointing, which turns the config's cache off) mark
        packed sequences: a token whose position is not the previous one's + 1 starts a new sequence, and tokens
        attend only within their own sequence (causal attention only).

        Returns:
            `tuple(ms.Tensor)` `(last_hidden_state, hidden_states?, attentions?)` or [`BaseModelOutputWithPast`].
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(kwargs)}.")
        if cache_position is not None:
            length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
            if not np.array_equal(np.asarray(cache_position.asnumpy()).reshape(-1), np.arange(length)):
                raise ValueError(
                    f"`cache_position` must be None or 0 .. {length - 1} (no KV cache in this port); use "
                    "`position_ids` for other positions."
                )
        if use_cache or cache is not None or past_key_values is not None:
            raise ValueError(
                f"{type(self).__name__} has no KV cache in this port: `use_cache` must be False/None and "
                "`cache`/`past_key_values` None."
            )
        check_cpu_compute_dtype(self, self.dtype)
        input_ids, attention_mask, position_ids, inputs_embeds = self._check_inputs(
            input_ids, attention_mask, position_ids, inputs_embeds
        )
        if output_attentions is None:
            output_attentions = bool(getattr(self.config, "output_attentions", False))
        if output_hidden_states is None:
            output_hidden_states = getattr(self.config, "output_hidden_states", False)

        if is_causal is None:
            is_causal = getattr(self.config, "is_causal", True)
        is_causal = bool(is_causal)
        batch_size, seq_len = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        # transformers turns the config's `use_cache` off in training with gradient checkpointing (so packing is found)
        checkpointing = self.gradient_checkpointing and self.training
        has_cache = use_cache is None and bool(getattr(self.config, "use_cache", False)) and not checkpointing
        find_packing = is_causal and position_ids is not None and attention_mask is None and not has_cache
        # the positions on the host (one copy) only where packing or the RoPE needs them
        host_positions = None
        if position_ids is not None and (find_packing or self.rotary_emb.depends_on_length):
            host_positions = position_ids.asnumpy()
        packed_sequence_ids = _packed_sequence_ids(host_positions, batch_size) if find_packing else None

        rope_inv_freq = None
        if self.rotary_emb.depends_on_length:
            max_position = seq_len - 1 if host_positions is None else host_positions.max()
            rope_inv_freq = ms.Tensor(self.rotary_emb.call_inv_freq(max_position), ms.float32)

        args = (
            input_ids,
            attention_mask,
            position_ids,
            inputs_embeds,
            bool(output_attentions),
            is_causal,
            packed_sequence_ids,
            rope_inv_freq,
        )
        if compile_this_call(self, batch_size * seq_len * self.hidden_size, COMPILE_ON_CPU_ELEMENTS):
            last_hidden_state, all_hidden_states, all_attentions = self.compile_and_run(*args)
        else:
            last_hidden_state, all_hidden_states, all_attentions = super().__call__(*args)

        all_hidden_states = tuple(all_hidden_states)
        tie_last = getattr(self.config, "tie_last_hidden_states", None)
        if tie_last is None or tie_last:
            # as transformers' `capture_outputs`: the last hidden state is the one after the final norm
            all_hidden_states = all_hidden_states[:-1] + (last_hidden_state,)
        hidden_states = self._select_hidden_states(all_hidden_states, output_hidden_states)
        attentions = tuple(all_attentions) if output_attentions else None
        if return_dict:
            return BaseModelOutputWithPast(
                last_hidden_state=last_hidden_state, hidden_states=hidden_states, attentions=attentions
            )
        return tuple(v for v in (last_hidden_state, hidden_states, attentions) if v is not None)

    @staticmethod
    def _select_hidden_states(all_hidden_states, output_hidden_states):
        if not output_hidden_states:
            # as transformers, which collects only for a truthy value: `0` and `[]` select nothing
            return None
        if len(all_hidden_states) == 1:
            # no layers: transformers records the hidden states at the layers' outputs, so it has none
            return ()
        if output_hidden_states is True:
            return all_hidden_states
        selected = [output_hidden_states] if isinstance(output_hidden_states, int) else list(output_hidden_states)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in selected):
            raise TypeError(
                f"`output_hidden_states` must be a bool, an int or a list of ints, got {output_hidden_states!r}."
            )
        n = len(all_hidden_states)
        keep = {i % n for i in selected if -n <= i < n}
        return tuple(h if i in keep else None for i, h in enumerate(all_hidden_states))

    def _check_inputs(self, input_ids, attention_mask, position_ids, inputs_embeds):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if isinstance(attention_mask, dict):
            raise TypeError(
                "A dictionary of masks per layer type (transformers' prepared `causal_mask_mapping`) is not "
                "supported: pass one 2D padding mask, or one 4D mask that every layer uses."
            )
        input_ids = _as_tensor(input_ids, "input_ids")
        attention_mask = _as_tensor(attention_mask, "attention_mask")
        position_ids = _as_tensor(position_ids, "position_ids")
        inputs_embeds = _as_tensor(inputs_embeds, "inputs_embeds")
        if input_ids is not None:
            if input_ids.ndim != 2 or input_ids.shape[1] == 0:
                raise ValueError(
                    f"`input_ids` must have shape (batch_size, sequence_length) with sequence_length > 0, got shape "
                    f"{tuple(input_ids.shape)}."
                )
            if input_ids.dtype not in _INT_DTYPES:
                raise TypeError(f"`input_ids` must hold integers, got dtype {input_ids.dtype}.")
            ids = input_ids.asnumpy()
            # the embedding's rows, as torch's lookup checks (`set_input_embeddings` may change them)
            weight = getattr(self.get_input_embeddings(), "weight", None)
            rows = weight.shape[0] if isinstance(weight, (Parameter, ms.Tensor)) else self.vocab_size
            if ids.size and (ids.min() < 0 or ids.max() >= rows):
                raise ValueError(
                    f"`input_ids` must be in [0, {rows}) (the input embeddings' rows), got values in "
                    f"[{ids.min()}, {ids.max()}]."
                )
            if input_ids.dtype not in (ms.int32, ms.int64):
                input_ids = input_ids.astype(ms.int32)  # the Gather kernel takes int32 / int64 indices only
            batch_size, seq_len = input_ids.shape
        else:
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != self.hidden_size or inputs_embeds.shape[1] == 0:
                raise ValueError(
                    f"`inputs_embeds` must have shape (batch_size, sequence_length, {self.hidden_size}), got "
                    f"{tuple(inputs_embeds.shape)}."
                )
            if inputs_embeds.dtype not in _FLOAT_DTYPES:
                raise TypeError(f"`inputs_embeds` must be floating point, got dtype {inputs_embeds.dtype}.")
            check_input_dtype(self, self.dtype, inputs_embeds=inputs_embeds)  # transformers fails in q_proj
            batch_size, seq_len = inputs_embeds.shape[:2]
        # an empty batch: MindSpore's MatMul refuses it (transformers fails in the attention's reshape)
        check_batch_inputs(
            self, **({"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds})
        )
        if attention_mask is not None and attention_mask.ndim == 4:
            self._check_custom_mask(attention_mask, batch_size, seq_len)
        elif attention_mask is not None and tuple(attention_mask.shape) != (batch_size, seq_len):
            raise ValueError(
                f"`attention_mask` must be a 2D padding mask of shape (batch_size, sequence_length) = "
                f"{(batch_size, seq_len)} or a 4D mask of shape (batch_size or 1, 1 or num_heads, sequence_length, "
                f"sequence_length), got shape {tuple(attention_mask.shape)}."
            )
        if position_ids is not None:
            if (
                position_ids.ndim != 2
                or position_ids.shape[0] not in (1, batch_size)
                or position_ids.shape[1] != seq_len
            ):
                raise ValueError(
                    f"`position_ids` must have shape ({batch_size} or 1, {seq_len}), got {tuple(position_ids.shape)}."
                )
        return input_ids, attention_mask, position_ids, inputs_embeds

    def _check_custom_mask(self, attention_mask, batch_size, seq_len):
        heads = self.config.num_attention_heads
        b, h, q, k = attention_mask.shape
        if b not in (1, batch_size) or h not in (1, heads) or (q, k) != (seq_len, seq_len):
            batches = "1" if batch_size == 1 else f"{batch_size} or 1"
            head_counts = "1" if heads == 1 else f"1 or {heads}"
            raise ValueError(
                f"A 4D `attention_mask` must have shape ({batches}, {head_counts}, {seq_len}, {seq_len}) (batch_size, "
                f"heads, query_length, key_length), got {tuple(attention_mask.shape)}."
            )
        if attention_mask.dtype not in _FLOAT_DTYPES:
            # transformers' eager attention (Gemma2's only one) adds any 4D mask to the scores: a boolean mask as 0 / 1
            raise TypeError(
                f"A 4D `attention_mask` must be floating point, added to the attention scores (0 where a query may "
                f"attend a key, a large negative value where it may not), got dtype {attention_mask.dtype}: from a "
                f"boolean `allowed`, pass `(allowed.astype(ms.float32) - 1) * 3.4e38`."
            )


def _packed_sequence_ids(position_ids: np.ndarray, batch_size: int) -> Optional[ms.Tensor]:
    """transformers' `find_packed_sequence_indices`: per row, the index of the packed sequence of each token (a new one
    wherever the position is not the previous position + 1); `None` when every row holds a single sequence."""
    position_ids = np.broadcast_to(position_ids.astype(np.int64), (batch_size, position_ids.shape[1]))
    diff = np.diff(position_ids, prepend=position_ids[:, :1] - 1, axis=-1)
    ids = np.cumsum(diff != 1, axis=-1)
    if (ids[:, -1] == 0).all():
        return None
    return ms.Tensor(ids.astype(np.int32))


def _as_tensor(value, name):
    if value is None or isinstance(value, ms.Tensor):
        return value
    if isinstance(value, (np.ndarray, list)):
        return ms.Tensor(np.asarray(value))
    raise TypeError(f"`{name}` must be a mindspore.Tensor (or a numpy array), got {type_name(value)}.")


__all__ = ["Gemma2Model", "Gemma2PreTrainedModel"]
