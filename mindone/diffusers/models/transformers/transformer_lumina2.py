# Copyright 2025 Alpha-VLLM Authors and The HuggingFace Team. All rights reserved.
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
"""Lumina-Image-2.0 diffusion transformer.

Adapted from diffusers v0.42.1 `models/transformers/transformer_lumina2.py`; MindSpore changes: the host-side
bookkeeping of upstream's forward (caption lengths via `.tolist()`, per-sample position ids, the joint-sequence layout,
the attention masks) runs in NumPy in `Lumina2Transformer2DModel.__call__`, which then calls the pure-tensor,
fixed-shape `construct` (so the model compiles in GRAPH_MODE and under `ms.jit`); RoPE is applied in real arithmetic
on the real view `(cos, sin)` of `freqs_cis` (tables gathered by position id) instead of complex numbers; GQA stacks the
query heads of each k/v head along the sequence axis instead of repeating k/v.
"""

import contextlib
import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

import mindspore as ms
from mindspore import mint, nn, ops

from ....peft import lora_scale as scaled_lora_layers
from ...configuration_utils import ConfigMixin, register_to_config
from ...loaders.peft import PeftAdapterMixin
from ...loaders.single_file_model import FromOriginalModelMixin
from ...utils import is_ascend, logging
from ...utils.mindspore_utils import tanh
from ..attention import LuminaFeedForward
from ..attention_processor import Attention, flash_attention_applies, scaled_dot_product_attention
from ..cpu_layers import (
    Linear,
    ReleasesHeapAfterCompile,
    RunsSharedGraph,
    _on_cpu,
    blocks_compiled_this_call,
    broadcast_mul,
    check_batch_inputs,
    check_cpu_compute_dtype,
    check_input_dtype,
    shared_graphs,
)
from ..embeddings import TimestepEmbedding, Timesteps, apply_rotary_emb, get_1d_rotary_pos_embed
from ..modeling_outputs import Transformer2DModelOutput
from ..modeling_utils import ModelMixin
from ..normalization import LuminaLayerNormContinuous, LuminaRMSNormZero, RMSNorm

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

# PyNative on CPU, inference: from this many elements in the joint token sequence (batch x tokens x hidden size), the
# transformer blocks run as compiled graphs, one graph per kind of block shared by the blocks of that kind
# (`cpu_layers.shared_graphs`), and so do the time / caption embedding and the output layer. Op by op, MindSpore's
# asynchronous launch queue spins on a core the kernels need and every op pays Python dispatch: the real-width
# 2+2+2-layer benchmark took 1.9x torch's time, compiled ~0.95x. `float("inf")` keeps every call op by op. In
# GRAPH_MODE on CPU, such a call also compiles one graph per kind of block (and one per other sub-cell) instead of one
# graph of the whole model, which cost 1.07x torch's peak memory against 1.00x
# (`cpu_layers.blocks_compiled_this_call`); `float("inf")` keeps the whole-model graph. The pipeline calls the
# transformer once per guidance branch (batch 1 for one image): at real width a 512x512 call has ~1100 tokens (2.5M
# elements), 256x256 ~350; op by op, a 512x512 call of the 2+2+2-layer model took 10.4 s, compiled 4.6 s after a first
# call of ~11 s (the graphs of the three kinds of blocks), so the threshold is low: 228 tokens at width 2304, while the
# tiny test and demo models (widths 8 to 32) stay op by op.
COMPILE_ON_CPU_ELEMENTS = 1 << 19


class Lumina2CombinedTimestepCaptionEmbedding(RunsSharedGraph, nn.Cell):
    def __init__(
        self,
        hidden_size: int = 4096,
        cap_feat_dim: int = 2048,
        frequency_embedding_size: int = 256,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()

        self.time_proj = Timesteps(
            num_channels=frequency_embedding_size, flip_sin_to_cos=True, downscale_freq_shift=0.0
        )

        self.timestep_embedder = TimestepEmbedding(
            in_channels=frequency_embedding_size, time_embed_dim=min(hidden_size, 1024)
        )

        self.caption_embedder = nn.SequentialCell(
            [RMSNorm(cap_feat_dim, eps=norm_eps), Linear(cap_feat_dim, hidden_size, bias=True)]
        )

    def construct(
        self, hidden_states: ms.Tensor, timestep: ms.Tensor, encoder_hidden_states: ms.Tensor
    ) -> Tuple[ms.Tensor, ms.Tensor]:
        timestep_proj = self.time_proj(timestep).astype(hidden_states.dtype)
        time_embed = self.timestep_embedder(timestep_proj)
        caption_embed = self.caption_embedder(encoder_hidden_states)
        return time_embed, caption_embed


@ms.jit_class
class Lumina2AttnProcessor2_0:
    r"""
    Processor for implementing scaled dot-product attention. This is used in the Lumina2Transformer2DModel model. It
    applies normalization and RoPE on query and key vectors.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: ms.Tensor,
        encoder_hidden_states: ms.Tensor,
        attention_mask: Optional[ms.Tensor] = None,
        image_rotary_emb: Optional[ms.Tensor] = None,
        base_sequence_length: Optional[int] = None,
    ) -> ms.Tensor:
        batch_size, sequence_length, _ = hidden_states.shape
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states

        # Get Query-Key-Value Pair
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query_dim = query.shape[-1]
        inner_dim = key.shape[-1]
        head_dim = query_dim // attn.heads
        dtype = query.dtype

        # Get key-value heads
        kv_heads = inner_dim // head_dim

        query = query.view(batch_size, -1, attn.heads, head_dim)
        key = key.view(batch_size, -1, kv_heads, head_dim)
        value = value.view(batch_size, -1, kv_heads, head_dim)

        # Apply Query-Key Norm if needed
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # Apply RoPE if needed
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, use_real=False)
            key = apply_rotary_emb(key, image_rotary_emb, use_real=False)

        query, key = query.astype(dtype), key.astype(dtype)

        # Apply proportional attention if true
        if base_sequence_length is not None:
            softmax_scale = math.sqrt(math.log(sequence_length, base_sequence_length)) * attn.scale
        else:
            softmax_scale = attn.scale

        # `mint.swapaxes` (a view) rather than `Tensor.swapaxes` (the Transpose kernel, which in a compiled CPU graph
        # keeps two output-sized buffers per call site for the life of the graph)
        query = mint.swapaxes(query, 1, 2)
        key = mint.swapaxes(key, 1, 2)
        value = mint.swapaxes(value, 1, 2)

        # scaled_dot_product_attention expects attention_mask shape to be
        # (batch, heads, source_length, target_length)
        if attention_mask is not None:
            attention_mask = attention_mask.astype(ms.bool_).view(batch_size, 1, 1, -1)

        # perform Grouped-query Attention (GQA). MindSpore change: instead of repeating each k/v head for its n_rep
        # query heads (heads g * n_rep ... g * n_rep + n_rep - 1), those query heads are stacked along the sequence
        # axis, (B, heads, L, D) -> (B, kv, n_rep * L, D): the same products without copying k/v, in fewer and larger
        # matmuls. Ascend's flash kernel takes the grouped heads as they are (and a mask n_rep times smaller).
        n_rep = attn.heads // kv_heads
        query_len = query.shape[2]
        if n_rep > 1 and not flash_attention_applies(attn.use_flash, query, key, attention_mask):
            query = query.reshape(batch_size, kv_heads, n_rep * query_len, head_dim)

        hidden_states = scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=softmax_scale, use_flash=attn.use_flash
        )
        hidden_states = hidden_states.reshape(batch_size, attn.heads, query_len, head_dim)
        hidden_states = mint.swapaxes(hidden_states, 1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.astype(query.dtype)

        # linear proj
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


class Lumina2TransformerBlock(RunsSharedGraph, ReleasesHeapAfterCompile, nn.Cell):
    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        num_kv_heads: int,
        multiple_of: int,
        ffn_dim_multiplier: float,
        norm_eps: float,
        modulation: bool = True,
    ) -> None:
        super().__init__()
        self.head_dim = dim // num_attention_heads
        self.modulation = modulation
        # the gates' tanh in float64 on CPU, whose float32 kernel is imprecise (`mindspore_utils.tanh`); decided here
        # because the device cannot be read inside a graph
        self.tanh_in_float64 = not is_ascend()

        self.attn = Attention(
            query_dim=dim,
            cross_attention_dim=None,
            dim_head=dim // num_attention_heads,
            qk_norm="rms_norm",
            heads=num_attention_heads,
            kv_heads=num_kv_heads,
            eps=1e-5,
            bias=False,
            out_bias=False,
            processor=Lumina2AttnProcessor2_0(),
        )

        self.feed_forward = LuminaFeedForward(
            dim=dim,
            inner_dim=4 * dim,
            multiple_of=multiple_of,
            ffn_dim_multiplier=ffn_dim_multiplier,
        )

        if modulation:
            self.norm1 = LuminaRMSNormZero(
                embedding_dim=dim,
                norm_eps=norm_eps,
                norm_elementwise_affine=True,
            )
        else:
            self.norm1 = RMSNorm(dim, eps=norm_eps)
        self.ffn_norm1 = RMSNorm(dim, eps=norm_eps)

        self.norm2 = RMSNorm(dim, eps=norm_eps)
        self.ffn_norm2 = RMSNorm(dim, eps=norm_eps)

    def construct(
        self,
        hidden_states: ms.Tensor,
        attention_mask: Optional[ms.Tensor],
        image_rotary_emb: ms.Tensor,
        temb: Optional[ms.Tensor] = None,
    ) -> ms.Tensor:
        if self.modulation:
            norm_hidden_states, gate_msa, scale_mlp, gate_mlp = self.norm1(hidden_states, temb)
            # positional: MindSpore 2.10 never frees a cell that a compiled graph called with keyword arguments (a
            # deleted model kept its weights)
            attn_output = self.attn(norm_hidden_states, norm_hidden_states, attention_mask, image_rotary_emb)
            # gate * x as x * gate with the gate tiled (`broadcast_mul`): the same products, fast on CPU
            hidden_states = hidden_states + broadcast_mul(
                self.norm2(attn_output), tanh(gate_msa.unsqueeze(1), self.tanh_in_float64)
            )
            mlp_output = self.feed_forward(broadcast_mul(self.ffn_norm1(hidden_states), 1 + scale_mlp.unsqueeze(1)))
            hidden_states = hidden_states + broadcast_mul(
                self.ffn_norm2(mlp_output), tanh(gate_mlp.unsqueeze(1), self.tanh_in_float64)
            )
        else:
            norm_hidden_states = self.norm1(hidden_states)
            attn_output = self.attn(norm_hidden_states, norm_hidden_states, attention_mask, image_rotary_emb)
            hidden_states = hidden_states + self.norm2(attn_output)
            mlp_output = self.feed_forward(self.ffn_norm1(hidden_states))
            hidden_states = hidden_states + self.ffn_norm2(mlp_output)

        return hidden_states


class Lumina2RotaryPosEmbed(nn.Cell):
    r"""
    3-axis rotary embedding (caption index, row, column).

    MindSpore change: upstream's forward is split in two. `get_position_ids` is host-side NumPy bookkeeping (caption
    lengths, per-sample position ids); `construct` is pure tensor work: it patchifies the latents and gathers the
    tables of the three axes by position id. Called with upstream's arguments `(hidden_states, attention_mask)`, it
    does both (`forward_from_mask`) and returns upstream's tuple. The rotary embeddings are real views of upstream's
    complex `freqs_cis`, `(B, S, head_dim / 2, 2)` = `(cos, sin)`. Each table has one extra all-zero row (index
    `axes_lens[i]`) that stands for upstream's zero-filled `cap_freqs_cis` at padded caption positions.
    """

    def __init__(self, theta: int, axes_dim: List[int], axes_lens: List[int] = (300, 512, 512), patch_size: int = 2):
        super().__init__()
        self.theta = theta
        self.axes_dim = tuple(axes_dim)
        self.axes_lens = tuple(axes_lens)
        self.patch_size = patch_size

        self.freqs_cis = self._precompute_freqs_cis(self.axes_dim, self.axes_lens, theta)

    def _precompute_freqs_cis(self, axes_dim: Tuple[int, ...], axes_lens: Tuple[int, ...], theta: int):
        freqs_cis = []
        for d, e in zip(axes_dim, axes_lens):
            emb = get_1d_rotary_pos_embed(d, e, theta=theta, freqs_dtype=np.float64)
            # one all-zero row (index e): upstream's zero-filled freqs of padded caption slots
            freqs_cis.append(mint.cat([emb, mint.zeros((1, d // 2, 2), dtype=ms.float32)], dim=0))
        return tuple(freqs_cis)

    def get_position_ids(self, encoder_attention_mask: np.ndarray, height: int, width: int) -> Dict[str, np.ndarray]:
        """Host-side: caption lengths and the position ids of upstream's forward, as NumPy arrays.

        Returns a dict with `cap_position_ids` `(B, L_cap, 3)` (padded caption slots point at the zero rows),
        `img_position_ids` `(B, L_img, 3)`, `position_ids` `(B, max_seq_len, 3)` (the joint sequence, padded with 0 as
        upstream), `encoder_seq_lengths` and `seq_lengths` `(B,)`.
        """
        p = self.patch_size
        post_patch_height, post_patch_width = height // p, width // p
        image_seq_len = post_patch_height * post_patch_width
        batch_size, encoder_seq_len = encoder_attention_mask.shape

        l_effective_cap_len = encoder_attention_mask.sum(axis=1).astype(np.int64)
        seq_lengths = l_effective_cap_len + image_seq_len
        max_seq_len = int(seq_lengths.max())

        max_cap_len = int(l_effective_cap_len.max())
        if max_cap_len >= self.axes_lens[0]:
            raise ValueError(
                f"The longest caption has {max_cap_len} tokens but `axes_lens[0]` = {self.axes_lens[0]} supports at "
                f"most {self.axes_lens[0] - 1}."
            )
        if post_patch_height > self.axes_lens[1] or post_patch_width > self.axes_lens[2]:
            raise ValueError(
                f"The latents ({height}x{width}) make a grid of {post_patch_height}x{post_patch_width} patches but "
                f"`axes_lens[1:]` = {self.axes_lens[1:]} supports at most {self.axes_lens[1]}x{self.axes_lens[2]}."
            )

        row_ids = np.repeat(np.arange(post_patch_height, dtype=np.int32), post_patch_width)
        col_ids = np.tile(np.arange(post_patch_width, dtype=np.int32), post_patch_height)
        cap_len = l_effective_cap_len[:, None]

        # caption slots: (j, 0, 0) for valid j, the zero rows for padding
        j = np.arange(encoder_seq_len)[None, :]
        cap_valid = j < cap_len
        cap_position_ids = np.empty((batch_size, encoder_seq_len, 3), dtype=np.int32)
        cap_position_ids[..., 0] = np.where(cap_valid, j, self.axes_lens[0])
        cap_position_ids[..., 1] = np.where(cap_valid, 0, self.axes_lens[1])
        cap_position_ids[..., 2] = np.where(cap_valid, 0, self.axes_lens[2])

        # image tokens: (cap_len, row, col)
        img_position_ids = np.empty((batch_size, image_seq_len, 3), dtype=np.int32)
        img_position_ids[..., 0] = cap_len
        img_position_ids[..., 1] = row_ids[None, :]
        img_position_ids[..., 2] = col_ids[None, :]

        # joint sequence: caption, image, then zeros up to max_seq_len
        j = np.arange(max_seq_len)[None, :]
        is_cap = j < cap_len
        is_img = (j >= cap_len) & (j < seq_lengths[:, None])
        img_pos = np.clip(j - cap_len, 0, image_seq_len - 1)
        position_ids = np.zeros((batch_size, max_seq_len, 3), dtype=np.int32)
        position_ids[..., 0] = np.where(is_cap, j, np.where(is_img, cap_len, 0))
        position_ids[..., 1] = np.where(is_img, row_ids[img_pos], 0)
        position_ids[..., 2] = np.where(is_img, col_ids[img_pos], 0)

        return {
            "cap_position_ids": cap_position_ids,
            "img_position_ids": img_position_ids,
            "position_ids": position_ids,
            "encoder_seq_lengths": l_effective_cap_len,
            "seq_lengths": seq_lengths,
        }

    def __call__(self, hidden_states: ms.Tensor, *args, **kwargs):
        if len(args) + len(kwargs) == 1:
            return self.forward_from_mask(hidden_states, *args, **kwargs)
        return super().__call__(hidden_states, *args, **kwargs)

    def forward_from_mask(self, hidden_states: ms.Tensor, attention_mask: ms.Tensor):
        """Upstream's call, `rope_embedder(hidden_states, attention_mask)` (from Python, not inside a graph): the
        position ids from the caption mask on the host, then `construct`. Returns upstream's tuple `(hidden_states,
        cap_freqs_cis, img_freqs_cis, freqs_cis, l_effective_cap_len, seq_lengths)` with the real-view tables."""
        _, _, height, width = hidden_states.shape
        ids = self.get_position_ids(_binary_mask(attention_mask, "attention_mask"), height, width)
        keys = ("cap_position_ids", "img_position_ids", "position_ids")
        outputs = super().__call__(hidden_states, *(ms.Tensor(ids[k]) for k in keys))
        return (*outputs, ids["encoder_seq_lengths"].tolist(), ids["seq_lengths"].tolist())

    def _get_freqs_cis(self, ids: ms.Tensor) -> ms.Tensor:
        result = []
        for i in range(len(self.axes_dim)):
            result.append(ops.gather(self.freqs_cis[i], ids[:, :, i], 0))
        return mint.cat(result, dim=-2)

    def construct(
        self,
        hidden_states: ms.Tensor,
        cap_position_ids: ms.Tensor,
        img_position_ids: ms.Tensor,
        position_ids: ms.Tensor,
    ):
        batch_size, channels, height, width = hidden_states.shape
        p = self.patch_size
        post_patch_height, post_patch_width = height // p, width // p

        cap_freqs_cis = self._get_freqs_cis(cap_position_ids)
        img_freqs_cis = self._get_freqs_cis(img_position_ids)
        freqs_cis = self._get_freqs_cis(position_ids)

        # image patch embeddings
        hidden_states = (
            hidden_states.reshape(batch_size, channels, post_patch_height, p, post_patch_width, p)
            .permute(0, 2, 4, 3, 5, 1)
            .reshape(batch_size, post_patch_height * post_patch_width, p * p * channels)
        )

        return hidden_states, cap_freqs_cis, img_freqs_cis, freqs_cis


def _binary_mask(mask, name: str) -> np.ndarray:
    """A caption mask as booleans: 1 / True for caption tokens, 0 / False for padding (upstream reads caption lengths
    from its sum); other values (e.g. an additive 0 / -inf mask) raise."""
    if isinstance(mask, ms.Tensor):
        # numpy's boolean indexing fails on MindSpore's numpy bfloat16 (np.unique raised a MemoryError)
        mask = (mask.astype(ms.float32) if mask.dtype == ms.bfloat16 else mask).asnumpy()
    else:
        mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        values = np.unique(mask)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(
                f"`{name}` must hold 1 (or True) for caption tokens and 0 (or False) for padding, got the values "
                f"{values[:6].tolist()}. An additive mask (0 / -inf) is not one: pass `(mask == 0)` instead."
            )
    return mask != 0


def _check_attention_config(hidden_size, num_attention_heads, num_kv_heads, axes_dim_rope):
    """Refuse at construction the head and RoPE layouts that diffusers accepts but fails on in the first forward."""
    num_kv_heads = num_kv_heads or num_attention_heads
    # a hidden size the heads do not divide is valid, as upstream: heads of hidden_size // num_attention_heads, the
    # projections in and out of `heads * head_dim` features
    if num_attention_heads % num_kv_heads:
        raise ValueError(
            f"`num_attention_heads` ({num_attention_heads}) must be a multiple of `num_kv_heads` ({num_kv_heads}): "
            "each key/value head serves a whole group of query heads."
        )
    head_dim = hidden_size // num_attention_heads
    if sum(axes_dim_rope) != head_dim or any(d % 2 for d in axes_dim_rope):
        raise ValueError(
            f"`axes_dim_rope` {list(axes_dim_rope)} must be even sizes that add up to the head size "
            f"hidden_size // num_attention_heads = {head_dim} (the released model: 96 = 32 + 32 + 32)."
        )


class Lumina2Transformer2DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, FromOriginalModelMixin):
    r"""
    Lumina2NextDiT: Diffusion model with a Transformer backbone.

    Call it like upstream's forward: `model(hidden_states, timestep, encoder_hidden_states, encoder_attention_mask,
    attention_kwargs=None, return_dict=False)`. MindSpore change: `__call__` reads the caption mask on the host and
    prepares position ids, gather indices and masks (`prepare_inputs`), then runs `construct`, which is pure tensor
    work and compiles in GRAPH_MODE (or under `ms.jit`) once per input shapes and longest caption.

    Parameters:
        sample_size (`int`): The width of the latent images. This is fixed during training since
            it is used to learn a number of position embeddings.
        patch_size (`int`, *optional*, defaults to 2):
            The size of each patch in the image. This parameter defines the resolution of patches fed into the model.
        in_channels (`int`, *optional*, defaults to 16):
            The number of input channels for the model. Typically, this matches the number of channels in the input
            images.
        out_channels (`int`, *optional*): The number of output channels. Defaults to `in_channels`.
        hidden_size (`int`, *optional*, defaults to 2304):
            The dimensionality of the hidden layers in the model. This parameter determines the width of the model's
            hidden representations.
        num_layers (`int`, *optional*, default to 26):
            The number of layers in the model. This defines the depth of the neural network.
        num_refiner_layers (`int`, *optional*, default to 2):
            The number of layers of the noise refiner and of the context refiner.
        num_attention_heads (`int`, *optional*, defaults to 24):
            The number of attention heads in each attention layer. This parameter specifies how many separate attention
            mechanisms are used.
        num_kv_heads (`int`, *optional*, defaults to 8):
            The number of key-value heads in the attention mechanism, if different from the number of attention heads.
            If None, it defaults to num_attention_heads.
        multiple_of (`int`, *optional*, defaults to 256):
            A factor that the hidden size should be a multiple of. This can help optimize certain hardware
            configurations.
        ffn_dim_multiplier (`float`, *optional*):
            A multiplier for the dimensionality of the feed-forward network. If None, it uses a default value based on
            the model configuration.
        norm_eps (`float`, *optional*, defaults to 1e-5):
            A small value added to the denominator for numerical stability in normalization layers.
        scaling_factor (`float`, *optional*, defaults to 1.0):
            A scaling factor applied to certain parameters or layers in the model. This can be used for adjusting the
            overall scale of the model's operations.
        axes_dim_rope (`tuple[int, int, int]`, *optional*, defaults to `(32, 32, 32)`):
            Rotary dimensions of the caption-index, row and column axes (they sum to the head dimension).
        axes_lens (`tuple[int, int, int]`, *optional*, defaults to `(300, 512, 512)`):
            Number of positions of each rotary axis.
        cap_feat_dim (`int`, *optional*, defaults to 1024):
            The dimension of the caption features (`encoder_hidden_states`).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["Lumina2TransformerBlock"]
    _skip_layerwise_casting_patterns = ["x_embedder", "norm"]

    @register_to_config
    def __init__(
        self,
        sample_size: int = 128,
        patch_size: int = 2,
        in_channels: int = 16,
        out_channels: Optional[int] = None,
        hidden_size: int = 2304,
        num_layers: int = 26,
        num_refiner_layers: int = 2,
        num_attention_heads: int = 24,
        num_kv_heads: int = 8,
        multiple_of: int = 256,
        ffn_dim_multiplier: Optional[float] = None,
        norm_eps: float = 1e-5,
        scaling_factor: float = 1.0,
        axes_dim_rope: Tuple[int, int, int] = (32, 32, 32),
        axes_lens: Tuple[int, int, int] = (300, 512, 512),
        cap_feat_dim: int = 1024,
    ) -> None:
        super().__init__()
        _check_attention_config(hidden_size, num_attention_heads, num_kv_heads, axes_dim_rope)
        self.out_channels = out_channels or in_channels
        self.patch_size = patch_size
        self.hidden_size = hidden_size

        # 1. Positional, patch & conditional embeddings
        self.rope_embedder = Lumina2RotaryPosEmbed(
            theta=10000, axes_dim=axes_dim_rope, axes_lens=axes_lens, patch_size=patch_size
        )

        self.x_embedder = Linear(in_features=patch_size * patch_size * in_channels, out_features=hidden_size)

        self.time_caption_embed = Lumina2CombinedTimestepCaptionEmbedding(
            hidden_size=hidden_size, cap_feat_dim=cap_feat_dim, norm_eps=norm_eps
        )

        # 2. Noise and context refinement blocks
        self.noise_refiner = nn.CellList(
            [
                Lumina2TransformerBlock(
                    hidden_size,
                    num_attention_heads,
                    num_kv_heads,
                    multiple_of,
                    ffn_dim_multiplier,
                    norm_eps,
                    modulation=True,
                )
                for _ in range(num_refiner_layers)
            ]
        )

        self.context_refiner = nn.CellList(
            [
                Lumina2TransformerBlock(
                    hidden_size,
                    num_attention_heads,
                    num_kv_heads,
                    multiple_of,
                    ffn_dim_multiplier,
                    norm_eps,
                    modulation=False,
                )
                for _ in range(num_refiner_layers)
            ]
        )

        # 3. Transformer blocks
        self.layers = nn.CellList(
            [
                Lumina2TransformerBlock(
                    hidden_size,
                    num_attention_heads,
                    num_kv_heads,
                    multiple_of,
                    ffn_dim_multiplier,
                    norm_eps,
                    modulation=True,
                )
                for _ in range(num_layers)
            ]
        )

        # 4. Output norm & projection
        self.norm_out = LuminaLayerNormContinuous(
            embedding_dim=hidden_size,
            conditioning_embedding_dim=min(hidden_size, 1024),
            elementwise_affine=False,
            eps=1e-6,
            bias=True,
            out_dim=patch_size * patch_size * self.out_channels,
        )

        self.gradient_checkpointing = False
        # host-side bookkeeping is the same for every denoising step: keep the last few results
        self._prepared_inputs_cache = OrderedDict()
        self.compile_on_cpu = _on_cpu()

    def prepare_inputs(
        self, hidden_states: ms.Tensor, encoder_hidden_states: ms.Tensor, encoder_attention_mask
    ) -> Tuple[Optional[ms.Tensor], ...]:
        r"""
        Host-side bookkeeping of upstream's forward: caption lengths from `encoder_attention_mask`, position ids, the
        joint-sequence gather index and attention masks. Returns the arguments of `construct` that follow
        `encoder_hidden_states`: `(encoder_attention_mask, cap_position_ids, img_position_ids, position_ids,
        joint_index, attention_mask, output_index)`, with `None` where upstream uses no mask / plain concatenation.
        Results are cached per input shapes and mask content.
        """
        check_batch_inputs(self, hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states)
        if hidden_states.ndim != 4:
            raise ValueError(
                f"`hidden_states` must be (batch_size, channels, height, width), got shape {hidden_states.shape}."
            )
        batch_size, channels, height, width = hidden_states.shape
        if channels != self.config.in_channels:
            raise ValueError(
                f"`hidden_states` must have `in_channels` = {self.config.in_channels} channels (the model's config), "
                f"got shape {hidden_states.shape}."
            )
        p = self.patch_size
        if height % p != 0 or width % p != 0:
            raise ValueError(
                f"`hidden_states` height and width have to be divisible by `patch_size` ({p}) but are {height} and "
                f"{width}."
            )
        cap_feat_dim = self.config.cap_feat_dim
        if (
            encoder_hidden_states.ndim != 3
            or encoder_hidden_states.shape[0] != batch_size
            or encoder_hidden_states.shape[2] != cap_feat_dim
        ):
            raise ValueError(
                f"`encoder_hidden_states` must be (batch_size={batch_size}, sequence_length, cap_feat_dim={cap_feat_dim}), "
                f"got shape {encoder_hidden_states.shape}."
            )
        if encoder_hidden_states.shape[1] == 0:
            raise ValueError(
                f"`encoder_hidden_states` holds no caption tokens (shape {encoder_hidden_states.shape}): pass at least "
                "one (padding tokens marked 0 in `encoder_attention_mask` are allowed)."
            )
        dtype = self.dtype
        check_cpu_compute_dtype(self, dtype)
        check_input_dtype(self, dtype, hidden_states=hidden_states)
        # captions in another dtype work as upstream: the caption embedder's RMSNorm normalizes in float32 and returns
        # float32 or its half-precision weight's dtype (a float16 / bfloat16 text encoder feeds a float32 model); only
        # what the first matmul would then refuse (float64 into float32, integers) is an error
        if encoder_hidden_states.dtype not in (ms.float16, ms.bfloat16, ms.float32) and not (
            dtype in (ms.float16, ms.bfloat16) and encoder_hidden_states.dtype == ms.float64
        ):
            check_input_dtype(self, dtype, encoder_hidden_states=encoder_hidden_states)
        encoder_seq_len = encoder_hidden_states.shape[1]
        if encoder_attention_mask is None:
            mask = np.ones((batch_size, encoder_seq_len), dtype=bool)
        else:
            mask = _binary_mask(encoder_attention_mask, "encoder_attention_mask")
        if mask.shape != (batch_size, encoder_seq_len):
            raise ValueError(
                f"`encoder_attention_mask` must have shape (batch_size, sequence_length) = "
                f"{(batch_size, encoder_seq_len)}, got {mask.shape}."
            )

        key = (batch_size, height, width, encoder_seq_len, mask.tobytes())
        cached = self._prepared_inputs_cache.get(key)
        if cached is not None:
            self._prepared_inputs_cache.move_to_end(key)
            return cached

        ids = self.rope_embedder.get_position_ids(mask, height, width)
        encoder_seq_lengths, seq_lengths = ids["encoder_seq_lengths"], ids["seq_lengths"]
        image_seq_len = (height // p) * (width // p)
        max_seq_len = int(seq_lengths.max())

        # upstream always masks the context refiner; an all-True mask changes nothing, so it is dropped
        context_mask = None if mask.all() else ms.Tensor(mask)
        # upstream uses the joint mask only when the sequence lengths differ within the batch
        attention_mask = None
        if len(set(seq_lengths.tolist())) > 1:
            attention_mask = ms.Tensor(np.arange(max_seq_len)[None, :] < seq_lengths[:, None])

        joint_index = output_index = None
        if not (encoder_seq_lengths == encoder_seq_len).all():
            # joint sequence = rows of [captions | image tokens | one zero row] picked per sample
            source_len = encoder_seq_len + image_seq_len + 1
            j = np.arange(max_seq_len)[None, :]
            cap_len = encoder_seq_lengths[:, None]
            local = np.where(
                j < cap_len,
                j,
                np.where(j < seq_lengths[:, None], encoder_seq_len + j - cap_len, encoder_seq_len + image_seq_len),
            )
            joint_index = ms.Tensor((np.arange(batch_size)[:, None] * source_len + local).reshape(-1).astype(np.int32))
            k = np.arange(image_seq_len)[None, :]
            output_index = (np.arange(batch_size)[:, None] * max_seq_len + cap_len + k).reshape(-1).astype(np.int32)
            output_index = ms.Tensor(output_index)

        prepared = (
            context_mask,
            ms.Tensor(ids["cap_position_ids"]),
            ms.Tensor(ids["img_position_ids"]),
            ms.Tensor(ids["position_ids"]),
            joint_index,
            attention_mask,
            output_index,
        )
        self._prepared_inputs_cache[key] = prepared
        if len(self._prepared_inputs_cache) > 8:
            self._prepared_inputs_cache.popitem(last=False)
        return prepared

    def __call__(
        self,
        hidden_states: ms.Tensor,
        timestep: ms.Tensor,
        encoder_hidden_states: ms.Tensor,
        encoder_attention_mask: Optional[ms.Tensor] = None,
        attention_kwargs: Optional[Dict[str, Any]] = None,
        return_dict: bool = False,
    ) -> Union[Tuple[ms.Tensor], Transformer2DModelOutput]:
        """
        The [`Lumina2Transformer2DModel`] forward method.

        Args:
            hidden_states (`ms.Tensor` of shape `(batch_size, in_channels, height, width)`):
                Input `hidden_states`.
            timestep (`ms.Tensor`):
                Used to indicate denoising step: shape `(batch_size,)` (or `(1,)`, or a scalar, broadcast to the
                batch).
            encoder_hidden_states (`ms.Tensor` of shape `(batch_size, sequence_len, embed_dims)`):
                Conditional embeddings (embeddings computed from the input conditions such as prompts) to use.
            encoder_attention_mask (`ms.Tensor` of shape `(batch_size, sequence_len)`):
                Mask applied to `encoder_hidden_states` during attention (1/True for the valid caption tokens, which
                come first as in upstream). `None` means all tokens are valid.
            attention_kwargs (`dict`, *optional*):
                Only the LoRA `scale` is read, as upstream (whose processor takes no other kwargs).
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether or not to return a [`~models.transformer_2d.Transformer2DModelOutput`] instead of a plain
                tuple.

        Returns:
            If `return_dict` is True, an [`~models.transformer_2d.Transformer2DModelOutput`] is returned, otherwise a
            `tuple` where the first element is the sample tensor.
        """
        lora_scale = 1.0
        if attention_kwargs is not None:
            attention_kwargs = dict(attention_kwargs)
            lora_scale = attention_kwargs.pop("scale", 1.0)

        prepared = self.prepare_inputs(hidden_states, encoder_hidden_states, encoder_attention_mask)
        if not isinstance(timestep, ms.Tensor):
            values = np.asarray(timestep)
            if values.dtype.kind in "USV" or (
                values.dtype.kind == "O" and any(v is None or isinstance(v, (str, bytes)) for v in values.flat)
            ):  # NumPy would read None as NaN, "0.5" as 0.5
                raise TypeError(
                    f"`timestep` must be a number, or a tensor / array / list of numbers, got {timestep!r:.80}."
                )
            timestep = ms.Tensor(values.astype(np.float32))
        elif timestep.dtype != ms.float32:
            # upstream's sinusoidal embedding starts with `timesteps.float()`: cast here, so that a timestep of another
            # dtype reuses the compiled graph of float32 ones instead of compiling another
            timestep = timestep.astype(ms.float32)
        if timestep.ndim == 0:
            timestep = timestep.reshape(1)
        if timestep.ndim != 1 or timestep.shape[0] not in (1, hidden_states.shape[0]):
            raise ValueError(
                f"`timestep` must be a scalar or a 1-D tensor of length 1 or batch_size ({hidden_states.shape[0]}), got "
                f"shape {timestep.shape}."
            )
        # upstream's `@apply_lora_scale("attention_kwargs")`: LoRA layers scaled by `lora_scale` for this call only (on
        # the host: the scales are parameters that a compiled `construct` reads at run time)
        with scaled_lora_layers(self, lora_scale):
            batch_size, _, height, width = hidden_states.shape
            tokens = encoder_hidden_states.shape[1] + (height // self.patch_size) * (width // self.patch_size)
            # a large call runs its blocks compiled, one graph per kind of block, and the time / caption embedding and
            # the output layer as graphs too: run op by op, MindSpore 2.10's MatMul / ReduceSum / Softmax CPU kernels
            # keep ~1-2 kB each per launch (0.3 MB per call of the real-width model; compiled graphs do not)
            blocks = (
                self.context_refiner,
                self.noise_refiner,
                self.layers,
                [self.time_caption_embed],
                [self.norm_out],
            )
            compiled = blocks_compiled_this_call(self, batch_size * tokens * self.hidden_size, COMPILE_ON_CPU_ELEMENTS)
            with shared_graphs(*blocks) if compiled else contextlib.nullcontext():
                if compiled and ms.get_context("mode") == ms.GRAPH_MODE:
                    # GRAPH_MODE on CPU: `construct` from Python, each sub-cell compiled on its own (not one graph)
                    output = self.construct(hidden_states, timestep, encoder_hidden_states, *prepared)
                else:
                    output = super().__call__(hidden_states, timestep, encoder_hidden_states, *prepared)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def construct(
        self,
        hidden_states: ms.Tensor,
        timestep: ms.Tensor,
        encoder_hidden_states: ms.Tensor,
        encoder_attention_mask: Optional[ms.Tensor],
        cap_position_ids: ms.Tensor,
        img_position_ids: ms.Tensor,
        position_ids: ms.Tensor,
        joint_index: Optional[ms.Tensor] = None,
        attention_mask: Optional[ms.Tensor] = None,
        output_index: Optional[ms.Tensor] = None,
    ) -> ms.Tensor:
        r"""
        Pure tensor part of the forward pass; the arguments after `encoder_hidden_states` come from `prepare_inputs`.
        Returns the predicted sample of shape `(batch_size, out_channels, height, width)`.
        """
        # 1. Condition, positional & patch embedding
        batch_size, _, height, width = hidden_states.shape

        temb, encoder_hidden_states = self.time_caption_embed(hidden_states, timestep, encoder_hidden_states)

        hidden_states, context_rotary_emb, noise_rotary_emb, rotary_emb = self.rope_embedder(
            hidden_states, cap_position_ids, img_position_ids, position_ids
        )

        hidden_states = self.x_embedder(hidden_states)

        # 2. Context & noise refinement
        for layer in self.context_refiner:
            encoder_hidden_states = layer(encoder_hidden_states, encoder_attention_mask, context_rotary_emb)

        for layer in self.noise_refiner:
            hidden_states = layer(hidden_states, None, noise_rotary_emb, temb)

        # 3. Joint Transformer blocks: per sample [its valid caption tokens | image tokens | zero padding]
        encoder_seq_len = encoder_hidden_states.shape[1]
        if joint_index is None:
            hidden_states = mint.cat([encoder_hidden_states, hidden_states], dim=1)
        else:
            padding = mint.zeros((batch_size, 1, self.hidden_size), dtype=hidden_states.dtype)
            tokens = mint.cat([encoder_hidden_states, hidden_states, padding], dim=1)
            hidden_states = ops.gather(tokens.reshape(-1, self.hidden_size), joint_index, 0)
            hidden_states = hidden_states.reshape(batch_size, -1, self.hidden_size)

        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden_states = ms.recompute(
                    layer, hidden_states, attention_mask, rotary_emb, temb, use_reentrant=False
                )
            else:
                hidden_states = layer(hidden_states, attention_mask, rotary_emb, temb)

        # 4. Output norm & projection
        hidden_states = self.norm_out(hidden_states, temb)

        # 5. Unpatchify
        p = self.patch_size
        if output_index is None:
            hidden_states = hidden_states[:, encoder_seq_len:]
        else:
            hidden_states = ops.gather(hidden_states.reshape(-1, hidden_states.shape[-1]), output_index, 0)
        output = (
            hidden_states.reshape(batch_size, height // p, width // p, p, p, self.out_channels)
            .permute(0, 5, 1, 3, 2, 4)
            .reshape(batch_size, self.out_channels, height, width)
        )
        return output
