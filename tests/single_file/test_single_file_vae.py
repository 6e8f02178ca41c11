"""AutoencoderKL single files: FLUX `ae.safetensors` / LDM layout in and out, against diffusers' from_single_file."""

import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import AutoencoderKL as TorchAutoencoderKL

import mindspore as ms

from mindone.diffusers import AutoencoderKL
from mindone.diffusers.loaders.single_file_utils import FLUX_VAE_CONFIG, SingleFileComponentError
from mindone.diffusers.models.model_loading_utils import CheckpointError
from tests.single_file.single_file_testing_utils import vae_diffusers_to_ldm
from tests.testing_utils import assert_close, captured_warnings

# FLUX's VAE (16 latents, no quant convs, 32 groups) with two narrow blocks
TINY_VAE = dict(
    FLUX_VAE_CONFIG,
    block_out_channels=[32, 64],
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    layers_per_block=1,
    sample_size=32,
)
# an SD-style latent space: 4 latents and quant convs, whose scaling no weight stores
SD_LIKE_VAE = dict(
    TINY_VAE,
    latent_channels=4,
    use_quant_conv=True,
    use_post_quant_conv=True,
    scaling_factor=0.18215,
    shift_factor=None,
)


def _torch_vae(config, seed=0):
    torch.manual_seed(seed)
    vae = TorchAutoencoderKL(**config).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae


def _params(model):
    return {k: v.asnumpy().copy() for k, v in model.parameters_and_names()}


def _assert_params_equal(model, ref):
    got = _params(model)
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert np.array_equal(got[k], ref[k]), k


def _write_ldm(vae, path, prefix="", linear_attention=False):
    sd = {k: v.contiguous() for k, v in vae.state_dict().items()}
    ldm = vae_diffusers_to_ldm(sd, len(vae.config.up_block_types), prefix=prefix)
    if linear_attention:  # some repacks store the mid-block attention projections as linear weights
        ldm = {k: v[:, :, 0, 0].contiguous() if v.ndim == 4 and ".attn_1." in k else v for k, v in ldm.items()}
    safetensors.torch.save_file(ldm, str(path))
    return path


@pytest.fixture(scope="module")
def flux_like(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae")
    vae = _torch_vae(TINY_VAE)
    vae.save_pretrained(d / "pipe" / "vae")
    _write_ldm(vae, d / "ae.safetensors")
    _write_ldm(vae, d / "aio.safetensors", prefix="first_stage_model.")
    return vae, d


@pytest.fixture(scope="module")
def reference(flux_like):
    _, d = flux_like
    return _params(AutoencoderKL.from_pretrained(d / "pipe" / "vae"))


def test_flux_layout_matches_diffusers_from_single_file(flux_like, reference, monkeypatch):
    torch_vae, d = flux_like
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    theirs = TorchAutoencoderKL.from_single_file(str(d / "ae.safetensors"), config=str(d / "pipe" / "vae")).eval()
    with captured_warnings() as records:
        ours = AutoencoderKL.from_single_file(d / "ae.safetensors")  # config inferred: FLUX's latent scaling
    # said, since SD3's VAE has the same shapes
    assert any("`scaling_factor` / `shift_factor` 0.3611 / 0.1159 and 32 GroupNorm groups" in r for r in records)
    assert ours.config.scaling_factor == 0.3611 and ours.config.shift_factor == 0.1159
    assert list(ours.config.block_out_channels) == [32, 64] and ours.config.layers_per_block == 1
    assert not ours.config.use_quant_conv and ours.config.latent_channels == 16
    _assert_params_equal(ours, reference)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    z = np.random.default_rng(1).standard_normal((1, 16, 4, 4)).astype(np.float32)
    with torch.no_grad():
        ref_mean = theirs.encode(torch.from_numpy(x)).latent_dist.mean.numpy()
        ref_dec = theirs.decode(torch.from_numpy(z)).sample.numpy()
        assert np.allclose(ref_dec, torch_vae.decode(torch.from_numpy(z)).sample.numpy(), atol=1e-6)
    assert_close(ours.encode(ms.Tensor(x))[0].mean.asnumpy(), ref_mean, 1e-5)
    assert_close(ours.decode(ms.Tensor(z))[0].asnumpy(), ref_dec, 1e-5)


def test_prefixes_config_forms_and_linear_attention(flux_like, reference, tmp_path):
    torch_vae, d = flux_like
    _assert_params_equal(AutoencoderKL.from_single_file(d / "aio.safetensors", config=d / "pipe"), reference)
    _write_ldm(torch_vae, tmp_path / "vae_prefix.safetensors", prefix="vae.", linear_attention=True)
    _assert_params_equal(
        AutoencoderKL.from_single_file(tmp_path / "vae_prefix.safetensors", config=dict(torch_vae.config)), reference
    )


def test_training_loss_keys_are_ignored_as_upstream(flux_like, reference, tmp_path):
    # LDM autoencoder checkpoints keep the training loss's weights (LPIPS, discriminator) and the EMA's counters:
    # upstream ignores them
    torch_vae, d = flux_like
    tensors = safetensors.torch.load_file(d / "ae.safetensors")  # unprefixed: the keys are in the VAE's view
    tensors["loss.logvar"] = torch.zeros(())
    tensors["loss.discriminator.main.0.weight"] = torch.ones(64, 3, 4, 4)
    tensors["model_ema.decay"] = torch.tensor(0.999)  # and the EMA's bookkeeping
    tensors["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    safetensors.torch.save_file(tensors, tmp_path / "with_loss.safetensors")
    _assert_params_equal(
        AutoencoderKL.from_single_file(tmp_path / "with_loss.safetensors", config=dict(torch_vae.config)), reference
    )
    theirs = TorchAutoencoderKL.from_single_file(
        str(tmp_path / "with_loss.safetensors"), config=str(d / "pipe" / "vae")
    )
    assert all(torch.equal(p, dict(torch_vae.named_parameters())[k]) for k, p in theirs.named_parameters())


def test_all_in_one_file_picks_the_vae(flux_like, reference, tmp_path):
    _, d = flux_like
    tensors = safetensors.torch.load_file(d / "aio.safetensors")
    tensors["model.diffusion_model.cap_embedder.0.weight"] = torch.ones(8)
    tensors["model.diffusion_model.x_embedder.weight"] = torch.ones(8, 16)
    safetensors.torch.save_file(tensors, tmp_path / "aio.safetensors")
    _assert_params_equal(AutoencoderKL.from_single_file(tmp_path / "aio.safetensors"), reference)


def test_writer_is_the_inverse_and_round_trips(flux_like, tmp_path):
    _, d = flux_like
    ours = AutoencoderKL.from_single_file(d / "ae.safetensors")
    for kwargs, reference_file in (
        ({}, "ae.safetensors"),
        ({"comfyui": True}, "ae.safetensors"),
        ({"prefix": "first_stage_model."}, "aio.safetensors"),
    ):
        path = ours.save_single_file(tmp_path / "out.safetensors", **kwargs)
        written = safetensors.torch.load_file(path)
        expected = safetensors.torch.load_file(d / reference_file)
        assert sorted(written) == sorted(expected)
        assert all(torch.equal(written[k], expected[k]) for k in expected)
        assert written[kwargs.get("prefix", "") + "decoder.mid.attn_1.proj_out.weight"].shape == (64, 64, 1, 1)
    _assert_params_equal(AutoencoderKL.from_single_file(path, config=ours.config), _params(ours))


def test_other_latent_spaces_need_a_config(tmp_path):
    vae = _torch_vae(SD_LIKE_VAE)
    vae.save_pretrained(tmp_path / "vae")
    _write_ldm(vae, tmp_path / "sd_vae.safetensors", prefix="first_stage_model.")
    with pytest.raises(SingleFileComponentError, match=r"4 latent channels and quant convs.*Pass `scaling_factor=`"):
        AutoencoderKL.from_single_file(tmp_path / "sd_vae.safetensors")
    # the scaling given as config entries (upstream's single-file tests pass `scaling_factor=` so); the rest inferred
    theirs = TorchAutoencoderKL.from_single_file(
        str(tmp_path / "sd_vae.safetensors"), config=str(tmp_path / "vae"), scaling_factor=0.13
    )
    for kwargs in ({"scaling_factor": 0.13}, {"scaling_factor": 0.13, "shift_factor": None}):
        by_keyword = AutoencoderKL.from_single_file(tmp_path / "sd_vae.safetensors", **kwargs)
        assert by_keyword.config.scaling_factor == theirs.config.scaling_factor == 0.13
        assert by_keyword.config.shift_factor is theirs.config.shift_factor is None
        assert by_keyword.config.use_quant_conv and by_keyword.config.use_post_quant_conv
        _assert_params_equal(by_keyword, {k: v.numpy() for k, v in theirs.state_dict().items()})
    ours = AutoencoderKL.from_single_file(tmp_path / "sd_vae.safetensors", config=tmp_path / "vae")
    assert ours.config.scaling_factor == 0.18215 and ours.quant_conv is not None
    _assert_params_equal(ours, _params(AutoencoderKL.from_pretrained(tmp_path / "vae")))
    path = ours.save_single_file(tmp_path / "back.safetensors", prefix="first_stage_model.")
    written = safetensors.torch.load_file(path)
    expected = safetensors.torch.load_file(tmp_path / "sd_vae.safetensors")
    assert sorted(written) == sorted(expected) and all(torch.equal(written[k], expected[k]) for k in expected)


def test_diffusers_layout_with_pre_0_14_attention_names(flux_like, reference, tmp_path):
    """A diffusers-layout file whose mid-block attention layers have the names of diffusers before 0.14 (query / key /
    value / proj_attn) loads as `from_pretrained` reads them; a file holding both names of a layer is refused."""
    torch_vae, _ = flux_like
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    tensors = {}
    for k, v in torch_vae.state_dict().items():
        for new, name in old.items():
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{name}.")
        tensors[k] = v.contiguous()
    assert sum(".query." in k or ".proj_attn." in k for k in tensors) == 8  # encoder and decoder, weight and bias
    safetensors.torch.save_file(tensors, tmp_path / "old_names.safetensors")
    _assert_params_equal(AutoencoderKL.from_single_file(tmp_path / "old_names.safetensors"), reference)
    _assert_params_equal(
        AutoencoderKL.from_single_file(tmp_path / "old_names.safetensors", config=dict(torch_vae.config)), reference
    )
    tensors["decoder.mid_block.attentions.0.to_q.weight"] = tensors[
        "decoder.mid_block.attentions.0.query.weight"
    ].clone()
    safetensors.torch.save_file(tensors, tmp_path / "both_names.safetensors")
    with pytest.raises(
        SingleFileComponentError,
        match=r"holds the VAE's attention weight `decoder.mid_block.attentions.0.to_q.weight` twice",
    ):
        AutoencoderKL.from_single_file(tmp_path / "both_names.safetensors", config=dict(torch_vae.config))


def test_two_copies_of_the_vae_are_refused(flux_like, tmp_path):
    """A VAE under two prefixes (or bare and prefixed): refused as ambiguous (diffusers loads the `vae.` copy without
    a word)."""
    _, d = flux_like
    tensors = safetensors.torch.load_file(d / "ae.safetensors")
    for name, other in (("first_stage_model.", "vae."), ("", "vae.")):
        twice = {**{name + k: v for k, v in tensors.items()}, **{other + k: 2 * v for k, v in tensors.items()}}
        safetensors.torch.save_file(twice, tmp_path / "twice.safetensors")
        where = f"`{name}`" if name else "without a prefix"
        with pytest.raises(SingleFileComponentError, match=rf"more than once \({where}, `{other}`\).*ambiguous"):
            AutoencoderKL.from_single_file(tmp_path / "twice.safetensors")


def test_errors(flux_like, tmp_path):
    torch_vae, d = flux_like
    # a file in diffusers' names with a key too many, its config inferred: the error names the file
    extra = {**{k: v.clone() for k, v in torch_vae.state_dict().items()}, "foo.bar": torch.ones(1)}
    safetensors.torch.save_file(extra, tmp_path / "diffusers_extra.safetensors")
    with pytest.raises(
        SingleFileComponentError, match=r"diffusers_extra\.safetensors: 1 keys are not part of the diffusers Autoen"
    ):
        AutoencoderKL.from_single_file(tmp_path / "diffusers_extra.safetensors")
    lumina = {"cap_embedder.0.weight": torch.ones(8), "layers.0.attention.qkv.weight": torch.ones(8, 8)}
    safetensors.torch.save_file(lumina, tmp_path / "lumina.safetensors")
    with pytest.raises(
        SingleFileComponentError, match=r"does not hold a VAE .* it holds a Lumina-Image-2.0 transformer"
    ):
        AutoencoderKL.from_single_file(tmp_path / "lumina.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        AutoencoderKL.from_single_file(
            d / "ae.safetensors", config={**dict(torch_vae.config), "block_out_channels": [32, 96]}
        )
    tensors = safetensors.torch.load_file(d / "ae.safetensors")
    tensors["encoder.mid.attn_1.gate.weight"] = torch.ones(2)
    safetensors.torch.save_file(tensors, tmp_path / "extra.safetensors")
    with pytest.raises(
        SingleFileComponentError, match=r"1 keys are not part of the VAE .*encoder.mid.attn_1.gate.weight"
    ):
        AutoencoderKL.from_single_file(tmp_path / "extra.safetensors")
    # a mid-block projection that is not a 1x1 convolution (upstream reads [:, :, 0, 0]): a shape mismatch naming it
    bad = safetensors.torch.load_file(d / "ae.safetensors")
    bad["encoder.mid.attn_1.q.weight"] = torch.ones(64, 64, 2, 2)
    safetensors.torch.save_file(bad, tmp_path / "bad_q.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatches.*encoder.mid_block.attentions.0.to_q.weight"):
        AutoencoderKL.from_single_file(tmp_path / "bad_q.safetensors")
    # an up block beyond the config's two: named as in the file (not a negative block index), as more blocks than
    # the config (these are VAE keys: "not part of the VAE layout" said otherwise)
    extra_up = safetensors.torch.load_file(d / "ae.safetensors")
    extra_up["decoder.up.2.block.0.conv1.bias"] = torch.ones(32)
    extra_up["decoder.up.2.upsample.conv.bias"] = torch.ones(32)
    safetensors.torch.save_file(extra_up, tmp_path / "extra_up.safetensors")
    with pytest.raises(
        SingleFileComponentError,
        match=r"holds a VAE with more decoder blocks than the 2 of the config .*: decoder.up.2.block.0.conv1.bias, "
        r"decoder.up.2.upsample.conv.bias\. Pass the config",
    ) as error:
        AutoencoderKL.from_single_file(tmp_path / "extra_up.safetensors")
    assert "up_blocks.-" not in str(error.value)
    with pytest.raises(SingleFileComponentError, match=r"more decoder blocks than the 1 of the config"):
        AutoencoderKL.from_single_file(
            d / "ae.safetensors",
            config={
                **dict(torch_vae.config),
                "block_out_channels": [32],
                "down_block_types": ["DownEncoderBlock2D"],
                "up_block_types": ["UpDecoderBlock2D"],
            },
        )
    # the mid-block attention in one half only: the file is incomplete (it was blamed on the other half's keys)
    for part, other in (("encoder", "decoder"), ("decoder", "encoder")):
        half = {
            k: v
            for k, v in safetensors.torch.load_file(d / "ae.safetensors").items()
            if f"{part}.mid.attn_1." not in k
        }
        safetensors.torch.save_file(half, tmp_path / "half.safetensors")
        with pytest.raises(
            SingleFileComponentError,
            match=rf"holds a mid-block attention in the {other} \(`{other}.mid.attn_1.\*`\) but none in the {part}",
        ):
            AutoencoderKL.from_single_file(tmp_path / "half.safetensors")
    torch.save(tensors, tmp_path / "ae.ckpt")
    with pytest.raises(SingleFileComponentError, match="pickle checkpoint"):
        AutoencoderKL.from_single_file(tmp_path / "ae.ckpt")
