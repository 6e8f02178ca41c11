"""A deleted model is freed after it ran compiled (GRAPH_MODE, the compiled PyNative CPU path, `ms.jit`): MindSpore
2.10 keeps a cell alive for good when a compiled graph calls it with keyword arguments, so the models call their
sub-cells positionally (a keyword call in the Lumina2 block or the Gemma2 layer kept every deleted model's weights)."""

import gc
import weakref

import numpy as np
import pytest

import mindspore as ms

from mindone.diffusers import Lumina2Transformer2DModel
from mindone.diffusers.models.transformers import transformer_lumina2
from mindone.transformers import Gemma2Model
from mindone.transformers.models.gemma2 import modeling_gemma2
from tests.models.transformers.test_models_transformer_lumina2 import TINY, _inputs
from tests.transformers.test_modeling_gemma2 import TINY as GEMMA2_TINY
from tests.transformers.test_modeling_gemma2 import make_config

MODES = ["pynative-compiled", "graph", "jit"]


def _lumina2(mode, monkeypatch):
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1 if mode == "pynative-compiled" else 1 << 40)
    model = Lumina2Transformer2DModel(**TINY)
    model(*(ms.Tensor(np.asarray(a)) for a in _inputs(TINY, 2, (8, 8), (4, 3), 6)))
    return model, [model.layers[0], model.layers[0].attn, model.context_refiner[0].attn]


def _gemma2(mode, monkeypatch):
    monkeypatch.setattr(modeling_gemma2, "COMPILE_ON_CPU_ELEMENTS", 1 if mode == "pynative-compiled" else 1 << 40)
    model = Gemma2Model(make_config(**GEMMA2_TINY))
    model(ms.Tensor(np.arange(18).reshape(2, 9) % 99))
    return model, [model.layers[0], model.layers[0].self_attn]


@pytest.mark.parametrize("build", [_lumina2, _gemma2], ids=["lumina2", "gemma2"])
@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_model_is_freed_after_a_compiled_call(build, mode, monkeypatch):
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        if mode == "jit":
            cls = Lumina2Transformer2DModel if build is _lumina2 else Gemma2Model
            monkeypatch.setattr(cls, "construct", ms.jit(cls.construct))
        model, cells = build(mode, monkeypatch)
        if mode != "jit":  # (an `ms.jit` function keeps no `compile_cache`)
            assert any(cell.compile_cache for _, cell in model.cells_and_names())
        refs = [weakref.ref(cell) for cell in cells]
        del model, cells
        gc.collect()
        assert [ref() is None for ref in refs] == [True] * len(refs)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
