"""LoRA on the VAE (`AutoencoderKL`'s `PeftAdapterMixin`, LoRA on its convolutions and attention projections) against
diffusers 0.42.1 with PEFT: the same adapters give the same encodings and decodings, op by op, on the compiled CPU
paths and in GRAPH_MODE, and LoRA files move between the two."""

import numpy as np
import peft
import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer as TorchBaseTunerLayer

import mindspore as ms

import mindone.peft as mp
from mindone.diffusers.models import cpu_layers
from tests.models.autoencoders.test_models_autoencoder_kl import TINY_32_64, make_twins, randn
from tests.peft.lora_twins import assert_same_params, param_snapshot, torch_sd_to_numpy
from tests.testing_utils import assert_close

TOL = 1e-5
# diffusers' `AutoencoderTesterMixin.test_lora_adapter` targets `conv1` / `conv2`; the others add the in / out and
# shortcut convolutions, the down- and upsamplers' (`conv`: the fused upsampling path must give way to the LoRA layer)
# and the mid block's attention
TARGETS = {
    "resnets": dict(r=4, lora_alpha=4, target_modules=["conv1", "conv2"]),
    "resnets_r8": dict(r=8, lora_alpha=4, target_modules=["conv1", "conv2"]),
    "everything": dict(
        r=3,
        lora_alpha=5,
        use_rslora=True,
        lora_bias=True,
        target_modules=["conv_in", "conv_out", "conv_shortcut", "conv", "quant_conv", "to_q", "to_v", "to_out.0"],
        rank_pattern={"decoder.up_blocks.0.upsamplers.0.conv": 2},
    ),
}


def _adapted_twins(case, seed=0, adapter_name="default"):
    """diffusers' VAE with a random PEFT adapter (`add_adapter`) and our twin with the same adapter weights."""
    torch_model, ms_model = make_twins(TINY_32_64, seed=seed)
    torch_model.add_adapter(peft.LoraConfig(init_lora_weights=False, **TARGETS[case]), adapter_name=adapter_name)
    ms_model.add_adapter(mp.LoraConfig(**TARGETS[case]), adapter_name=adapter_name)
    state = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name=adapter_name))
    result = mp.set_peft_model_state_dict(ms_model, state, adapter_name=adapter_name)
    assert not result.missing_keys and not result.unexpected_keys
    return torch_model, ms_model


def _compare(torch_model, ms_model, image, latents, what):
    with torch.no_grad():
        t_mode = torch_model.encode(torch.from_numpy(image)).latent_dist.mode()
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.encode(ms.Tensor(image))[0].mode(), t_mode, TOL, f"{what}: encode")
    assert_close(ms_model.decode(ms.Tensor(latents))[0], t_dec, TOL, f"{what}: decode")
    return t_dec


@pytest.mark.parametrize("case", sorted(TARGETS))
def test_add_adapter_matches_diffusers(case):
    torch_model, ms_model = _adapted_twins(case)
    torch_layers = {n for n, m in torch_model.named_modules() if isinstance(m, TorchBaseTunerLayer)}
    assert {n for n, _ in mp.iter_tuner_layers(ms_model)} == torch_layers
    assert ms_model.active_adapters() == torch_model.active_adapters() == ["default"]
    image, latents = randn((2, 3, 20, 12)), randn((1, 4, 7, 5), seed=1)
    t_dec = _compare(torch_model, ms_model, image, latents, case)
    _, base = make_twins(TINY_32_64)
    assert np.abs(base.decode(ms.Tensor(latents))[0].asnumpy() - t_dec.numpy()).max() > 1e-3  # the LoRA counts


@pytest.mark.parametrize("path", ["helpers", "whole-graph", "graph-mode"])
def test_compiled_paths(path, monkeypatch):
    """The compiled large-input CPU paths (as compiled helpers or one whole graph) and GRAPH_MODE, then
    `set_adapters` weights, `disable_lora` and `fuse_lora` reaching the compiled graphs."""
    monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 24 * 16 * 32 if path == "whole-graph" else 1 << 40)
    torch_model, ms_model = _adapted_twins("everything", seed=2)
    image, latents = randn((1, 3, 24, 16)), randn((1, 4, 12, 8), seed=1)
    if path == "graph-mode":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        _compare(torch_model, ms_model, image, latents, path)
        if path == "whole-graph":
            assert ms_model.decoder.compile_cache
        torch_model.set_adapters(["default"], [0.3])
        ms_model.set_adapters(["default"], [0.3])
        _compare(torch_model, ms_model, image, latents, f"{path}, weight 0.3")
        torch_model.disable_lora()
        ms_model.disable_lora()
        _compare(torch_model, ms_model, image, latents, f"{path}, disabled")
        torch_model.enable_lora()
        ms_model.enable_lora()
        torch_model.fuse_lora(lora_scale=0.5)
        ms_model.fuse_lora(lora_scale=0.5)
        _compare(torch_model, ms_model, image, latents, f"{path}, fused")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_fuse_unfuse_unload_and_delete():
    torch_model, ms_model = _adapted_twins("everything")
    image, latents = randn((1, 3, 16, 16)), randn((1, 4, 8, 8), seed=1)
    base_params = {n: p for n, p in param_snapshot(make_twins(TINY_32_64)[1]).items()}
    lora_params = param_snapshot(ms_model)
    ms_model.fuse_lora(safe_fusing=True)
    torch_model.fuse_lora(safe_fusing=True)
    _compare(torch_model, ms_model, image, latents, "fused")
    ms_model.unfuse_lora()
    assert_same_params(ms_model, lora_params)  # bit for bit
    torch_model.unfuse_lora()
    _compare(torch_model, ms_model, image, latents, "unfused")
    ms_model.delete_adapters("default")
    assert all(len(layer.lora_A) == 0 for _, layer in mp.iter_tuner_layers(ms_model))
    ms_model.unload_lora()
    assert param_snapshot(ms_model).keys() == base_params.keys()
    assert_same_params(ms_model, base_params)


def test_lora_files_move_both_ways(tmp_path):
    """`save_lora_adapter` files (keys without a prefix) load in the other library with `prefix=None`."""
    torch_model, ms_model = _adapted_twins("everything", seed=3)
    image, latents = randn((1, 3, 16, 8)), randn((1, 4, 8, 4), seed=1)
    expected = _compare(torch_model, ms_model, image, latents, "added")

    torch_model.save_lora_adapter(tmp_path / "theirs", adapter_name="default")
    _, ms_loaded = make_twins(TINY_32_64, seed=3)
    ms_loaded.load_lora_adapter(str(tmp_path / "theirs"), prefix=None, adapter_name="vae_lora")
    assert ms_loaded.peft_config["vae_lora"].rank_pattern == TARGETS["everything"]["rank_pattern"]
    assert_close(ms_loaded.decode(ms.Tensor(latents))[0], expected, TOL, "diffusers' file loaded here")

    ms_model.save_lora_adapter(str(tmp_path / "ours"), adapter_name="default")
    torch_loaded, _ = make_twins(TINY_32_64, seed=3)
    # diffusers' model-level `load_lora_adapter` looks for a `.bin` file unless told the name (or `use_safetensors`)
    torch_loaded.load_lora_adapter(
        str(tmp_path / "ours"), weight_name="pytorch_lora_weights.safetensors", prefix=None, adapter_name="vae_lora"
    )
    with torch.no_grad():
        assert_close(torch_loaded.decode(torch.from_numpy(latents)).sample, expected, TOL, "our file in diffusers")


def test_bad_adapters_change_nothing():
    _, ms_model = make_twins(TINY_32_64)
    before = param_snapshot(ms_model)
    with pytest.raises(ValueError, match="not found in the base model"):
        ms_model.add_adapter(mp.LoraConfig(r=2, target_modules=["no_such_layer"]))
    with pytest.raises(ValueError, match="only the following modules"):  # GroupNorm layers
        ms_model.add_adapter(mp.LoraConfig(r=2, target_modules=["norm1"]))
    assert not list(mp.iter_tuner_layers(ms_model)) and not getattr(ms_model, "peft_config", None)
    assert_same_params(ms_model, before)


def test_layerwise_casting_after_the_adapter_matches_diffusers():
    """diffusers' `enable_layerwise_casting` on a VAE with a LoRA: the base layers stored in float16 and computed in
    float32, the adapter's layers skipped (kept in float32) by default, as upstream."""
    torch_model, ms_model = _adapted_twins("everything", seed=4)
    torch_model.enable_layerwise_casting(storage_dtype=torch.float16, compute_dtype=torch.float32)
    ms_model.enable_layerwise_casting(storage_dtype=ms.float16, compute_dtype=ms.float32)
    layer = ms_model.decoder.up_blocks[0].upsamplers[0].conv
    assert layer.base_layer.weight.dtype == ms.float16 and layer.lora_A["default"].weight.dtype == ms.float32
    assert torch_model.decoder.up_blocks[0].upsamplers[0].conv.base_layer.weight.dtype == torch.float16
    _compare(torch_model, ms_model, randn((1, 3, 16, 8)), randn((1, 4, 8, 4), seed=1), "layerwise casting")
