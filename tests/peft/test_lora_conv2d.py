"""LoRA on convolutions (PEFT's `lora.Conv2d`): parity with PEFT 0.21 (torch) on twin models of 2D convolutions, both
this port's `cpu_layers.Conv2d` (the VAE's) and MindSpore's own `nn.Conv2d`, through PEFT-format state dicts."""


import numpy as np
import peft
import pytest
import torch

import mindspore as ms
from mindspore import mint, nn

import mindone.peft as mp
from mindone.diffusers.models import cpu_layers
from mindone.diffusers.models.cpu_layers import Conv2d
from tests.peft.lora_twins import (
    assert_same_params,
    inject_both,
    make_twins,
    ms_sd_to_torch,
    param_snapshot,
    peft_config_as_metadata,
    run_ms,
    run_ms_pynative,
    run_torch,
    torch_lora_layers,
    torch_sd_to_numpy,
    torch_set_adapters,
)
from tests.testing_utils import assert_close

TOL = 1e-5
C = 6


class TorchConvBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(C, C, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(C, C, 3, padding=1, bias=False)
        self.conv_shortcut = torch.nn.Conv2d(C, C, 1)

    def forward(self, x):
        h = self.conv2(torch.nn.functional.silu(self.conv1(x)))
        return self.conv_shortcut(x) + h


class TorchConvTwin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(3, C, 3, padding=1)
        self.blocks = torch.nn.ModuleList([TorchConvBlock(), TorchConvBlock()])
        self.down = torch.nn.Conv2d(C, C, 3, stride=2, padding=0)
        self.native = torch.nn.Conv2d(C, C, (3, 5), padding=(1, 2))  # MindSpore's nn.Conv2d in the twin
        self.proj = torch.nn.Linear(C, 4)

    def forward(self, x):
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        x = self.native(self.down(x))
        return self.proj(x.permute(0, 2, 3, 1))


class ConvBlock(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv1 = Conv2d(C, C, 3, padding=1)
        self.conv2 = Conv2d(C, C, 3, padding=1, bias=False)
        self.conv_shortcut = Conv2d(C, C, 1)

    def construct(self, x):
        h = self.conv2(mint.nn.functional.silu(self.conv1(x)))
        return self.conv_shortcut(x) + h


class ConvTwin(nn.Cell):
    def __init__(self):
        super().__init__()
        self.conv_in = Conv2d(3, C, 3, padding=1)
        self.blocks = nn.CellList([ConvBlock(), ConvBlock()])
        self.down = Conv2d(C, C, 3, stride=2, padding=0)
        self.native = nn.Conv2d(C, C, (3, 5), pad_mode="same", has_bias=True)
        self.proj = mint.nn.Linear(C, 4)

    def construct(self, x):
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        x = self.native(self.down(x))
        return self.proj(x.permute(0, 2, 3, 1))


def make_conv_twins(seed: int = 0):
    return make_twins(seed, TorchConvTwin, ConvTwin)


def make_image(seed: int = 0, shape=(2, 3, 11, 9)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _inject_both(kwargs, adapter_name="default_0", seed=0):
    return inject_both(kwargs, adapter_name, seed, make=make_conv_twins)


CONV_TARGETS = ["conv_in", "conv1", "conv2", "conv_shortcut", "down", "native"]
CASES = {
    "plain": dict(r=3, lora_alpha=6, target_modules=CONV_TARGETS),
    "with_linear": dict(r=2, lora_alpha=3, target_modules=CONV_TARGETS + ["proj"]),
    "rslora_patterns": dict(
        r=4,
        lora_alpha=8,
        use_rslora=True,
        target_modules=CONV_TARGETS,
        rank_pattern={"^blocks.0.conv1": 2, "conv_shortcut": 5},
        alpha_pattern={"blocks.1.conv2": 3, "^down": 1},
    ),
    "lora_bias": dict(
        r=2, lora_alpha=5, lora_bias=True, target_modules=["conv_in", "conv_shortcut", "down", "native"]
    ),
    "dropout": dict(r=2, lora_alpha=2, lora_dropout=0.25, target_modules=["conv1", "native"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layers_keys_and_outputs_match_peft_both_ways(case):
    """The same adapted modules, parameter names and PEFT state-dict keys / shapes as PEFT; a PEFT adapter gives
    PEFT's outputs here, and one made here gives the same outputs in PEFT."""
    x = make_image()
    torch_model, ms_model = _inject_both(CASES[case])
    assert {n for n, _ in mp.iter_tuner_layers(ms_model)} == {n for n, _ in torch_lora_layers(torch_model)}
    names = {n for n, _ in ms_model.parameters_and_names() if ".lora_runtime_scaling." not in n}
    assert names == set(torch_model.state_dict())
    ours = mp.get_peft_model_state_dict(ms_model, adapter_name="default_0")
    theirs = peft.get_peft_model_state_dict(torch_model, adapter_name="default_0")
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, f"{case}: peft -> ours")

    torch_model2, ms_model2 = make_conv_twins(seed=1)
    config = mp.LoraConfig(init_lora_weights=False, **CASES[case])
    mp.inject_adapter_in_model(config, ms_model2, adapter_name="mine")
    peft.inject_adapter_in_model(
        peft.LoraConfig(**peft_config_as_metadata(config)), torch_model2, adapter_name="theirs"
    )
    state = mp.get_peft_model_state_dict(ms_model2, adapter_name="mine")
    incompatible = peft.set_peft_model_state_dict(torch_model2, ms_sd_to_torch(state), adapter_name="theirs")
    assert not incompatible.unexpected_keys
    assert_close(run_torch(torch_model2, x), run_ms(ms_model2, x), TOL, f"{case}: ours -> peft")


def test_adapter_layers_are_of_the_base_layers_kind():
    """As PEFT makes them of the base layer's class: this port's Conv2d (fast CPU path) for its layers, MindSpore's
    `nn.Conv2d` with the base layer's padding mode for MindSpore's."""
    _, ms_model = _inject_both(CASES["plain"])
    layer = ms_model.blocks[0].conv1
    assert isinstance(layer, mp.Conv2d) and isinstance(layer.base_layer, Conv2d)
    assert type(layer.lora_A["default_0"]) is Conv2d and type(layer.lora_B["default_0"]) is Conv2d
    assert layer.lora_A["default_0"].conv_kernel == 3 and layer.lora_B["default_0"].conv_kernel == 1
    down = ms_model.down.lora_A["default_0"]
    assert (down.conv_stride, down.conv_padding) == (2, 0)
    native = ms_model.native
    assert type(native.lora_A["default_0"]) is nn.Conv2d and native.lora_A["default_0"].pad_mode == "same"
    assert tuple(native.lora_A["default_0"].kernel_size) == (3, 5)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_large_inputs_and_graph_mode(mode, monkeypatch):
    """Inputs large enough for the compiled im2col path of this port's Conv2d (lowered threshold), and the model
    compiled whole in GRAPH_MODE; a scale change after compiling reaches the graph."""
    monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 64)
    x = make_image(seed=2, shape=(1, 3, 13, 10))
    torch_model, ms_model = _inject_both(CASES["rslora_patterns"])
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, mode)
        torch_set_adapters(torch_model, ["default_0"], [0.4])
        for _, module in mp.iter_tuner_layers(ms_model):
            module.set_scale("default_0", 0.4)
        assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, f"{mode}, scale 0.4")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert_close(run_ms_pynative(ms_model, x), run_torch(torch_model, x), TOL, "pynative after")


def test_gradients_match_peft():
    x = make_image(seed=3)
    torch_model, ms_model = _inject_both(CASES["lora_bias"])
    tx = torch.from_numpy(x).requires_grad_()
    weights = np.random.default_rng(4).standard_normal(run_torch(torch_model, x).shape).astype(np.float32)
    (torch_model(tx) * torch.from_numpy(weights)).sum().backward()
    expected = {name: p.grad.numpy() for name, p in torch_model.named_parameters() if "lora_" in name}
    params = [p for p in ms_model.trainable_params() if "lora_" in p.name]
    assert sorted(p.name for p in params) == sorted(expected)
    weights_ms = ms.Tensor(weights)
    grad_x, grads = ms.grad(lambda x: (ms_model(x) * weights_ms).sum(), grad_position=0, weights=params)(ms.Tensor(x))
    assert_close(grad_x, tx.grad.numpy(), TOL, "input gradient")
    for param, grad in zip(params, grads):
        assert np.abs(expected[param.name]).max() > 0, param.name
        assert_close(grad, expected[param.name], TOL, f"gradient of {param.name}")


def test_merge_unmerge_and_merge_and_unload():
    """Merged weights as PEFT's (3x3, strided, 1x1 and non-square kernels, LoRA biases); unmerging restores the base
    weights bit for bit."""
    x = make_image()
    torch_model, ms_model = _inject_both(CASES["lora_bias"])
    before = param_snapshot(ms_model)
    unmerged = run_ms(ms_model, x)
    mp.merge_adapter(ms_model, safe_merge=True)
    assert_close(run_ms(ms_model, x), unmerged, TOL, "merged vs unmerged")
    for _, module in torch_lora_layers(torch_model):
        module.merge()
    for name, module in mp.iter_tuner_layers(ms_model):
        torch_base = torch_model.get_submodule(name).get_base_layer()
        assert_close(module.base_layer.weight.asnumpy(), torch_base.weight.detach().numpy(), 1e-6, name)
        assert_close(module.base_layer.bias.asnumpy(), torch_base.bias.detach().numpy(), 1e-6, name)
    mp.unmerge_adapter(ms_model)
    assert_same_params(ms_model, before)

    torch_model, ms_model = _inject_both(CASES["rslora_patterns"])
    expected = run_torch(torch_model, x)
    mp.merge_and_unload(ms_model, safe_merge=True)
    assert not list(mp.iter_tuner_layers(ms_model)) and type(ms_model.blocks[1].conv2) is Conv2d
    assert_close(run_ms(ms_model, x), expected, TOL, "merge_and_unload")


def test_init_true_is_a_no_op_and_gaussian():
    x = make_image()
    _, base = make_conv_twins()
    base_out = run_ms(base, x)
    for init in (True, "gaussian"):
        _, ms_model = make_conv_twins()
        mp.inject_adapter_in_model(mp.LoraConfig(r=4, target_modules=CONV_TARGETS, init_lora_weights=init), ms_model)
        a = ms_model.blocks[0].conv1.lora_A["default"].weight.asnumpy()
        assert not ms_model.blocks[0].conv1.lora_B["default"].weight.asnumpy().any()
        if init is True:  # kaiming uniform (a=sqrt(5)): bound 1 / sqrt(fan_in), fan_in = channels * kernel area
            assert a.shape == (4, C, 3, 3) and np.abs(a).max() <= 1 / np.sqrt(C * 9) + 1e-6 and a.std() > 0.03
        else:
            assert 0.5 / 4 < a.std() < 2.0 / 4
        np.testing.assert_array_equal(run_ms(ms_model, x), base_out)


def test_hotswap_into_a_padded_conv_adapter():
    """A lower-rank conv adapter hot-swapped into one padded to a larger rank gives PEFT's outputs of that adapter."""
    x = make_image()
    torch_model, ms_model = _inject_both(dict(r=2, lora_alpha=4, target_modules=CONV_TARGETS))
    mp.prepare_model_for_compiled_hotswap(ms_model, target_rank=6)
    assert ms_model.down.lora_A["default_0"].weight.shape == (6, C, 3, 3)
    assert ms_model.down.lora_B["default_0"].weight.shape == (C, 6, 1, 1)
    assert_close(run_ms(ms_model, x), run_torch(torch_model, x), TOL, "padded")

    torch_other, _ = make_conv_twins()
    peft.inject_adapter_in_model(
        peft.LoraConfig(r=3, lora_alpha=4, target_modules=CONV_TARGETS, init_lora_weights=False),
        torch_other,
        adapter_name="default_0",
    )
    state = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_other, adapter_name="default_0"))
    config = mp.LoraConfig(r=3, lora_alpha=4, target_modules=CONV_TARGETS)
    mp.hotswap_adapter_from_state_dict(ms_model, state, adapter_name="default_0", config=config)
    assert_close(run_ms(ms_model, x), run_torch(torch_other, x), TOL, "hot-swapped")


@pytest.mark.parametrize(
    "layer, match",
    [
        (nn.Conv2d(C, C, 3, pad_mode="pad", padding=1, group=2), "groups=2"),
        (nn.Conv2d(C, C, 3, pad_mode="pad", padding=2, dilation=2), r"dilation=\(2, 2\)"),
        (nn.Conv1d(C, C, 3), "only the following modules"),
    ],
    ids=["groups", "dilation", "conv1d"],
)
def test_unsupported_convolutions_are_refused_before_any_change(layer, match):
    _, ms_model = make_conv_twins()
    ms_model.native = layer
    before = param_snapshot(ms_model)
    with pytest.raises(ValueError, match=match):
        mp.inject_adapter_in_model(mp.LoraConfig(r=2, target_modules=["conv1", "native"]), ms_model)
    assert not list(mp.iter_tuner_layers(ms_model)) and not hasattr(ms_model, "peft_config")
    assert_same_params(ms_model, before)
