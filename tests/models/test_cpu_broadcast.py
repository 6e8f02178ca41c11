"""The small CPU helpers of `cpu_layers` against NumPy: `expand_to` / `broadcast_mul` / `broadcast_add` (the tiled
operand of norm scales, gates and rotary tables) bit-identical to broadcasting for every way an operand can broadcast,
including the cases the helpers leave to the operator (an operand larger than `x` along some axis); `mean_last_axis`
(GEMV) against a float64 mean; `pair_swap_matrix` an exact pair swap. PyNative and inside a graph."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

from mindone.diffusers.models.cpu_layers import (
    broadcast_add,
    broadcast_mul,
    expand_to,
    mean_last_axis,
    pair_swap_matrix,
)

X_SHAPE = (2, 3, 4, 5)
Y_SHAPES = [(), (1,), (5,), (4, 1), (3, 1, 1), (1, 1, 1, 5), (2, 1, 4, 1), (2, 3, 1, 5), (2, 3, 4, 5)]
# operands the helpers do not tile (larger than x along some axis, more dimensions than x): plain broadcasting
LARGER = [((1, 3, 1, 5), (2, 3, 4, 5)), ((3, 4, 5), (2, 1, 1, 1)), ((4, 5), (2, 1, 4, 5))]


class _Apply(nn.Cell):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def construct(self, x, y):
        return self.fn(x, y)


@pytest.mark.parametrize("y_shape", Y_SHAPES, ids=str)
def test_expand_to_matches_numpy(y_shape, rng):
    y = np.asarray(rng.standard_normal(y_shape), dtype=np.float32)
    out = expand_to(ms.Tensor(y), X_SHAPE).asnumpy()
    assert out.shape == X_SHAPE
    np.testing.assert_array_equal(out, np.broadcast_to(y, X_SHAPE))


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("y_shape", Y_SHAPES, ids=str)
def test_broadcast_mul_add_bit_identical(mode, y_shape, rng):
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    y = np.asarray(rng.standard_normal(y_shape), dtype=np.float32)
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    mul, add = _Apply(broadcast_mul), _Apply(broadcast_add)
    np.testing.assert_array_equal(mul(ms.Tensor(x), ms.Tensor(y)).asnumpy(), x * y)
    np.testing.assert_array_equal(add(ms.Tensor(x), ms.Tensor(y)).asnumpy(), x + y)


@pytest.mark.parametrize("x_shape,y_shape", LARGER, ids=str)
def test_operand_larger_than_x_broadcasts_both(x_shape, y_shape, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    y = rng.standard_normal(y_shape).astype(np.float32)
    np.testing.assert_array_equal(broadcast_mul(ms.Tensor(x), ms.Tensor(y)).asnumpy(), x * y)
    np.testing.assert_array_equal(broadcast_add(ms.Tensor(x), ms.Tensor(y)).asnumpy(), x + y)


def test_bf16_operand_is_left_to_the_operator(rng):
    # no CPU Tile kernel for bfloat16: the operand is returned as is and Mul broadcasts it
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    w = rng.standard_normal((5,)).astype(np.float32)
    w_bf16 = ms.Tensor(w).astype(ms.bfloat16)
    assert expand_to(w_bf16, X_SHAPE).shape == (5,)
    out = broadcast_mul(ms.Tensor(x).astype(ms.bfloat16), w_bf16)
    assert out.dtype == ms.bfloat16
    expected = ms.Tensor(x).astype(ms.bfloat16).astype(ms.float32).asnumpy() * w_bf16.astype(ms.float32).asnumpy()
    np.testing.assert_allclose(out.astype(ms.float32).asnumpy(), expected, rtol=1e-2)


def _mean(x, _):
    return mean_last_axis(x)


def _mean_reduced(x, _):
    return mean_last_axis(x, as_gemv=False)  # off CPU: the reduction


def _swap_pairs(x, _):
    return ms.ops.matmul(x, pair_swap_matrix(x.shape[-1]))


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("shape", [(7,), (3, 96), (2, 5, 4, 2304)], ids=str)
@pytest.mark.parametrize("fn", [_mean, _mean_reduced], ids=["gemv", "reduction"])
def test_mean_last_axis(mode, shape, fn, rng):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    out = _Apply(fn)(ms.Tensor(x), ms.Tensor(0.0)).asnumpy()
    expected = x.astype(np.float64).mean(-1, keepdims=True)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("dim", [2, 8, 96])
def test_pair_swap_matrix_is_exact(mode, dim, rng):
    x = (rng.standard_normal((3, dim)) * 1e3).astype(np.float32)
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    out = _Apply(_swap_pairs)(ms.Tensor(x), ms.Tensor(0.0)).asnumpy()
    np.testing.assert_array_equal(out, x.reshape(3, dim // 2, 2)[..., ::-1].reshape(3, dim))


@pytest.mark.parametrize("module", ["diffusers", "gemma2"])
def test_rms_norms_decide_the_gemv_mean_at_construction(module, monkeypatch, rng):
    # off CPU (Ascend) the RMS norms keep MindSpore's reduction for the mean: the same norm within rounding
    from mindone.diffusers.models import normalization
    from mindone.transformers.models.gemma2 import modeling_gemma2

    x = ms.Tensor((rng.standard_normal((2, 3, 96)) * 3).astype(np.float32))
    if module == "diffusers":
        on_cpu = normalization.RMSNorm(96, eps=1e-6)
        monkeypatch.setattr(normalization, "_on_cpu", lambda: False)
        off_cpu = normalization.RMSNorm(96, eps=1e-6)
    else:
        on_cpu = modeling_gemma2.Gemma2RMSNorm(96)
        monkeypatch.setattr(modeling_gemma2, "_on_cpu", lambda: False)
        off_cpu = modeling_gemma2.Gemma2RMSNorm(96)
    assert on_cpu.mean_as_gemv and not off_cpu.mean_as_gemv
    np.testing.assert_allclose(off_cpu(x).asnumpy(), on_cpu(x).asnumpy(), rtol=1e-6, atol=1e-6)
