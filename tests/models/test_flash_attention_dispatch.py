"""The Ascend flash-attention branch of `scaled_dot_product_attention`, run on CPU against a NumPy stand-in for
`ops.flash_attention_score` written from MindSpore 2.10's documentation (BNSD layout, fp16 / bf16, head_dim a multiple
of 16 up to 512, key / value heads dividing the query heads, a bool / uint8 mask of shape (B, 1 or N1, L, S) or (L, S)
where 1 means "drop"). What this checks is ours: which calls take the kernel, and that the mask and grouped heads
reach it in its convention. The kernel itself is untested here (no Ascend)."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import ops

from mindone.diffusers import Lumina2Transformer2DModel
from mindone.diffusers.models import attention_processor
from mindone.diffusers.models.attention_processor import (
    Attention,
    flash_attention_applies,
    scaled_dot_product_attention,
)
from mindone.diffusers.models.transformers import transformer_lumina2
from tests.models.transformers.test_models_transformer_lumina2 import TINY
from tests.testing_utils import rel_l2


def _reference_kernel(calls, allow_float32=False):
    def flash_attention_score(query, key, value, head_num, attn_mask=None, scalar_value=1.0, input_layout="BSH", **kw):
        assert input_layout == "BNSD" and isinstance(scalar_value, float) and kw == {}
        assert query.dtype in ((ms.float16, ms.bfloat16) + ((ms.float32,) if allow_float32 else ()))
        assert query.dtype == key.dtype == value.dtype
        batch, heads, q_len, head_dim = query.shape
        kv_heads, kv_len = key.shape[1], key.shape[2]
        assert head_num == heads and heads % kv_heads == 0 and head_dim % 16 == 0 and head_dim <= 512
        assert tuple(value.shape) == tuple(key.shape)
        q, k, v = (t.astype(ms.float32).asnumpy().astype(np.float64) for t in (query, key, value))
        k, v = np.repeat(k, heads // kv_heads, axis=1), np.repeat(v, heads // kv_heads, axis=1)
        scores = np.einsum("bnqd,bnkd->bnqk", q, k) * scalar_value
        if attn_mask is not None:
            assert attn_mask.dtype in (ms.bool_, ms.uint8)
            assert tuple(attn_mask.shape) in (
                (batch, heads, q_len, kv_len),
                (batch, 1, q_len, kv_len),
                (q_len, kv_len),
            )
            scores = np.where(attn_mask.asnumpy().astype(bool), -np.inf, scores)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        calls.append((tuple(query.shape), tuple(key.shape), None if attn_mask is None else tuple(attn_mask.shape)))
        out = np.einsum("bnqk,bnkd->bnqd", probs, v).astype(np.float32)
        return ms.Tensor(out).astype(query.dtype)

    return flash_attention_score


def _tensors(rng, batch, heads, kv_heads, q_len, kv_len, head_dim, dtype=ms.float16):
    def t(*shape):
        return ms.Tensor(rng.standard_normal(shape).astype(np.float32)).astype(dtype)

    return t(batch, heads, q_len, head_dim), t(batch, kv_heads, kv_len, head_dim), t(batch, kv_heads, kv_len, head_dim)


def _math(query, key, value, attn_mask):
    # the float32 math path with key / value heads repeated per query head
    rep = query.shape[1] // key.shape[1]
    query, key, value = (t.astype(ms.float32) for t in (query, key, value))
    key, value = (ms.Tensor(np.repeat(t.asnumpy(), rep, axis=1)) for t in (key, value))
    return scaled_dot_product_attention(query, key, value, attn_mask=attn_mask).asnumpy()


@pytest.mark.parametrize("dtype", [ms.float16, ms.bfloat16], ids=["fp16", "bf16"])
def test_which_calls_take_the_kernel(dtype, rng):
    q, k, _ = _tensors(rng, 1, 4, 2, 3, 5, 16, dtype)
    keep = ms.Tensor(np.ones((1, 1, 1, 5), dtype=bool))
    assert flash_attention_applies(True, q, k, None) and flash_attention_applies(True, q, k, keep)
    assert not flash_attention_applies(False, q, k, None)
    assert not flash_attention_applies(True, q.astype(ms.float32), k.astype(ms.float32), None)  # fp32: math path
    assert not flash_attention_applies(True, q, k, ms.Tensor(np.zeros((1, 1, 1, 5), np.float32)))  # additive mask
    for head_dim in (8, 24, 528):  # the kernel's head_dim: a multiple of 16, at most 512
        q_, k_, _ = _tensors(rng, 1, 2, 2, 1, 1, head_dim, dtype)
        assert not flash_attention_applies(True, q_, k_, None)
    q_, k_, _ = _tensors(rng, 1, 6, 4, 1, 1, 16, dtype)  # 4 key / value heads do not divide 6 query heads
    assert not flash_attention_applies(True, q_, k_, None)
    q_, k_, _ = _tensors(rng, 1, 272, 272, 1, 1, 16, dtype)  # more than 256 query heads
    assert not flash_attention_applies(True, q_, k_, None)


MASKS = {
    "none": None,
    "key_padding": lambda b, h, l, s: np.arange(s)[None, None, None, :] < np.array([s, 2])[:b, None, None, None],
    "per_head": lambda b, h, l, s: np.random.default_rng(1).random((b, h, l, s)) > 0.3,
    "two_dims": lambda b, h, l, s: np.tril(np.ones((l, s), dtype=bool), k=s - l),
}


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=lambda n: f"kv{n}")
def test_kernel_gets_its_mask_convention_and_grouped_heads(mask, kv_heads, rng, monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "flash_attention_score", _reference_kernel(calls))
    batch, heads, q_len, kv_len = 2, 4, 3, 5
    query, key, value = _tensors(rng, batch, heads, kv_heads, q_len, kv_len, 16)
    attn_mask = None if MASKS[mask] is None else ms.Tensor(MASKS[mask](batch, heads, q_len, kv_len).copy())
    out = scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, use_flash=True)
    assert len(calls) == 1 and calls[0][1][1] == kv_heads  # grouped heads reach the kernel as they are
    assert out.dtype == ms.float16 and out.shape == query.shape
    expected = _math(query, key, value, attn_mask)
    assert rel_l2(out.astype(ms.float32).asnumpy(), expected) < 2e-3  # fp16 rounding


def test_additive_and_per_head_float_masks_take_the_math_path(rng, monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "flash_attention_score", _reference_kernel(calls))
    query, key, value = _tensors(rng, 2, 4, 4, 3, 5, 16)
    # a soft bias, not a keep / drop mask: read as one, every negative entry would be dropped
    bias = ms.Tensor(rng.uniform(-2.0, 1.0, (2, 4, 3, 5)).astype(np.float16))
    out = scaled_dot_product_attention(query, key, value, attn_mask=bias, use_flash=True)
    assert calls == []
    expected = scaled_dot_product_attention(query, key, value, attn_mask=bias, use_flash=False)
    np.testing.assert_array_equal(out.asnumpy(), expected.asnumpy())


# the transformer tests' tiny config with head_dim 16 (within the kernel's limits)
LUMINA_FLASH = dict(TINY, hidden_size=48, axes_dim_rope=(8, 4, 4), axes_lens=(64, 64, 64))


def test_lumina2_flash_branch_unfolds_grouped_queries(rng, monkeypatch):
    # the kernel in float32 (its half-precision rounding would hide a wrong mask or head order): the Lumina2 processor
    # passes (B, heads, L, D) queries with its (B, kv_heads, S, D) keys and a (B, 1, L, S) mask instead of folding the
    # query heads into rows as on the math path
    model = Lumina2Transformer2DModel(**LUMINA_FLASH)
    model.set_train(False)
    batch, seq_len = 3, 7
    x = ms.Tensor(rng.standard_normal((batch, 4, 6, 8)).astype(np.float32))
    t = ms.Tensor(rng.uniform(0, 1, (batch,)).astype(np.float32))
    cap = ms.Tensor(rng.standard_normal((batch, seq_len, 32)).astype(np.float32))
    mask = ms.Tensor((np.arange(seq_len)[None] < np.array([[7], [3], [5]])).astype(np.int64))
    expected = model(x, t, cap, mask)[0].asnumpy()

    calls = []
    monkeypatch.setattr(ops, "flash_attention_score", _reference_kernel(calls, allow_float32=True))

    def applies_in_float32(use_flash, query, key, attn_mask):
        return flash_attention_applies(use_flash, query.astype(ms.float16), key, attn_mask)

    for module in (attention_processor, transformer_lumina2):
        monkeypatch.setattr(module, "flash_attention_applies", applies_in_float32)
    for _, cell in model.cells_and_names():
        if isinstance(cell, Attention):
            cell.use_flash = True
    out = model(x, t, cap, mask)[0].asnumpy()
    tokens = seq_len + 12  # 6 x 8 latents in 2 x 2 patches
    assert (((batch, 3, tokens, 16), (batch, 1, tokens, 16), (batch, 1, tokens, tokens)) in calls) and all(
        q[1] == 3 and k[1] == 1 for q, k, _ in calls
    )
    assert rel_l2(out, expected) < 1e-5
