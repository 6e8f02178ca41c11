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
"""Attention layer, its default processor and the one attention helper of the package.

Adapted from diffusers v0.42.1 `models/attention_processor.py`; MindSpore changes: only the options Lumina2 and the
FLUX VAE use (others raise), processors are `ms.jit_class` objects so `Attention.construct` compiles in GRAPH_MODE, and
`torch.nn.functional.scaled_dot_product_attention` is replaced by `scaled_dot_product_attention` below: a math path with
fp32 softmax everywhere (over chunks of heads or query rows for large inputs), plus Ascend's flash-attention kernel for
fp16/bf16 inputs (untested on hardware).
"""

import math
from typing import Optional, Tuple

import mindspore as ms
from mindspore import mint, nn, ops

from ..utils import is_ascend, logging
from .cpu_layers import Linear, broadcast_add
from .normalization import LayerNorm, RMSNorm

logger = logging.get_logger(__name__)


def scaled_dot_product_attention(
    query: ms.Tensor,
    key: ms.Tensor,
    value: ms.Tensor,
    attn_mask: Optional[ms.Tensor] = None,
    scale: Optional[float] = None,
    use_flash: bool = False,
) -> ms.Tensor:
    r"""Attention over `(batch, heads, seq, head_dim)` tensors, as `torch.nn.functional.scaled_dot_product_attention`.

    Args:
        query (`ms.Tensor`): `(B, H, L, D)`.
        key (`ms.Tensor`): `(B, H, S, D)`; fewer (grouped) heads only where `flash_attention_applies` (otherwise
            fold or expand them before calling).
        value (`ms.Tensor`): `(B, H, S, Dv)`.
        attn_mask (`ms.Tensor`, *optional*):
            Broadcastable to `(B, H, L, S)`. Boolean: `True` marks keys that take part (torch's convention). Floating:
            added to the scores.
        scale (`float`, *optional*): Defaults to `D ** -0.5`.
        use_flash (`bool`, defaults to `False`):
            Use Ascend's flash-attention kernel where `flash_attention_applies` (fp16/bf16 inputs within the kernel's
            limits; the rest takes the math path). Callers pass the flag decided at construction
            (`Attention.use_flash`), since the device cannot be read inside a graph.

    Returns:
        `ms.Tensor` of shape `(B, H, L, Dv)` in the dtype of `query`.
    """
    head_dim = query.shape[-1]
    scale = scale if scale is not None else 1.0 / math.sqrt(head_dim)
    if flash_attention_applies(use_flash, query, key, attn_mask):
        return _flash_attention_ascend(query, key, value, attn_mask, scale)
    if query.shape[0] * query.shape[1] * query.shape[2] * key.shape[-2] > ATTENTION_CHUNK_ELEMENTS:
        return _attention_chunks(query, key, value, attn_mask, scale)
    return _attention_math(query, key, value, attn_mask, scale)


def _additive_mask(mask: ms.Tensor) -> ms.Tensor:
    # a boolean mask as 0 / -3e38 (a large finite negative instead of -inf: the same result for rows with at least one
    # kept key). Arithmetic, not `mint.where(mask, 0-d, 0-d)`: MindSpore 2.9 (and earlier) compiles that wrongly when
    # the mask is a constant of the graph (a 0-d result, the kernel writing past it)
    return (mask.astype(ms.float32) - 1.0) * 3.0e38


# query rows per chunk of `_attention_chunks`: one chunk's float32 scores hold at most this many elements (16 MiB)
ATTENTION_CHUNK_ELEMENTS = 1 << 22
# at most this many chunks per call (larger chunks beyond it): each chunk, ordered after the previous one, adds to the
# call depth of a compiled graph, and MindSpore refuses graphs deeper than its `max_call_depth` (1000): ~130 chunks
# failed to compile ("Exceed function call depth limit"), as the real-width transformer at 1024x1024 with CFG did
# (240 chunks of 16 MiB)
ATTENTION_MAX_CHUNKS = 64


def _chunk_steps(batch: int, heads: int, q_len: int, kv_len: int) -> Tuple[int, int]:
    """(heads, query rows) per chunk of `_attention_chunks`: scores of at most `ATTENTION_CHUNK_ELEMENTS` elements,
    the chunks doubled in size while there are more than `ATTENTION_MAX_CHUNKS` of them."""
    elements = ATTENTION_CHUNK_ELEMENTS
    while True:
        if q_len * kv_len <= elements:
            head_step, row_step = min(heads, max(1, elements // (q_len * kv_len))), q_len
        else:
            head_step, row_step = 1, max(1, elements // kv_len)
        count = batch * -(-heads // head_step) * -(-q_len // row_step)
        # one head (the VAE's attention, MQA with the query heads folded into rows) grows its rows, not its heads
        if count <= ATTENTION_MAX_CHUNKS or (head_step == heads and row_step == q_len):
            return head_step, row_step
        elements *= 2


def _attention_chunks(query, key, value, attn_mask, scale):
    # The math path per batch element over chunks of heads (all query rows of a head, or chunks of rows when one head's
    # scores exceed the chunk), so the float32 scores never exist at full size (B x H x L x S: 1 GB at 24 heads over
    # 1152 tokens, and MindSpore keeps several such intermediates alive); 16 MiB chunks also stay in cache. Chunks are
    # slices of leading axes (contiguous; slicing rows out of every head was a slow StridedSlice on CPU), ordered with
    # `ops.depend` so a caller compiled as a whole runs them in turn.
    # float32 inputs (the CPU case) fold the softmax scale into the queries (L x D products instead of L x S) and a
    # key-padding mask (B, 1, 1, S) into the QK^T product as one more channel, [q * scale, 1] @ [k, bias]^T, against
    # keys transposed once per batch element: on CPU the scale multiply and the BiasAdd over every chunk's scores cost
    # as much as the product itself, and BatchMatMul is faster with its second operand in (D, S) layout.
    dtype = query.dtype
    batch, heads, q_len, _ = query.shape
    kv_len = key.shape[-2]
    head_step, row_step = _chunk_steps(batch, heads, q_len, kv_len)
    key_bias, mask = None, None
    if attn_mask is not None:
        if attn_mask.dtype == ms.bool_:
            attn_mask = _additive_mask(attn_mask)
        attn_mask = attn_mask.astype(ms.float32)
        if attn_mask.ndim == 4 and attn_mask.shape[1] == 1 and attn_mask.shape[2] == 1:
            key_bias = attn_mask.broadcast_to((batch, 1, 1, kv_len))
        else:
            # (B or 1, H or 1, L or 1, S)
            mask = attn_mask.reshape((1,) * (4 - attn_mask.ndim) + tuple(attn_mask.shape))
    fold = dtype == ms.float32
    if fold:
        query = query * scale
        if key_bias is not None:
            query = mint.cat([query, mint.ones(query.shape[:-1] + (1,), dtype=dtype)], dim=-1)
    # leading-axis pieces as `mint.split` views: in a compiled CPU graph every StridedSlice (`x[b]`) is a copy at
    # ~0.2-1 GB/s, as slow as the products it feeds
    queries, keys, values = _split0(query, 1), _split0(key, 1), _split0(value, 1)
    key_biases = _split0(key_bias, 1) if key_bias is not None else None
    masks = _split0(mask, 1) if mask is not None else None
    outputs, previous = [], None
    for b in range(batch):
        k = _drop0(keys[b if len(keys) > 1 else 0])
        v = _drop0(values[b if len(values) > 1 else 0])
        k = k.broadcast_to((heads,) + tuple(k.shape[1:]))
        v = v.broadcast_to((heads,) + tuple(v.shape[1:]))
        bias_b = key_biases[b].reshape(kv_len) if key_bias is not None else None
        if fold:
            k = mint.swapaxes(k, -1, -2)
            if key_bias is not None:
                k = mint.cat([k, bias_b.broadcast_to((heads, 1, kv_len))], dim=-2)
            else:
                k = k.contiguous()
        m_b = _drop0(masks[b if len(masks) > 1 else 0]) if mask is not None else None
        q_heads = _split0(_drop0(queries[b]), head_step)
        k_heads, v_heads = _split0(k, head_step), _split0(v, head_step)
        m_heads = _split0(m_b, head_step) if m_b is not None and m_b.shape[0] > 1 else None
        chunks = []
        for i, q_h in enumerate(q_heads):
            q_rows = [q_h] if row_step == q_len else _split0(q_h.reshape(q_len, -1), row_step)
            m_h = m_heads[i] if m_heads is not None else m_b
            m_rows = None
            if m_h is not None and m_h.shape[1] > 1 and row_step != q_len:
                m_rows = _split0(m_h.reshape(m_h.shape[1], kv_len), row_step)
            for j, q in enumerate(q_rows):
                if row_step != q_len:
                    q = q.reshape(1, -1, q.shape[-1])
                if previous is not None:
                    q = ops.depend(q, previous)
                if fold:
                    scores = _batch_matmul(q, k_heads[i])
                else:
                    scores = _batch_matmul_nt(q, k_heads[i]).astype(ms.float32) * scale
                    if key_bias is not None:
                        scores = ops.bias_add(scores.reshape(-1, kv_len), bias_b).reshape(scores.shape)
                if m_h is not None:
                    scores = broadcast_add(scores, m_rows[j].unsqueeze(0) if m_rows is not None else m_h)
                probs = ops.softmax(scores, axis=-1).astype(value.dtype)
                previous = _batch_matmul(probs, v_heads[i]).astype(dtype)
                chunks.append(previous)
        if row_step != q_len:
            out = mint.cat(chunks, dim=1).reshape(heads, q_len, -1)
        else:
            out = mint.cat(chunks, dim=0) if len(chunks) > 1 else chunks[0]
        outputs.append(out)
    return mint.cat([out.unsqueeze(0) for out in outputs], dim=0) if batch > 1 else outputs[0].unsqueeze(0)


def _split0(x, size):
    # pieces of `size` along axis 0 (views)
    return mint.split(x, size, dim=0)


def _drop0(x):
    # x[0] of a length-1 axis 0 as a reshape (indexing is a StridedSlice copy in a compiled graph)
    return x.reshape(x.shape[1:])


_batch_matmul = ops.BatchMatMul()
_batch_matmul_nt = ops.BatchMatMul(transpose_b=True)


def _attention_math(query, key, value, attn_mask, scale):
    dtype = query.dtype
    # BatchMatMul with a transposed second operand reads `key` in place (no transposed copy)
    scores = _batch_matmul_nt(query, key).astype(ms.float32) * scale
    if attn_mask is not None:
        if attn_mask.dtype == ms.bool_:
            # adding the small (B, 1, L or 1, S) bias is ~2x faster than a `where` over the scores on CPU
            attn_mask = _additive_mask(attn_mask)
        scores = scores + attn_mask.astype(ms.float32)
    probs = mint.softmax(scores, dim=-1).astype(value.dtype)
    return mint.matmul(probs, value).astype(dtype)


def flash_attention_applies(use_flash: bool, query: ms.Tensor, key: ms.Tensor, attn_mask: Optional[ms.Tensor]) -> bool:
    """Whether `scaled_dot_product_attention` runs Ascend's FlashAttentionScore: asked for (`use_flash`), fp16 / bf16
    inputs within the kernel's limits (MindSpore 2.10: head_dim a multiple of 16 up to 512, at most 256 query heads,
    key / value heads dividing them) and no mask or a boolean one (an additive float mask is not a keep / drop mask)."""
    heads, head_dim, kv_heads = query.shape[1], query.shape[-1], key.shape[1]
    return (
        use_flash
        and query.dtype in (ms.float16, ms.bfloat16)
        and head_dim % 16 == 0
        and head_dim <= 512
        and heads <= 256
        and heads % kv_heads == 0
        and (attn_mask is None or attn_mask.dtype == ms.bool_)
    )


def _flash_attention_ascend(query, key, value, attn_mask, scale):
    # Ascend-only (untested on hardware here): FlashAttentionScore takes fp16/bf16 BNSD inputs (grouped key / value
    # heads as they are) and a (B, 1 or heads, L, S) mask where True/1 means "drop", the inverse of torch's mask.
    batch, heads, q_len, _ = query.shape
    kv_len = key.shape[2]
    mask = None
    if attn_mask is not None:
        mask_heads = heads if attn_mask.ndim == 4 and attn_mask.shape[1] != 1 else 1
        mask = mint.logical_not(attn_mask.broadcast_to((batch, mask_heads, q_len, kv_len))).astype(ms.uint8)
    return ops.flash_attention_score(
        query, key, value, head_num=heads, attn_mask=mask, scalar_value=scale, input_layout="BNSD"
    )


@ms.jit_class
class AttnProcessor2_0:
    r"""Default processor: scaled dot-product attention (used by the VAE mid-block attention)."""

    def __call__(
        self,
        attn: "Attention",
        hidden_states: ms.Tensor,
        encoder_hidden_states: Optional[ms.Tensor] = None,
        attention_mask: Optional[ms.Tensor] = None,
        temb: Optional[ms.Tensor] = None,
    ) -> ms.Tensor:
        residual = hidden_states
        input_shape = hidden_states.shape
        input_ndim = len(input_shape)
        if input_ndim == 4:
            hidden_states = mint.swapaxes(hidden_states.view(input_shape[0], input_shape[1], -1), 1, 2)

        batch_size = hidden_states.shape[0]
        if attention_mask is not None and attention_mask.ndim == 3:
            # (batch, query_len or 1, key_len) -> broadcast over heads
            attention_mask = attention_mask.unsqueeze(1)

        if attn.group_norm is not None:
            hidden_states = mint.swapaxes(attn.group_norm(mint.swapaxes(hidden_states, 1, 2)), 1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        # `mint.swapaxes` (views): `Tensor.swapaxes` (Transpose) keeps output-sized buffers per call site in a compiled
        # CPU graph
        query = mint.swapaxes(query.view(batch_size, -1, attn.heads, head_dim), 1, 2)
        key = mint.swapaxes(key.view(batch_size, -1, attn.heads, head_dim), 1, 2)
        value = mint.swapaxes(value.view(batch_size, -1, attn.heads, head_dim), 1, 2)

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        hidden_states = scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, scale=attn.scale, use_flash=attn.use_flash
        )
        hidden_states = mint.swapaxes(hidden_states, 1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.astype(query.dtype)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if input_ndim == 4:
            hidden_states = mint.swapaxes(hidden_states, -1, -2).reshape(input_shape)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states


AttnProcessor = AttnProcessor2_0


class Attention(nn.Cell):
    r"""
    A cross attention layer.

    Parameters:
        query_dim (`int`):
            The number of channels in the query.
        cross_attention_dim (`int`, *optional*):
            The number of channels in the encoder_hidden_states. If not given, defaults to `query_dim`.
        heads (`int`,  *optional*, defaults to 8):
            The number of heads to use for multi-head attention.
        kv_heads (`int`,  *optional*, defaults to `None`):
            The number of key and value heads to use for multi-head attention. Defaults to `heads`. If `kv_heads=heads`,
            the model will use Multi Head Attention (MHA), if `kv_heads=1` the model will use Multi Query Attention (MQA)
            otherwise GQA is used.
        dim_head (`int`,  *optional*, defaults to 64):
            The number of channels in each head.
        dropout (`float`, *optional*, defaults to 0.0):
            The dropout probability to use (identity at inference).
        bias (`bool`, *optional*, defaults to False):
            Set to `True` for the query, key, and value linear layers to contain a bias parameter.
        qk_norm (`str`, *optional*, defaults to None):
            `None`, `"layer_norm"` or `"rms_norm"`: normalization of the query and key heads.
        norm_num_groups (`int`, *optional*, defaults to `None`):
            The number of groups to use for the group norm in the attention.
        out_bias (`bool`, *optional*, defaults to `True`):
            Set to `True` to use a bias in the output linear layer.
        scale_qk (`bool`, *optional*, defaults to `True`):
            Set to `True` to scale the query and key by `1 / sqrt(dim_head)`.
        eps (`float`, *optional*, defaults to 1e-5):
            An additional value added to the denominator in group normalization and qk norms.
        rescale_output_factor (`float`, *optional*, defaults to 1.0):
            A factor to rescale the output by dividing it with this value.
        residual_connection (`bool`, *optional*, defaults to `False`):
            Set to `True` to add the residual connection to the output.
        processor (`AttnProcessor`, *optional*, defaults to `None`):
            The attention processor to use. If `None`, defaults to `AttnProcessor2_0`.
        out_dim (`int`, *optional*):
            The number of output channels. Defaults to `query_dim`.
        elementwise_affine (`bool`, *optional*, defaults to `True`):
            Whether the qk norms have a learnable weight.
    """

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: Optional[int] = None,
        heads: int = 8,
        kv_heads: Optional[int] = None,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = False,
        upcast_attention: bool = False,
        upcast_softmax: bool = False,
        cross_attention_norm: Optional[str] = None,
        cross_attention_norm_num_groups: int = 32,
        qk_norm: Optional[str] = None,
        added_kv_proj_dim: Optional[int] = None,
        added_proj_bias: Optional[bool] = True,
        norm_num_groups: Optional[int] = None,
        spatial_norm_dim: Optional[int] = None,
        out_bias: bool = True,
        scale_qk: bool = True,
        only_cross_attention: bool = False,
        eps: float = 1e-5,
        rescale_output_factor: float = 1.0,
        residual_connection: bool = False,
        _from_deprecated_attn_block: bool = False,
        processor=None,
        out_dim: Optional[int] = None,
        out_context_dim: Optional[int] = None,
        context_pre_only=None,
        pre_only: bool = False,
        elementwise_affine: bool = True,
        is_causal: bool = False,
    ):
        # upstream's signature, in its order; the options no Lumina2 / FLUX-VAE layer uses are refused when set
        unsupported = {
            "cross_attention_norm": cross_attention_norm is not None,
            "added_kv_proj_dim": added_kv_proj_dim is not None,
            "spatial_norm_dim": spatial_norm_dim is not None,
            "only_cross_attention": bool(only_cross_attention),
            "out_context_dim": out_context_dim is not None,
            "context_pre_only": context_pre_only is not None,
            "pre_only": bool(pre_only),
            "is_causal": bool(is_causal),
        }
        refused = [name for name, is_set in unsupported.items() if is_set]
        if refused:
            raise ValueError(
                f"Attention options {refused} are not ported (the Lumina2 transformer and the FLUX VAE use none of "
                "them): leave them at their defaults."
            )
        super().__init__()
        self.inner_dim = out_dim if out_dim is not None else dim_head * heads
        self.inner_kv_dim = self.inner_dim if kv_heads is None else dim_head * kv_heads
        self.query_dim = query_dim
        self.use_bias = bias
        self.is_cross_attention = cross_attention_dim is not None
        self.cross_attention_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        # softmax is always computed in float32 here, which covers upcast_attention / upcast_softmax
        self.upcast_attention = upcast_attention
        self.upcast_softmax = upcast_softmax
        self.rescale_output_factor = rescale_output_factor
        self.residual_connection = residual_connection
        self.dropout = dropout
        self.out_dim = out_dim if out_dim is not None else query_dim
        self._from_deprecated_attn_block = _from_deprecated_attn_block
        self.scale_qk = scale_qk
        self.scale = dim_head**-0.5 if self.scale_qk else 1.0
        self.heads = out_dim // dim_head if out_dim is not None else heads
        # decided here because the device cannot be queried inside a compiled construct
        self.use_flash = is_ascend()

        if norm_num_groups is not None:
            self.group_norm = mint.nn.GroupNorm(
                num_channels=query_dim, num_groups=norm_num_groups, eps=eps, affine=True
            )
        else:
            self.group_norm = None

        if qk_norm is None:
            self.norm_q = None
            self.norm_k = None
        elif qk_norm == "layer_norm":
            self.norm_q = LayerNorm(dim_head, eps=eps, elementwise_affine=elementwise_affine)
            self.norm_k = LayerNorm(dim_head, eps=eps, elementwise_affine=elementwise_affine)
        elif qk_norm == "rms_norm":
            self.norm_q = RMSNorm(dim_head, eps=eps, elementwise_affine=elementwise_affine)
            self.norm_k = RMSNorm(dim_head, eps=eps, elementwise_affine=elementwise_affine)
        else:
            raise ValueError(f"unknown qk_norm: {qk_norm}. This port supports None, 'layer_norm' and 'rms_norm'.")

        self.to_q = Linear(query_dim, self.inner_dim, bias=bias)
        self.to_k = Linear(self.cross_attention_dim, self.inner_kv_dim, bias=bias)
        self.to_v = Linear(self.cross_attention_dim, self.inner_kv_dim, bias=bias)
        self.to_out = nn.CellList([Linear(self.inner_dim, self.out_dim, bias=out_bias), mint.nn.Dropout(p=dropout)])

        self.processor = processor if processor is not None else AttnProcessor2_0()

    def set_processor(self, processor) -> None:
        """Set the attention processor to use."""
        replaced = "processor" in self.__dict__ and self.__dict__["processor"] is not processor
        self.processor = processor
        if replaced:  # compiled graphs of this layer and of the models holding it folded in the old one
            from .modeling_utils import invalidate_models_containing

            invalidate_models_containing(self)

    def get_processor(self):
        """The attention processor in use."""
        return self.processor

    def construct(
        self,
        hidden_states: ms.Tensor,
        encoder_hidden_states: Optional[ms.Tensor] = None,
        attention_mask: Optional[ms.Tensor] = None,
        image_rotary_emb: Optional[ms.Tensor] = None,
        base_sequence_length: Optional[int] = None,
    ) -> ms.Tensor:
        r"""
        The forward method of the `Attention` class.

        Args:
            hidden_states (`ms.Tensor`): The hidden states of the query.
            encoder_hidden_states (`ms.Tensor`, *optional*): The hidden states of the encoder.
            attention_mask (`ms.Tensor`, *optional*): The attention mask to use. If `None`, no mask is applied.
            image_rotary_emb (`ms.Tensor`, *optional*): Rotary embedding, for processors that use it (Lumina2).
            base_sequence_length (`int`, *optional*): Proportional-attention base length (Lumina2's processor).

        Returns:
            `ms.Tensor`: The output of the attention layer.
        """
        if image_rotary_emb is None and base_sequence_length is None:
            return self.processor(self, hidden_states, encoder_hidden_states, attention_mask)
        # positional, as the cells' calls in compiled graphs (see `Lumina2TransformerBlock.construct`)
        return self.processor(
            self, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, base_sequence_length
        )
