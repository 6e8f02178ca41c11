"""The tensor helpers (RMSNorm, RoPE, attention) at sizes the model tests do not reach, against diffusers / torch on
identical inputs (fp32, relative L2 <= 1e-5), in PyNative and GRAPH_MODE: above `ATTENTION_CHUNK_ELEMENTS` the attention
runs per batch element over chunks of query rows (with the key-padding mask as BiasAdd), which the tiny model tests
never trigger."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention as TorchAttention
from diffusers.models.embeddings import apply_rotary_emb as torch_apply_rotary_emb
from diffusers.models.normalization import RMSNorm as TorchRMSNorm
from diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0 as TorchLumina2AttnProcessor

import mindspore as ms
from mindspore import nn

from mindone.diffusers.models import attention_processor
from mindone.diffusers.models.attention_processor import (
    ATTENTION_CHUNK_ELEMENTS,
    Attention,
    scaled_dot_product_attention,
)
from mindone.diffusers.models.embeddings import apply_rotary_emb
from mindone.diffusers.models.normalization import RMSNorm
from mindone.diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0
from tests.testing_utils import assert_close, load_torch_weights

MODES = ["pynative", "graph"]


@pytest.fixture
def mode_context(request):
    if request.param == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    yield request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.mark.parametrize("mode_context", MODES, indirect=True)
def test_rms_norm_large(mode_context):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 150, 1024)).astype(np.float32) * 3
    torch_norm = TorchRMSNorm(1024, eps=1e-6)
    with torch.no_grad():
        torch_norm.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, 1024).astype(np.float32)))
    norm = RMSNorm(1024, eps=1e-6)
    load_torch_weights(norm, torch_norm)
    with torch.no_grad():
        expected = torch_norm(torch.from_numpy(x))
    assert_close(norm(ms.Tensor(x)), expected, 1e-6)
    # without weight: the input dtype is kept
    torch_plain, plain = TorchRMSNorm(1024, eps=1e-6, elementwise_affine=False), RMSNorm(1024, 1e-6, False)
    with torch.no_grad():
        assert_close(plain(ms.Tensor(x)), torch_plain(torch.from_numpy(x)), 1e-6)


@pytest.mark.parametrize("mode_context", MODES, indirect=True)
def test_rotary_large(mode_context):
    rng = np.random.default_rng(1)
    batch, seq, heads, dim = 2, 300, 8, 128
    x = rng.standard_normal((batch, seq, heads, dim)).astype(np.float32)
    angles = rng.uniform(-30, 30, (batch, seq, dim // 2))
    freqs = np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)
    torch_freqs = torch.polar(torch.ones(angles.shape, dtype=torch.float64), torch.from_numpy(angles))
    expected = torch_apply_rotary_emb(torch.from_numpy(x), torch_freqs, use_real=False)
    assert_close(apply_rotary_emb(ms.Tensor(x), ms.Tensor(freqs), use_real=False), expected, 1e-6)
    # a table shared by the batch, [S, D/2, 2] (diffusers takes it expanded to the batch)
    expected = torch_apply_rotary_emb(torch.from_numpy(x), torch_freqs[:1].expand(batch, -1, -1), use_real=False)
    assert_close(apply_rotary_emb(ms.Tensor(x), ms.Tensor(freqs[0]), use_real=False), expected, 1e-6)


@pytest.mark.parametrize("mode_context", MODES, indirect=True)
def test_attention_large(mode_context):
    rng = np.random.default_rng(2)
    batch, heads, q_len, kv_len, dim = 2, 8, 600, 500, 32
    q = rng.standard_normal((batch, heads, q_len, dim)).astype(np.float32)
    k = rng.standard_normal((batch, heads, kv_len, dim)).astype(np.float32)
    v = rng.standard_normal((batch, heads, kv_len, dim)).astype(np.float32)
    assert batch * heads * q_len * kv_len > ATTENTION_CHUNK_ELEMENTS
    keep = np.arange(kv_len)[None, :] < np.array([kv_len, 100])[:, None]
    bool_mask = keep[:, None, None, :]
    float_mask = rng.standard_normal((batch, 1, q_len, kv_len)).astype(np.float32)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    row_mask = rng.random((batch, 1, q_len, kv_len)) > 0.3
    shared_mask = bool_mask[1:]
    cases = {
        "no mask": (None, None),
        "key-padding bool mask": (bool_mask, bool_mask),
        "key-padding mask shared by the batch": (shared_mask, shared_mask),
        "per-query bool mask": (row_mask, row_mask),
        "float mask": (float_mask, float_mask),
    }
    for name, (mask, torch_mask) in cases.items():
        expected = F.scaled_dot_product_attention(
            tq, tk, tv, attn_mask=None if torch_mask is None else torch.from_numpy(torch_mask), scale=0.1
        )
        out = scaled_dot_product_attention(
            ms.Tensor(q), ms.Tensor(k), ms.Tensor(v), attn_mask=None if mask is None else ms.Tensor(mask), scale=0.1
        )
        assert_close(out, expected, 1e-5, what=name)


@pytest.mark.parametrize("mode_context", MODES, indirect=True)
def test_lumina2_attention_gqa_large(mode_context):
    # the Lumina2 processor at 24/8 heads (GQA stacked along the sequence), RoPE, qk norms and a caption mask
    torch.manual_seed(5)
    dim, heads, kv_heads, batch, seq = 384, 24, 8, 2, 700
    kwargs = dict(
        query_dim=dim,
        dim_head=dim // heads,
        heads=heads,
        kv_heads=kv_heads,
        qk_norm="rms_norm",
        eps=1e-5,
        bias=False,
        out_bias=False,
    )
    torch_attn = TorchAttention(**kwargs, processor=TorchLumina2AttnProcessor()).eval()
    with torch.no_grad():
        torch_attn.norm_q.weight.add_(torch.randn(dim // heads) * 0.2)
        torch_attn.norm_k.weight.add_(torch.randn(dim // heads) * 0.2)
    attn = Attention(**kwargs, processor=Lumina2AttnProcessor2_0())
    load_torch_weights(attn, torch_attn)

    rng = np.random.default_rng(5)
    x = rng.standard_normal((batch, seq, dim)).astype(np.float32)
    # GQA stacks the 3 query heads of each k/v head: scores of 2 x 8 x 2100 x 700 floats
    assert batch * kv_heads * (heads // kv_heads) * seq * seq > ATTENTION_CHUNK_ELEMENTS
    mask = np.arange(seq)[None, :] < np.array([seq, 77])[:, None]
    angles = rng.uniform(-3, 3, (batch, seq, dim // heads // 2))
    freqs_cis = np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)
    torch_freqs = torch.polar(torch.ones(angles.shape, dtype=torch.float64), torch.from_numpy(angles))
    for attention_mask in (mask, None):
        with torch.no_grad():
            expected = torch_attn(
                torch.from_numpy(x),
                encoder_hidden_states=torch.from_numpy(x),
                attention_mask=None if attention_mask is None else torch.from_numpy(attention_mask),
                image_rotary_emb=torch_freqs,
            )
        out = attn(
            ms.Tensor(x),
            ms.Tensor(x),
            None if attention_mask is None else ms.Tensor(attention_mask),
            ms.Tensor(freqs_cis),
        )
        assert_close(out, expected, 1e-5, what=f"mask={attention_mask is not None}")


class _SDPA(nn.Cell):
    def construct(self, q, k, v, mask):
        return scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.1)


@pytest.mark.parametrize("mode_context", MODES, indirect=True)
@pytest.mark.parametrize(
    "q_len,kv_len",
    [(300, 100), (40, 100)],
    ids=["row chunks (uneven)", "head groups (uneven)"],
)
def test_attention_chunk_layouts(mode_context, q_len, kv_len, monkeypatch):
    # a small chunk so one head's scores exceed it (chunks of query rows) or several heads share one (head groups);
    # 6 heads and the lengths leave a shorter last chunk. Compiled as a cell in GRAPH_MODE.
    monkeypatch.setattr(attention_processor, "ATTENTION_CHUNK_ELEMENTS", 1 << 14)
    rng = np.random.default_rng(7)
    batch, heads, dim = 2, 6, 16
    q = rng.standard_normal((batch, heads, q_len, dim)).astype(np.float32)
    k = rng.standard_normal((batch, heads, kv_len, dim)).astype(np.float32)
    v = rng.standard_normal((batch, heads, kv_len, dim)).astype(np.float32)
    keep = np.arange(kv_len)[None, :] < np.array([kv_len, 37])[:, None]
    cases = {
        "no mask": None,
        "key-padding bool mask": keep[:, None, None, :],
        "key-padding mask shared by the batch": keep[1:, None, None, :],
        "per-query bool mask": rng.random((batch, 1, q_len, kv_len)) > 0.3,
        "per-head float mask": rng.standard_normal((batch, heads, q_len, kv_len)).astype(np.float32),
        "2-D float mask": rng.standard_normal((q_len, kv_len)).astype(np.float32),
    }
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    for name, mask in cases.items():
        torch_mask = None if mask is None else torch.from_numpy(mask)
        expected = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch_mask, scale=0.1)
        out = _SDPA()(ms.Tensor(q), ms.Tensor(k), ms.Tensor(v), None if mask is None else ms.Tensor(mask))
        assert_close(out, expected, 1e-5, what=name)
    # keys and values shared by the batch (batch 1, broadcast)
    expected = F.scaled_dot_product_attention(tq, tk[:1].expand_as(tk), tv[:1].expand_as(tv), scale=0.1)
    assert_close(_SDPA()(ms.Tensor(q), ms.Tensor(k[:1]), ms.Tensor(v[:1]), None), expected, 1e-5, what="kv batch 1")


def test_attention_chunk_count_is_capped(monkeypatch, graph_mode):
    # 24 heads x 4 row chunks x batch 2 = 192 chunks of 1024 elements: a compiled graph that deep failed ("Exceed
    # function call depth limit", as the real-width transformer at 1024x1024 with CFG did); the chunks grow until at
    # most `ATTENTION_MAX_CHUNKS` remain (48 of 4096 elements here), compiled in GRAPH_MODE with torch's result
    monkeypatch.setattr(attention_processor, "ATTENTION_CHUNK_ELEMENTS", 1024)
    assert attention_processor._chunk_steps(2, 24, 64, 64) == (1, 64)
    monkeypatch.setattr(attention_processor, "ATTENTION_MAX_CHUNKS", 1 << 20)
    assert attention_processor._chunk_steps(2, 24, 64, 64) == (1, 16)  # uncapped: 192 chunks
    monkeypatch.undo()
    monkeypatch.setattr(attention_processor, "ATTENTION_CHUNK_ELEMENTS", 1024)
    assert attention_processor._chunk_steps(2, 24, 40, 10) == (2, 40)  # small heads: groups of heads as before
    assert attention_processor._chunk_steps(200, 2, 64, 64) == (2, 64)  # at least one chunk per batch element
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 24, 64, 8)).astype(np.float32) for _ in range(3))
    keep = (np.arange(64)[None, :] < np.array([64, 21])[:, None])[:, None, None, :]
    expected = F.scaled_dot_product_attention(
        *(torch.from_numpy(a) for a in (q, k, v)), torch.from_numpy(keep), scale=0.1
    )
    assert_close(_SDPA()(ms.Tensor(q), ms.Tensor(k), ms.Tensor(v), ms.Tensor(keep)), expected, 1e-5)
    # one head (the VAE's mid-block attention; MQA folds its query heads into rows): its rows grow too. The cap was
    # skipped with one head, and 256 row chunks of a large VAE decode exceeded the graph call depth
    assert attention_processor._chunk_steps(1, 1, 256, 64) == (1, 16)  # 16 chunks of 1024 elements: under the cap
    monkeypatch.setattr(attention_processor, "ATTENTION_MAX_CHUNKS", 4)
    assert attention_processor._chunk_steps(1, 1, 256, 64) == (1, 64)  # 4 chunks
    assert attention_processor._chunk_steps(8, 1, 16, 16) == (1, 16)  # one chunk per batch element: as far as it goes
    q, k, v = (rng.standard_normal((1, 1, 256, 8)).astype(np.float32) for _ in range(3))
    expected = F.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)), scale=0.1)
    assert_close(_SDPA()(ms.Tensor(q), ms.Tensor(k), ms.Tensor(v), None), expected, 1e-5, what="one head, capped")


def test_attention_chunks_half_precision(monkeypatch):
    # float16 inputs take the unfolded path (scores in the input dtype, scale and BiasAdd in float32)
    monkeypatch.setattr(attention_processor, "ATTENTION_CHUNK_ELEMENTS", 1 << 14)
    rng = np.random.default_rng(8)
    q = rng.standard_normal((2, 4, 200, 16)).astype(np.float16)
    k = rng.standard_normal((2, 4, 100, 16)).astype(np.float16)
    v = rng.standard_normal((2, 4, 100, 16)).astype(np.float16)
    keep = (np.arange(100)[None, :] < np.array([100, 30])[:, None])[:, None, None, :]
    tq, tk, tv = (torch.from_numpy(a.astype(np.float32)) for a in (q, k, v))
    for mask in (keep, rng.random((2, 1, 200, 100)) > 0.3):
        expected = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(mask), scale=0.1)
        out = scaled_dot_product_attention(
            ms.Tensor(q), ms.Tensor(k), ms.Tensor(v), attn_mask=ms.Tensor(mask), scale=0.1
        )
        assert out.dtype == ms.float16
        assert_close(out.astype(ms.float32), expected, 2e-3)


@pytest.mark.parametrize("mode_context", MODES, indirect=True)
@pytest.mark.parametrize("chunk_elements", [1 << 40, 96, 32], ids=["whole", "uneven chunks", "one row per chunk"])
def test_feed_forward_row_chunks(mode_context, chunk_elements, monkeypatch):
    # above `FEED_FORWARD_CHUNK_ELEMENTS` the feed-forward runs in equal chunks of rows (a shorter last one): diffusers'
    # result for 3-D and 2-D inputs, with an inner width that `multiple_of` rounds up (20 -> 32). Compiled as a cell in
    # GRAPH_MODE.
    from diffusers.models.attention import LuminaFeedForward as TorchLuminaFeedForward

    from mindone.diffusers.models import attention
    from mindone.diffusers.models.attention import LuminaFeedForward

    monkeypatch.setattr(attention, "FEED_FORWARD_CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(0)
    torch_ff = TorchLuminaFeedForward(dim=12, inner_dim=20, multiple_of=16).eval()
    ff = LuminaFeedForward(dim=12, inner_dim=20, multiple_of=16)
    load_torch_weights(ff, torch_ff)
    ff.set_train(False)
    assert ff.inner_dim == 32
    rng = np.random.default_rng(9)
    for shape in ((3, 7, 12), (5, 12)):  # 21 rows: 7 chunks of 3 at 96 elements; 5 rows: 2 chunks of 3 and 2
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            expected = torch_ff(torch.from_numpy(x)).numpy()
        out = ff(ms.Tensor(x))
        assert out.shape == expected.shape
        assert_close(out, expected, 1e-5, what=f"{shape}, {chunk_elements} elements per chunk")
