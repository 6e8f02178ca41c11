"""Lumina2Transformer2DModel: parity with diffusers' model on identical weights and inputs (fp32, relative L2 <= 1e-5).

Covers diffusers' tiny test config and the 2B release's widths, batches of 1 and 3, captions of different lengths
(the masked joint sequence), equal-but-padded captions (gathered, unmasked), non-square and odd patch grids, both
return types, PyNative, GRAPH_MODE, `ms.jit` (whole model and per block), `from_pretrained` of a diffusers folder,
gradients against diffusers' (tiny and real widths), gradient checkpointing, the attention processor with GQA / masks /
proportional attention, and the rotary and timestep helpers.
"""

import numpy as np
import pytest
import torch
from diffusers import Lumina2Transformer2DModel as TorchLumina2
from diffusers.models.attention_processor import Attention as TorchAttention
from diffusers.models.embeddings import apply_rotary_emb as torch_apply_rotary_emb
from diffusers.models.embeddings import get_1d_rotary_pos_embed as torch_get_1d_rotary_pos_embed
from diffusers.models.embeddings import get_timestep_embedding as torch_get_timestep_embedding
from diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0 as TorchLumina2AttnProcessor

import mindspore as ms

from mindone.diffusers import Lumina2Transformer2DModel
from mindone.diffusers.models.attention_processor import Attention
from mindone.diffusers.models.embeddings import apply_rotary_emb, get_1d_rotary_pos_embed, get_timestep_embedding
from mindone.diffusers.models.modeling_outputs import Transformer2DModelOutput
from mindone.diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0
from tests.testing_utils import assert_close, load_torch_weights, rel_l2

# diffusers' own test config (tests/models/transformers/test_models_transformer_lumina2.py)
TINY = dict(
    sample_size=16,
    patch_size=2,
    in_channels=4,
    hidden_size=24,
    num_layers=2,
    num_refiner_layers=1,
    num_attention_heads=3,
    num_kv_heads=1,
    multiple_of=2,
    ffn_dim_multiplier=None,
    norm_eps=1e-5,
    scaling_factor=1.0,
    axes_dim_rope=(4, 2, 2),
    axes_lens=(128, 128, 128),
    cap_feat_dim=32,
)
# the 2B release's widths (hidden 2304, 24 heads / 8 kv heads of 96, full feed-forward), one block of each kind
REAL_WIDTH = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    hidden_size=2304,
    num_layers=1,
    num_refiner_layers=1,
    num_attention_heads=24,
    num_kv_heads=8,
    multiple_of=256,
    ffn_dim_multiplier=None,
    norm_eps=1e-5,
    scaling_factor=1.0,
    axes_dim_rope=(32, 32, 32),
    axes_lens=(300, 512, 512),
    cap_feat_dim=2304,
)


def _torch_model(config, seed=0):
    torch.manual_seed(seed)
    model = TorchLumina2(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # RMSNorm weights start at 1: make them (and the adaLN/final norms' linears) distinct
                p.add_(torch.randn_like(p) * 0.2)
    return model


def _twins(config, seed=0):
    torch_model = _torch_model(config, seed)
    model = Lumina2Transformer2DModel(**config)
    load_torch_weights(model, torch_model)
    model.set_train(False)
    return torch_model, model


def _inputs(config, batch, size, caption_lens, seq_len, seed=0, timestep=None):
    rng = np.random.default_rng(seed)
    height, width = size
    x = rng.standard_normal((batch, config["in_channels"], height, width)).astype(np.float32)
    cap = rng.standard_normal((batch, seq_len, config["cap_feat_dim"])).astype(np.float32)
    mask = np.zeros((batch, seq_len), dtype=np.int64)  # the tokenizer's int mask, as the pipeline passes it
    for i, n in enumerate(caption_lens):
        mask[i, :n] = 1
    t = rng.uniform(0.0, 1.0, (batch,)).astype(np.float32) if timestep is None else timestep
    return x, t, cap, mask


def _run_torch(model, inputs):
    x, t, cap, mask = (torch.from_numpy(np.asarray(a)) for a in inputs)
    with torch.no_grad():
        return model(x, t, cap, mask, return_dict=False)[0].numpy()


def _run_ours(model, inputs, **kwargs):
    x, t, cap, mask = (ms.Tensor(np.asarray(a)) for a in inputs)
    return model(x, t, cap, mask, **kwargs)


# (batch, latent size, caption lengths, padded caption length)
CASES = {
    "diffusers_dummy_b2_full_captions": (2, (16, 16), (16, 16), 16),
    "b3_ragged_captions_nonsquare": (3, (16, 12), (16, 5, 11), 16),
    "b1_padded_caption_odd_grid": (1, (10, 14), (7,), 16),
    "b3_equal_padded_captions_odd_grid": (3, (6, 10), (9, 9, 9), 13),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tiny_parity_pynative(case):
    batch, size, caption_lens, seq_len = CASES[case]
    torch_model, model = _twins(TINY)
    inputs = _inputs(TINY, batch, size, caption_lens, seq_len)
    expected = _run_torch(torch_model, inputs)

    out = _run_ours(model, inputs)
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == expected.shape == (batch, TINY["in_channels"]) + size
    assert_close(out[0], expected, 1e-5)

    # return_dict=True, a LoRA scale of 1 and the cached host-side inputs give the same numbers
    out = _run_ours(model, inputs, return_dict=True, attention_kwargs={"scale": 1.0})
    assert isinstance(out, Transformer2DModelOutput)
    assert_close(out.sample, expected, 1e-5)


def test_tiny_parity_broadcast_timestep_and_large_values():
    torch_model, model = _twins(TINY, seed=1)
    x, _, cap, mask = _inputs(TINY, 3, (8, 8), (4, 12, 12), 12, seed=1)
    t = np.array([741.5], dtype=np.float32)  # one timestep for the whole batch, far from [0, 1]
    expected = _run_torch(torch_model, (x, t, cap, mask))
    assert_close(_run_ours(model, (x, t, cap, mask))[0], expected, 1e-5)


@pytest.mark.parametrize("cap_dtype", ["float16", "bfloat16"])
def test_half_precision_captions_into_a_float32_model_as_upstream(cap_dtype):
    # a float16 / bfloat16 text encoder feeding a float32 transformer: upstream's caption RMSNorm promotes the captions
    # to float32, so the call runs (only `hidden_states` must match the parameters). The port also takes the mask in
    # the captions' dtype (upstream needs an integer one; a bfloat16 mask broke numpy's boolean indexing on the host)
    torch_model, model = _twins(TINY, seed=2)
    x, t, cap, mask = _inputs(TINY, 2, (8, 6), (7, 3), 9, seed=2)
    torch_cap = torch.from_numpy(cap).to(getattr(torch, cap_dtype))
    with torch.no_grad():
        expected = torch_model(*(torch.from_numpy(a) for a in (x, t)), torch_cap, torch.from_numpy(mask))[0]
    ours = model(*(ms.Tensor(a) for a in (x, t)), *(ms.Tensor(a).astype(getattr(ms, cap_dtype)) for a in (cap, mask)))[
        0
    ]
    assert ours.dtype == ms.float32
    assert_close(ours, expected.numpy(), 1e-5)
    assert rel_l2(ours, _run_torch(torch_model, (x, t, cap, mask))) > 1e-6  # the rounded captions were used


def test_other_options_patch1_out_channels_mha_ffn_multiplier_no_refiners():
    config = dict(
        TINY,
        patch_size=1,
        in_channels=3,
        out_channels=5,
        hidden_size=32,
        num_layers=1,
        num_refiner_layers=0,
        num_attention_heads=4,
        num_kv_heads=4,
        multiple_of=16,
        ffn_dim_multiplier=1.5,
        axes_dim_rope=(2, 2, 4),
        axes_lens=(20, 20, 20),
        cap_feat_dim=8,
    )
    torch_model, model = _twins(config, seed=6)
    inputs = _inputs(config, 2, (5, 3), (3, 6), 6, seed=6)
    out = _run_ours(model, inputs)[0]
    assert out.shape == (2, 5, 5, 3)
    assert_close(out, _run_torch(torch_model, inputs), 1e-5)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_hidden_size_that_the_heads_do_not_divide(mode):
    """As upstream: heads of `hidden_size // num_attention_heads` (26 // 4 = 6), q / k / v and the output projection
    of `heads * head_dim` = 24 features against the hidden size 26 (GQA, ragged captions, refiners)."""
    config = dict(TINY, hidden_size=26, num_attention_heads=4, num_kv_heads=2, axes_dim_rope=(2, 2, 2), multiple_of=4)
    torch_model, model = _twins(config, seed=7)
    assert tuple(model.layers[0].attn.to_q.weight.shape) == (24, 26)
    assert tuple(model.layers[0].attn.to_out[0].weight.shape) == (26, 24)
    inputs = _inputs(config, 2, (6, 8), (3, 5), 5, seed=7)
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_tiny_graph_mode_matches_torch_and_pynative(graph_mode):
    torch_model, model = _twins(TINY)
    for case in ("b3_ragged_captions_nonsquare", "diffusers_dummy_b2_full_captions"):
        batch, size, caption_lens, seq_len = CASES[case]
        inputs = _inputs(TINY, batch, size, caption_lens, seq_len)
        expected = _run_torch(torch_model, inputs)
        ms.set_context(mode=ms.PYNATIVE_MODE)
        pynative = _run_ours(model, inputs)[0]
        ms.set_context(mode=ms.GRAPH_MODE)
        graph = _run_ours(model, inputs)[0]
        assert_close(graph, expected, 1e-5, what=f"{case} GRAPH_MODE vs torch")
        assert_close(graph, pynative, 2e-6, what=f"{case} GRAPH_MODE vs PyNative")

    # same shapes, other values and other caption lengths (same longest one): no new compilation
    batch, size, _, seq_len = CASES["b3_ragged_captions_nonsquare"]
    inputs = _inputs(TINY, batch, size, (7, 16, 2), seq_len, seed=5)
    compiled = set(model.compile_cache)
    assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5)
    assert set(model.compile_cache) == compiled
    # timestep tensors of other dtypes: cast to float32 as upstream's embedding does, so no new compilation either
    x, t, cap, mask = inputs
    for dtype in (ms.float64, ms.float16, ms.bfloat16, ms.int32):
        t_other = ms.Tensor(t).astype(dtype)
        expected = _run_torch(torch_model, (x, t_other.astype(ms.float32).asnumpy(), cap, mask))
        assert_close(model(ms.Tensor(x), t_other, ms.Tensor(cap), ms.Tensor(mask))[0], expected, 1e-5)
        assert set(model.compile_cache) == compiled, dtype


@pytest.mark.parametrize("mode", ["pynative", "pynative-compiled", "graph"])
def test_tiny_feed_forward_in_row_chunks(mode, monkeypatch):
    # the feed-forward in chunks of rows (`FEED_FORWARD_CHUNK_ELEMENTS`, forced small): diffusers' result op by op, on
    # the compiled PyNative CPU path and in GRAPH_MODE
    from mindone.diffusers.models import attention
    from mindone.diffusers.models.transformers import transformer_lumina2

    monkeypatch.setattr(attention, "FEED_FORWARD_CHUNK_ELEMENTS", 16 * 96)  # 16 rows of the 96-wide inner activation
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1 if mode == "pynative-compiled" else 1 << 40)
    torch_model, model = _twins(TINY)
    inputs = _inputs(TINY, *CASES["b3_ragged_captions_nonsquare"])
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what=mode)
    assert (mode == "pynative-compiled") == bool(model.layers[0].compile_cache)


def test_tiny_ms_jit_model_and_blocks():
    torch_model, model = _twins(TINY)
    batch, size, caption_lens, seq_len = CASES["b3_ragged_captions_nonsquare"]
    inputs = _inputs(TINY, batch, size, caption_lens, seq_len)
    expected = _run_torch(torch_model, inputs)
    x, t, cap, mask = (ms.Tensor(np.asarray(a)) for a in inputs)

    # a compiled function calls the model's tensor-only construct with the host-side inputs prepared outside
    jitted = ms.jit(model)
    assert_close(jitted(x, t, cap, *model.prepare_inputs(x, cap, mask)), expected, 1e-5, what="ms.jit(model)")

    # ms.jit on every block, the model called as usual
    for block in list(model.context_refiner) + list(model.noise_refiner) + list(model.layers):
        block.construct = ms.jit(block.construct)
    assert_close(model(x, t, cap, mask)[0], expected, 1e-5, what="ms.jit on blocks")


@ms.jit_class
class _NegatedProcessor:
    """Upstream's processor, output negated (a processor a user may set on one layer)."""

    def __init__(self):
        self.inner = Lumina2AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None, base_sequence_length=None):  # fmt: skip
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, base_sequence_length)  # fmt: skip
        return -out


class _TorchNegatedProcessor(TorchLumina2AttnProcessor):
    # named arguments: diffusers' Attention drops the keyword arguments a processor's signature does not list
    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None, base_sequence_length=None):  # fmt: skip
        return -super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, base_sequence_length)  # fmt: skip


@pytest.mark.parametrize("copied", [False, True], ids=["model", "deepcopy"])
@pytest.mark.parametrize("path", ["graph", "jit", "pynative-compiled"])
def test_set_processor_after_a_compiled_call(path, copied, monkeypatch):
    # a graph compiled before folded in the old processor: `set_processor` on a layer recompiles the graphs of the
    # layer and of the model holding it (the first layer's graph is the one its kind of block shares); also on a
    # `copy.deepcopy` of the model (built without `__init__`)
    import copy

    from mindone.diffusers.models.transformers import transformer_lumina2

    torch_model, model = _twins(TINY)
    if copied:
        model = copy.deepcopy(model)
    inputs = _inputs(TINY, 2, (8, 6), (7, 3), 9)
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1 if path == "pynative-compiled" else 1 << 40)
    if path == "jit":
        model.construct = ms.jit(model.construct)
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if path == "graph" else ms.PYNATIVE_MODE)
    try:
        assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what="before")
        for m, processor in ((model, _NegatedProcessor()), (torch_model, _TorchNegatedProcessor())):
            m.layers[0].attn.set_processor(processor)
        expected = _run_torch(torch_model, inputs)
        assert_close(_run_ours(model, inputs)[0], expected, 1e-5, what="after set_processor")
    finally:
        ms.set_context(mode=previous)


@ms.jit_class
class _ScaledProcessor:
    """Upstream's processor, output times `factor` (the same class with other settings on other layers)."""

    def __init__(self, factor):
        self.inner = Lumina2AttnProcessor2_0()
        self.factor = factor

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None, base_sequence_length=None):  # fmt: skip
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, base_sequence_length)  # fmt: skip
        return out * self.factor


class _TorchScaledProcessor(TorchLumina2AttnProcessor):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None, base_sequence_length=None):  # fmt: skip
        return self.factor * super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, base_sequence_length)  # fmt: skip


@pytest.mark.parametrize("path", ["graph-compiled", "pynative-compiled"])
def test_compiled_blocks_follow_each_layers_processor_settings(path, monkeypatch):
    # layers share one compiled graph per kind of block: processors of one class with other settings (or a setting
    # changed by hand, then `invalidate_compiled_graphs`) make other kinds (every layer ran the first layer's graph)
    from mindone.diffusers.models.transformers import transformer_lumina2
    from mindone.peft import invalidate_compiled_graphs

    torch_model, model = _twins(TINY)
    inputs = _inputs(TINY, 2, (8, 6), (7, 3), 9)
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1)
    for m, cls in ((model, _ScaledProcessor), (torch_model, _TorchScaledProcessor)):
        for i, block in enumerate(m.layers):
            block.attn.set_processor(cls(-1.0 if i == 1 else 1.0))
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if path == "graph-compiled" else ms.PYNATIVE_MODE)
    try:
        assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what="per-layer processors")
        assert _compiled_blocks(model), "the compiled path was not taken"
        for m in (model, torch_model):
            m.layers[1].attn.processor.factor = 0.5
        invalidate_compiled_graphs(model)
        assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what="changed by hand")
    finally:
        ms.set_context(mode=previous)


def _compiled_blocks(model):
    return [
        name
        for name, cell in model.cells_and_names()
        if type(cell).__name__ == "Lumina2TransformerBlock" and cell.compile_cache
    ]


def _storage(cell):
    return [param.data_ptr() for param in cell.get_parameters()]


def test_pynative_cpu_compiles_large_calls(monkeypatch):
    """In PyNative on CPU, inference calls at least `COMPILE_ON_CPU_ELEMENTS` large run their blocks as compiled
    graphs, one per kind of block (the first block of its list, bound to each block's parameters in turn): the same
    numbers as op by op and as diffusers, new weights of any block followed, every block's parameters left as they
    were (also after a failed call), training and small calls op by op."""
    from mindone.diffusers.models.transformers import transformer_lumina2

    torch_model, model = _twins(TINY)
    batch, size, caption_lens, seq_len = CASES["b3_ragged_captions_nonsquare"]
    inputs = _inputs(TINY, batch, size, caption_lens, seq_len)
    tokens = seq_len + (size[0] // 2) * (size[1] // 2)
    storage = {name: _storage(cell) for name, cell in model.cells_and_names()}
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", batch * tokens * TINY["hidden_size"] + 1)
    eager = _run_ours(model, inputs)[0]  # one element under the threshold: op by op
    assert _compiled_blocks(model) == []
    assert not model.time_caption_embed.compile_cache and not model.norm_out.compile_cache
    # at the threshold: the first block of each list compiled, the second joint block runs its graph
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", batch * tokens * TINY["hidden_size"])
    compiled = _run_ours(model, inputs)[0]
    assert sorted(_compiled_blocks(model)) == ["context_refiner.0", "layers.0", "noise_refiner.0"]
    # the time / caption embedding and the output layer run compiled too: op by op, MindSpore's CPU MatMul / ReduceSum
    # kernels keep memory at each launch
    assert model.time_caption_embed.compile_cache and model.norm_out.compile_cache
    # the next call runs the same graphs: a compiled block still shares with the blocks that never compiled (MindSpore
    # sets `current_phase` on a cell that compiles: counted in the signature, each call compiled one more block)
    graphs = {name: set(cell.compile_cache) for name, cell in model.cells_and_names()}
    np.testing.assert_array_equal(_run_ours(model, inputs)[0], compiled)
    assert {name: set(cell.compile_cache) for name, cell in model.cells_and_names()} == graphs
    assert_close(compiled, eager, 1e-6, what="compiled vs op by op")
    assert_close(compiled, _run_torch(torch_model, inputs), 1e-5, what="compiled vs diffusers")
    assert all("_graph_template" not in cell.__dict__ for _, cell in model.cells_and_names())
    assert {name: _storage(cell) for name, cell in model.cells_and_names()} == storage
    # other shapes (a new compilation) and other weights (`set_data` gives the parameter new storage), of the block
    # that lends its graph and of one that borrows it
    other = _inputs(TINY, *CASES["b1_padded_caption_odd_grid"], seed=1)
    assert_close(_run_ours(model, other)[0], _run_torch(torch_model, other), 1e-5, what="compiled, other inputs")
    for name in (
        "layers.0.feed_forward.linear_1.weight",
        "layers.1.attn.to_q.weight",
        "x_embedder.weight",
        "time_caption_embed.timestep_embedder.linear_1.weight",
        "norm_out.linear_2.weight",
    ):
        weight = dict(model.parameters_and_names())[name]
        weight.set_data(weight * 2)
        with torch.no_grad():
            dict(torch_model.named_parameters())[name].mul_(2)
        assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what=f"new {name}")
    # a failing call leaves the template's parameters its own
    template = model.layers[0]
    storage = _storage(template)
    calls = []

    def failing(self, *args):
        calls.append(self)
        raise RuntimeError("injected failure")

    with monkeypatch.context() as patch:
        patch.setattr(type(template), "compile_and_run", failing)
        with pytest.raises(RuntimeError, match="injected failure"):
            model(*(ms.Tensor(np.asarray(a)) for a in inputs))
    assert calls and _storage(template) == storage
    assert all("_graph_template" not in cell.__dict__ for _, cell in model.cells_and_names())
    assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what="after a failed call")
    # training mode stays op by op
    _, trained = _twins(TINY)
    trained.set_train(True)
    _run_ours(trained, inputs)
    assert _compiled_blocks(trained) == []


def test_graph_mode_cpu_compiles_blocks_of_large_calls(graph_mode, monkeypatch):
    """In GRAPH_MODE on CPU, inference calls at least `COMPILE_ON_CPU_ELEMENTS` large compile one graph per kind of
    block (and one per other sub-cell) instead of one graph of the whole model: the same numbers as the whole-model
    graph and as diffusers, every block's parameters left as they were. Smaller calls and training compile the model."""
    from mindone.diffusers.models.transformers import transformer_lumina2

    torch_model, model = _twins(TINY)
    batch, size, caption_lens, seq_len = CASES["b3_ragged_captions_nonsquare"]
    inputs = _inputs(TINY, batch, size, caption_lens, seq_len)
    expected = _run_torch(torch_model, inputs)
    tokens = seq_len + (size[0] // 2) * (size[1] // 2)
    storage = {name: _storage(cell) for name, cell in model.cells_and_names()}
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", batch * tokens * TINY["hidden_size"] + 1)
    whole = _run_ours(model, inputs)[0]  # one element under the threshold: the whole model as one graph
    whole_graphs = set(model.compile_cache)
    assert whole_graphs and _compiled_blocks(model) == []

    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", batch * tokens * TINY["hidden_size"])
    split = _run_ours(model, inputs)[0]
    assert sorted(_compiled_blocks(model)) == ["context_refiner.0", "layers.0", "noise_refiner.0"]
    graphs = {name: set(cell.compile_cache) for name, cell in model.cells_and_names()}
    np.testing.assert_array_equal(_run_ours(model, inputs)[0], split)  # the same graphs again, none new
    assert {name: set(cell.compile_cache) for name, cell in model.cells_and_names()} == graphs
    assert set(model.compile_cache) == whole_graphs  # no new whole-model graph
    assert model.x_embedder.compile_cache  # the other sub-cells compiled on their own
    assert_close(split, whole, 1e-6, what="blocks compiled vs whole-model graph")
    assert_close(split, expected, 1e-5, what="blocks compiled vs diffusers")
    assert all("_graph_template" not in cell.__dict__ for _, cell in model.cells_and_names())
    assert {name: _storage(cell) for name, cell in model.cells_and_names()} == storage
    # new weights of a block that borrows the graph
    weight = dict(model.parameters_and_names())["layers.1.attn.to_q.weight"]
    weight.set_data(weight * 2)
    with torch.no_grad():
        dict(torch_model.named_parameters())["layers.1.attn.to_q.weight"].mul_(2)
    assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5, what="new weights")

    # training: the whole model compiles
    _, trained = _twins(TINY)
    trained.set_train(True)
    _run_ours(trained, inputs)
    assert trained.compile_cache and _compiled_blocks(trained) == []


def test_gradients_of_a_large_inference_call(monkeypatch):
    """`ms.grad` through a model in inference mode on the compiled PyNative CPU path: the blocks run op by op while
    gradients are recorded (a graph run by the cell executor is not differentiated in PyNative), so the gradients are
    those of the op-by-op forward."""
    from mindone.diffusers.models.transformers import transformer_lumina2

    _, model = _twins(TINY)
    x, t, cap, mask = (ms.Tensor(np.asarray(a)) for a in _inputs(TINY, *CASES["b3_ragged_captions_nonsquare"]))

    def loss(x):
        return (model(x, t, cap, mask)[0] ** 2).sum()

    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1 << 40)
    expected = ms.grad(loss)(x)
    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1)
    assert rel_l2(ms.grad(loss)(x), expected) < 1e-6
    assert _compiled_blocks(model) == []
    loss(x)  # without gradients: compiled
    assert sorted(_compiled_blocks(model)) == ["context_refiner.0", "layers.0", "noise_refiner.0"]


def test_gradients_in_graph_mode_through_construct(graph_mode):
    # docs/guides/graph_mode.md: inside a compiled function the host-side inputs are prepared outside
    _, model = _twins(TINY)
    x, t, cap, mask = (ms.Tensor(np.asarray(a)) for a in _inputs(TINY, *CASES["b3_ragged_captions_nonsquare"]))
    prepared = model.prepare_inputs(x, cap, mask)

    def compiled_loss(x):
        return (model.construct(x, t, cap, *prepared) ** 2).sum()

    def loss(x):
        return (model(x, t, cap, mask)[0] ** 2).sum()

    graph = ms.grad(compiled_loss)(x)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    assert rel_l2(graph, ms.grad(loss)(x)) < 1e-6


def _assert_gradients_match_torch(config, inputs):
    torch_model, model = _twins(config)
    x, t, cap, mask = inputs
    weights = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)

    tx, tcap = torch.from_numpy(x).requires_grad_(), torch.from_numpy(cap).requires_grad_()
    out = torch_model(tx, torch.from_numpy(t), tcap, torch.from_numpy(mask), return_dict=False)[0]
    (out * torch.from_numpy(weights)).sum().backward()
    expected = {name: p.grad.numpy() for name, p in torch_model.named_parameters()}

    t_ms, mask_ms, weights_ms = ms.Tensor(t), ms.Tensor(mask), ms.Tensor(weights)

    def loss(x, cap):
        return (model(x, t_ms, cap, mask_ms)[0] * weights_ms).sum()

    params = model.trainable_params()
    (grad_x, grad_cap), grads = ms.grad(loss, grad_position=(0, 1), weights=params)(ms.Tensor(x), ms.Tensor(cap))
    assert_close(grad_x, tx.grad.numpy(), what="latents' gradient")
    assert_close(grad_cap, tcap.grad.numpy(), what="caption features' gradient")
    assert sorted(p.name for p in params) == sorted(expected)
    for param, grad in zip(params, grads):
        assert np.abs(expected[param.name]).max() > 0, param.name
        assert_close(grad, expected[param.name], what=f"gradient of {param.name}")


@pytest.mark.parametrize("case", ["b3_ragged_captions_nonsquare", "b1_padded_caption_odd_grid"])
def test_gradients_match_torch(case):
    """Training parity: the gradients of a loss through the whole model (3 joint, 2+2 refiner layers) with respect to
    every parameter, the latents and the caption features equal diffusers' (each within 1e-5). With the gates' tanh
    as `2 * sigmoid(2x) - 1` in float32 (before `mindspore_utils.tanh`) the worst parameter was at 1.1-1.5e-5."""
    config = dict(TINY, num_layers=3, num_refiner_layers=2)
    _assert_gradients_match_torch(config, _inputs(config, *CASES[case]))


@pytest.mark.slow
def test_real_width_gradients_match_torch():
    # the 2B release's widths, one block of each kind, ragged captions (worst parameter ~4e-6)
    _assert_gradients_match_torch(REAL_WIDTH, _inputs(REAL_WIDTH, 2, (16, 12), (20, 13), 24))


@pytest.mark.slow
def test_real_width_parity_pynative_and_graph():
    torch_model, model = _twins(REAL_WIDTH)
    inputs = _inputs(REAL_WIDTH, 3, (8, 6), (8, 3, 6), 8)
    expected = _run_torch(torch_model, inputs)
    del torch_model
    assert_close(_run_ours(model, inputs)[0], expected, 1e-5, what="PyNative")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        assert_close(_run_ours(model, inputs)[0], expected, 1e-5, what="GRAPH_MODE")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_from_pretrained_of_diffusers_folder(tmp_path):
    torch_model = _torch_model(TINY, seed=2)
    torch_model.save_pretrained(tmp_path)
    model = Lumina2Transformer2DModel.from_pretrained(tmp_path)
    inputs = _inputs(TINY, 3, (12, 8), (16, 3, 10), 16, seed=2)
    assert_close(_run_ours(model, inputs)[0], _run_torch(torch_model, inputs), 1e-5)
    for kwargs in ({}, {"exclude_embeddings": True}, {"only_trainable": True}):
        assert model.num_parameters(**kwargs) == torch_model.num_parameters(**kwargs), kwargs


def test_gradient_checkpointing_gives_the_same_gradients():
    _, model = _twins(TINY)
    x, t, cap, mask = (ms.Tensor(np.asarray(a)) for a in _inputs(TINY, 3, (6, 4), (16, 5, 11), 16))
    params = model.trainable_params()

    def loss_fn(latents):
        return (model(latents, t, cap, mask)[0] ** 2).mean()

    grad_fn = ms.value_and_grad(loss_fn, None, params)
    model.set_train(True)
    loss, grads = grad_fn(x)
    model.enable_gradient_checkpointing()
    loss_ckpt, grads_ckpt = grad_fn(x)
    model.disable_gradient_checkpointing()
    assert model.gradient_checkpointing is False
    assert float(loss) == float(loss_ckpt)
    assert any(float(g.abs().max()) > 0 for g in grads)
    for param, g, g_ckpt in zip(params, grads, grads_ckpt):
        assert rel_l2(g_ckpt, g) <= 1e-6, param.name
    with pytest.raises(ValueError, match="gradient_checkpointing_func"):
        model.enable_gradient_checkpointing(gradient_checkpointing_func=lambda *a: None)


def test_bad_inputs_raise_clear_errors():
    model = Lumina2Transformer2DModel(**TINY)
    x, t, cap, mask = (ms.Tensor(np.asarray(a)) for a in _inputs(TINY, 2, (8, 8), (4, 4), 6))
    with pytest.raises(ValueError, match="divisible by `patch_size`"):
        model(ms.Tensor(np.zeros((2, 4, 7, 8), np.float32)), t, cap, mask)
    with pytest.raises(ValueError, match="`encoder_attention_mask` must have shape"):
        model(x, t, cap, ms.Tensor(np.ones((2, 5), bool)))
    with pytest.raises(ValueError, match="`encoder_hidden_states` must be"):
        model(x, t, cap[:1], mask)
    with pytest.raises(ValueError, match="`timestep`"):
        model(x, ms.Tensor(np.zeros((2, 1), np.float32)), cap, mask)
    with pytest.raises(ValueError, match=r"`timestep` .* length 1 or batch_size \(2\)"):
        model(x, ms.Tensor(np.zeros((3,), np.float32)), cap, mask)
    with pytest.raises(ValueError, match=r"`in_channels` = 4 channels"):
        model(x[:, :3], t, cap, mask)
    with pytest.raises(ValueError, match=r"`hidden_states` has an empty batch \(shape \(0, 4, 8, 8\)\)"):
        model(x[:0], t[:0], cap[:0], mask[:0])
    with pytest.raises(TypeError, match=r"`hidden_states` must be a mindspore.Tensor, got numpy.ndarray"):
        model(x.asnumpy(), t, cap, mask)
    with pytest.raises(TypeError, match=r"`encoder_hidden_states` must be a mindspore.Tensor, got builtins.list"):
        model(x, t, cap.asnumpy().tolist(), mask)
    with pytest.raises(ValueError, match=r"cap_feat_dim=32"):
        model(x, t, cap[:, :, :31], mask)
    with pytest.raises(ValueError, match=r"`encoder_hidden_states` holds no caption tokens \(shape \(2, 0, 32\)\)"):
        model(x, t, cap[:, :0], mask[:, :0])
    # NumPy would read None as NaN (an all-NaN prediction) and "0.5" as 0.5
    from fractions import Fraction  # numbers NumPy reads as objects still work

    np.testing.assert_array_equal(
        model(x, [Fraction(1, 2)] * 2, cap, mask)[0].asnumpy(), model(x, [0.5, 0.5], cap, mask)[0].asnumpy()
    )
    for bad in (None, [None, None], "0.5"):
        with pytest.raises(TypeError, match=r"`timestep` must be a number, or a tensor / array / list of numbers"):
            model(x, bad, cap, mask)
    small = Lumina2Transformer2DModel(**dict(TINY, axes_lens=(5, 3, 3)))
    with pytest.raises(ValueError, match=r"axes_lens\[0\]"):
        small(x[:, :, :4, :4], t, cap, ms.Tensor(np.ones((2, 6), bool)))
    with pytest.raises(ValueError, match=r"axes_lens\[1:\]"):
        small(x, t, cap, mask)
    # masks: 0 / 1 (any integer or float type) or booleans; an additive 0 / -inf mask is refused, not inverted
    additive = ms.Tensor(np.where(mask.asnumpy() != 0, 0.0, -np.inf).astype(np.float32))
    with pytest.raises(ValueError, match=r"`encoder_attention_mask` must hold 1 .* additive mask"):
        model(x, t, cap, additive)
    with pytest.raises(ValueError, match=r"`attention_mask` must hold 1"):
        model.rope_embedder(x, ms.Tensor(np.full((2, 6), 2)))
    expected = model(x, t, cap, mask)[0].asnumpy()
    np.testing.assert_array_equal(model(x, t, cap, mask.astype(ms.float32))[0].asnumpy(), expected)
    # inputs in another dtype than the parameters (torch fails inside its first matmul)
    with pytest.raises(ValueError, match=r"`hidden_states` is Float16 .* are Float32: cast the input"):
        model(x.astype(ms.float16), t, cap, mask)
    with pytest.raises(ValueError, match=r"`encoder_hidden_states` is Float64"):
        model(x, t, cap.astype(ms.float64), mask)
    # bfloat16 parameters cannot run on the CPU backend: said before the first kernel fails
    model.to(ms.bfloat16)
    with pytest.raises(TypeError, match="bfloat16 parameters, which MindSpore cannot compute on CPU"):
        model(x.astype(ms.bfloat16), t, cap.astype(ms.bfloat16), mask)


@pytest.mark.parametrize(
    "config, match",
    [
        (
            dict(axes_dim_rope=(3, 3, 2)),
            r"`axes_dim_rope` \[3, 3, 2\] must be even sizes that add up to the head size",
        ),
        (dict(axes_dim_rope=(4, 4, 2)), r"add up to the head size hidden_size // num_attention_heads = 8"),
        (dict(hidden_size=24, num_attention_heads=3, num_kv_heads=2), r"`num_attention_heads` \(3\) must be a mult"),
        (dict(hidden_size=15, num_attention_heads=2, axes_dim_rope=(2, 2, 2)), r"add up to the head size .* = 7"),
    ],
)
def test_head_and_rope_layouts_diffusers_cannot_run_are_refused_at_init(config, match):
    base = {**TINY, "hidden_size": 16, "num_attention_heads": 2, "num_kv_heads": 1, "axes_dim_rope": (4, 2, 2)}
    config = {**base, **config}
    x, t, cap, mask = (torch.from_numpy(np.asarray(a)) for a in _inputs(config, 1, (8, 8), (4,), 6))
    with pytest.raises((RuntimeError, AssertionError)):  # diffusers: at construction or in the first forward
        TorchLumina2(**config)(x, t, cap, mask)
    with pytest.raises(ValueError, match=match):
        Lumina2Transformer2DModel(**config)
    assert Lumina2Transformer2DModel(**{**base, "num_kv_heads": None}).config.num_kv_heads is None  # = heads


def test_config_and_checkpoint_keys_match_diffusers():
    torch_model = TorchLumina2(**TINY)
    model = Lumina2Transformer2DModel(**TINY)
    ours = {name: tuple(p.shape) for name, p in model.parameters_and_names()}
    theirs = {name: tuple(p.shape) for name, p in torch_model.state_dict().items()}
    assert ours == theirs
    assert dict(model.config) == {k: v for k, v in torch_model.config.items() if k in model.config}
    for attr in ("_no_split_modules", "_skip_layerwise_casting_patterns", "_supports_gradient_checkpointing"):
        assert getattr(Lumina2Transformer2DModel, attr) == getattr(TorchLumina2, attr)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_attention_processor_gqa_mask_rope_proportional(mode):
    torch.manual_seed(3)
    dim, heads, kv_heads, batch, seq = 32, 4, 2, 3, 7
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

    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, seq, dim)).astype(np.float32)
    mask = np.ones((batch, seq), dtype=bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    angles = rng.uniform(-3, 3, (batch, seq, dim // heads // 2))
    freqs_cis = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    torch_freqs = torch.polar(torch.ones(angles.shape, dtype=torch.float64), torch.from_numpy(angles))

    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for base_sequence_length in (None, 4):
            with torch.no_grad():
                expected = torch_attn(
                    torch.from_numpy(x),
                    encoder_hidden_states=torch.from_numpy(x),
                    attention_mask=torch.from_numpy(mask),
                    image_rotary_emb=torch_freqs,
                    base_sequence_length=base_sequence_length,
                ).numpy()
            out = attn(
                ms.Tensor(x),
                ms.Tensor(x),
                ms.Tensor(mask),
                ms.Tensor(freqs_cis.astype(np.float32)),
                base_sequence_length,
            )
            assert_close(out, expected, 1e-5, what=f"base_sequence_length={base_sequence_length}")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_submodules_called_as_upstream():
    """The rotary embedder called as upstream calls it, `(hidden_states, attention_mask)`, returns upstream's tuple
    (the tables as real views); a transformer block takes upstream's complex rotary table as it is."""
    torch_model, model = _twins(TINY)
    x, _, cap, mask = _inputs(TINY, 3, (10, 6), (16, 5, 11), 16, seed=3)
    with torch.no_grad():
        expected = torch_model.rope_embedder(torch.from_numpy(x), torch.from_numpy(mask))
    ours = model.rope_embedder(ms.Tensor(x), ms.Tensor(mask))
    assert len(ours) == len(expected) == 6
    assert_close(ours[0], expected[0], 0.0)
    for mine, theirs in zip(ours[1:4], expected[1:4]):
        assert_close(mine, torch.view_as_real(theirs.to(torch.complex128)), 1e-7)
    assert ours[4:] == tuple(expected[4:]) and isinstance(ours[4], list)

    # the context refiner's block with the caption mask and upstream's complex caption table
    hidden = np.random.default_rng(4).standard_normal((3, 16, TINY["hidden_size"])).astype(np.float32)
    with torch.no_grad():
        reference = torch_model.context_refiner[0](
            torch.from_numpy(hidden), torch.from_numpy(mask).bool(), expected[1]
        ).numpy()
    complex_table = ms.Tensor(expected[1].numpy())
    block = model.context_refiner[0](ms.Tensor(hidden), ms.Tensor(mask.astype(bool)), complex_table)
    assert_close(block, reference, 1e-5)


def test_rotary_and_timestep_helpers():
    rng = np.random.default_rng(4)
    # rotary: tables and the complex product, against diffusers' complex128 path
    table = get_1d_rotary_pos_embed(6, 11, theta=10000.0, freqs_dtype=np.float64)
    torch_table = torch_get_1d_rotary_pos_embed(6, 11, theta=10000.0, freqs_dtype=torch.float64)
    assert_close(table, torch.view_as_real(torch_table), 1e-7)
    # upstream's default: float32 angles (their cos / sin within an ulp of upstream's float32 table)
    default = get_1d_rotary_pos_embed(6, 300)
    assert_close(default, get_1d_rotary_pos_embed(6, 300, freqs_dtype=np.float32), 0.0)
    assert rel_l2(default, get_1d_rotary_pos_embed(6, 300, freqs_dtype=np.float64)) > 1e-8
    assert_close(default, torch.view_as_real(torch_get_1d_rotary_pos_embed(6, 300)), 1e-6)
    assert_close(get_1d_rotary_pos_embed(6, 11, freqs_dtype=ms.float64), table, 0.0)
    x = rng.standard_normal((2, 11, 3, 6)).astype(np.float32)
    freqs = np.broadcast_to(table.asnumpy(), (2, 11, 3, 2))
    torch_freqs = torch_table.unsqueeze(0).expand(2, -1, -1)
    expected = torch_apply_rotary_emb(torch.from_numpy(x), torch_freqs, use_real=False)
    assert_close(
        apply_rotary_emb(ms.Tensor(x), ms.Tensor(np.ascontiguousarray(freqs)), use_real=False), expected, 1e-6
    )
    # upstream's complex table as it is (complex128 here; complex64 too)
    for complex_freqs in (torch_freqs, torch_freqs.to(torch.complex64)):
        rotated = apply_rotary_emb(ms.Tensor(x), ms.Tensor(complex_freqs.numpy()), use_real=False)
        assert_close(rotated, expected, 1e-6)
    with pytest.raises(ValueError, match="use_real"):
        get_1d_rotary_pos_embed(6, 11, use_real=True)
    with pytest.raises(ValueError, match="pass `use_real=False`"):
        apply_rotary_emb(ms.Tensor(x), ms.Tensor(np.ascontiguousarray(freqs)))  # upstream's default use_real=True

    # timesteps: odd and even widths, both orders, shifts and scales
    t = rng.uniform(0, 1000, (5,)).astype(np.float32)
    for dim, flip, shift, scale in ((256, True, 0.0, 1), (33, False, 1, 2.5)):
        expected = torch_get_timestep_embedding(torch.from_numpy(t), dim, flip, shift, scale)
        assert_close(get_timestep_embedding(ms.Tensor(t), dim, flip, shift, scale), expected, 1e-5)
