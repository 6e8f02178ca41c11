"""Parity of mindone.transformers.Gemma2Model with transformers' Gemma2Model (torch, eager attention), checkpoints
in both directions, and input/loading errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import Gemma2Config
from transformers import Gemma2ForCausalLM as TorchGemma2ForCausalLM
from transformers import Gemma2Model as TorchGemma2Model

import mindspore as ms
from mindspore.nn.utils import no_init_parameters

from mindone.diffusers.models.model_loading_utils import CheckpointError
from mindone.peft import invalidate_compiled_graphs
from mindone.transformers import Gemma2Model, Gemma2PreTrainedModel, PreTrainedModel
from mindone.transformers.modeling_outputs import BaseModelOutputWithPast
from tests.testing_utils import load_torch_weights, rel_l2, to_numpy

TOL = 1e-5

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    sliding_window=4,
    # small scalar and cap so that the soft-capping really bends the logits of these random weights
    query_pre_attn_scalar=2,
    attn_logit_softcapping=1.5,
    max_position_embeddings=64,
)

GEMMA2_2B_WIDTHS = dict(
    vocab_size=128,
    hidden_size=2304,
    intermediate_size=9216,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=256,
    attn_logit_softcapping=50.0,
    final_logit_softcapping=30.0,
    query_pre_attn_scalar=256,
    sliding_window=4,
)


def make_config(**kwargs):
    return Gemma2Config(attn_implementation="eager", **kwargs)


def make_torch_model(config, seed=0, cls=TorchGemma2Model, qk_std=0.3):
    """transformers' model with random weights; q/k projections drawn with `qk_std` so that the attention logits reach
    the soft-capping range."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                param.normal_(0.0, qk_std)
            elif "norm" in name:  # zeros at init: randomize so that the (1 + w) scale is exercised
                param.normal_(0.0, 0.5)
            elif name.endswith("bias"):
                param.normal_(0.0, 0.1)
    return model


def make_pair(config, seed=0, qk_std=0.3):
    torch_model = make_torch_model(config, seed, qk_std=qk_std)
    with no_init_parameters():
        ms_model = Gemma2Model(config)
    load_torch_weights(ms_model, torch_model)
    ms_model.set_train(False)
    return torch_model, ms_model


def random_inputs(batch, seq_len, vocab, lengths=None, left=False, seed=0):
    ids = np.random.default_rng(seed).integers(4, vocab, (batch, seq_len)).astype(np.int64)
    mask = np.ones((batch, seq_len), np.int64)
    for i, n in enumerate(lengths or []):
        if left:
            mask[i, : seq_len - n] = 0
            ids[i, : seq_len - n] = 0
        else:
            mask[i, n:] = 0
            ids[i, n:] = 0  # <pad>
    return ids, mask


def run_torch(model, ids, mask=None, **kwargs):
    with torch.no_grad():
        return model(
            torch.tensor(ids),
            attention_mask=None if mask is None else torch.tensor(mask),
            output_hidden_states=True,
            **kwargs,
        )


def run_ms(model, ids, mask=None, **kwargs):
    return model(
        ms.Tensor(ids),
        attention_mask=None if mask is None else ms.Tensor(mask),
        output_hidden_states=True,
        return_dict=True,
        **kwargs,
    )


def assert_hidden_states_match(ms_out, torch_out, tol=TOL):
    assert len(ms_out.hidden_states) == len(torch_out.hidden_states)
    errors = [rel_l2(a, e) for a, e in zip(ms_out.hidden_states, torch_out.hidden_states)]
    assert max(errors) <= tol, f"hidden states relative L2 errors {errors} > {tol}"
    assert rel_l2(ms_out.last_hidden_state, torch_out.last_hidden_state) <= tol
    return errors


@pytest.fixture(scope="module")
def tiny_pair():
    return make_pair(make_config(**TINY))


# ----------------------------------------------------------------------------------------------------------- parity


def test_tiny_parity_right_padded_batch(tiny_pair):
    torch_model, ms_model = tiny_pair
    # sequence 11 > sliding window 4; three rows of different lengths (right padding, as the Lumina2 tokenizer pads)
    ids, mask = random_inputs(3, 11, TINY["vocab_size"], lengths=[11, 7, 2])
    torch_out = run_torch(torch_model, ids, mask, output_attentions=True)
    ms_out = run_ms(ms_model, ids, mask, output_attentions=True)
    assert len(ms_out.hidden_states) == TINY["num_hidden_layers"] + 1
    assert_hidden_states_match(ms_out, torch_out)
    for a, e in zip(ms_out.attentions, torch_out.attentions):
        assert rel_l2(a, e) <= TOL
    # the sliding layers (0 and 2) attend to at most `sliding_window` keys, the full layer (1) to all previous ones
    attn = [to_numpy(a) for a in ms_out.attentions]
    assert np.all(attn[0][0, :, 10, :7] == 0) and np.all(attn[0][0, :, 10, 7:] > 0)
    assert np.all(attn[1][0, :, 10, :] > 0)
    # padded keys get no attention
    assert np.all(attn[1][1, :, :, 7:] == 0)


def test_tiny_parity_without_mask_and_left_padding(tiny_pair):
    torch_model, ms_model = tiny_pair
    ids, _ = random_inputs(2, 6, TINY["vocab_size"], seed=1)
    assert_hidden_states_match(run_ms(ms_model, ids), run_torch(torch_model, ids))
    # left padding leaves fully masked query rows: transformers' additive-minimum mask makes them uniform
    ids, mask = random_inputs(2, 6, TINY["vocab_size"], lengths=[6, 3], left=True, seed=2)
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))


def test_padding_does_not_change_valid_positions(tiny_pair):
    _, ms_model = tiny_pair
    ids, mask = random_inputs(2, 9, TINY["vocab_size"], lengths=[9, 5], seed=3)
    batched = run_ms(ms_model, ids, mask).hidden_states
    alone = run_ms(ms_model, ids[1:, :5]).hidden_states
    for b, a in zip(batched, alone):
        assert rel_l2(to_numpy(b)[1:, :5], a) <= 1e-6


def test_sliding_window_and_softcap_change_the_result(tiny_pair):
    """The parity tests would not notice a missing sliding mask or soft-cap unless these change the numbers."""
    torch_model, ms_model = tiny_pair
    ids, _ = random_inputs(1, 11, TINY["vocab_size"], seed=4)
    reference = to_numpy(run_ms(ms_model, ids).last_hidden_state)
    for change in (dict(sliding_window=64), dict(attn_logit_softcapping=None)):
        config = make_config(**{**TINY, **change})
        with no_init_parameters():
            other = Gemma2Model(config)
        load_torch_weights(other, torch_model)
        changed = to_numpy(other(ms.Tensor(ids))[0])
        assert rel_l2(changed, reference) > 1e-2, change


@pytest.mark.parametrize(
    "overrides",
    [
        # multi-head attention (no GQA), biases, exact gelu, no soft-cap, custom layer pattern, window >= sequence
        dict(
            num_key_value_heads=4,
            attention_bias=True,
            hidden_activation="gelu",
            attn_logit_softcapping=None,
            layer_types=["full_attention", "sliding_attention", "sliding_attention"],
            sliding_window=16,
        ),
        # single kv head, head_dim * heads != hidden, another rope theta, eps
        dict(
            num_key_value_heads=1,
            head_dim=12,
            rope_parameters={"rope_type": "default", "rope_theta": 500.0},
            rms_norm_eps=1e-5,
            sliding_window=3,
            query_pre_attn_scalar=12,
        ),
    ],
)
def test_tiny_parity_config_options(overrides):
    torch_model, ms_model = make_pair(make_config(**{**TINY, **overrides}), seed=5)
    ids, mask = random_inputs(2, 10, TINY["vocab_size"], lengths=[10, 6], seed=5)
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))


@pytest.mark.parametrize(
    "activation",
    [
        "gelu_new",
        "gelu_fast",
        "gelu_python",
        "gelu_python_tanh",
        "gelu_accurate",
        "gelu_10",
        "quick_gelu",
        "silu",
        "swish",
        "relu",
        "relu2",
        "relu6",
        "leaky_relu",
        "hardswish",
        "mish",
        "tanh",
        "sigmoid",
        "laplace",
        "sqrtsoftplus",
        "linear",
    ],
)
def test_tiny_parity_other_activations(activation):
    # the released checkpoints use gelu_pytorch_tanh; transformers' other ACT2FN functions give other numbers
    torch_model, ms_model = make_pair(make_config(**{**TINY, "hidden_activation": activation}), seed=7)
    ids, mask = random_inputs(2, 10, TINY["vocab_size"], lengths=[10, 6], seed=7)
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))


def test_activations_equal_transformers_on_every_range():
    """Each ACT2FN function on values from -30 to 30 (softplus's exp / log1p regions, relu6 and gelu_10's clips)."""
    from transformers.activations import ACT2FN

    from mindone.transformers.models.gemma2.modeling_gemma2 import _ACTIVATIONS, Gemma2MLP

    x = np.concatenate([np.linspace(-30, 30, 241), np.random.default_rng(0).normal(0, 4, 256)]).astype(np.float32)
    for name in _ACTIVATIONS:
        mlp = Gemma2MLP(make_config(**{**TINY, "hidden_activation": name}))
        actual = mlp.act_fn(ms.Tensor(x))
        expected = ACT2FN[name](torch.tensor(x))
        assert rel_l2(actual, expected) <= 5e-7, name  # MindSpore's float32 Sigmoid: ~1.2e-7
        assert np.abs(to_numpy(actual) - to_numpy(expected)).max() <= 2e-6 * max(1.0, np.abs(to_numpy(expected)).max())


def test_activations_stay_float32_on_ascend(monkeypatch):
    """The float64 softplus / tanh are CPU-only (Ascend has few float64 kernels): built for Ascend, the `mish` and
    `sqrtsoftplus` activations exponentiate in float32 (and still equal transformers' within the float32 kernels' error)."""
    from transformers.activations import ACT2FN

    from mindone.transformers.models.gemma2 import modeling_gemma2

    exp_dtypes, real_mint = [], modeling_gemma2.mint

    class RecordingMint:  # the module's `mint`, recording the dtype `exp` is computed in
        def __getattr__(self, name):
            return getattr(real_mint, name)

        @staticmethod
        def exp(x):
            exp_dtypes.append(x.dtype)
            return real_mint.exp(x)

    monkeypatch.setattr(modeling_gemma2, "mint", RecordingMint())
    x = np.linspace(-30, 30, 241).astype(np.float32)
    for on_ascend in (False, True):
        monkeypatch.setattr(modeling_gemma2, "is_ascend", lambda: on_ascend)
        for name in ("mish", "sqrtsoftplus"):
            exp_dtypes.clear()
            mlp = modeling_gemma2.Gemma2MLP(make_config(**{**TINY, "hidden_activation": name}))
            actual = mlp.act_fn(ms.Tensor(x))
            assert exp_dtypes == [ms.float32 if on_ascend else ms.float64], (name, on_ascend)
            # run here with the CPU's float32 Exp / Tanh kernels (up to 1e-4 off): looser than the float64 path
            bound = 1e-5 if on_ascend else 1e-6
            assert rel_l2(actual, ACT2FN[name](torch.tensor(x))) <= bound, (name, on_ascend)


def test_packed_sequences_from_position_ids(graph_mode_param):
    """Without an attention mask and without a cache, position ids that restart (or jump) mark packed sequences that
    attend only within themselves (transformers' `find_packed_sequence_indices`); with a cache (the default
    `config.use_cache=True`) they do not."""
    packed = [[0, 1, 2, 3, 0, 1, 2, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
    jumps = [[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]]
    ids, _ = random_inputs(2, 10, TINY["vocab_size"], seed=11)
    for config_use_cache in (True, False):
        torch_model, ms_model = make_pair(make_config(**{**TINY, "use_cache": config_use_cache}), seed=11)
        for positions in (packed, jumps):
            for use_cache in (None, False):
                kwargs = dict(position_ids=np.array(positions, np.int64), use_cache=use_cache)
                with torch.no_grad():
                    expected = torch_model(
                        torch.tensor(ids),
                        position_ids=torch.tensor(kwargs["position_ids"]),
                        use_cache=use_cache,
                        output_hidden_states=True,
                    )
                actual = ms_model(
                    ms.Tensor(ids),
                    position_ids=ms.Tensor(kwargs["position_ids"]),
                    use_cache=use_cache,
                    output_hidden_states=True,
                    return_dict=True,
                )
                assert_hidden_states_match(actual, expected)
        # `use_cache=None` packs only when the config has no cache: the two calls differ exactly then
        default = ms_model(ms.Tensor(ids), position_ids=ms.Tensor(np.array(packed)), use_cache=None)[0]
        packed_out = ms_model(ms.Tensor(ids), position_ids=ms.Tensor(np.array(packed)), use_cache=False)[0]
        assert (rel_l2(default, packed_out) > 1e-2) == config_use_cache


def test_packed_sequences_in_training_with_gradient_checkpointing():
    """transformers turns the config's `use_cache` off in training with gradient checkpointing, so position ids mark
    packed sequences there even with `config.use_cache=True` (they did not here)."""
    packed = np.array([[0, 1, 2, 0, 1, 2, 3]], np.int64)
    ids, _ = random_inputs(1, 7, TINY["vocab_size"], seed=12)
    torch_model, ms_model = make_pair(make_config(**TINY), seed=12)
    assert ms_model.config.use_cache
    outputs = []
    for train, checkpointing in ((False, False), (True, False), (True, True)):
        torch_model.train(train)
        ms_model.set_train(train)
        if checkpointing:
            torch_model.gradient_checkpointing_enable()
            ms_model.gradient_checkpointing_enable()
        expected = torch_model(torch.tensor(ids), position_ids=torch.tensor(packed)).last_hidden_state
        actual = ms_model(ms.Tensor(ids), position_ids=ms.Tensor(packed))[0]
        assert rel_l2(actual, expected.detach()) <= TOL, (train, checkpointing)
        outputs.append(actual)
    ms_model.set_train(False)
    assert rel_l2(outputs[2], outputs[0]) > 1e-2  # packed only with checkpointing


@pytest.fixture(params=["pynative", "graph"])
def graph_mode_param(request):
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.mark.parametrize("layer_types", [None, ["sliding_attention"] * 3])
def test_bidirectional_attention(layer_types, graph_mode_param):
    """`config.is_causal=False`, or `is_causal=False` at the call, gives transformers' bidirectional masks (sliding
    layers: `|q - k| <= sliding_window`), with padding; the call argument wins over the config."""
    overrides = dict(TINY, sliding_window=3)
    if layer_types:
        overrides["layer_types"] = layer_types
    torch_model, ms_model = make_pair(make_config(**overrides), seed=12)
    ids, mask = random_inputs(3, 10, TINY["vocab_size"], lengths=[10, 6, 1], left=True, seed=12)
    causal = run_torch(torch_model, ids, mask)
    bidirectional = run_torch(torch_model, ids, mask, is_causal=False)
    assert rel_l2(causal.last_hidden_state, bidirectional.last_hidden_state) > 1e-2
    assert_hidden_states_match(run_ms(ms_model, ids, mask, is_causal=False), bidirectional)
    assert_hidden_states_match(run_ms(ms_model, ids, mask, is_causal=True), causal)
    ms_model.config.is_causal = False
    torch_model.config.is_causal = False
    try:
        assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))
        assert_hidden_states_match(run_ms(ms_model, ids, mask, is_causal=True), causal)
        assert_hidden_states_match(run_ms(ms_model, ids), run_torch(torch_model, ids))
    finally:
        del ms_model.config.is_causal


def _custom_masks(batch, heads, seq_len, seed):
    """Random 4D masks as transformers takes them (added to the scores as they are): `allowed` (batch, heads, q, k),
    a row of which is fully masked, its additive form, and finite biases."""
    rng = np.random.default_rng(seed)
    allowed = rng.random((batch, heads, seq_len, seq_len)) < 0.6
    allowed[..., np.arange(seq_len), np.arange(seq_len)] = True
    allowed[0, :, 2, :] = False  # a fully masked query row: uniform weights, as transformers' additive minimum gives
    additive = np.where(allowed, 0.0, np.finfo(np.float32).min).astype(np.float32)
    biases = rng.normal(0.0, 2.0, (batch, heads, seq_len, seq_len)).astype(np.float32)
    return allowed, additive, biases


@pytest.mark.parametrize("heads", [1, TINY["num_attention_heads"]])
def test_custom_4d_masks(heads, graph_mode_param):
    """A 4D floating-point `attention_mask` is added to the scores of every layer as it is (no causal or
    sliding-window mask added), as transformers does; one sample's mask broadcasts over the batch."""
    torch_model, ms_model = make_pair(make_config(**TINY), seed=21)
    ids, _ = random_inputs(2, 9, TINY["vocab_size"], seed=21)
    allowed, additive, biases = _custom_masks(2, heads, 9, seed=21)
    for mask in (additive, biases, biases[:1], additive + biases, additive.astype(np.float64)):
        expected = run_torch(torch_model, ids, mask, output_attentions=True)
        actual = run_ms(ms_model, ids, mask, output_attentions=True)
        assert_hidden_states_match(actual, expected)
        assert max(rel_l2(a, e) for a, e in zip(actual.attentions, expected.attentions)) <= TOL
    # not causal: the output differs from the causal one; masked keys get no weight, the fully masked row is uniform
    assert rel_l2(run_torch(torch_model, ids, additive).last_hidden_state, run_torch(torch_model, ids)[0]) > 1e-2
    attn = [to_numpy(a) for a in run_ms(ms_model, ids, additive, output_attentions=True).attentions]
    masked = ~allowed
    masked[0, :, 2, :] = False
    for layer in attn:
        assert np.all(layer[np.broadcast_to(masked, layer.shape)] == 0)
        np.testing.assert_allclose(layer[0, :, 2, :], 1.0 / 9, rtol=1e-6)


ROPE_SCALINGS = {
    "linear": {"rope_type": "linear", "rope_theta": 1000.0, "factor": 2.5},
    "yarn": {"rope_type": "yarn", "rope_theta": 1000.0, "factor": 4.0, "original_max_position_embeddings": 16},
    "yarn-mscale": {
        "rope_type": "yarn", "rope_theta": 1000.0, "factor": 2.0, "original_max_position_embeddings": 32,
        "beta_fast": 16, "beta_slow": 2, "mscale": 1.0, "mscale_all_dim": 0.5, "truncate": False,
    },
    "llama3": {
        "rope_type": "llama3", "rope_theta": 1000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ROPE_SCALINGS))
def test_rope_scaling(name):
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding as TorchRotary

    from mindone.transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding

    config = make_config(**TINY, rope_parameters=dict(ROPE_SCALINGS[name]))
    torch_model, ms_model = make_pair(config, seed=13)
    ids, mask = random_inputs(2, 10, TINY["vocab_size"], lengths=[10, 7], seed=13)
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))
    # the tables at long positions, where an ulp of the inverse frequencies would show
    positions = np.arange(300)[None]
    expected = TorchRotary(config)(torch.zeros(1), torch.from_numpy(positions))
    actual = Gemma2RotaryEmbedding(config)(ms.Tensor(np.zeros(1, np.float32)), ms.Tensor(positions))
    for a, e in zip(actual, expected):
        assert rel_l2(a, e) < 1e-7
    default = make_pair(make_config(**TINY, rope_parameters={"rope_type": "default", "rope_theta": 1000.0}), seed=13)
    assert (
        rel_l2(run_ms(default[1], ids, mask).last_hidden_state, run_ms(ms_model, ids, mask).last_hidden_state) > 1e-3
    )


# the rotary embeddings whose frequencies follow the longest position of a call
LENGTH_DEPENDENT_ROPE = [
    {"rope_type": "dynamic", "rope_theta": 1000.0, "factor": 2.0},
    {
        "rope_type": "longrope", "rope_theta": 1000.0, "short_factor": [1.0, 1.1, 1.3, 1.7],
        "long_factor": [1.0, 2.0, 4.0, 8.0], "original_max_position_embeddings": 8, "factor": 2.0,
    },
]  # fmt: skip


@pytest.mark.parametrize("rope_parameters", LENGTH_DEPENDENT_ROPE, ids=["dynamic", "longrope"])
def test_length_dependent_rope(rope_parameters, graph_mode_param):
    """ "dynamic" (NTK) and "longrope" change the frequencies with the longest position of a call, "dynamic" keeping
    the longest so far until a call shorter than `max_position_embeddings` resets it (transformers'
    `dynamic_rope_update`): a sequence of calls of several lengths, and explicit position ids."""
    config = make_config(**{**TINY, "max_position_embeddings": 16}, rope_parameters=dict(rope_parameters))
    torch_model, ms_model = make_pair(config, seed=15)
    for length in (6, 40, 24, 10, 5, 30):
        ids, mask = random_inputs(2, length, TINY["vocab_size"], lengths=[length, length - 2], seed=length)
        assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask, use_cache=False))
    positions = np.arange(3, 15)[None] * 3
    ids, _ = random_inputs(1, 12, TINY["vocab_size"], seed=16)
    with torch.no_grad():
        expected = torch_model(torch.tensor(ids), position_ids=torch.tensor(positions)).last_hidden_state
    assert rel_l2(ms_model(ms.Tensor(ids), position_ids=ms.Tensor(positions))[0], expected) <= TOL
    # the scaling applies past the original length: not the default RoPE there
    default = make_pair(make_config(**{**TINY, "max_position_embeddings": 16}), seed=15)[1]
    ids, mask = random_inputs(1, 40, TINY["vocab_size"], seed=17)
    assert rel_l2(run_ms(default, ids, mask).last_hidden_state, run_ms(ms_model, ids, mask).last_hidden_state) > 1e-3


def test_no_layers_and_output_aliases():
    torch_model, ms_model = make_pair(make_config(**{**TINY, "num_hidden_layers": 0, "layer_types": []}), seed=14)
    ids, mask = random_inputs(2, 5, TINY["vocab_size"], lengths=[5, 3], seed=14)
    expected = run_torch(torch_model, ids, mask)
    actual = run_ms(ms_model, ids, mask)
    assert actual.hidden_states == expected.hidden_states == ()
    assert rel_l2(actual.last_hidden_state, expected.last_hidden_state) <= TOL
    assert actual.past_key_values is None and actual.cache is None


def test_inputs_embeds_and_position_ids(tiny_pair):
    torch_model, ms_model = tiny_pair
    rng = np.random.default_rng(6)
    embeds = rng.standard_normal((2, 7, TINY["hidden_size"])).astype(np.float32)
    positions = np.array([[3, 4, 5, 6, 7, 8, 9]], np.int64)
    with torch.no_grad():
        expected = torch_model(
            inputs_embeds=torch.tensor(embeds), position_ids=torch.tensor(positions), output_hidden_states=True
        )
    actual = ms_model(
        inputs_embeds=ms.Tensor(embeds), position_ids=ms.Tensor(positions), output_hidden_states=True, return_dict=True
    )
    assert_hidden_states_match(actual, expected)


def test_gemma2_2b_widths_two_layers():
    # q/k std 0.15 at these widths puts the attention logits around the soft-cap of 50
    torch_model, ms_model = make_pair(make_config(**GEMMA2_2B_WIDTHS), qk_std=0.15)
    ids, mask = random_inputs(2, 7, GEMMA2_2B_WIDTHS["vocab_size"], lengths=[7, 5], seed=7)
    expected = run_torch(torch_model, ids, mask)
    assert_hidden_states_match(run_ms(ms_model, ids, mask), expected)
    # the same numbers compiled
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        graph = ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask), output_hidden_states=True)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for a, e in zip(graph[1], expected.hidden_states):
        assert rel_l2(a, e) <= TOL


@pytest.mark.parametrize("head_dim,theta", [(256, 10000.0), (16, 10000.0), (64, 500000.0)])
def test_rotary_embedding_equals_transformers(head_dim, theta):
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding as TorchRotary

    from mindone.transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding

    config = make_config(
        **dict(TINY, head_dim=head_dim, rope_parameters={"rope_type": "default", "rope_theta": theta})
    )
    position_ids = np.stack([np.arange(300), np.arange(300) + 17])
    expected = TorchRotary(config)(torch.zeros(1), torch.from_numpy(position_ids))
    actual = Gemma2RotaryEmbedding(config)(ms.Tensor(np.zeros(1, np.float32)), ms.Tensor(position_ids))
    for a, e in zip(actual, expected):
        assert rel_l2(a, e) < 1e-7  # inverse frequencies computed in float64 throughout were 1.2e-6 off


@pytest.mark.parametrize("rope_parameters", LENGTH_DEPENDENT_ROPE, ids=["dynamic", "longrope"])
def test_length_dependent_rotary_embedding_called_on_its_own(rope_parameters):
    """The rotary module called alone updates its frequencies with the positions of the call as transformers' does
    (it used the original ones: the model passes the frequencies of its call)."""
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding as TorchRotary

    from mindone.transformers.models.gemma2.modeling_gemma2 import Gemma2RotaryEmbedding

    config = make_config(**{**TINY, "max_position_embeddings": 16}, rope_parameters=dict(rope_parameters))
    theirs, ours = TorchRotary(config), Gemma2RotaryEmbedding(config)
    for length in (6, 40, 24, 10, 5, 30):
        position_ids = np.arange(length)[None]
        expected = theirs(torch.zeros(1), torch.from_numpy(position_ids))
        actual = ours(ms.Tensor(np.zeros(1, np.float32)), ms.Tensor(position_ids))
        for a, e in zip(actual, expected):
            assert rel_l2(a, e) < 1e-6, length
        np.testing.assert_allclose(ours.inv_freq.asnumpy(), theirs.inv_freq.numpy(), rtol=1e-6, err_msg=str(length))


def test_graph_mode_matches_pynative(tiny_pair, graph_mode):
    torch_model, ms_model = tiny_pair
    ids, mask = random_inputs(3, 11, TINY["vocab_size"], lengths=[11, 7, 2], seed=8)
    expected = run_torch(torch_model, ids, mask)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    pynative = run_ms(ms_model, ids, mask)
    ms.set_context(mode=ms.GRAPH_MODE)
    graph = run_ms(ms_model, ids, mask)
    assert_hidden_states_match(graph, expected)
    for g, p in zip(graph.hidden_states, pynative.hidden_states):
        assert rel_l2(g, p) <= 1e-6
    # without a mask and as a tuple
    last = ms_model(ms.Tensor(ids))
    assert isinstance(last, tuple) and len(last) == 1
    assert rel_l2(last[0], run_torch(torch_model, ids).last_hidden_state) <= TOL


def test_pynative_cpu_compiles_large_calls(monkeypatch):
    """In PyNative on CPU, inference calls at least `COMPILE_ON_CPU_ELEMENTS` large run as one compiled graph: the same
    hidden states as op by op and as transformers (attentions, padding, inputs_embeds included), training op by op."""
    from mindone.transformers.models.gemma2 import modeling_gemma2

    torch_model, ms_model = make_pair(make_config(**TINY), seed=3)
    ids, mask = random_inputs(3, 11, TINY["vocab_size"], lengths=[11, 7, 2], seed=9)
    eager = run_ms(ms_model, ids, mask, output_attentions=True)
    assert not ms_model.compile_cache
    monkeypatch.setattr(modeling_gemma2, "COMPILE_ON_CPU_ELEMENTS", 3 * 11 * TINY["hidden_size"])
    compiled = run_ms(ms_model, ids, mask, output_attentions=True)
    assert ms_model.compile_cache
    for c, e in zip(compiled.hidden_states + compiled.attentions, eager.hidden_states + eager.attentions):
        assert rel_l2(c, e) <= 1e-6
    torch_out = run_torch(torch_model, ids, mask, output_attentions=True)
    assert_hidden_states_match(compiled, torch_out)
    embeds = ms_model.embed_tokens(ms.Tensor(ids))
    last = ms_model(inputs_embeds=embeds, attention_mask=ms.Tensor(mask))[0]
    assert rel_l2(last, torch_out.last_hidden_state) <= TOL
    # under the threshold, and in training mode: op by op
    invalidate_compiled_graphs(ms_model)
    run_ms(ms_model, ids[:, :10], mask[:, :10])
    ms_model.set_train(True)
    try:
        run_ms(ms_model, ids, mask)
    finally:
        ms_model.set_train(False)
    assert not ms_model.compile_cache


def test_compiled_calls_follow_a_replaced_submodule(monkeypatch):
    """`set_input_embeddings` (any sub-cell assigned anew) after a compiled call: the graph ran the old embedding."""
    from mindone.transformers.models.gemma2 import modeling_gemma2

    monkeypatch.setattr(modeling_gemma2, "COMPILE_ON_CPU_ELEMENTS", 1)
    _, ms_model = make_pair(make_config(**TINY), seed=1)
    _, other = make_pair(make_config(**TINY), seed=2)
    torch_model = make_torch_model(make_config(**TINY), seed=1)
    torch_model.set_input_embeddings(make_torch_model(make_config(**TINY), seed=2).embed_tokens)
    ids, mask = random_inputs(2, 9, TINY["vocab_size"], seed=1)
    run_ms(ms_model, ids, mask)
    assert ms_model.compile_cache
    ms_model.set_input_embeddings(other.embed_tokens)
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))


def test_compiled_calls_follow_a_dtype_change(monkeypatch):
    """A compiled graph keyed by the integer token ids was reused after `.half()` / `.float()`: garbage (float32
    outputs of the float16 model, NaN after casting back). Casts invalidate the model's compiled graphs."""
    from mindone.transformers.models.gemma2 import modeling_gemma2

    torch_model, ms_model = make_pair(make_config(**TINY), seed=4)
    ids, mask = random_inputs(2, 9, TINY["vocab_size"], lengths=[9, 5], seed=4)
    monkeypatch.setattr(modeling_gemma2, "COMPILE_ON_CPU_ELEMENTS", 2 * 9 * TINY["hidden_size"])
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))
    assert ms_model.compile_cache
    ms_model.half()
    half = run_ms(ms_model, ids, mask).last_hidden_state
    with torch.no_grad():
        expected = torch_model.half()(torch.tensor(ids), attention_mask=torch.tensor(mask))[0].float().numpy()
    assert half.dtype == ms.float16
    assert rel_l2(half.astype(ms.float32), expected) <= 5e-3  # float16 rounding on both sides
    ms_model.float()
    # torch's round trip also rounds its float buffers (embed_scale, inv_freq), constants here: round the weights only
    torch_model = make_torch_model(make_config(**TINY), seed=4)
    with torch.no_grad():
        for param in torch_model.parameters():
            param.copy_(param.half().float())
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))


# ----------------------------------------------------------------------------------------------------------- outputs


def test_output_formats(tiny_pair):
    torch_model, ms_model = tiny_pair
    assert ms_model.get_memory_footprint() == torch_model.get_memory_footprint(return_buffers=False)
    ids, mask = random_inputs(2, 5, TINY["vocab_size"], lengths=[5, 3], seed=9)
    out = ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask))
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == (2, 5, TINY["hidden_size"])
    last, hidden_states = ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask), output_hidden_states=True)
    assert len(hidden_states) == TINY["num_hidden_layers"] + 1
    assert rel_l2(hidden_states[-1], last) == 0.0  # last entry is after the final norm, as transformers
    obj = ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask), output_hidden_states=True, return_dict=True)
    assert isinstance(obj, BaseModelOutputWithPast) and obj.cache is None and obj.attentions is None
    assert rel_l2(obj.hidden_states[-2], hidden_states[-2]) == 0.0 and rel_l2(obj[1][-2], hidden_states[-2]) == 0.0
    expected = run_torch(torch_model, ids, mask)
    assert rel_l2(obj.hidden_states[-2], expected.hidden_states[-2]) <= TOL  # what Lumina2 uses
    # index selection, as transformers 5: the other entries are None
    for selection in (-2, [0, -1]):
        ours = ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask), output_hidden_states=selection)[1]
        with torch.no_grad():
            theirs = torch_model(
                torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=selection
            ).hidden_states
        assert [h is None for h in ours] == [h is None for h in theirs]
        for a, e in zip(ours, theirs):
            if e is not None:
                assert rel_l2(a, e) <= TOL
    # numpy inputs are accepted
    assert rel_l2(ms_model(ids, attention_mask=mask)[0], last) == 0.0


def test_untied_last_hidden_state_and_empty_selections(graph_mode_param):
    """`config.tie_last_hidden_states=False` keeps the last layer's output before the final norm as the last hidden
    state, as transformers; `output_hidden_states=0` or `[]` return no hidden states, as transformers."""
    torch_model, ms_model = make_pair(make_config(**TINY, tie_last_hidden_states=False), seed=7)
    ids, mask = random_inputs(2, 6, TINY["vocab_size"], lengths=[6, 4], seed=3)
    ours, theirs = run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask)
    assert_hidden_states_match(ours, theirs)
    assert rel_l2(ours.hidden_states[-1], ours.last_hidden_state) > 0.1  # before the final norm
    for selection in (0, []):
        out = ms_model(
            ms.Tensor(ids), attention_mask=ms.Tensor(mask), output_hidden_states=selection, return_dict=True
        )
        with torch.no_grad():
            expected = torch_model(
                torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=selection
            )
        assert out.hidden_states is None and expected.hidden_states is None


# ----------------------------------------------------------------------------------------------------------- checkpoints


def _ms_forward(model, ids, mask):
    return run_ms(model, ids, mask)


@pytest.fixture(scope="module")
def torch_checkpoints(tmp_path_factory):
    """Checkpoints written by transformers: base model (single and sharded), causal LM (untied head), bf16."""
    root = tmp_path_factory.mktemp("gemma2_torch")
    config = make_config(**TINY)
    base = make_torch_model(config, seed=11)
    base.save_pretrained(root / "base")
    base.save_pretrained(root / "sharded", max_shard_size="20KB")
    lm_config = make_config(**TINY, tie_word_embeddings=False)
    lm = make_torch_model(lm_config, seed=12, cls=TorchGemma2ForCausalLM)
    lm.save_pretrained(root / "causal_lm")
    lm.save_pretrained(root / "causal_lm_sharded", max_shard_size="20KB")
    bf16 = make_torch_model(config, seed=13).to(torch.bfloat16)
    bf16.save_pretrained(root / "pipeline" / "text_encoder")
    return root, base, lm, bf16


@pytest.mark.parametrize("name", ["base", "sharded", "causal_lm", "causal_lm_sharded"])
def test_load_transformers_checkpoint(torch_checkpoints, name):
    root, base, lm, _ = torch_checkpoints
    reference = lm.model if name.startswith("causal_lm") else base
    folder = root / name
    if name.endswith("sharded"):
        assert (folder / "model.safetensors.index.json").is_file()
    if name == "causal_lm":
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            keys = list(f.keys())
        assert "lm_head.weight" in keys and all(k.startswith(("model.", "lm_head.")) for k in keys)
    model = Gemma2Model.from_pretrained(str(folder))
    assert model.dtype == ms.float32
    # output_loading_info: upstream's report (everything that would fill it raises here instead)
    _, info = Gemma2Model.from_pretrained(str(folder), output_loading_info=True)
    assert info == TorchGemma2Model.from_pretrained(str(folder), output_loading_info=True)[1]
    for kwargs in ({}, {"exclude_embeddings": True}, {"only_trainable": True, "exclude_embeddings": True}):
        assert model.num_parameters(**kwargs) == reference.num_parameters(**kwargs), kwargs
    assert model.num_parameters(exclude_embeddings=True) < model.num_parameters()
    ids, mask = random_inputs(2, 9, TINY["vocab_size"], lengths=[9, 4], seed=14)
    assert_hidden_states_match(run_ms(model, ids, mask), run_torch(reference, ids, mask))
    # the base class loads too (the Lumina2 pipeline types its text encoder as Gemma2PreTrainedModel)
    assert issubclass(Gemma2Model, Gemma2PreTrainedModel) and issubclass(Gemma2PreTrainedModel, PreTrainedModel)


def test_model_api_as_transformers(torch_checkpoints):
    """`config.dtype` is the model's dtype after loading, `_from_config` takes `dtype=`, embeddings without a `weight`
    (MindSpore's `nn.Embedding`) are counted, and transformers' other methods exist: no-ops or a clear error."""
    folder = torch_checkpoints[0] / "pipeline" / "text_encoder"  # bfloat16
    theirs = TorchGemma2Model.from_pretrained(str(folder), dtype=torch.float16)
    ours = Gemma2Model.from_pretrained(str(folder), mindspore_dtype=ms.float16)
    name = lambda dtype: str(dtype).removeprefix("torch.")  # noqa: E731 (a name here, a torch dtype there)
    assert name(ours.config.dtype) == name(theirs.config.dtype) == "float16"
    # default: float32 here (transformers keeps the checkpoint's bfloat16), and the config says so
    assert name(Gemma2Model.from_pretrained(str(folder)).config.dtype) == "float32"
    config = make_config(**TINY)
    for kwargs in ({"dtype": "float16"}, {"mindspore_dtype": ms.float16}):
        model = Gemma2Model._from_config(config, **kwargs)
        assert model.dtype == ms.float16 and name(model.config.dtype) == "float16"
        assert name(TorchGemma2Model._from_config(config, dtype=torch.float16).config.dtype) == "float16"
    with pytest.raises(TypeError, match="`torch_dtype` is not supported .*mindspore_dtype"):
        Gemma2Model._from_config(config, torch_dtype=torch.float16)

    model = make_pair(config)[1]
    expected = model.num_parameters(exclude_embeddings=True)
    model.set_input_embeddings(ms.nn.Embedding(TINY["vocab_size"], TINY["hidden_size"]))
    assert model.num_parameters(exclude_embeddings=True) == expected
    with pytest.raises(TypeError, match="needs an embedding cell with a `weight` table"):
        model.resize_token_embeddings(TINY["vocab_size"] + 8)

    for name in ("tie_weights", "post_init", "enable_input_require_grads", "disable_input_require_grads"):
        assert hasattr(TorchGemma2Model, name) and getattr(model, name)() is None
    for name in (
        "push_to_hub",
        "set_attn_implementation",
        "add_adapter",
        "load_adapter",
        "active_adapters",
        "cpu",
        "cuda",
    ):
        assert hasattr(TorchGemma2Model, name)
        with pytest.raises(NotImplementedError, match=f"`Gemma2Model.{name}` is not supported by this MindSpore port"):
            getattr(model, name)("x")
    with pytest.raises(NotImplementedError, match="remote-code"):
        Gemma2Model.register_for_auto_class()


@pytest.mark.parametrize("name", ["base", "causal_lm_sharded"])
def test_load_fewer_layers_than_the_checkpoint(torch_checkpoints, name, tmp_path):
    # transformers loads the first layers and reports the others as unexpected keys
    folder = torch_checkpoints[0] / name
    theirs, their_info = TorchGemma2Model.from_pretrained(str(folder), num_hidden_layers=1, output_loading_info=True)
    ours, info = Gemma2Model.from_pretrained(str(folder), num_hidden_layers=1, output_loading_info=True)
    assert len(ours.layers) == 1 and info["unexpected_keys"] == their_info["unexpected_keys"]
    assert any(".layers.2." in k or k.startswith("layers.2.") for k in info["unexpected_keys"])
    ids, mask = random_inputs(2, 9, TINY["vocab_size"], lengths=[9, 4], seed=15)
    assert_hidden_states_match(run_ms(ours, ids, mask), run_torch(theirs.eval(), ids, mask))
    # the config names the loaded layers only, so the model saves (transformers' own copy keeps three `layer_types`
    # and refuses to save) and loads back in transformers
    assert ours.config.layer_types == theirs.config.layer_types[:1]
    ours.save_pretrained(tmp_path)
    reloaded = TorchGemma2Model.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    assert reloaded.config.num_hidden_layers == 1
    assert_hidden_states_match(run_ms(ours, ids, mask), run_torch(reloaded, ids, mask))


def test_load_bf16_checkpoint_and_dtypes(torch_checkpoints, tmp_path):
    root, _, _, bf16 = torch_checkpoints
    torch_state = {k: v.float().numpy() for k, v in bf16.state_dict().items()}
    # default: float32 parameters, an exact widening of the bf16 weights
    model = Gemma2Model.from_pretrained(str(root / "pipeline"), subfolder="text_encoder", local_files_only=True)
    params = dict(model.parameters_and_names())
    assert set(params) == set(torch_state)
    for name, value in torch_state.items():
        assert params[name].dtype == ms.float32
        np.testing.assert_array_equal(params[name].asnumpy(), value)
    ids, mask = random_inputs(2, 6, TINY["vocab_size"], lengths=[6, 4], seed=15)
    # reference: transformers loading the same checkpoint in float32 (a bf16 module cast with `.float()` would carry
    # the bf16-rounded embedding scale buffer)
    reference = TorchGemma2Model.from_pretrained(
        str(root / "pipeline" / "text_encoder"), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    assert_hidden_states_match(run_ms(model, ids, mask), run_torch(reference, ids, mask))
    # mindspore_dtype casts (bf16 compute is for Ascend: MatMul has no bf16 CPU kernel, so no forward here)
    for dtype in (ms.bfloat16, "bfloat16", "auto"):
        cast = Gemma2Model.from_pretrained(str(root / "pipeline" / "text_encoder"), mindspore_dtype=dtype)
        assert cast.dtype == ms.bfloat16
        assert all(p.dtype == ms.bfloat16 for _, p in cast.parameters_and_names())
        weight = dict(cast.parameters_and_names())["layers.0.self_attn.q_proj.weight"]
        np.testing.assert_array_equal(to_numpy(weight), torch_state["layers.0.self_attn.q_proj.weight"])
    with pytest.raises(TypeError, match="bfloat16 parameters.*mindspore_dtype=ms.float32"):
        cast(ms.Tensor(np.array([[2, 5]], np.int64)))
    # "auto" with a config that records no dtype: the checkpoint's, as transformers (its first floating tensor)
    folder = tmp_path / "no_recorded_dtype"
    shutil.copytree(root / "pipeline" / "text_encoder", folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("dtype", None), config.pop("torch_dtype", None)
    (folder / "config.json").write_text(json.dumps(config))
    theirs = TorchGemma2Model.from_pretrained(str(folder), dtype="auto")
    assert theirs.dtype == torch.bfloat16
    assert Gemma2Model.from_pretrained(str(folder), mindspore_dtype="auto").dtype == ms.bfloat16
    state = {k: v.float() for k, v in theirs.state_dict().items()}
    unrecorded = Gemma2Config.from_pretrained(str(folder))
    assert unrecorded.dtype is None
    assert Gemma2Model.from_pretrained(None, config=unrecorded, state_dict=state, mindspore_dtype="auto").dtype == (
        ms.float32
    )
    # float16 computes on CPU
    half = Gemma2Model.from_pretrained(str(root / "pipeline" / "text_encoder"), mindspore_dtype=ms.float16)
    out = half(ms.Tensor(ids), attention_mask=ms.Tensor(mask))[0]
    assert out.dtype == ms.float16
    assert rel_l2(out, run_ms(model, ids, mask).last_hidden_state) < 1e-2
    assert half.to(ms.float32).dtype == ms.float32


def test_config_argument_and_overrides(torch_checkpoints):
    root, base, _, _ = torch_checkpoints
    config = Gemma2Config.from_pretrained(str(root / "base"))
    model = Gemma2Model.from_pretrained(str(root / "base"), config=config, output_hidden_states=True)
    assert model.config.output_hidden_states is True and config.output_hidden_states is False
    ids, _ = random_inputs(1, 5, TINY["vocab_size"], seed=16)
    out = model(ms.Tensor(ids), return_dict=True)  # config.output_hidden_states applies
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    assert_hidden_states_match(out, run_torch(base, ids))


@pytest.mark.parametrize("max_shard_size", ["10GB", "20KB"])
def test_save_pretrained_loads_in_transformers(tiny_pair, tmp_path, max_shard_size):
    torch_model, ms_model = tiny_pair
    ms_model.save_pretrained(str(tmp_path), max_shard_size=max_shard_size)
    files = sorted(os.listdir(tmp_path))
    if max_shard_size == "20KB":
        assert "model.safetensors.index.json" in files and "model.safetensors" not in files
        torch_model.save_pretrained(str(tmp_path / "theirs"), max_shard_size=max_shard_size)
        index, theirs = (
            json.loads((folder / "model.safetensors.index.json").read_text())
            for folder in (tmp_path, tmp_path / "theirs")
        )
        assert index == theirs  # the same shards, weight map and metadata (total_parameters, total_size)
    else:
        assert "model.safetensors" in files
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["Gemma2Model"] and saved["model_type"] == "gemma2"
    assert saved["dtype"] == "float32"
    loaded = TorchGemma2Model.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    for name, value in torch_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # a causal LM loads the base weights too (its head is newly initialized by transformers)
    lm = TorchGemma2ForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager")
    assert torch.equal(lm.model.layers[0].mlp.up_proj.weight, torch_model.layers[0].mlp.up_proj.weight)
    # and it round-trips in ours
    ours = Gemma2Model.from_pretrained(str(tmp_path))
    ids, mask = random_inputs(2, 5, TINY["vocab_size"], lengths=[5, 2], seed=17)
    assert_hidden_states_match(run_ms(ours, ids, mask), run_torch(loaded, ids, mask))


def test_single_file_read_before_an_index_beside_it(tiny_pair, tmp_path):
    """A folder holding both `model.safetensors` and a shard index (transformers leaves a stale index behind when a
    sharded save is followed by a single-file one): transformers reads the single file, so does the port."""
    torch_model, _ = tiny_pair
    other = make_torch_model(make_config(**TINY), seed=3)
    other.save_pretrained(str(tmp_path), max_shard_size="20KB")  # complete shards + index
    torch_model.save_pretrained(str(tmp_path / "single"))
    shutil.copy(tmp_path / "single" / "model.safetensors", tmp_path / "model.safetensors")
    expected = TorchGemma2Model.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ids, mask = random_inputs(2, 5, TINY["vocab_size"], lengths=[5, 2], seed=17)
    assert_hidden_states_match(
        run_ms(Gemma2Model.from_pretrained(str(tmp_path)), ids, mask), run_torch(expected, ids, mask)
    )
    assert torch.equal(expected.norm.weight, torch_model.norm.weight)
    # a stale index whose shards are gone (transformers' own leftover): the single file still loads
    for name in os.listdir(tmp_path):
        if name.startswith("model-"):
            os.remove(tmp_path / name)
    assert_hidden_states_match(
        run_ms(Gemma2Model.from_pretrained(str(tmp_path)), ids, mask), run_torch(expected, ids, mask)
    )


def test_save_bf16_loads_in_transformers(tiny_pair, tmp_path):
    _, ms_model = tiny_pair
    ms_model.save_pretrained(str(tmp_path / "fp32"))
    bf16 = Gemma2Model.from_pretrained(str(tmp_path / "fp32"), mindspore_dtype=ms.bfloat16)
    bf16.save_pretrained(str(tmp_path / "bf16"))
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = TorchGemma2Model.from_pretrained(str(tmp_path / "bf16"), attn_implementation="eager")
    assert loaded.dtype == torch.bfloat16
    ours = dict(bf16.parameters_and_names())
    for name, value in loaded.state_dict().items():
        np.testing.assert_array_equal(to_numpy(ours[name]), value.float().numpy())


def test_save_on_other_ranks_writes_nothing_and_dtypes_are_floats(tiny_pair, tmp_path):
    _, ms_model = tiny_pair
    ms_model.save_pretrained(str(tmp_path / "rank1"), is_main_process=False)
    assert os.listdir(tmp_path / "rank1") == []  # transformers: only the saving rank writes
    ms_model.save_pretrained(str(tmp_path / "rank0"))
    # tensors save_pretrained cannot write are named before anything is written
    with pytest.raises(TypeError, match="'embed_tokens.weight' is a builtins.list"):
        ms_model.save_pretrained(str(tmp_path / "bad_state"), state_dict={"embed_tokens.weight": [1.0]})
    assert not (tmp_path / "bad_state").exists()
    with pytest.raises(ValueError, match="not a floating point dtype"):
        Gemma2Model.from_pretrained(str(tmp_path / "rank0"), mindspore_dtype=ms.int8)
    # `dtype=` (transformers 5's name) is an alias of `mindspore_dtype=`
    assert Gemma2Model.from_pretrained(str(tmp_path / "rank0"), dtype=ms.bfloat16).dtype == ms.bfloat16
    with pytest.raises(ValueError, match="disagree"):
        Gemma2Model.from_pretrained(str(tmp_path / "rank0"), dtype=ms.bfloat16, mindspore_dtype=ms.float16)


# ----------------------------------------------------------------------------------------------------------- errors


def test_loading_errors(torch_checkpoints, tmp_path):
    root, _, _, _ = torch_checkpoints
    with pytest.raises(EnvironmentError, match="config.json"):
        Gemma2Model.from_pretrained(str(tmp_path / "does_not_exist"), local_files_only=True)
    os.makedirs(tmp_path / "config_only")
    make_config(**TINY).save_pretrained(str(tmp_path / "config_only"))
    with pytest.raises(EnvironmentError, match="model.safetensors"):
        Gemma2Model.from_pretrained(str(tmp_path / "config_only"))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*mlp.*checkpoint \[37, 32\] vs model \[40, 32\]"):
        Gemma2Model.from_pretrained(str(root / "base"), intermediate_size=40)
    with pytest.raises(CheckpointError, match="missing keys.*layers\\.3\\."):
        Gemma2Model.from_pretrained(str(root / "base"), num_hidden_layers=4, layer_types=["full_attention"] * 4)
    with pytest.raises(TypeError, match="not_an_option"):
        Gemma2Model.from_pretrained(str(root / "base"), not_an_option=1)
    with pytest.raises(TypeError, match="torch_dtype"):
        Gemma2Model.from_pretrained(str(root / "base"), torch_dtype="float32")
    # transformers' defaults of unsupported options are accepted, anything else refused
    Gemma2Model.from_pretrained(str(root / "base"), ignore_mismatched_sizes=False, device_map=None)
    with pytest.raises(TypeError, match="ignore_mismatched_sizes"):
        Gemma2Model.from_pretrained(str(root / "base"), ignore_mismatched_sizes=True)
    # transformers 5's own loading options: at their defaults (or without effect here) accepted, else refused
    defaults = dict(key_mapping=None, tp_plan=None, gguf_file=None, adapter_name="default", adapter_kwargs={})
    defaults.update(use_kernels=False, offload_buffers=False, weights_only=False, disable_mmap=True, tqdm_class=None)
    Gemma2Model.from_pretrained(str(root / "base"), **defaults)
    for name, value in (("gguf_file", "model.gguf"), ("key_mapping", {"^model.": ""}), ("tp_plan", "auto")):
        with pytest.raises(TypeError, match=f"`{name}` is not supported by mindone's `from_pretrained`"):
            Gemma2Model.from_pretrained(str(root / "base"), **{name: value})
    # a folder of weights without config.json (transformers 5 goes on with a default config), and a broken one
    os.makedirs(tmp_path / "weights_only")
    shutil.copy(root / "base" / "model.safetensors", tmp_path / "weights_only")
    with pytest.raises(EnvironmentError, match="has no config.json"):
        Gemma2Model.from_pretrained(str(tmp_path / "weights_only"))
    (tmp_path / "weights_only" / "config.json").write_text("{not json")
    with pytest.raises(EnvironmentError, match="Cannot read .*config.json as a Gemma2Config"):
        Gemma2Model.from_pretrained(str(tmp_path / "weights_only"))
    # a diffusers component's config (a pipeline's VAE folder): transformers warns and builds a default Gemma2Config,
    # and the load fails on the missing keys of that config
    (tmp_path / "weights_only" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(
        ValueError, match=r"config.json is not a Gemma2Config .*: it has `_class_name` 'AutoencoderKL'"
    ):
        Gemma2Model.from_pretrained(str(tmp_path / "weights_only"))
    with pytest.raises(ValueError, match="attn_implementation"):
        Gemma2Model.from_pretrained(str(root / "base"), attn_implementation="sdpa")
    with pytest.raises(ValueError, match="use_safetensors"):
        Gemma2Model.from_pretrained(str(root / "base"), use_safetensors=False)
    with pytest.raises(ValueError, match="Unknown dtype"):
        Gemma2Model.from_pretrained(str(root / "base"), mindspore_dtype="int3")
    with pytest.raises(TypeError, match="Gemma2Config"):
        Gemma2Model(dict(TINY))
    with pytest.raises(ValueError, match="rope_type"):
        Gemma2Model(make_config(**TINY, rope_parameters={"rope_type": "proportional", "rope_theta": 1e4}))
    # a `rope_parameters` override replaces the config's dict unvalidated (transformers: a bare TypeError / KeyError)
    with pytest.raises(ValueError, match=r"lacks \['rope_theta'\], which the 'linear' .*`rope_theta` is 10000.0"):
        Gemma2Model.from_pretrained(str(root / "base"), rope_parameters={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ValueError, match=r"lacks \['low_freq_factor', 'high_freq_factor'\], which the 'llama3'"):
        Gemma2Model.from_pretrained(
            str(root / "base"), rope_parameters={"rope_type": "llama3", "rope_theta": 1e4, "factor": 8.0}
        )
    with pytest.raises(ValueError, match="hidden_activation"):
        Gemma2Model(make_config(**{**TINY, "hidden_activation": "prelu"}))
    dynamic = {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}
    with pytest.raises(ValueError, match="'dynamic' rotary embedding needs a head_dim of at least 4, got 2"):
        Gemma2Model(make_config(**{**TINY, "head_dim": 2, "rope_parameters": dynamic}))
    with pytest.raises(ValueError, match="`head_dim` must be even, got 3"):
        Gemma2Model(make_config(**{**TINY, "head_dim": 3}))


def test_missing_key_in_checkpoint(torch_checkpoints, tmp_path):
    from mindone.safetensors.mindspore import load_file, save_file

    root, _, _, _ = torch_checkpoints
    state = load_file(str(root / "base" / "model.safetensors"))
    state.pop("layers.1.post_feedforward_layernorm.weight")
    state["layers.1.extra.weight"] = state["norm.weight"]
    (tmp_path / "config.json").write_text((root / "base" / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing keys.*post_feedforward.*unexpected keys.*extra"):
        Gemma2Model.from_pretrained(str(tmp_path))


def test_padding_row_as_torch_padding_idx(tiny_pair):
    # transformers' word embedding is an nn.Embedding(padding_idx=pad_token_id): its padding row starts at zero and
    # gets no gradient (the forward reads it as stored)
    torch_model, ms_model = tiny_pair
    pad = ms_model.config.pad_token_id
    fresh = Gemma2Model(ms_model.config).embed_tokens.weight.asnumpy()
    assert not fresh[pad].any() and fresh[pad + 1].any()
    ids, mask = random_inputs(2, 9, TINY["vocab_size"], lengths=[9, 5], seed=3)
    assert (ids == pad).any()
    projection = np.random.default_rng(4).standard_normal((2, 9, TINY["hidden_size"])).astype(np.float32)
    weight = torch_model.embed_tokens.weight
    try:
        out = torch_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
        (out * torch.from_numpy(projection)).sum().backward()
        expected = weight.grad.numpy().copy()
    finally:
        weight.grad = None

    def loss():
        out = ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask))[0]
        return (out * ms.Tensor(projection)).sum()

    grad = ms.grad(loss, grad_position=None, weights=[ms_model.embed_tokens.weight])()[0].asnumpy()
    assert not expected[pad].any() and not grad[pad].any()
    assert rel_l2(grad, expected) <= TOL


def test_input_errors(tiny_pair):
    _, model = tiny_pair
    ids = ms.Tensor(np.array([[5, 6, 7]], np.int64))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(ids, inputs_embeds=ms.Tensor(np.zeros((1, 3, 32), np.float32)))
    with pytest.raises(ValueError, match=r"\[0, 99\).*\[5, 99\]"):
        model(ms.Tensor(np.array([[5, 99]], np.int64)))
    with pytest.raises(
        ValueError, match=r"`input_ids` has an empty batch \(shape \(0, 3\)\): Gemma2Model needs at least one sample"
    ):
        model(ms.Tensor(np.zeros((0, 3), np.int64)))
    with pytest.raises(ValueError, match=r"`inputs_embeds` has an empty batch \(shape \(0, 3, 32\)\)"):
        model(inputs_embeds=ms.Tensor(np.zeros((0, 3, 32), np.float32)))
    with pytest.raises(ValueError, match=r"`input_ids` must have shape.*\(3,\)"):
        model(ms.Tensor(np.array([5, 6, 7], np.int64)))
    with pytest.raises(TypeError, match="`input_ids` must hold integers"):
        model(ms.Tensor(np.array([[5.0, 6.0]], np.float32)))
    with pytest.raises(TypeError, match=r"`input_ids` must be a mindspore.Tensor .*, got torch.Tensor\."):
        model(torch.tensor([[5, 6]]))
    with pytest.raises(ValueError, match=r"`attention_mask` must be .*\(1, 3\) or a 4D mask.*got shape \(1, 4\)"):
        model(ids, attention_mask=ms.Tensor(np.ones((1, 4), np.int64)))
    for shape in [(1, 1, 3, 4), (2, 1, 3, 3), (1, 3, 3, 3)]:
        with pytest.raises(ValueError, match=r"A 4D `attention_mask` must have shape \(1, 1 or 4, 3, 3\)"):
            model(ids, attention_mask=ms.Tensor(np.ones(shape, np.bool_)))
    for dtype in (np.bool_, np.int64):
        with pytest.raises(TypeError, match=r"A 4D `attention_mask` must be floating point, .*\(allowed.astype"):
            model(ids, attention_mask=ms.Tensor(np.ones((1, 1, 3, 3), dtype)))
    with pytest.raises(TypeError, match="A dictionary of masks per layer type .* is not supported"):
        model(ids, attention_mask={"full_attention": ms.Tensor(np.zeros((1, 1, 3, 3), np.float32))})
    with pytest.raises(ValueError, match=r"`position_ids` must have shape"):
        model(ids, position_ids=ms.Tensor(np.arange(4).reshape(1, 4)))
    with pytest.raises(ValueError, match=r"`inputs_embeds` must have shape \(batch_size, sequence_length, 32\)"):
        model(inputs_embeds=ms.Tensor(np.zeros((1, 3, 31), np.float32)))
    with pytest.raises(ValueError, match=r"`inputs_embeds` is Float16 but the parameters of Gemma2Model are Float32"):
        model(inputs_embeds=ms.Tensor(np.zeros((1, 3, 32), np.float16)))  # transformers fails in q_proj
    with pytest.raises(ValueError, match="no KV cache"):
        model(ids, use_cache=True)
    # transformers' cache_position without a cache: the default positions are accepted, others refused
    np.testing.assert_array_equal(
        model(ids, cache_position=ms.Tensor(np.arange(3)))[0].asnumpy(), model(ids)[0].asnumpy()
    )
    with pytest.raises(ValueError, match=r"`cache_position` must be None or 0 \.\. 2"):
        model(ids, cache_position=ms.Tensor(np.arange(1, 4)))
    with pytest.raises(TypeError, match="labels"):
        model(ids, labels=ids)
    with pytest.raises(TypeError, match="output_hidden_states"):
        model(ids, output_hidden_states=[0.5])


def test_import_is_light():
    code = (
        "import sys, mindone.transformers as t\n"
        "assert not [m for m in sys.modules if m.startswith('mindone.transformers.models.')]\n"
        "from mindone.transformers import Gemma2Model\n"
        "mods = [m for m in sys.modules if m.startswith('mindone.transformers.models.')]\n"
        "assert sorted(mods) == ['mindone.transformers.models.gemma2', 'mindone.transformers.models.gemma2.modeling_gemma2'],"
        " mods\n"
        "assert not [m for m in sys.modules if m.startswith('mindone.diffusers.models.transformers')]\n"
        "others = [m for m in sys.modules if m.startswith('transformers.models.')"
        " and m.split('.')[2] not in ('gemma2', 'auto')]\n"
        "assert not others, others\n"
        "assert 'diffusers' not in sys.modules and 'peft' not in sys.modules\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------------------------ transformers' PreTrainedModel methods


def test_head_and_generation_queries_as_transformers(tiny_pair):
    torch_model, ms_model = tiny_pair
    assert ms_model.get_output_embeddings() is None is torch_model.get_output_embeddings()
    assert ms_model.can_generate() is False is torch_model.can_generate()
    assert Gemma2Model.supports_gradient_checkpointing is torch_model.supports_gradient_checkpointing is True
    with pytest.raises(AttributeError) as ours:
        ms_model.not_an_attribute
    with pytest.raises(AttributeError) as theirs:
        torch_model.not_an_attribute
    assert str(ours.value) == str(theirs.value)  # torch's wording, which tests compare
    assert issubclass(CheckpointError, RuntimeError)  # what torch raises for mismatched shapes


def test_set_input_embeddings_and_integer_ids_as_transformers():
    """The ids are checked against the input embeddings' rows (torch's lookup), not the config's vocab_size, so a
    larger embedding set with `set_input_embeddings` takes its new ids and a smaller one refuses clearly; integer ids
    of any width run (the lookup takes int32 / int64); transformers' positional order up to `use_cache`."""
    from mindone.transformers.models.gemma2.modeling_gemma2 import Gemma2TextScaledWordEmbedding

    torch_model, ms_model = make_pair(make_config(**TINY), seed=5)
    ids = np.array([[5, 98, 7, 3]])
    expected = run_torch(torch_model, ids)
    for dtype in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64):
        assert_hidden_states_match(run_ms(ms_model, ids.astype(dtype)), expected)
    embeds = ms_model.get_input_embeddings()(ms.Tensor(ids))
    assert rel_l2(ms_model(None, None, None, None, embeds)[0], expected.last_hidden_state) <= TOL
    with pytest.raises(TypeError):
        ms_model(None, None, None, None, embeds, None, True)  # keyword arguments after use_cache, as transformers'

    old = ms_model.get_input_embeddings()
    rows = np.random.default_rng(0).normal(0, 1, (120, TINY["hidden_size"])).astype(np.float32)
    rows[:99] = old.weight.asnumpy()
    larger = Gemma2TextScaledWordEmbedding(120, TINY["hidden_size"], 0, embed_scale=old.scalar_embed_scale)
    larger.weight.set_data(ms.Tensor(rows))
    ms_model.set_input_embeddings(larger)
    torch_model.set_input_embeddings(
        type(torch_model.embed_tokens)(120, TINY["hidden_size"], 0, embed_scale=old.scalar_embed_scale)
    )
    with torch.no_grad():
        torch_model.embed_tokens.weight.copy_(torch.from_numpy(rows))
    new_ids = np.array([[5, 110, 119, 98]])
    assert_hidden_states_match(run_ms(ms_model, new_ids), run_torch(torch_model, new_ids))
    ms_model.set_input_embeddings(Gemma2TextScaledWordEmbedding(50, TINY["hidden_size"], 0))
    with pytest.raises(ValueError, match=r"`input_ids` must be in \[0, 50\) \(the input embeddings' rows\)"):
        ms_model(ms.Tensor(np.array([[5, 60]])))


def test_resize_token_embeddings_as_transformers():
    config = make_config(**TINY, pad_token_id=10)
    torch_model, ms_model = make_pair(config)
    old = ms_model.embed_tokens.weight.asnumpy().copy()
    # grow, rounded up to a multiple: the old rows kept, the added ones near the old rows' mean (covariance x 1e-9)
    expected = torch_model.resize_token_embeddings(120, pad_to_multiple_of=64)
    resized = ms_model.resize_token_embeddings(120, pad_to_multiple_of=64)
    assert resized is ms_model.get_input_embeddings()
    assert tuple(resized.weight.shape) == tuple(expected.weight.shape) == (128, TINY["hidden_size"])
    assert ms_model.config.vocab_size == torch_model.config.vocab_size == ms_model.vocab_size == 128
    np.testing.assert_array_equal(resized.weight.asnumpy()[:99], old)
    np.testing.assert_allclose(resized.weight.asnumpy()[99:], np.broadcast_to(old.mean(0), (29, 32)), atol=1e-3)
    # the new ids run, with transformers' numbers once both hold the same new rows
    with torch.no_grad():
        torch_model.embed_tokens.weight.copy_(torch.from_numpy(resized.weight.asnumpy()))
    ids = np.array([[5, 127, 110, 3]])
    assert_hidden_states_match(run_ms(ms_model, ids), run_torch(torch_model, ids))
    # shrink below the padding row: the rows kept, no padding row any more (as transformers)
    assert ms_model.get_input_embeddings().padding_idx == 10
    shrunk = ms_model.resize_token_embeddings(2)
    assert tuple(shrunk.weight.shape) == (2, 32) and shrunk.padding_idx is None and ms_model.vocab_size == 2
    np.testing.assert_array_equal(shrunk.weight.asnumpy(), old[:2])
    with pytest.raises(ValueError, match="`input_ids` must be in \\[0, 2\\)"):
        ms_model(ms.Tensor(np.array([[5]])))
    # not mean-resized: the config's initializer range; no size: nothing changes
    np.random.seed(0)
    plain = ms_model.resize_token_embeddings(4002, mean_resizing=False).weight.asnumpy()[2:]
    assert abs(plain.std() - config.initializer_range) < 2e-3 and abs(plain.mean()) < 1e-3
    assert ms_model.resize_token_embeddings() is ms_model.get_input_embeddings()
    assert ms_model.config.vocab_size == 4002
    with pytest.raises(ValueError, match="which is not and integer"):
        ms_model.resize_token_embeddings(10, pad_to_multiple_of=1.3)


def test_gradient_checkpointing_as_transformers(monkeypatch):
    from mindone.transformers.models.gemma2 import modeling_gemma2

    torch_model, ms_model = make_pair(make_config(**TINY))
    ids, mask = random_inputs(2, 7, TINY["vocab_size"], lengths=[7, 4], seed=5)
    calls = []
    construct = modeling_gemma2.Gemma2DecoderLayer.construct

    def counted(self, *args, **kwargs):
        calls.append(self)
        return construct(self, *args, **kwargs)

    monkeypatch.setattr(modeling_gemma2.Gemma2DecoderLayer, "construct", counted)
    params = ms_model.trainable_params()

    def loss():
        return (ms_model(ms.Tensor(ids), attention_mask=ms.Tensor(mask))[0] ** 2).mean()

    ms_model.set_train(True)
    try:
        grads = ms.grad(loss, grad_position=None, weights=params)()
        assert len(calls) == TINY["num_hidden_layers"]
        assert not ms_model.is_gradient_checkpointing
        ms_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        assert ms_model.is_gradient_checkpointing
        calls.clear()
        checkpointed = ms.grad(loss, grad_position=None, weights=params)()
        assert len(calls) == 2 * TINY["num_hidden_layers"]  # each layer again in the backward pass
        ms_model.gradient_checkpointing_disable()
        assert not ms_model.is_gradient_checkpointing
    finally:
        ms_model.set_train(False)
    for param, g, g_ckpt in zip(params, grads, checkpointed):
        assert rel_l2(g_ckpt, g) <= 1e-6, param.name
    with pytest.raises(ValueError, match="preserve_rng_state"):
        ms_model.gradient_checkpointing_enable({"preserve_rng_state": True})
    # transformers' config switch turns it on at construction
    assert Gemma2Model(make_config(**TINY, gradient_checkpointing=True)).is_gradient_checkpointing


def test_from_pretrained_with_a_state_dict_as_transformers():
    config = make_config(**TINY)
    for cls in (TorchGemma2Model, TorchGemma2ForCausalLM):  # a head model's state dict loads into the base model
        torch_model = make_torch_model(config, cls=cls)
        base = torch_model if cls is TorchGemma2Model else torch_model.model
        ours = Gemma2Model.from_pretrained(None, config=config, state_dict=torch_model.state_dict())
        expected = TorchGemma2Model.from_pretrained(None, config=config, state_dict=base.state_dict())
        ids, mask = random_inputs(2, 6, TINY["vocab_size"], lengths=[6, 3], seed=2)
        assert_hidden_states_match(run_ms(ours, ids, mask), run_torch(expected.eval(), ids, mask))
    half = Gemma2Model.from_pretrained(None, config=config, state_dict=base.state_dict(), mindspore_dtype="bf16")
    assert half.dtype == ms.bfloat16
    with pytest.raises(ValueError, match="pretrained_model_name_or_path` is None"):
        Gemma2Model.from_pretrained(None, config=config)
    incomplete = {k: v for k, v in base.state_dict().items() if k != "norm.weight"}
    with pytest.raises(CheckpointError, match="norm.weight"):
        Gemma2Model.from_pretrained(None, config=config, state_dict=incomplete)


@pytest.mark.parametrize("dtype,torch_dtype", [(ms.float16, torch.float16), (ms.bfloat16, torch.bfloat16)])
def test_keep_in_fp32_modules_follow_transformers(torch_checkpoints, dtype, torch_dtype):
    # transformers' rule (not diffusers'): `_keep_in_fp32_modules` for float16 only, `_strict` for float16 and
    # bfloat16, patterns searched in the parameter name ("norm" also keeps `input_layernorm`)
    root, _, _, _ = torch_checkpoints
    attributes = {"_keep_in_fp32_modules": ["norm"], "_keep_in_fp32_modules_strict": ["self_attn.q_*"]}
    theirs = type("Theirs", (TorchGemma2Model,), attributes).from_pretrained(str(root / "base"), dtype=torch_dtype)
    ours = type("Ours", (Gemma2Model,), attributes).from_pretrained(str(root / "base"), mindspore_dtype=dtype)
    expected = {k: str(v.dtype).split(".")[1] for k, v in theirs.state_dict().items()}
    actual = {k: str(v.dtype).lower() for k, v in ours.parameters_and_names()}
    assert actual == expected
    # as transformers, the instance's attributes are sets
    assert ours._keep_in_fp32_modules == theirs._keep_in_fp32_modules == {"norm"}
    assert ours._keep_in_fp32_modules_strict == theirs._keep_in_fp32_modules_strict == {"self_attn.q_*"}
    plain = Gemma2Model(make_config(**TINY))
    assert plain._keep_in_fp32_modules == plain._keep_in_fp32_modules_strict == set()
    assert "float32" in actual.values() and str(dtype).lower() in actual.values()


def test_attention_dropout_as_transformers(monkeypatch):
    # transformers drops attention weights after the softmax in training; the port ignored `attention_dropout`. With
    # the same mask on both sides (drawn once, scaled as dropout does) the outputs agree; the real dropout draws new
    # masks per call in training only.
    from mindone.transformers.models.gemma2 import modeling_gemma2

    p = 0.25
    torch_model, ms_model = make_pair(make_config(**TINY, attention_dropout=p))
    ids, mask = random_inputs(2, 7, TINY["vocab_size"], lengths=[7, 4], seed=6)
    masks = iter([])

    def fixed_dropout_torch(x, p=0.5, training=False, inplace=False):
        return x * torch.from_numpy(next(masks)) if training else x

    class FixedDropout(ms.nn.Cell):
        def construct(self, x):
            return x * ms.Tensor(next(masks)) if self.training else x

    def draw():
        rng = np.random.default_rng(1)
        shape = (2, TINY["num_attention_heads"], 7, 7)
        return [(rng.random(shape) >= p).astype(np.float32) / (1 - p) for _ in range(TINY["num_hidden_layers"])]

    ms_model.set_train(True)
    torch_model.train()
    first, second = run_ms(ms_model, ids, mask), run_ms(ms_model, ids, mask)
    assert rel_l2(first.last_hidden_state, second.last_hidden_state) > 1e-3  # new masks per call
    monkeypatch.setattr(modeling_gemma2.nn.Dropout, "construct", FixedDropout.construct)
    monkeypatch.setattr(torch.nn.functional, "dropout", fixed_dropout_torch)
    masks = iter(draw())
    expected = run_torch(torch_model, ids, mask)
    masks = iter(draw())
    assert_hidden_states_match(run_ms(ms_model, ids, mask), expected)
    ms_model.set_train(False)
    torch_model.eval()
    assert_hidden_states_match(run_ms(ms_model, ids, mask), run_torch(torch_model, ids, mask))


def test_dropout_under_gradient_checkpointing_is_refused():
    # MindSpore's recompute draws new dropout masks in the backward pass: refused in every order, nothing changed
    _, ms_model = make_pair(make_config(**TINY, attention_dropout=0.1))
    ms_model.gradient_checkpointing_enable()
    with pytest.raises(ValueError, match="Dropout .* under gradient checkpointing"):
        ms_model.set_train(True)
    assert not ms_model.training
    ms_model.gradient_checkpointing_disable()
    ms_model.set_train(True)
    with pytest.raises(ValueError, match="Dropout .* under gradient checkpointing"):
        ms_model.gradient_checkpointing_enable()
    assert not ms_model.is_gradient_checkpointing
    ms_model.set_train(False)
    ms_model.gradient_checkpointing_enable()  # inference: no recompute, allowed
