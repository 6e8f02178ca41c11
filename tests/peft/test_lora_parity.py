"""Parity of mindone.peft's LoRA with PEFT 0.21 (torch) on twin models, through PEFT-format state dicts."""

import json

import numpy as np
import peft
import pytest
import torch
from peft.tuners.tuners_utils import delete_adapter as torch_delete_adapter

import mindspore as ms

import mindone.peft as mp
from mindone.diffusers.models.model_loading_utils import set_parameter_data
from tests.peft.lora_twins import (
    ALL_TARGETS,
    assert_same_params,
    inject_both,
    make_input,
    make_twins,
    ms_sd_to_torch,
    ms_set_adapters,
    param_snapshot,
    run_ms,
    run_torch,
    torch_lora_layers,
    torch_sd_to_numpy,
    torch_set_adapters,
)
from tests.testing_utils import assert_close

TOL = 1e-5


CASES = {
    "plain": dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS),
    "rslora_patterns": dict(
        r=4,
        lora_alpha=8,
        use_rslora=True,
        target_modules=ALL_TARGETS + ["proj_in.0"],
        rank_pattern={"^blocks.0.to_q": 2, "to_v": 6},
        alpha_pattern={"blocks.1.ff.linear_1": 3, "to_k": 16, "^proj_in.0": 1},
    ),
    "lora_bias": dict(r=3, lora_alpha=5, lora_bias=True, target_modules=["to_q", "to_out.0", "proj_out"]),
    "dropout": dict(r=2, lora_alpha=2, lora_dropout=0.25, target_modules=["to_k", "ff.linear_1"]),
    "all_linear": dict(r=2, lora_alpha=3, target_modules="all-linear"),
}
# configs whose matching only is compared (no forward pass needed)
MATCH_CASES = {
    "regex_exclude": dict(r=4, target_modules=r".*\.to_(q|k|v)", exclude_modules=["blocks.1.to_k"]),
    "exclude_regex": dict(r=4, target_modules=ALL_TARGETS, exclude_modules=r"blocks\.0\..*"),
    "layers": dict(r=2, target_modules=["to_q", "to_v"], layers_to_transform=[1], layers_pattern="blocks"),
    "bias_all": dict(r=2, target_modules=["to_q", "to_v"], bias="all"),
    "bias_lora_only": dict(r=2, target_modules=["to_q", "to_v"], bias="lora_only"),
    **CASES,
}


@pytest.mark.parametrize("case", sorted(MATCH_CASES))
def test_injected_layers_and_state_dict_keys_match_peft(case):
    """Same adapted modules, parameter names and PEFT-format state-dict keys and shapes as PEFT."""
    torch_model, ms_model = inject_both(MATCH_CASES[case])
    assert {n for n, _ in mp.iter_tuner_layers(ms_model)} == {n for n, _ in torch_lora_layers(torch_model)}
    # PEFT's parameter names, plus the run-time scale of each adapter (`<layer>.lora_runtime_scaling.<adapter>`)
    names = {n for n, _ in ms_model.parameters_and_names()}
    assert {n for n in names if ".lora_runtime_scaling." not in n} == set(torch_model.state_dict())
    assert {n for n in names if ".lora_runtime_scaling." in n} == {
        f"{layer}.lora_runtime_scaling.default_0" for layer, _ in torch_lora_layers(torch_model)
    }
    torch_state = peft.get_peft_model_state_dict(torch_model, adapter_name="default_0")
    ours = mp.get_peft_model_state_dict(ms_model, adapter_name="default_0")
    assert sorted(ours) == sorted(torch_state)
    assert all(tuple(ours[k].shape) == tuple(torch_state[k].shape) for k in ours)


@pytest.mark.parametrize("case", sorted(CASES))
def test_peft_to_ours_and_back(case):
    """An adapter created with PEFT gives the same outputs in our engine, and a random adapter created by us loads
    into PEFT with the same outputs."""
    x = make_input()
    torch_model, ms_model = inject_both(CASES[case])
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, f"{case}: peft -> ours")

    torch_model2, ms_model2 = make_twins(seed=1)
    config = mp.LoraConfig(init_lora_weights=False, **CASES[case])
    mp.inject_adapter_in_model(config, ms_model2, adapter_name="mine")
    torch_config = peft.LoraConfig(**json.loads(json.dumps(config.to_dict())))
    peft.inject_adapter_in_model(torch_config, torch_model2, adapter_name="theirs")
    state = mp.get_peft_model_state_dict(ms_model2, adapter_name="mine")
    incompatible = peft.set_peft_model_state_dict(torch_model2, ms_sd_to_torch(state), adapter_name="theirs")
    assert not incompatible.unexpected_keys
    assert_close(run_torch(torch_model2, x), run_ms(ms_model2, x), TOL, f"{case}: ours -> peft")


@pytest.mark.parametrize("case", ["plain", "rslora_patterns", "lora_bias"])
def test_lora_gradients_match_peft(case):
    """Training a LoRA: the gradients of a loss with respect to every adapter parameter (and the input) equal PEFT's,
    with the adapter's scaling, rank / alpha patterns and LoRA biases."""
    x = make_input(seed=3)
    weights = np.random.default_rng(4).standard_normal((2, 5, 6)).astype(np.float32)
    torch_model, ms_model = inject_both(CASES[case])
    torch_model.eval()  # dropout off, as in our inference-mode model
    tx = torch.from_numpy(x).requires_grad_()
    (torch_model(tx) * torch.from_numpy(weights)).sum().backward()
    expected = {name: p.grad.numpy() for name, p in torch_model.named_parameters() if "lora_" in name}

    weights_ms = ms.Tensor(weights)
    params = [p for p in ms_model.trainable_params() if "lora_" in p.name]
    assert sorted(p.name for p in params) == sorted(expected)
    grad_x, grads = ms.grad(lambda x: (ms_model(x) * weights_ms).sum(), grad_position=0, weights=params)(ms.Tensor(x))
    assert_close(grad_x, tx.grad.numpy(), TOL, f"{case}: input gradient")
    for param, grad in zip(params, grads):
        assert np.abs(expected[param.name]).max() > 0, param.name
        assert_close(grad, expected[param.name], TOL, f"{case}: gradient of {param.name}")


def test_inject_from_state_dict_keys():
    """diffusers injects by the modules named in the state dict (config `target_modules` may differ: warning)."""
    x = make_input()
    torch_model, ms_model = make_twins()
    kwargs = dict(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, adapter_name="a")
    state = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="a"))
    config = mp.LoraConfig(**{**kwargs, "target_modules": ["to_q"]})
    with pytest.warns(RuntimeWarning, match="additional target modules"):
        mp.inject_adapter_in_model(config, ms_model, adapter_name="a", state_dict=state)
    mp.set_peft_model_state_dict(ms_model, state, adapter_name="a")
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL)


def test_two_adapters_with_weights_and_active_sets():
    x = make_input()
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS), adapter_name="a")
    kwargs_b = dict(r=2, lora_alpha=3, target_modules=["to_q", "to_v", "proj_out"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs_b), torch_model, adapter_name="b")
    mp.inject_adapter_in_model(mp.LoraConfig(**kwargs_b), ms_model, adapter_name="b")
    state_b = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="b"))
    mp.set_peft_model_state_dict(ms_model, state_b, adapter_name="b")
    # as in PEFT, the adapter injected last is the only active one
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "only b active")
    for names, weights in ((["a", "b"], [0.7, -0.3]), (["b", "a"], [1.5, 0.25]), (["a"], [2.0]), (["b"], [0.5])):
        torch_set_adapters(torch_model, names, weights)
        ms_set_adapters(ms_model, names, weights)
        assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, f"{names} {weights}")
    # the PEFT-format state dicts stay per adapter
    assert sorted(mp.get_peft_model_state_dict(ms_model, adapter_name="b")) == sorted(state_b)
    mp.set_adapter(ms_model, ["a", "b"])
    for _, module in torch_lora_layers(torch_model):
        module.set_adapter(["a", "b"])
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "set_adapter keeps weights")


def test_runtime_scale_and_diffusers_helpers():
    x = make_input()
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    lora_out = run_ms(ms_model, x)
    for scale in (0.5, 0.0, -1.25):
        with mp.lora_scale(ms_model, scale):
            scaled = run_ms(ms_model, x)
        for _, module in torch_lora_layers(torch_model):
            module.scale_layer(scale)
        torch_scaled = run_torch(torch_model, x)
        for _, module in torch_lora_layers(torch_model):
            module.unscale_layer(scale) if scale != 0 else module.set_scale("default_0", 1.0)
        assert_close(scaled, torch_scaled, TOL, f"scale {scale}")
        np.testing.assert_array_equal(run_ms(ms_model, x), lora_out)
    # a scale of 0 gives the base model
    torch_base, ms_base = make_twins()
    with mp.lora_scale(ms_model, 0.0):
        np.testing.assert_allclose(run_ms(ms_model, x), run_ms(ms_base, x), rtol=0, atol=0)


def test_disable_enable_gives_base_exactly():
    x = make_input()
    _, ms_base = make_twins()
    base_out = run_ms(ms_base, x)
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    lora_out = run_ms(ms_model, x)
    assert np.abs(lora_out - base_out).max() > 1e-3
    mp.disable_adapter_layers(ms_model)
    np.testing.assert_array_equal(run_ms(ms_model, x), base_out)
    mp.enable_adapter_layers(ms_model)
    np.testing.assert_array_equal(run_ms(ms_model, x), lora_out)
    mp.set_adapter(ms_model, "not_loaded")  # adapters a layer does not hold are skipped, as in PEFT
    np.testing.assert_array_equal(run_ms(ms_model, x), base_out)


def test_merge_unmerge():
    x = make_input()
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    base_weights = param_snapshot(ms_model)
    unmerged = run_ms(ms_model, x)
    mp.merge_adapter(ms_model, safe_merge=True)
    merged = run_ms(ms_model, x)
    assert_close(merged, unmerged, TOL, "merged vs unmerged")
    for _, module in torch_lora_layers(torch_model):
        module.merge()
    assert_close(merged, run_torch(torch_model, x), TOL, "merged vs PEFT merged")
    layer = ms_model.blocks[0].to_q
    assert layer.merged and layer.merged_adapters == ["default_0"]
    with pytest.warns(UserWarning, match="All adapters are already merged"):
        layer.merge()
    mp.unmerge_adapter(ms_model)
    assert_same_params(ms_model, base_weights)  # bit for bit
    np.testing.assert_array_equal(run_ms(ms_model, x), unmerged)


def test_fuse_with_scale_and_subset_like_diffusers():
    """diffusers' fuse_lora(lora_scale, adapter_names): scale_layer then merge; unfuse restores exactly."""
    x = make_input()
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS), adapter_name="a")
    kwargs_b = dict(r=2, lora_alpha=2, target_modules=["to_k", "to_v"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs_b), torch_model, adapter_name="b")
    mp.inject_adapter_in_model(mp.LoraConfig(**kwargs_b), ms_model, adapter_name="b")
    mp.set_peft_model_state_dict(
        ms_model, torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="b")), adapter_name="b"
    )
    torch_set_adapters(torch_model, ["a", "b"], [1.0, 1.0])
    ms_set_adapters(ms_model, ["a", "b"], [1.0, 1.0])
    before = param_snapshot(ms_model)
    out_before = run_ms(ms_model, x)
    for _, module in torch_lora_layers(torch_model):
        module.scale_layer(0.6)
        module.merge(adapter_names=["a"])
    for _, module in mp.iter_tuner_layers(ms_model):
        module.scale_layer(0.6)
    mp.merge_adapter(ms_model, adapter_names=["a"])
    # PEFT: a merged layer adds no unmerged adapter (b is dropped where a is merged)
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "fused a only")
    mp.unmerge_adapter(ms_model)
    for _, module in mp.iter_tuner_layers(ms_model):
        module.unscale_layer(0.6)
    assert_same_params(ms_model, before)
    assert_close(run_ms(ms_model, x), out_before, 1e-7, "unfused")


def test_delete_adapter():
    x = make_input()
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS), adapter_name="a")
    kwargs_b = dict(r=2, lora_alpha=3, target_modules=["to_q", "to_v"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs_b), torch_model, adapter_name="b")
    mp.inject_adapter_in_model(mp.LoraConfig(**kwargs_b), ms_model, adapter_name="b")
    mp.set_peft_model_state_dict(
        ms_model, torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="b")), adapter_name="b"
    )
    torch_set_adapters(torch_model, ["a", "b"], [0.5, 2.0])
    ms_set_adapters(ms_model, ["a", "b"], [0.5, 2.0])
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL)
    torch_delete_adapter(torch_model, "b", prefix="lora_")
    remaining = mp.delete_adapter(ms_model, "b")
    assert remaining == ["a"]
    ms_model.peft_config.pop("b")
    assert not any(".b." in name for name, _ in ms_model.parameters_and_names())
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "after delete")
    mp.merge_adapter(ms_model)
    with pytest.raises(ValueError, match="while they are merged"):
        mp.delete_adapter(ms_model, "a")
    mp.unmerge_adapter(ms_model)
    # deleting the last active adapter leaves none active (PEFT picks another remaining one, with a warning)
    mp.delete_adapter(ms_model, "a")
    assert all(module.active_adapters == [] for _, module in mp.iter_tuner_layers(ms_model))


def test_unload_and_merge_and_unload():
    x = make_input()
    _, ms_base = make_twins()
    base_out = run_ms(ms_base, x)
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS + ["proj_out"]))
    originals = {name: param for name, param in make_twins()[1].parameters_and_names()}
    base_linear = ms_model.blocks[0].to_q.base_layer
    mp.unload(ms_model)
    names = [name for name, _ in ms_model.parameters_and_names()]
    assert names == list(originals)
    assert all(p.name == n for n, p in ms_model.parameters_and_names())
    assert ms_model.blocks[0].to_q is base_linear
    assert not hasattr(ms_model, "peft_config") and not list(mp.iter_tuner_layers(ms_model))
    np.testing.assert_array_equal(run_ms(ms_model, x), base_out)

    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS + ["proj_out"]))
    for _, module in torch_lora_layers(torch_model):
        module.merge()
    mp.merge_and_unload(ms_model, safe_merge=True)
    assert [name for name, _ in ms_model.parameters_and_names()] == names
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "merge_and_unload")

    # disabled adapters: PEFT's merge ignores the flag, so merge_and_unload bakes the LoRA in all the same
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS + ["proj_out"]))
    lora_out = run_ms(ms_model, x)
    mp.disable_adapter_layers(ms_model)
    for name, module in torch_lora_layers(torch_model):
        module.enable_adapters(False)
        module.merge()
        parent, _, child = name.rpartition(".")
        setattr(torch_model.get_submodule(parent), child, module.get_base_layer())  # PEFT's unload, by hand
    mp.merge_and_unload(ms_model)
    theirs = run_torch(torch_model, x)
    assert_close(run_ms(ms_model, x), lora_out, TOL, "merge_and_unload of disabled adapters")
    assert_close(run_ms(ms_model, x), theirs, TOL, "merge_and_unload of disabled adapters vs PEFT")


def test_safe_merge_nan_raises_and_changes_nothing():
    torch_model, ms_model = inject_both(dict(r=4, lora_alpha=8, target_modules=ALL_TARGETS))
    bad = ms_model.blocks[1].ff.linear_1.lora_B["default_0"].weight
    values = bad.asnumpy().copy()
    values[3, 1] = np.nan
    bad.set_data(ms.Tensor(values))
    before = param_snapshot(ms_model)
    with pytest.raises(ValueError, match="NaNs detected in the merged weights. The adapter default_0"):
        mp.merge_adapter(ms_model, safe_merge=True)
    assert_same_params(ms_model, before)
    assert not any(module.merged for _, module in mp.iter_tuner_layers(ms_model))
    with pytest.raises(ValueError, match="NaNs detected"):
        ms_model.blocks[1].ff.linear_1.merge(safe_merge=True)
    assert_same_params(ms_model, before)
    with pytest.raises(ValueError, match="NaNs detected"):
        mp.merge_and_unload(ms_model, safe_merge=True)
    assert_same_params(ms_model, before)
    # an unsafe merge writes NaNs; unmerge still restores the base weights exactly
    mp.merge_adapter(ms_model)
    assert np.isnan(ms_model.blocks[1].ff.linear_1.base_layer.weight.asnumpy()).any()
    mp.unmerge_adapter(ms_model)
    assert_same_params(ms_model, before)


def test_gaussian_true_false_init():
    x = make_input()
    _, ms_base = make_twins()
    base_out = run_ms(ms_base, x)
    for init in (True, "gaussian", False):
        _, ms_model = make_twins()
        mp.inject_adapter_in_model(mp.LoraConfig(r=8, target_modules=ALL_TARGETS, init_lora_weights=init), ms_model)
        layer = ms_model.blocks[0].ff.linear_1
        a, b = layer.lora_A["default"].weight.asnumpy(), layer.lora_B["default"].weight.asnumpy()
        if init is True:  # kaiming uniform A (a=sqrt(5): bound 1/sqrt(fan_in)), zero B: a no-op adapter
            assert np.abs(a).max() <= 1 / np.sqrt(a.shape[1]) + 1e-6 and a.std() > 0.05 and not b.any()
            np.testing.assert_array_equal(run_ms(ms_model, x), base_out)
        elif init == "gaussian":  # normal A with std 1/r, zero B
            assert 0.5 / 8 < a.std() < 2.0 / 8 and not b.any()
        else:  # both random, so the adapter changes the output
            assert b.std() > 0.05
            assert np.abs(run_ms(ms_model, x) - base_out).max() > 1e-4


def test_adapter_dtype_follows_base_layer_and_fp16_unmerge_is_exact():
    x = make_input()
    _, ms_model = make_twins()
    layer = ms_model.blocks[0].to_q
    for param in (layer.weight, layer.bias):
        set_parameter_data(param, param.value().astype(ms.float16))
    mp.inject_adapter_in_model(mp.LoraConfig(r=2, target_modules=["blocks.0.to_q"], init_lora_weights=False), ms_model)
    lora_layer = ms_model.blocks[0].to_q
    assert lora_layer.lora_A["default"].weight.dtype == ms.float16
    assert lora_layer.lora_B["default"].weight.dtype == ms.float16
    out = lora_layer(ms.Tensor(x[..., :1].repeat(12, axis=-1)).astype(ms.float16))
    assert out.dtype == ms.float16 and np.isfinite(out.asnumpy()).all()
    before = param_snapshot(ms_model)
    mp.merge_adapter(ms_model)
    assert lora_layer.base_layer.weight.dtype == ms.float16
    mp.unmerge_adapter(ms_model)
    assert_same_params(ms_model, before)
