"""Shared pieces of the LoRA tests: diffusers' (torch) and our Lumina2 transformer with the same weights, LoRAs made
with PEFT on the torch side and saved with diffusers' `save_lora_weights`, inputs and runners."""

import os

import diffusers
import numpy as np
import peft
import torch
from peft.utils import get_peft_model_state_dict as torch_get_peft_model_state_dict

import mindspore as ms

from mindone.diffusers import Lumina2Transformer2DModel
from tests.testing_utils import load_torch_weights

# diffusers' LoRA test config for Lumina2 (tests/lora/test_lora_layers_lumina2.py)
TINY = dict(
    sample_size=4, patch_size=2, in_channels=4, hidden_size=8, num_layers=2, num_attention_heads=1, num_kv_heads=1,
    multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5, scaling_factor=1.0, axes_dim_rope=[4, 2, 2],
    cap_feat_dim=8,
)  # fmt: skip
# a width where q and k/v differ (grouped-query attention): q 24 rows, k and v 8 rows each
GQA = dict(
    sample_size=4, patch_size=2, in_channels=4, hidden_size=24, num_layers=2, num_refiner_layers=1,
    num_attention_heads=3, num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5,
    scaling_factor=1.0, axes_dim_rope=[4, 2, 2], cap_feat_dim=8,
)  # fmt: skip
ATTN_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
ALL_TARGETS = ATTN_TARGETS + ["linear_1", "linear_2", "linear_3", "norm1.linear"]
TOL = 1e-5


def make_twins(config=TINY, seed=0):
    """(diffusers transformer, our transformer) with the same random weights (norm weights perturbed)."""
    torch_model = diffusers_twin(config, seed)
    ms_model = Lumina2Transformer2DModel(**config)
    load_torch_weights(ms_model, torch_model)
    return torch_model, ms_model


def torch_lora_config(r=4, lora_alpha=8, targets=ALL_TARGETS, **kwargs):
    return peft.LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=targets, init_lora_weights=False, **kwargs)


def add_torch_lora(torch_model, adapter_name, seed=1, **kwargs):
    """A LoRA with random (non-zero) A and B on the diffusers transformer (diffusers' `add_adapter`)."""
    torch.manual_seed(seed)
    torch_model.add_adapter(torch_lora_config(**kwargs), adapter_name=adapter_name)
    return torch_model


def torch_lora_state_dict(torch_model, adapter_name):
    return torch_get_peft_model_state_dict(torch_model, adapter_name=adapter_name)


def save_torch_lora(torch_model, adapter_name, directory, weight_name=None, with_metadata=True):
    """Save an adapter of the diffusers transformer with diffusers' `Lumina2Pipeline.save_lora_weights`."""
    diffusers.Lumina2Pipeline.save_lora_weights(
        directory,
        transformer_lora_layers=torch_lora_state_dict(torch_model, adapter_name),
        transformer_lora_adapter_metadata=torch_model.peft_config[adapter_name].to_dict() if with_metadata else None,
        weight_name=weight_name,
    )
    return os.path.join(directory, weight_name or "pytorch_lora_weights.safetensors")


def make_lora_dir(tmp_path, name, seed, config=TINY, with_metadata=True, **lora_kwargs):
    """A folder with a diffusers-saved LoRA made on a fresh copy of the torch transformer (weights seed 0)."""
    torch_model = diffusers_twin(config)
    add_torch_lora(torch_model, "x", seed=seed, **lora_kwargs)
    directory = str(tmp_path / name)
    save_torch_lora(torch_model, "x", directory, with_metadata=with_metadata)
    return directory


def diffusers_twin(config=TINY, seed=0):
    """The diffusers transformer of `make_twins` alone."""
    torch.manual_seed(seed)
    torch_model = diffusers.Lumina2Transformer2DModel(**config).eval()
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return torch_model


def make_inputs(config=TINY, batch=2, seed=0, height=8, width=8, seq=6):
    """Latents, timesteps, caption features and a caption mask (the second caption shorter)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, config["in_channels"], height, width)).astype(np.float32)
    t = rng.uniform(0.1, 0.9, (batch,)).astype(np.float32)
    e = rng.standard_normal((batch, seq, config["cap_feat_dim"])).astype(np.float32)
    mask = np.ones((batch, seq), dtype=bool)
    if batch > 1:
        mask[1, seq - 2 :] = False
    return x, t, e, mask


def run_torch(model, inputs, **kwargs):
    x, t, e, mask = inputs
    with torch.no_grad():
        return model(
            torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(e), torch.from_numpy(mask), return_dict=False,
            **kwargs,
        )[0].numpy()  # fmt: skip


def run_ms(model, inputs, **kwargs):
    x, t, e, mask = inputs
    return model(ms.Tensor(x), ms.Tensor(t), ms.Tensor(e), ms.Tensor(mask), **kwargs)[0].asnumpy()


def param_snapshot(model) -> dict:
    return {name: param.asnumpy().copy() for name, param in model.parameters_and_names()}


def assert_same_params(model, snapshot: dict) -> None:
    now = param_snapshot(model)
    assert list(now) == list(snapshot), "parameter names changed"
    for name, value in snapshot.items():
        np.testing.assert_array_equal(now[name], value, err_msg=name)


def lora_scalings(model) -> dict:
    from mindone.peft import iter_tuner_layers

    return {name: dict(layer.scaling) for name, layer in iter_tuner_layers(model)}


def to_numpy_dict(state_dict) -> dict:
    out = {}
    for k, v in state_dict.items():
        if hasattr(v, "detach"):
            out[k] = v.detach().float().numpy().copy()
        elif isinstance(v, ms.Tensor):
            out[k] = v.asnumpy().copy()
        else:
            out[k] = np.asarray(v).copy()
    return out
