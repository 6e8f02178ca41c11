"""The LoRA engine under GRAPH_MODE: a compiled model follows every state change (scales, active adapters, disable,
merge, delete, new adapters, unload) with the PyNative numbers; numeric changes reuse the compiled graph, structural
ones recompile. Hot-swapping writes in place (no recompilation) and refuses incompatible ranks."""

import json

import numpy as np
import peft
import pytest

import mindspore as ms

import mindone.peft as mp
from tests.peft.lora_twins import (
    ALL_TARGETS,
    assert_same_params,
    make_input,
    make_twins,
    ms_set_adapters,
    param_snapshot,
    run_ms,
    run_ms_pynative,
    run_torch,
    torch_lora_layers,
    torch_sd_to_numpy,
    torch_set_adapters,
)
from tests.testing_utils import assert_close

TOL = 1e-5


def _load(ms_model, torch_model, adapter_name, kwargs):
    peft.inject_adapter_in_model(peft.LoraConfig(init_lora_weights=False, **kwargs), torch_model, adapter_name)
    state = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name=adapter_name))
    mp.inject_and_load_adapter(mp.LoraConfig(**kwargs), ms_model, state, adapter_name=adapter_name)


class _Compiled:
    """Checks graph output == PyNative output == (optionally) torch, and whether a call recompiled."""

    def __init__(self, model, x):
        self.model, self.x = model, x
        self.phases = None

    def check(self, what, torch_model=None, recompiled=False):
        out = run_ms(self.model, self.x)  # GRAPH_MODE
        phases = set(self.model.compile_cache)
        if self.phases is not None:
            assert (phases != self.phases) == recompiled, f"{what}: recompiled={phases != self.phases}"
        self.phases = phases
        assert_close(out, run_ms_pynative(self.model, self.x), 1e-6, f"{what}: graph vs pynative")
        if torch_model is not None:
            assert_close(out, run_torch(torch_model, self.x), TOL, what)
        return out


def test_graph_mode_follows_state_changes(graph_mode):
    x = make_input()
    torch_model, ms_model = make_twins()
    _, ms_base = make_twins()
    base_out = run_ms(ms_base, x)  # compiled base model
    _load(ms_model, torch_model, "a", dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    graph = _Compiled(ms_model, x)
    lora_out = graph.check("adapter a", torch_model)

    # numeric state: no recompilation
    with mp.lora_scale(ms_model, 0.5):
        for _, module in torch_lora_layers(torch_model):
            module.scale_layer(0.5)
        graph.check("scale 0.5", torch_model)
        for _, module in torch_lora_layers(torch_model):
            module.unscale_layer(0.5)
    np.testing.assert_array_equal(graph.check("unscaled"), lora_out)
    mp.disable_adapter_layers(ms_model)
    np.testing.assert_array_equal(graph.check("disabled"), base_out)
    mp.enable_adapter_layers(ms_model)
    np.testing.assert_array_equal(graph.check("enabled"), lora_out)

    # a second adapter: structural, recompiles
    _load(ms_model, torch_model, "b", dict(r=2, lora_alpha=3, target_modules=["to_q", "proj_in.0", "proj_out"]))
    graph.check("adapter b injected (only b active)", torch_model, recompiled=True)
    torch_set_adapters(torch_model, ["a", "b"], [0.7, -1.2])
    ms_set_adapters(ms_model, ["a", "b"], [0.7, -1.2])
    graph.check("a and b with weights", torch_model)
    for _, module in torch_lora_layers(torch_model):
        module.merge(adapter_names=["b"])
    mp.merge_adapter(ms_model, adapter_names=["b"])
    graph.check("b merged", torch_model)
    for _, module in torch_lora_layers(torch_model):
        module.unmerge()
    mp.unmerge_adapter(ms_model)
    graph.check("unmerged", torch_model)

    # deleting: structural; the parameters of b are gone
    peft.tuners.tuners_utils.delete_adapter(torch_model, "b", prefix="lora_")
    mp.delete_adapter(ms_model, "b")
    graph.check("b deleted", torch_model, recompiled=True)

    # unloading: the base model again, with the original names
    names = [n for n, _ in ms_base.parameters_and_names()]
    mp.unload(ms_model)
    assert [n for n, _ in ms_model.parameters_and_names()] == names
    np.testing.assert_array_equal(graph.check("unloaded", recompiled=True), base_out)


def test_layer_level_changes_reach_a_compiled_graph(graph_mode):
    """diffusers drives the layers one by one (set_scale, set_adapter, delete_adapter): a graph compiled before is
    not stale, because these changes only touch the run-time scaling buffer (deleting zeroes the slot)."""
    x = make_input()
    torch_model, ms_model = make_twins()
    _load(ms_model, torch_model, "a", dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    # b's scale is exactly 1 when the graph compiles (a constant 1 would be folded away: it must stay a parameter)
    _load(ms_model, torch_model, "b", dict(r=2, lora_alpha=2, target_modules=["to_v", "to_q"]))
    torch_set_adapters(torch_model, ["a", "b"], [1.0, 1.0])
    ms_set_adapters(ms_model, ["a", "b"], [1.0, 1.0])
    graph = _Compiled(ms_model, x)
    graph.check("a+b", torch_model)
    torch_set_adapters(torch_model, ["a", "b"], [1.0, 0.25])
    ms_set_adapters(ms_model, ["a", "b"], [1.0, 0.25])
    graph.check("b scaled from 1 to 0.25", torch_model)
    for _, module in mp.iter_tuner_layers(ms_model):
        if "a" in module.scaling:
            module.scaling["a"] *= 3.0
    for _, module in torch_lora_layers(torch_model):
        if "a" in module.scaling:
            module.scaling["a"] *= 3.0
    graph.check("scaling dict written directly", torch_model)
    for _, module in mp.iter_tuner_layers(ms_model):
        module.delete_adapter("b")
    peft.tuners.tuners_utils.delete_adapter(torch_model, "b", prefix="lora_")
    graph.check("b deleted layer by layer, graph not recompiled", torch_model)


def test_jit_construct_follows_scale_and_new_adapters():
    x = make_input()
    torch_model, ms_model = make_twins()
    _load(ms_model, torch_model, "a", dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    ms_model.construct = ms.jit(ms_model.construct)
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "jit")
    with mp.lora_scale(ms_model, 2.0):
        for _, module in torch_lora_layers(torch_model):
            module.scale_layer(2.0)
        assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "jit scaled")
        for _, module in torch_lora_layers(torch_model):
            module.unscale_layer(2.0)
    _load(ms_model, torch_model, "b", dict(r=2, target_modules=["to_k"]))
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "jit after a new adapter")
    # merging writes the base weights in place: with `set_data` the graph kept the old ones, and the merged adapters
    # (scale 0 from then on) added nothing
    mp.merge_adapter(ms_model)
    for _, module in torch_lora_layers(torch_model):
        module.merge()
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "jit, merged")
    mp.unmerge_adapter(ms_model)
    for _, module in torch_lora_layers(torch_model):
        module.unmerge()
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "jit, unmerged")


def _adapter_state(kwargs, seed):
    torch_model, _ = make_twins()
    peft.inject_adapter_in_model(peft.LoraConfig(init_lora_weights=False, **kwargs), torch_model, "x")
    torch_model.eval()
    return torch_model, torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="x"))


def _with_adapter_name(state, adapter_name):
    """diffusers' map_state_dict_for_hotswap: `...lora_A.weight` -> `...lora_A.<adapter>.weight`."""
    return {k[: -len(".weight")] + f".{adapter_name}.weight": v for k, v in state.items()}


def test_hotswap_same_rank_in_place(graph_mode):
    x = make_input()
    kwargs = dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS)
    torch_model, ms_model = make_twins()
    _load(ms_model, torch_model, "default_0", kwargs)
    graph = _Compiled(ms_model, x)
    graph.check("first adapter", torch_model)
    for seed, fmt in ((1, "with_name"), (2, "without_name")):
        torch_new, state = _adapter_state(dict(kwargs, target_modules=["to_q", "to_k", "to_v"]), seed)
        new_config = mp.LoraConfig(**dict(kwargs, lora_alpha=8))
        mp.check_hotswap_configs_compatible(ms_model.peft_config["default_0"], new_config)
        swap_state = _with_adapter_name(state, "default_0") if fmt == "with_name" else state
        mp.hotswap_adapter_from_state_dict(ms_model, swap_state, "default_0", new_config)
        # layers the new adapter does not cover (to_out.0, ff.linear_1) got zero weights: same as PEFT's result
        graph.check(f"hotswapped ({fmt})", torch_new)


def test_hotswap_under_jit_construct():
    # `ms.jit` graphs keep the parameter storage they were compiled with (a `set_data` would go unseen there, unlike
    # in GRAPH_MODE): hot-swapping writes the LoRA weights in place, so the compiled graph computes with the new ones
    x = make_input()
    kwargs = dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS)
    torch_model, ms_model = make_twins()
    _load(ms_model, torch_model, "default_0", kwargs)
    ms_model.construct = ms.jit(ms_model.construct)
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "jit, first adapter")
    torch_new, state = _adapter_state(dict(kwargs, target_modules=["to_q", "to_k", "to_v"]), seed=1)
    mp.hotswap_adapter_from_state_dict(ms_model, state, "default_0", mp.LoraConfig(**kwargs))
    assert_close(run_ms(ms_model, x), run_torch(torch_new, x), TOL, "jit, hot-swapped")


def test_hotswap_ranks_padding_and_errors(graph_mode):
    x = make_input()
    kwargs = dict(r=4, lora_alpha=4, target_modules=ALL_TARGETS)
    torch_model, ms_model = make_twins()
    _load(ms_model, torch_model, "default_0", kwargs)
    before = param_snapshot(ms_model)
    torch_big, big_state = _adapter_state(dict(kwargs, r=8, lora_alpha=8), seed=3)
    with pytest.raises(
        mp.HotswapError, match=r"larger rank than adapter 'default_0' as loaded \(rank 8 against the loaded 4\)"
    ):
        mp.hotswap_adapter_from_state_dict(ms_model, big_state, "default_0", mp.LoraConfig(**dict(kwargs, r=8)))
    assert_same_params(ms_model, before)
    with pytest.raises(RuntimeError, match="unexpected keys found: blocks.0.nope.lora_A.weight"):
        mp.hotswap_adapter_from_state_dict(
            ms_model,
            {"blocks.0.nope.lora_A.weight": np.zeros((4, 12), np.float32)},
            "default_0",
            mp.LoraConfig(**kwargs),
        )
    assert_same_params(ms_model, before)
    with pytest.raises(ValueError, match="Configs are incompatible: for alpha_pattern"):
        mp.check_hotswap_configs_compatible(
            ms_model.peft_config["default_0"], mp.LoraConfig(**kwargs, alpha_pattern={"to_q": 2})
        )

    # padded to rank 8 before compiling: rank-8 and rank-2 adapters swap in place
    mp.prepare_model_for_compiled_hotswap(ms_model, target_rank=8, config=ms_model.peft_config)
    assert ms_model.blocks[0].to_q.lora_A["default_0"].weight.shape == (8, 12)
    graph = _Compiled(ms_model, x)
    graph.check("padded first adapter", torch_model)
    with pytest.raises(ValueError, match=r"\*before\* compiling"):
        mp.prepare_model_for_compiled_hotswap(ms_model, target_rank=16)
    mp.hotswap_adapter_from_state_dict(
        ms_model, big_state, "default_0", mp.LoraConfig(**dict(kwargs, r=8, lora_alpha=8))
    )
    graph.check("rank 8 swapped in", torch_big)
    torch_small, small_state = _adapter_state(dict(kwargs, r=2, lora_alpha=6, use_rslora=False), seed=4)
    mp.hotswap_adapter_from_state_dict(
        ms_model, small_state, "default_0", mp.LoraConfig(**dict(kwargs, r=2, lora_alpha=6))
    )
    graph.check("rank 2 swapped in", torch_small)
    mp.merge_adapter(ms_model)
    with pytest.raises(ValueError, match="currently merged"):
        mp.hotswap_adapter_from_state_dict(ms_model, small_state, "default_0", mp.LoraConfig(**kwargs))
    config_json = json.loads(json.dumps(ms_model.peft_config["default_0"].to_dict()))
    assert config_json["r"] == 8
