"""Key conversions of single-file checkpoints, checked against diffusers' own converters (no MindSpore model needed)."""

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL as TorchAutoencoderKL
from diffusers import Lumina2Transformer2DModel as TorchLumina2
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint as torch_convert_ldm_vae_checkpoint
from diffusers.loaders.single_file_utils import convert_lumina2_to_diffusers as torch_convert_lumina2

from mindone.diffusers.loaders.single_file_model import _lumina2_infer_from_diffusers, _vae_infer_from_diffusers
from mindone.diffusers.loaders.single_file_utils import (
    FLUX_VAE_CONFIG,
    LUMINA2_2B_CONFIG,
    SingleFileComponentError,
    convert_ldm_vae_checkpoint,
    convert_lumina2_diffusers_to_original,
    convert_lumina2_diffusers_to_original_plan,
    convert_lumina2_key_plan,
    convert_lumina2_to_diffusers,
    convert_vae_diffusers_to_ldm,
    create_lumina2_diffusers_config_from_checkpoint,
    create_vae_diffusers_config_from_checkpoint,
    detect_checkpoint_components,
    infer_diffusers_model_type,
)
from tests.single_file.single_file_testing_utils import lumina2_diffusers_to_original, vae_diffusers_to_ldm

HIDDEN, HEADS, KV, HEAD_DIM, FFN, TEMB = 2304, 24, 8, 96, 9216, 1024


def _lumina2_2b_original(rng, narrow=8):
    """An original-layout Lumina2 state dict with the 2B release's shapes: `layers.0` and the top level at full
    size; `noise_refiner.0` and `context_refiner.{0,1}` with the real row counts (which drive the qkv split) but
    `narrow` columns, to keep the test light."""

    def t(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    sd = {
        "x_embedder.weight": t(HIDDEN, 64),
        "x_embedder.bias": t(HIDDEN),
        "cap_embedder.0.weight": t(HIDDEN),
        "cap_embedder.1.weight": t(HIDDEN, HIDDEN),
        "cap_embedder.1.bias": t(HIDDEN),
        "t_embedder.mlp.0.weight": t(TEMB, 256),
        "t_embedder.mlp.0.bias": t(TEMB),
        "t_embedder.mlp.2.weight": t(TEMB, TEMB),
        "t_embedder.mlp.2.bias": t(TEMB),
        "final_layer.adaLN_modulation.1.weight": t(HIDDEN, TEMB),
        "final_layer.adaLN_modulation.1.bias": t(HIDDEN),
        "final_layer.linear.weight": t(64, HIDDEN),
        "final_layer.linear.bias": t(64),
        "norm_final.weight": np.ones(HIDDEN, dtype=np.float32),
    }
    for block, cols in (
        ("layers.0", HIDDEN),
        ("noise_refiner.0", narrow),
        ("context_refiner.0", narrow),
        ("context_refiner.1", narrow),
    ):
        modulated = not block.startswith("context")
        sd.update(
            {
                f"{block}.attention.qkv.weight": t((HEADS + 2 * KV) * HEAD_DIM, cols),
                f"{block}.attention.out.weight": t(HIDDEN, cols),
                f"{block}.attention.q_norm.weight": t(HEAD_DIM),
                f"{block}.attention.k_norm.weight": t(HEAD_DIM),
                f"{block}.feed_forward.w1.weight": t(FFN if modulated and cols == HIDDEN else narrow, cols),
                f"{block}.feed_forward.w2.weight": t(HIDDEN, FFN if cols == HIDDEN else narrow),
                f"{block}.feed_forward.w3.weight": t(FFN if cols == HIDDEN else narrow, cols),
                f"{block}.attention_norm1.weight": t(HIDDEN),
                f"{block}.attention_norm2.weight": t(HIDDEN),
                f"{block}.ffn_norm1.weight": t(HIDDEN),
                f"{block}.ffn_norm2.weight": t(HIDDEN),
            }
        )
        if modulated:
            sd[f"{block}.adaLN_modulation.1.weight"] = t(4 * HIDDEN, TEMB if cols == HIDDEN else narrow)
            sd[f"{block}.adaLN_modulation.1.bias"] = t(4 * HIDDEN)
    return sd


def _assert_same_dict(ours, ref):
    assert sorted(ours) == sorted(ref)
    for k in ref:
        a = ours[k] if isinstance(ours[k], np.ndarray) else ours[k].asnumpy()
        b = ref[k].numpy() if isinstance(ref[k], torch.Tensor) else ref[k]
        assert a.shape == b.shape and np.array_equal(a, b), k


@pytest.fixture(scope="module")
def lumina2_2b():
    return _lumina2_2b_original(np.random.default_rng(0))


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_lumina2_conversion_equals_diffusers_at_2b_widths(lumina2_2b, prefix):
    original = {prefix + k: v for k, v in lumina2_2b.items()}
    ours = convert_lumina2_to_diffusers(original, LUMINA2_2B_CONFIG)
    if prefix:
        # diffusers 0.42.1 renames the prefixed keys, then pops them by their old names: it cannot read ComfyUI files
        with pytest.raises(KeyError, match="model.diffusion_model."):
            torch_convert_lumina2({k: torch.from_numpy(v) for k, v in original.items()})
    ref = torch_convert_lumina2({k: torch.from_numpy(v) for k, v in lumina2_2b.items()})
    _assert_same_dict(ours, ref)
    assert sorted(original) == sorted({prefix + k for k in lumina2_2b}), "the input dict must not be modified"
    # the reverse plan is the exact inverse (the unused `norm_final` comes back as ones, as in the fixture)
    _assert_same_dict(convert_lumina2_diffusers_to_original(ours, prefix=prefix), original)
    # and the test-side inverse agrees with it
    _assert_same_dict(lumina2_diffusers_to_original(ours, prefix=prefix), original)


def test_lumina2_split_follows_config_not_2b_sizes():
    rng = np.random.default_rng(1)
    hidden, heads, kv = 48, 4, 2  # head_dim 12: q 48 rows, k and v 24 rows each
    qkv = rng.standard_normal((96, hidden), dtype=np.float32)
    plan = convert_lumina2_key_plan(
        {"layers.3.attention.qkv.weight": qkv.shape},
        {"hidden_size": hidden, "num_attention_heads": heads, "num_kv_heads": kv},
    )
    out = {k: src.apply(qkv) for k, src in plan.items()}
    np.testing.assert_array_equal(out["layers.3.attn.to_q.weight"], qkv[:48])
    np.testing.assert_array_equal(out["layers.3.attn.to_k.weight"], qkv[48:72])
    np.testing.assert_array_equal(out["layers.3.attn.to_v.weight"], qkv[72:])
    # context refiners beyond index 1 keep a plain RMSNorm (diffusers' map only names context_refiner.0/1)
    plan = convert_lumina2_key_plan(
        {"context_refiner.2.attention_norm1.weight": (48,), "noise_refiner.2.attention_norm1.weight": (48,)},
        LUMINA2_2B_CONFIG,
    )
    assert set(plan) == {"context_refiner.2.norm1.weight", "noise_refiner.2.norm1.norm.weight"}


def test_reverse_plan_refuses_lora_keys():
    with pytest.raises(SingleFileComponentError, match=r"lora_A.default.weight. LoRA adapters .* fuse and unload"):
        convert_lumina2_diffusers_to_original_plan(["x_embedder.weight", "layers.0.attn.to_q.lora_A.default.weight"])


def test_lumina2_plan_errors():
    config = {"hidden_size": 48, "num_attention_heads": 4, "num_kv_heads": 2}
    with pytest.raises(
        SingleFileComponentError, match=r"has 80 rows but the config .* expects q/k/v of 48/24/24 rows = 96\. Pass the"
    ):
        convert_lumina2_key_plan({"layers.0.attention.qkv.weight": (80, 48)}, config)
    # blocks that disagree with each other: no config fits them all (the advice to pass one was wrong)
    with pytest.raises(
        SingleFileComponentError, match=r"`layers.1.attention.qkv.weight` has 80 rows .* not all have the same rows"
    ):
        convert_lumina2_key_plan(
            {"layers.0.attention.qkv.weight": (96, 48), "layers.1.attention.qkv.weight": (80, 48)}, config
        )
    with pytest.raises(SingleFileComponentError, match=r"2 keys are not part of the Lumina-Image-2.0 transformer"):
        convert_lumina2_key_plan(
            {"x_embedder.weight": (48, 16), "pos_embed": (1, 4), "layers.0.mystery.weight": (1,)}, config
        )


def _tiny_flux_like_vae():
    torch.manual_seed(0)
    return TorchAutoencoderKL(**{**FLUX_VAE_CONFIG, "block_out_channels": [32, 32, 64, 64], "sample_size": 32}).eval()


@pytest.mark.parametrize("prefix", ["", "first_stage_model.", "vae."])
def test_vae_conversion_equals_diffusers(prefix):
    vae = _tiny_flux_like_vae()  # FLUX's structure (4 blocks, 2 layers, 16 latents, no quant convs), small widths
    sd = {k: v.detach().numpy() for k, v in vae.state_dict().items()}
    ldm = vae_diffusers_to_ldm(sd, 4, prefix=prefix)
    assert (
        ldm[prefix + "encoder.mid.attn_1.q.weight"].ndim == 4 and prefix + "decoder.up.3.upsample.conv.weight" in ldm
    )
    ref = torch_convert_ldm_vae_checkpoint({k: torch.from_numpy(v) for k, v in ldm.items()}, dict(vae.config))
    _assert_same_dict({k: v for k, v in sd.items()}, ref)  # the test-side inverse is diffusers' inverse
    ours = convert_ldm_vae_checkpoint(ldm, vae.config)
    _assert_same_dict(ours, ref)
    _assert_same_dict(convert_vae_diffusers_to_ldm(ours, vae.config, prefix=prefix), ldm)


def _shapes_2b_original():
    with init_empty_weights():
        model = TorchLumina2(**LUMINA2_2B_CONFIG)
    return {k: tuple(v.shape) for k, v in lumina2_diffusers_to_original(model.state_dict()).items()}


def test_config_inference_of_the_2b_release_and_flux_vae():
    with init_empty_weights():
        model = TorchLumina2(**LUMINA2_2B_CONFIG)
    shapes = {k: tuple(v.shape) for k, v in lumina2_diffusers_to_original(model.state_dict()).items()}
    assert len([k for k in shapes if k.endswith("attention.qkv.weight")]) == 26 + 2 + 2
    assert create_lumina2_diffusers_config_from_checkpoint(shapes) == LUMINA2_2B_CONFIG
    with init_empty_weights():
        vae = TorchAutoencoderKL(**FLUX_VAE_CONFIG)
    vae_shapes = {k: tuple(v.shape) for k, v in vae_diffusers_to_ldm(vae.state_dict(), 4).items()}
    assert create_vae_diffusers_config_from_checkpoint(vae_shapes) == FLUX_VAE_CONFIG
    # single files already in diffusers layout: the same rules, through the reverse plans
    assert _lumina2_infer_from_diffusers({k: tuple(v.shape) for k, v in model.state_dict().items()}, "f") == (
        LUMINA2_2B_CONFIG
    )
    assert _vae_infer_from_diffusers({k: tuple(v.shape) for k, v in vae.state_dict().items()}, "f") == FLUX_VAE_CONFIG


@pytest.mark.parametrize(
    "kw",
    [
        dict(
            hidden_size=192,
            num_attention_heads=2,
            num_kv_heads=1,
            num_layers=3,
            num_refiner_layers=1,
            cap_feat_dim=40,
            in_channels=4,
            out_channels=8,
            ffn_dim_multiplier=0.5,
            multiple_of=64,
        ),
        dict(
            hidden_size=384,
            num_attention_heads=4,
            num_kv_heads=4,
            num_layers=1,
            num_refiner_layers=0,
            cap_feat_dim=16,
            in_channels=16,
            multiple_of=1,
            ffn_dim_multiplier=0.33,
        ),
    ],
)
def test_config_inference_other_widths_builds_the_same_shapes(kw):
    with init_empty_weights():
        model = TorchLumina2(**{**LUMINA2_2B_CONFIG, **kw})
    shapes = {k: tuple(v.shape) for k, v in lumina2_diffusers_to_original(model.state_dict()).items()}
    config = create_lumina2_diffusers_config_from_checkpoint(shapes)
    for name in (
        "hidden_size",
        "num_attention_heads",
        "num_kv_heads",
        "num_layers",
        "num_refiner_layers",
        "cap_feat_dim",
        "in_channels",
    ):
        assert config[name] == kw[name], name
    assert config["out_channels"] == kw.get("out_channels")
    with init_empty_weights():
        rebuilt = TorchLumina2(**config)
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }


def test_config_inference_refuses_what_shapes_cannot_tell():
    with init_empty_weights():
        model = TorchLumina2(
            **{
                **LUMINA2_2B_CONFIG,
                "hidden_size": 64,
                "num_attention_heads": 4,
                "num_kv_heads": 2,
                "num_layers": 1,
                "num_refiner_layers": 1,
                "axes_dim_rope": [8, 4, 4],
            }
        )
    shapes = {k: tuple(v.shape) for k, v in lumina2_diffusers_to_original(model.state_dict()).items()}
    with pytest.raises(SingleFileComponentError, match=r"heads of 16 channels.*Pass `axes_dim_rope=`.*or `config=`"):
        create_lumina2_diffusers_config_from_checkpoint(shapes, "x.safetensors")
    overrides = {"axes_dim_rope": [8, 4, 4], "axes_lens": [10, 64, 64]}  # what no weight stores, given by the caller
    inferred = create_lumina2_diffusers_config_from_checkpoint(shapes, "x.safetensors", overrides)
    assert {k: inferred[k] for k in model.config if k in inferred} == {
        k: model.config[k] for k in model.config if k in inferred
    } | overrides
    no_context = {k: v for k, v in _shapes_2b_original().items() if not k.startswith("context_refiner.")}
    with pytest.raises(SingleFileComponentError, match="2 noise_refiner and 0 context_refiner"):
        create_lumina2_diffusers_config_from_checkpoint(no_context)
    gap = {k: v for k, v in _shapes_2b_original().items() if not k.startswith("layers.7.")}
    with pytest.raises(SingleFileComponentError, match=r"blocks \[7\] are missing"):
        create_lumina2_diffusers_config_from_checkpoint(gap)
    with pytest.raises(SingleFileComponentError, match="lacks `layers.0.attention.q_norm.weight`"):
        create_lumina2_diffusers_config_from_checkpoint(
            {"x_embedder.weight": (2304, 64), "cap_embedder.0.weight": (8,), "final_layer.linear.weight": (64, 2304)}
        )
    # an SD-like VAE (4 latents, quant convs) has a latent scaling no weight stores
    with init_empty_weights():
        sd_vae = TorchAutoencoderKL(
            block_out_channels=[32, 64],
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
        )
    vae_shapes = {k: tuple(v.shape) for k, v in vae_diffusers_to_ldm(sd_vae.state_dict(), 2).items()}
    with pytest.raises(SingleFileComponentError, match=r"4 latent channels and quant convs.*or `config=`"):
        create_vae_diffusers_config_from_checkpoint(vae_shapes)
    inferred = create_vae_diffusers_config_from_checkpoint(vae_shapes, overrides={"scaling_factor": 0.18215})
    expected = {k: list(v) if isinstance(v, tuple) else v for k, v in sd_vae.config.items() if not k.startswith("_")}
    del expected["sample_size"]  # not stored in the weights: the FLUX VAE's
    assert {k: inferred[k] for k in expected} == expected  # shift_factor: upstream's default (none)


def test_model_family_detection():
    assert infer_diffusers_model_type(["cap_embedder.0.weight", "layers.0.attention.qkv.weight"]) == "lumina2"
    assert infer_diffusers_model_type(["model.diffusion_model.cap_embedder.0.weight"]) == "lumina2"
    assert infer_diffusers_model_type(["cap_embedder.0.weight", "layers.0.adaLN_modulation.0.weight"]) == "z-image"
    assert infer_diffusers_model_type(["double_blocks.0.img_attn.norm.key_norm.scale"]) == "flux"
    assert infer_diffusers_model_type(["model.diffusion_model.input_blocks.0.0.weight"]) == "ldm-unet"
    assert infer_diffusers_model_type(["encoder.down.0.block.0.norm1.weight"]) == "ldm-vae"
    assert infer_diffusers_model_type(["something.else"]) is None
    all_in_one = [
        "model.diffusion_model.cap_embedder.0.weight",
        "first_stage_model.encoder.down.0.block.0.norm1.weight",
        "text_encoders.gemma2_2b.model.layers.0.self_attn.q_proj.weight",
    ]
    assert detect_checkpoint_components(all_in_one) == [
        ("lumina2", "model.diffusion_model."),
        ("ldm-vae", "first_stage_model."),
        ("gemma2", "text_encoders.gemma2_2b."),
    ]
