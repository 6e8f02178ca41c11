"""Twin models for the LoRA engine tests: a small torch model (attention-like projections and a feed-forward, named
like diffusers' blocks) and its MindSpore copy with the same weights, plus helpers to move PEFT state dicts across."""

import json

import numpy as np
import peft
import torch
from peft.tuners.tuners_utils import BaseTunerLayer as TorchBaseTunerLayer

import mindspore as ms
from mindspore import mint, nn

import mindone.peft as mp
from mindone.peft import iter_tuner_layers
from tests.testing_utils import load_torch_weights

D_IN, DIM, HIDDEN, D_OUT = 10, 12, 20, 6
ALL_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.linear_1"]


class TorchFeedForward(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear_1 = torch.nn.Linear(DIM, HIDDEN)
        self.linear_2 = torch.nn.Linear(HIDDEN, DIM, bias=False)


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.to_q = torch.nn.Linear(DIM, DIM)
        self.to_k = torch.nn.Linear(DIM, DIM)
        self.to_v = torch.nn.Linear(DIM, DIM, bias=False)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(DIM, DIM), torch.nn.Dropout(0.0)])
        self.act = torch.nn.SiLU()
        self.ff = TorchFeedForward()

    def forward(self, x):
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        attn = torch.softmax(q @ k.transpose(-1, -2) / DIM**0.5, dim=-1) @ v
        x = x + self.to_out[0](attn)
        return x + self.ff.linear_2(self.act(self.ff.linear_1(x)))


class TorchTwin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj_in = torch.nn.Sequential(torch.nn.Linear(D_IN, DIM), torch.nn.SiLU())
        self.blocks = torch.nn.ModuleList([TorchBlock(), TorchBlock()])
        self.proj_out = torch.nn.Linear(DIM, D_OUT)

    def forward(self, x):
        x = self.proj_in(x)
        for block in self.blocks:
            x = block(x)
        return self.proj_out(x)


class FeedForward(nn.Cell):
    def __init__(self):
        super().__init__()
        self.linear_1 = mint.nn.Linear(DIM, HIDDEN)
        self.linear_2 = mint.nn.Linear(HIDDEN, DIM, bias=False)


class Block(nn.Cell):
    def __init__(self):
        super().__init__()
        self.to_q = mint.nn.Linear(DIM, DIM)
        self.to_k = mint.nn.Linear(DIM, DIM)
        self.to_v = mint.nn.Linear(DIM, DIM, bias=False)
        self.to_out = nn.CellList([mint.nn.Linear(DIM, DIM), mint.nn.Dropout(p=0.0)])
        self.act = mint.nn.SiLU()
        self.ff = FeedForward()

    def construct(self, x):
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        attn = mint.matmul(mint.softmax(mint.matmul(q, k.swapaxes(-1, -2)) / DIM**0.5, dim=-1), v)
        x = x + self.to_out[0](attn)
        return x + self.ff.linear_2(self.act(self.ff.linear_1(x)))


class Twin(nn.Cell):
    def __init__(self):
        super().__init__()
        self.proj_in = nn.SequentialCell([mint.nn.Linear(D_IN, DIM), mint.nn.SiLU()])
        self.blocks = nn.CellList([Block(), Block()])
        self.proj_out = mint.nn.Linear(DIM, D_OUT)

    def construct(self, x):
        x = self.proj_in(x)
        for block in self.blocks:
            x = block(x)
        return self.proj_out(x)


def make_twins(seed: int = 0, torch_cls=None, ms_cls=None):
    """A torch model with random weights (default `TorchTwin`) and its MindSpore twin (`Twin`) holding them."""
    torch.manual_seed(seed)
    torch_model = (torch_cls or TorchTwin)().eval()
    ms_model = (ms_cls or Twin)()
    load_torch_weights(ms_model, torch_model)
    return torch_model, ms_model


def make_input(seed: int = 0, shape=(2, 5, D_IN)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def run_torch(model, x: np.ndarray) -> np.ndarray:
    model.eval()  # PEFT creates its dropout modules in training mode
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def run_ms(model, x: np.ndarray) -> np.ndarray:
    return model(ms.Tensor(x)).asnumpy()


def run_ms_pynative(model, x: np.ndarray) -> np.ndarray:
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        return run_ms(model, x)
    finally:
        ms.set_context(mode=mode)


def torch_sd_to_numpy(state_dict) -> dict:
    return {k: v.detach().float().numpy().copy() for k, v in state_dict.items()}


def ms_sd_to_torch(state_dict) -> dict:
    return {k: torch.from_numpy(v.asnumpy().copy()) for k, v in state_dict.items()}


def param_snapshot(model) -> dict:
    """name -> numpy copy of every parameter (to check that a failed call left the model unchanged)."""
    return {name: param.asnumpy().copy() for name, param in model.parameters_and_names()}


def assert_same_params(model, snapshot: dict) -> None:
    now = param_snapshot(model)
    assert list(now) == list(snapshot), "parameter names changed"
    for name, value in snapshot.items():
        np.testing.assert_array_equal(now[name], value, err_msg=name)


def torch_lora_layers(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, TorchBaseTunerLayer)]


def torch_set_adapters(model, names, weights):
    """diffusers' `set_weights_and_activate_adapters` with one float weight per adapter."""
    for _, module in torch_lora_layers(model):
        module.set_adapter(names)
        for name, weight in zip(names, weights):
            module.set_scale(name, weight)


def ms_set_adapters(model, names, weights):
    for _, module in iter_tuner_layers(model):
        module.set_adapter(names)
        for name, weight in zip(names, weights):
            module.set_scale(name, weight)


def peft_config_as_metadata(config) -> dict:
    """What diffusers stores as `lora_adapter_metadata` (sets become lists, JSON round trip)."""
    d = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.to_dict().items()}
    return json.loads(json.dumps(d))


def inject_both(kwargs, adapter_name="default_0", seed=0, make=make_twins):
    """torch model (from `make`) with a random PEFT adapter, and our twin with the same adapter loaded from PEFT's
    state dict."""
    torch_model, ms_model = make(seed)
    torch_config = peft.LoraConfig(init_lora_weights=False, **kwargs)
    peft.inject_adapter_in_model(torch_config, torch_model, adapter_name=adapter_name)
    mp.inject_adapter_in_model(
        mp.LoraConfig(**peft_config_as_metadata(torch_config)), ms_model, adapter_name=adapter_name
    )
    state = peft.get_peft_model_state_dict(torch_model, adapter_name=adapter_name)
    result = mp.set_peft_model_state_dict(ms_model, torch_sd_to_numpy(state), adapter_name=adapter_name)
    assert result.missing_keys == [] and result.unexpected_keys == []
    return torch_model, ms_model
