"""AutoencoderKL (the FLUX VAE) against diffusers 0.42.1: same weights, same inputs, same noise.

Configs: diffusers' tiny test config (`block_out_channels` (2, 4), 2 groups), the (32, 64) config of its slicing /
tiling tests, and the FLUX widths (128/256/512/512, 16 latent channels, 2 layers per block, no quant convs) at a small
size.
"""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL as TorchAutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution as TorchDiagonalGaussianDistribution

import mindspore as ms
from mindspore.nn.utils import no_init_parameters

from mindone.diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from mindone.diffusers.models.autoencoders.vae import Decoder, DecoderOutput, DiagonalGaussianDistribution
from mindone.diffusers.models.modeling_outputs import AutoencoderKLOutput
from tests.testing_utils import assert_close, load_torch_weights, rel_l2, to_numpy

TOL = 1e-5

TINY = {  # diffusers' AutoencoderKLTesterConfig.get_init_dict()
    "block_out_channels": [2, 4],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "latent_channels": 4,
    "norm_num_groups": 2,
}
TINY_32_64 = {**TINY, "block_out_channels": [32, 64], "norm_num_groups": 32}
FLUX = {  # black-forest-labs/FLUX.1-dev vae/config.json
    "block_out_channels": [128, 256, 512, 512],
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "latent_channels": 16,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}


def make_twins(config, seed=0):
    """A diffusers AutoencoderKL with random weights (norm affines included) and our copy of it."""
    torch.manual_seed(seed)
    torch_model = TorchAutoencoderKL(**config).eval()
    with torch.no_grad():
        for name, param in torch_model.named_parameters():
            if "norm" in name:  # GroupNorm starts at weight 1 / bias 0: make the affine part count
                param.add_(0.1 * torch.randn_like(param))
    with no_init_parameters():
        ms_model = AutoencoderKL(**config)
    load_torch_weights(ms_model, torch_model)
    return torch_model, ms_model


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def numpy_noise(shape, seed):
    """The noise `randn_tensor` draws from `np.random.default_rng(seed)`."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def check_encode_decode(torch_model, ms_model, image, latents):
    """encode (mode, std, a seeded sample), decode, and the forward pass with and without posterior sampling."""
    with torch.no_grad():
        t_post = torch_model.encode(torch.from_numpy(image)).latent_dist
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
        t_fwd = torch_model(torch.from_numpy(image)).sample
    post = ms_model.encode(ms.Tensor(image))[0]
    assert isinstance(post, DiagonalGaussianDistribution)
    assert_close(post.mode(), t_post.mode(), TOL, "posterior mode")
    assert_close(post.std, t_post.std, TOL, "posterior std")
    assert_close(post.logvar, t_post.logvar, TOL, "posterior logvar")

    # seeded sample: our numpy generator draws the noise, torch gets the same noise
    sample = post.sample(generator=np.random.default_rng(7))
    noise = numpy_noise(tuple(t_post.mean.shape), seed=7)
    assert_close(sample, t_post.mean + t_post.std * noise, TOL, "posterior sample")

    assert_close(ms_model.decode(ms.Tensor(latents))[0], t_dec, TOL, "decode")
    assert_close(ms_model(ms.Tensor(image))[0], t_fwd, TOL, "forward (mode)")

    out = ms_model(ms.Tensor(image), sample_posterior=True, generator=np.random.default_rng(7))[0]
    with torch.no_grad():
        t_out = torch_model.decode(t_post.mean + t_post.std * noise).sample
    assert_close(out, t_out, TOL, "forward (sampled posterior)")


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        {**TINY, "use_quant_conv": False, "use_post_quant_conv": False},
        {**TINY, "use_quant_conv": True, "use_post_quant_conv": False},
        {**TINY, "mid_block_add_attention": False, "layers_per_block": 2},
        TINY_32_64,
        {
            **TINY,
            "down_block_types": ["AttnDownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"],
            "layers_per_block": 2,
        },
    ],
    ids=["tiny", "no-quant-convs", "quant-conv-only", "no-mid-attention", "tiny-32-64", "attention-blocks"],
)
def test_encode_decode_parity(config):
    torch_model, ms_model = make_twins(config)
    assert (ms_model.quant_conv is None) == (not config.get("use_quant_conv", True))
    assert (ms_model.post_quant_conv is None) == (not config.get("use_post_quant_conv", True))
    image = randn((4, 3, 32, 32))  # upstream's dummy input: batch 4, 32x32
    latents = randn((2, 4, 5, 7), seed=1)  # odd latent size
    check_encode_decode(torch_model, ms_model, image, latents)


@pytest.mark.slow
def test_flux_widths_parity():
    torch_model, ms_model = make_twins(FLUX)
    assert len(ms_model.state_dict()) == len(torch_model.state_dict())
    image = randn((1, 3, 48, 32))  # non-square, 6x4 latent
    latents = randn((1, 16, 4, 6), seed=1)
    with torch.no_grad():
        t_post = torch_model.encode(torch.from_numpy(image)).latent_dist
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    post = ms_model.encode(ms.Tensor(image))[0]
    assert post.mean.shape == (1, 16, 6, 4)
    assert_close(post.mode(), t_post.mode(), TOL, "FLUX posterior mode")
    assert_close(post.std, t_post.std, TOL, "FLUX posterior std")
    sample = post.sample(generator=np.random.default_rng(3))
    noise = numpy_noise((1, 16, 6, 4), seed=3)
    assert_close(sample, t_post.mean + t_post.std * noise, TOL, "FLUX posterior sample")
    assert_close(ms_model.decode(ms.Tensor(latents))[0], t_dec, TOL, "FLUX decode")


@pytest.mark.parametrize("whole_graph", [False, True], ids=["helpers", "whole-graph"])
def test_compiled_cpu_paths_parity(monkeypatch, whole_graph):
    # every convolution and group norm on its compiled large-input path (what 512x512 images take): as compiled helpers
    # called op by op, or inlined in one compiled graph of the whole encoder / decoder (`CompiledWhenLarge`)
    from mindone.diffusers.models import cpu_layers

    monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    monkeypatch.setattr(cpu_layers, "IM2COL_BUFFER_ELEMENTS", 1 << 14)
    # the image below: 24 * 16 pixels x 32 channels in the largest activation of either
    monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 24 * 16 * 32 if whole_graph else 1 << 40)
    torch_model, ms_model = make_twins(TINY_32_64, seed=1)
    image, latents = randn((1, 3, 24, 16)), randn((1, 4, 12, 8), seed=1)
    with torch.no_grad():
        t_post = torch_model.encode(torch.from_numpy(image)).latent_dist
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.encode(ms.Tensor(image))[0].mode(), t_post.mode(), TOL, "encode, compiled CPU paths")
    assert_close(ms_model.decode(ms.Tensor(latents))[0], t_dec, TOL, "decode, compiled CPU paths")
    assert bool(ms_model.encoder.compile_cache) is whole_graph
    assert bool(ms_model.decoder.compile_cache) is whole_graph
    if whole_graph:  # just below the threshold: op by op
        _, small = make_twins(TINY_32_64, seed=1)
        with torch.no_grad():
            t_small = torch_model.decode(torch.from_numpy(latents[:, :, :11])).sample
        assert_close(small.decode(ms.Tensor(latents[:, :, :11]))[0], t_small, TOL, "decode below the threshold")
        assert not small.decoder.compile_cache
    # new weights after the first call, through `set_data` (new storage: the whole graph recompiles) and through
    # `load_state_dict_into_model` (written in place)
    from mindone.diffusers.models.model_loading_utils import load_state_dict_into_model

    params = dict(ms_model.parameters_and_names())
    params["decoder.conv_out.weight"].set_data(params["decoder.conv_out.weight"] * 2)
    load_state_dict_into_model(ms_model, {"decoder.conv_in.bias": params["decoder.conv_in.bias"] + 1}, strict=False)
    with torch.no_grad():
        torch_model.decoder.conv_out.weight.mul_(2)
        torch_model.decoder.conv_in.bias.add_(1)
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.decode(ms.Tensor(latents))[0], t_dec, TOL, "decode, compiled CPU paths, new weights")


class _SkipAttention:
    """A custom processor (either framework): the attention layer passes its input through."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        return hidden_states


@pytest.mark.parametrize("whole_graph", [False, True], ids=["op-by-op", "whole-graph"])
def test_attention_processors_as_upstream(monkeypatch, whole_graph):
    from diffusers.models.attention_processor import AttnProcessor as TorchAttnProcessor

    from mindone.diffusers.models import cpu_layers
    from mindone.diffusers.models.attention_processor import AttnProcessor

    # the decoder compiled as one graph (`CompiledWhenLarge`): a new processor must not be folded into a stale graph
    monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 1 if whole_graph else 1 << 40)
    torch_model, ms_model = make_twins(TINY_32_64, seed=2)
    latents = randn((1, 4, 6, 5), seed=2)
    names = list(torch_model.attn_processors)
    assert list(ms_model.attn_processors) == names and len(names) == 2
    assert all(type(p) is AttnProcessor for p in ms_model.attn_processors.values())
    default = ms_model.decode(ms.Tensor(latents))[0].asnumpy()
    assert bool(ms_model.decoder.compile_cache) is whole_graph

    ms_model.set_attn_processor(_SkipAttention())
    torch_model.set_attn_processor(_SkipAttention())
    with torch.no_grad():
        expected = torch_model.decode(torch.from_numpy(latents)).sample
    skipped = ms_model.decode(ms.Tensor(latents))[0]
    assert_close(skipped, expected, TOL, "decode with a custom processor")
    assert rel_l2(skipped, default) > 1e-3

    # bad dicts change nothing
    with pytest.raises(ValueError, match="number of processors 1 does not match .* attention layers: 2"):
        ms_model.set_attn_processor({names[0]: AttnProcessor()})
    with pytest.raises(ValueError, match="Unknown attention processor keys .*mid_block.processor"):
        ms_model.set_attn_processor({names[0]: AttnProcessor(), "mid_block.processor": AttnProcessor()})
    assert all(isinstance(p, _SkipAttention) for p in ms_model.attn_processors.values())
    with pytest.raises(ValueError, match="Cannot call `set_default_attn_processor`"):
        ms_model.set_default_attn_processor()

    class _Doubled(AttnProcessor):  # a subclass is a custom processor too, as upstream (exact classes only)
        def __call__(self, *args, **kwargs):
            return super().__call__(*args, **kwargs) * 2

    ms_model.set_attn_processor(_Doubled())
    with pytest.raises(ValueError, match="Cannot call `set_default_attn_processor`"):
        ms_model.set_default_attn_processor()
    ms_model.set_attn_processor({name: AttnProcessor() for name in names})
    ms_model.set_default_attn_processor()
    torch_model.set_attn_processor(TorchAttnProcessor())
    with torch.no_grad():
        expected = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.decode(ms.Tensor(latents))[0], expected, TOL, "decode after set_default_attn_processor")
    np.testing.assert_allclose(ms_model.decode(ms.Tensor(latents))[0].asnumpy(), default, rtol=0, atol=1e-6)


def test_compiled_cpu_path_graph_lifecycle(monkeypatch):
    """The whole-decoder graph (`CompiledWhenLarge`): the free C heap is released once per fresh compile, not per call; the
    weights are passed into the inlined helpers without copies (`_in_graph`); under `ms.grad` of the model in
    inference mode the decoder runs op by op (a cell-executor run is not differentiated by PyNative: zero gradients),
    with the gradients of the op-by-op run."""
    from mindone.diffusers.models import cpu_layers

    monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    releases = []
    monkeypatch.setattr(cpu_layers, "release_free_heap", lambda: releases.append(1))
    torch_model, ms_model = make_twins(TINY_32_64, seed=1)
    latents = randn((1, 4, 12, 8), seed=1)
    z = ms.Tensor(latents)

    def loss(x):
        return (ms_model.decode(x)[0] ** 2).mean()

    expected_grad = ms.grad(loss)(z)  # op by op: below the threshold
    monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 24 * 16 * 32)
    with torch.no_grad():
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
        t_small = torch_model.decode(torch.from_numpy(latents[:, :, :10])).sample
    assert_close(ms_model.decode(z)[0], t_dec, TOL, "decode, whole graph")
    assert len(releases) == 1 and len(ms_model.decoder.compile_cache) == 1
    assert_close(ms_model.decode(z)[0], t_dec, TOL, "decode, whole graph, second call")
    assert len(releases) == 1
    # the tiling options are read by the VAE's own methods, not by the decoder: toggling them (tiles larger than
    # these latents) keeps the decoder's graph
    phases = set(ms_model.decoder.compile_cache)
    for _ in range(2):
        ms_model.enable_tiling()
        ms_model.disable_tiling()
    ms_model.tile_overlap_factor = 0.5
    assert_close(ms_model.decode(z)[0], t_dec, TOL, "decode, whole graph, after toggling tiling")
    assert len(releases) == 1 and set(ms_model.decoder.compile_cache) == phases
    ms_model.tile_overlap_factor = 0.25
    monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 20 * 16 * 32)  # another input signature: a new graph
    assert_close(ms_model.decode(ms.Tensor(latents[:, :, :10]))[0], t_small, TOL, "decode, whole graph, new shape")
    assert len(releases) == 2 and len(ms_model.decoder.compile_cache) == 2
    monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 24 * 16 * 32)
    grad = ms.grad(loss)(z)
    assert len(releases) == 2 and len(ms_model.decoder.compile_cache) == 2
    assert float(np.linalg.norm(to_numpy(expected_grad))) > 0
    assert_close(grad, to_numpy(expected_grad), 1e-6, "gradients through the decoder")


def test_in_graph_marker():
    from mindone.diffusers.models import cpu_layers

    param = ms.Parameter(ms.Tensor(np.ones((2,), dtype=np.float32)), name="w")
    assert cpu_layers._in_graph() is False
    copy = cpu_layers._arg(param)
    assert not isinstance(copy, ms.Parameter)
    np.testing.assert_array_equal(to_numpy(copy), np.ones(2))

    @ms.jit
    def marked(x):
        if cpu_layers._in_graph():
            return x + 1
        return x

    np.testing.assert_array_equal(to_numpy(marked(ms.Tensor(np.zeros((1,), dtype=np.float32)))), [1.0])


def test_return_types():
    _, ms_model = make_twins(TINY)
    image = ms.Tensor(randn((1, 3, 16, 16)))
    out = ms_model.encode(image, return_dict=True)
    assert isinstance(out, AutoencoderKLOutput) and isinstance(out.latent_dist, DiagonalGaussianDistribution)
    latents = out.latent_dist.mode()
    assert latents.shape == (1, 4, 8, 8)
    dec = ms_model.decode(latents, return_dict=True)
    assert isinstance(dec, DecoderOutput) and dec.sample.shape == (1, 3, 16, 16)
    assert isinstance(ms_model.decode(latents), tuple)
    fwd = ms_model(image, return_dict=True)
    assert isinstance(fwd, DecoderOutput)
    np.testing.assert_array_equal(to_numpy(fwd.sample), to_numpy(ms_model(image)[0]))
    assert ms_model.config.scaling_factor == 0.18215 and ms_model.config.shift_factor is None


@pytest.mark.parametrize("logvar_scale", [0.3, 3.0, 12.0])
def test_posterior_statistics_with_small_and_large_log_variances(logvar_scale):
    # std, var and the KL come from exp(logvar): MindSpore's CPU float32 Exp is off by up to ~1e-5 (relative), and the
    # KL's `var - 1 - logvar` cancels most digits for small log-variances (1.2e-5 off torch before it ran in float64)
    rng = np.random.default_rng(33)
    shape = (3, 4, 5, 3)
    mean = 0.2 * rng.standard_normal(shape)
    logvar = np.clip(logvar_scale * rng.standard_normal(shape), -30.0, 20.0)
    parameters = np.concatenate([mean, logvar], 1).astype(np.float32)
    other_parameters = np.concatenate([mean[::-1], logvar[:, ::-1]], 1).astype(np.float32)
    post, other = (
        DiagonalGaussianDistribution(ms.Tensor(parameters)),
        DiagonalGaussianDistribution(ms.Tensor(other_parameters)),
    )
    t_post = TorchDiagonalGaussianDistribution(torch.from_numpy(parameters))
    t_other = TorchDiagonalGaussianDistribution(torch.from_numpy(other_parameters))
    for name in ("std", "var"):
        assert_close(getattr(post, name), getattr(t_post, name), 1e-6, name)
    assert_close(post.kl(), t_post.kl(), 1e-6, "kl")
    assert_close(post.kl(other), t_post.kl(t_other), 1e-6, "kl(other)")
    x = randn(shape, seed=2)
    assert_close(post.nll(ms.Tensor(x)), t_post.nll(torch.from_numpy(x)), 1e-6, "nll")


def test_posterior_kl_nll_deterministic():
    torch_model, ms_model = make_twins(TINY)
    image = randn((2, 3, 16, 16))
    other_image = randn((2, 3, 16, 16), seed=5)
    with torch.no_grad():
        t_post = torch_model.encode(torch.from_numpy(image)).latent_dist
        t_other = torch_model.encode(torch.from_numpy(other_image)).latent_dist
    post = ms_model.encode(ms.Tensor(image))[0]
    other = ms_model.encode(ms.Tensor(other_image))[0]
    assert_close(post.kl(), t_post.kl(), TOL, "kl")
    assert_close(post.kl(other), t_post.kl(t_other), TOL, "kl(other)")
    x = randn(tuple(t_post.mean.shape), seed=2)
    assert_close(post.nll(ms.Tensor(x)), t_post.nll(torch.from_numpy(x)), TOL, "nll")
    assert_close(post.nll(ms.Tensor(x), dims=[1, 2]), t_post.nll(torch.from_numpy(x), dims=[1, 2]), TOL, "nll dims")

    moments = post.parameters
    det = DiagonalGaussianDistribution(moments, deterministic=True)
    np.testing.assert_array_equal(to_numpy(det.std), np.zeros(tuple(det.mean.shape), np.float32))
    np.testing.assert_array_equal(to_numpy(det.sample(np.random.default_rng(0))), to_numpy(det.mean))
    assert float(to_numpy(det.kl())[0]) == 0.0 and float(to_numpy(det.nll(ms.Tensor(x)))[0]) == 0.0

    # a list of generators draws one batch element from each, like randn_tensor
    gens = [np.random.default_rng(10), np.random.default_rng(11)]
    noise = np.stack([np.random.default_rng(s).standard_normal((1, 4, 8, 8), dtype=np.float32)[0] for s in (10, 11)])
    expected = t_post.mean + t_post.std * torch.from_numpy(noise)
    assert_close(post.sample(generator=gens), expected, TOL, "sample with a generator list")


def tiled_twins(config, sample_size):
    torch_model, ms_model = make_twins({**config, "sample_size": sample_size})
    torch_model.enable_tiling()
    ms_model.enable_tiling()
    assert ms_model.tile_sample_min_size == sample_size
    assert ms_model.tile_latent_min_size == torch_model.tile_latent_min_size
    return torch_model, ms_model


@pytest.mark.parametrize("config", [TINY_32_64, {**TINY_32_64, "use_quant_conv": False, "use_post_quant_conv": False}])
def test_tiled_encode_decode_parity(config):
    # tiles of 16 pixels / 8 latents, overlap 0.25: edge tiles are partial, several blends per row and column
    torch_model, ms_model = tiled_twins(config, sample_size=16)
    image = randn((2, 3, 40, 28))
    latents = randn((1, 4, 19, 13), seed=1)
    with torch.no_grad():
        t_post = torch_model.encode(torch.from_numpy(image)).latent_dist
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
        t_untiled = torch_model._decode(torch.from_numpy(latents[:, :, :8, :8])).sample
    post = ms_model.encode(ms.Tensor(image))[0]
    assert_close(post.mode(), t_post.mode(), TOL, "tiled encode mean")
    assert_close(post.std, t_post.std, TOL, "tiled encode std")
    dec = ms_model.decode(ms.Tensor(latents))[0]
    assert dec.shape == (1, 3, 38, 26)
    assert_close(dec, t_dec, TOL, "tiled decode")
    # at the tile size itself no tiling happens
    assert_close(ms_model.decode(ms.Tensor(latents[:, :, :8, :8]))[0], t_untiled, TOL, "decode at tile size")

    with pytest.warns(FutureWarning):
        (legacy,) = ms_model.tiled_encode(ms.Tensor(image))
    assert_close(legacy.mode(), t_post.mode(), TOL, "tiled_encode (deprecated API)")
    assert_close(ms_model.tiled_decode(ms.Tensor(latents))[0], t_dec, TOL, "tiled_decode")

    ms_model.disable_tiling()
    torch_model.disable_tiling()
    with torch.no_grad():
        t_plain = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.decode(ms.Tensor(latents))[0], t_plain, TOL, "decode after disable_tiling")


def test_blend_matches_upstream():
    _, ms_model = make_twins(TINY)
    torch_model = TorchAutoencoderKL(**TINY)
    for shape_a, shape_b, extent in [
        ((1, 2, 6, 5), (1, 2, 4, 5), 3),
        ((2, 1, 3, 7), (2, 1, 3, 2), 4),
        ((1, 1, 4, 4), (1, 1, 4, 4), 0),
    ]:
        a, b = randn(shape_a), randn(shape_b, seed=1)
        expected_v = torch_model.blend_v(torch.from_numpy(a[..., : shape_b[3]]), torch.from_numpy(b.copy()), extent)
        got_v = ms_model.blend_v(ms.Tensor(a[..., : shape_b[3]]), ms.Tensor(b), extent)
        np.testing.assert_array_equal(to_numpy(got_v), to_numpy(expected_v))
        a_h, b_h = a[:, :, : shape_b[2]], b
        expected_h = torch_model.blend_h(torch.from_numpy(a_h), torch.from_numpy(b_h.copy()), extent)
        got_h = ms_model.blend_h(ms.Tensor(a_h), ms.Tensor(b_h), extent)
        np.testing.assert_array_equal(to_numpy(got_h), to_numpy(expected_h))


def test_sliced_encode_decode_parity():
    torch_model, ms_model = make_twins(TINY_32_64)
    torch_model.enable_slicing()
    ms_model.enable_slicing()
    image = randn((3, 3, 16, 24))
    latents = randn((3, 4, 6, 5), seed=1)
    with torch.no_grad():
        t_post = torch_model.encode(torch.from_numpy(image)).latent_dist
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.encode(ms.Tensor(image))[0].mode(), t_post.mode(), TOL, "sliced encode")
    sliced = ms_model.decode(ms.Tensor(latents))[0]
    assert_close(sliced, t_dec, TOL, "sliced decode")
    ms_model.disable_slicing()
    assert_close(ms_model.decode(ms.Tensor(latents))[0], sliced, TOL, "unsliced vs sliced decode")


def test_graph_mode_equals_pynative():
    _, ms_model = make_twins({**TINY_32_64, "sample_size": 16})
    image = ms.Tensor(randn((2, 3, 24, 16)))
    latents = ms.Tensor(randn((2, 4, 10, 9), seed=1))
    pynative = {
        "mode": ms_model.encode(image)[0].mode(),
        "decode": ms_model.decode(latents)[0],
        "sampled": ms_model(image, sample_posterior=True, generator=np.random.default_rng(1))[0],
    }
    ms_model.enable_tiling()
    pynative["tiled_mode"] = ms_model.encode(image)[0].mode()
    pynative["tiled_decode"] = ms_model.decode(latents)[0]
    ms_model.disable_tiling()

    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        graph = {
            "mode": ms_model.encode(image)[0].mode(),
            "decode": ms_model.decode(latents)[0],
            "sampled": ms_model(image, sample_posterior=True, generator=np.random.default_rng(1))[0],
        }
        ms_model.enable_tiling()
        graph["tiled_mode"] = ms_model.encode(image)[0].mode()
        graph["tiled_decode"] = ms_model.decode(latents)[0]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for key in pynative:
        assert_close(graph[key], pynative[key], 1e-6, f"GRAPH_MODE vs PyNative: {key}")


@pytest.mark.parametrize(
    "config", [TINY_32_64, {**FLUX, "block_out_channels": [32, 32, 64, 64]}], ids=["32-64", "flux"]
)
def test_jit_of_construct_matches_diffusers(config):
    """`model.construct = ms.jit(model.construct)` (how mindone's module tests compile a model): the forward pass with
    the posterior's mode compiles as one graph and matches diffusers."""
    torch_model, ms_model = make_twins(config)
    image = randn((2, 3, 32, 24))
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(image)).sample.numpy()
    ms_model.construct = ms.jit(ms_model.construct)
    assert_close(ms_model(ms.Tensor(image))[0], expected, TOL, "jit forward")


def test_jit_of_construct_follows_tiling_options():
    """Under `ms.jit`, the tiling options `construct` reads are constants of the graph: enabling tiling or new tile
    sizes after a first call recompile; the tiled forward blends as diffusers (it was 4e-2 off: the in-place blending
    of a list of tiles is not seen in a graph)."""
    torch_model, ms_model = make_twins(TINY_32_64)
    image = randn((2, 3, 32, 24))
    ms_model.construct = ms.jit(ms_model.construct)
    with torch.no_grad():
        assert_close(ms_model(ms.Tensor(image))[0], torch_model(torch.from_numpy(image)).sample, TOL, "untiled")
        for sample, latent in ((16, 8), (24, 12)):
            for model in (ms_model, torch_model):
                model.enable_tiling()
                model.tile_sample_min_size, model.tile_latent_min_size = sample, latent
            expected = torch_model(torch.from_numpy(image)).sample
            assert_close(ms_model(ms.Tensor(image))[0], expected, TOL, f"tiles of {sample}")
        for model in (ms_model, torch_model):
            model.disable_tiling()
        assert_close(ms_model(ms.Tensor(image))[0], torch_model(torch.from_numpy(image)).sample, TOL, "untiled again")


def test_load_diffusers_folder(tmp_path):
    torch_model, _ = make_twins({**TINY, "scaling_factor": 0.3611, "shift_factor": 0.1159})
    torch_model.save_pretrained(tmp_path / "vae")
    ms_model = AutoencoderKL.from_pretrained(str(tmp_path), subfolder="vae")
    assert ms_model.config.shift_factor == 0.1159 and ms_model.config.scaling_factor == 0.3611
    latents = randn((1, 4, 6, 6))
    with torch.no_grad():
        expected = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(ms_model.decode(ms.Tensor(latents))[0], expected, TOL, "decode after from_pretrained")

    # and back: our folder loads in diffusers with the same weights
    ms_model.save_pretrained(tmp_path / "ours")
    reloaded = TorchAutoencoderKL.from_pretrained(tmp_path / "ours").eval()
    for key, value in torch_model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)
    # parameters in diffusers' state-dict order (the decoder's up blocks before its mid block): sharded saves split
    # the keys as diffusers does
    assert [name for name, _ in ms_model.parameters_and_names()] == list(torch_model.state_dict())
    ms_model.save_pretrained(tmp_path / "ours_sharded", max_shard_size="2KB")
    torch_model.save_pretrained(tmp_path / "theirs_sharded", max_shard_size="2KB")
    index = "diffusion_pytorch_model.safetensors.index.json"
    with open(tmp_path / "ours_sharded" / index) as ours, open(tmp_path / "theirs_sharded" / index) as theirs:
        assert json.load(ours) == json.load(theirs)


# ---------------------------------------------------------------------------------------------------------------------
# building blocks, options the FLUX VAE does not use, CPU composites
# ---------------------------------------------------------------------------------------------------------------------


def block_twins(torch_cls, ms_cls, seed=0, **kwargs):
    torch.manual_seed(seed)
    torch_block = torch_cls(**kwargs).eval()
    with torch.no_grad():
        for name, param in torch_block.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    ms_block = ms_cls(**kwargs)
    load_torch_weights(ms_block, torch_block)
    return torch_block, ms_block


@pytest.mark.parametrize(
    "kwargs, with_temb",
    [
        ({"in_channels": 8, "out_channels": 16, "temb_channels": None, "groups": 4}, False),
        ({"in_channels": 8, "temb_channels": 6, "groups": 4, "output_scale_factor": 2.0}, True),
        ({"in_channels": 8, "temb_channels": 6, "groups": 4, "time_embedding_norm": "scale_shift"}, True),
        ({"in_channels": 8, "temb_channels": 6, "groups": 4, "skip_time_act": True, "groups_out": 2}, True),
        ({"in_channels": 8, "temb_channels": None, "groups": 4, "up": True}, False),
        ({"in_channels": 8, "temb_channels": None, "groups": 4, "down": True, "conv_shortcut_bias": False}, False),
        (
            {"in_channels": 8, "temb_channels": None, "groups": 4, "use_in_shortcut": True, "conv_2d_out_channels": 4},
            False,
        ),
        ({"in_channels": 8, "temb_channels": None, "groups": 4, "non_linearity": "mish"}, False),
        ({"in_channels": 8, "temb_channels": None, "groups": 4, "non_linearity": "gelu"}, False),
    ],
)
def test_resnet_block_options(kwargs, with_temb):
    from diffusers.models.resnet import ResnetBlock2D as TorchResnetBlock2D

    from mindone.diffusers.models.resnet import ResnetBlock2D

    torch_block, ms_block = block_twins(TorchResnetBlock2D, ResnetBlock2D, **kwargs)
    x = randn((2, 8, 7, 10))
    temb = randn((2, 6), seed=1) if with_temb else None
    with torch.no_grad():
        expected = torch_block(torch.from_numpy(x), None if temb is None else torch.from_numpy(temb))
    got = ms_block(ms.Tensor(x), None if temb is None else ms.Tensor(temb))
    assert_close(got, expected, TOL, f"ResnetBlock2D {kwargs}")


@pytest.mark.parametrize(
    "kwargs, output_size",
    [
        ({"channels": 4, "use_conv": True, "out_channels": 6}, None),
        ({"channels": 4, "use_conv": True, "name": "Conv2d_0", "kernel_size": 1, "padding": 0}, None),
        ({"channels": 4, "use_conv": False}, None),
        ({"channels": 4, "use_conv": True, "interpolate": False}, None),
        ({"channels": 4, "use_conv": True}, (11, 15)),
    ],
)
def test_upsample_options(kwargs, output_size):
    from diffusers.models.upsampling import Upsample2D as TorchUpsample2D

    from mindone.diffusers.models.upsampling import Upsample2D

    torch_block, ms_block = block_twins(TorchUpsample2D, Upsample2D, **kwargs)
    x = randn((2, 4, 5, 7))
    with torch.no_grad():
        expected = torch_block(torch.from_numpy(x), output_size=output_size)
    assert_close(ms_block(ms.Tensor(x), output_size), expected, TOL, f"Upsample2D {kwargs}")


@pytest.mark.parametrize(
    "buffer, compiled", [(None, False), (40, False), (None, True)], ids=["eager", "strips", "jit"]
)
def test_cpu_upsample_conv(monkeypatch, buffer, compiled):
    from mindone.diffusers.models import cpu_layers

    if buffer is not None:
        monkeypatch.setattr(cpu_layers, "IM2COL_BUFFER_ELEMENTS", buffer)
    if compiled:
        monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    x, weight, bias = randn((2, 3, 5, 4)), randn((4, 3, 3, 3), seed=1), randn((4,), seed=2)
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=2.0, mode="nearest")
    expected = torch.nn.functional.conv2d(upsampled, torch.from_numpy(weight), torch.from_numpy(bias), padding=1)
    conv = cpu_layers.Conv2d(3, 4, 3, padding=1)
    conv.weight.set_data(ms.Tensor(weight))
    conv.bias.set_data(ms.Tensor(bias))
    assert_close(cpu_layers.upsample_conv_cpu(ms.Tensor(x), conv), expected, TOL, "upsample + conv")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channels": 4, "use_conv": True, "padding": 0, "name": "op"},
        {"channels": 4, "use_conv": True, "padding": 1, "name": "op", "out_channels": 6},
        {"channels": 4, "use_conv": True, "padding": 0, "name": "Conv2d_0", "bias": False},
        {"channels": 4, "use_conv": False, "name": "op"},
    ],
)
def test_downsample_options(kwargs):
    from diffusers.models.downsampling import Downsample2D as TorchDownsample2D

    from mindone.diffusers.models.downsampling import Downsample2D

    torch_block, ms_block = block_twins(TorchDownsample2D, Downsample2D, **kwargs)
    x = randn((2, 4, 9, 6))
    with torch.no_grad():
        expected = torch_block(torch.from_numpy(x))
    assert_close(ms_block(ms.Tensor(x)), expected, TOL, f"Downsample2D {kwargs}")


@pytest.mark.parametrize(
    "kwargs, with_temb",
    [
        (
            {"in_channels": 8, "temb_channels": None, "resnet_groups": 4, "attention_head_dim": 4, "num_layers": 2},
            False,
        ),
        (
            {
                "in_channels": 8,
                "temb_channels": 5,
                "resnet_groups": 2,
                "attention_head_dim": 8,
                "output_scale_factor": 2.0,
            },
            True,
        ),
        (
            {"in_channels": 8, "temb_channels": None, "resnet_groups": 4, "add_attention": False, "num_layers": 2},
            False,
        ),
        (
            {
                "in_channels": 8,
                "temb_channels": None,
                "resnet_groups": None,
                "attn_groups": 2,
                "attention_head_dim": 8,
            },
            False,
        ),
    ],
)
def test_mid_block_options(kwargs, with_temb):
    from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2D as TorchUNetMidBlock2D

    from mindone.diffusers.models.unets import UNetMidBlock2D

    torch_block, ms_block = block_twins(TorchUNetMidBlock2D, UNetMidBlock2D, **kwargs)
    x = randn((2, 8, 5, 6))
    temb = randn((2, 5), seed=1) if with_temb else None
    with torch.no_grad():
        expected = torch_block(torch.from_numpy(x), None if temb is None else torch.from_numpy(temb))
    got = ms_block(ms.Tensor(x), None if temb is None else ms.Tensor(temb))
    assert_close(got, expected, TOL, f"UNetMidBlock2D {kwargs}")


def test_encoder_decoder_blocks_via_factories():
    from diffusers.models.unets.unet_2d_blocks import get_down_block as torch_get_down_block
    from diffusers.models.unets.unet_2d_blocks import get_up_block as torch_get_up_block

    from mindone.diffusers.models.unets import get_down_block, get_up_block

    down = dict(
        num_layers=2,
        in_channels=4,
        out_channels=8,
        temb_channels=None,
        add_downsample=True,
        resnet_eps=1e-6,
        resnet_act_fn="silu",
        resnet_groups=2,
        downsample_padding=1,
        attention_head_dim=8,
    )
    up = dict(
        num_layers=3,
        in_channels=8,
        out_channels=4,
        prev_output_channel=8,
        temb_channels=None,
        add_upsample=True,
        resnet_eps=1e-6,
        resnet_act_fn="silu",
        resnet_groups=2,
        attention_head_dim=4,
    )
    for name, torch_factory, factory, kwargs, shape in [
        ("UNetResDownEncoderBlock2D", torch_get_down_block, get_down_block, down, (1, 4, 7, 9)),
        ("UpDecoderBlock2D", torch_get_up_block, get_up_block, up, (1, 8, 3, 5)),
    ]:
        torch.manual_seed(0)
        torch_block = torch_factory(name, **kwargs).eval()
        ms_block = factory(name, **kwargs)
        load_torch_weights(ms_block, torch_block)
        x = randn(shape)
        with torch.no_grad():
            expected = torch_block(torch.from_numpy(x))
        assert_close(ms_block(ms.Tensor(x)), expected, TOL, name)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_attention_blocks_as_upstream(mode):
    """`AttnDownEncoderBlock2D` / `AttnUpDecoderBlock2D` everywhere (several heads via the factories): the same keys
    in the same order as diffusers', the same outputs in PyNative and GRAPH_MODE."""
    config = {
        **TINY_32_64,
        "down_block_types": ["AttnDownEncoderBlock2D"] * 2,
        "up_block_types": ["AttnUpDecoderBlock2D"] * 2,
        "mid_block_add_attention": False,
    }
    torch_model, ms_model = make_twins(config, seed=4)
    assert [name for name, _ in ms_model.parameters_and_names()] == list(torch_model.state_dict())
    image, latents = randn((2, 3, 24, 40), seed=4), randn((1, 4, 5, 3), seed=5)
    with torch.no_grad():
        t_mode = torch_model.encode(torch.from_numpy(image)).latent_dist.mode()
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        assert_close(ms_model.encode(ms.Tensor(image))[0].mode(), t_mode, TOL, "posterior mode")
        assert_close(ms_model.decode(ms.Tensor(latents))[0], t_dec, TOL, "decode")
        decoded = ms_model.decoder(ms.Tensor(latents), latent_embeds=None)  # upstream's `Decoder` argument
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    with torch.no_grad():
        assert_close(decoded, torch_model.decoder(torch.from_numpy(latents), latent_embeds=None), TOL, "decoder")
    from diffusers.models.unets.unet_2d_blocks import AttnUpDecoderBlock2D as TorchAttnUp

    from mindone.diffusers.models.unets import AttnUpDecoderBlock2D

    torch_block, ms_block = block_twins(
        TorchAttnUp, AttnUpDecoderBlock2D, in_channels=8, out_channels=16, num_layers=2, resnet_groups=4,
        attention_head_dim=4,
    )  # fmt: skip
    x = randn((2, 8, 5, 6), seed=6)
    with torch.no_grad():
        assert_close(ms_block(ms.Tensor(x)), torch_block(torch.from_numpy(x)), TOL, "AttnUpDecoderBlock2D, 4 heads")


def test_models_import_as_upstream():
    import mindone.diffusers as md
    from mindone.diffusers.models import AutoencoderKL as FromModels
    from mindone.diffusers.models import Lumina2Transformer2DModel
    from mindone.diffusers.models.autoencoders import AutoencoderKL as FromAutoencoders
    from mindone.diffusers.models.transformers import Lumina2Transformer2DModel as FromTransformers
    from mindone.diffusers.pipelines import Lumina2Pipeline
    from mindone.diffusers.pipelines.lumina2 import Lumina2Pipeline as FromLumina2
    from mindone.diffusers.schedulers import FlowMatchEulerDiscreteScheduler

    assert FromModels is FromAutoencoders is AutoencoderKL
    assert FromTransformers is Lumina2Transformer2DModel is md.Lumina2Transformer2DModel
    assert FromLumina2 is Lumina2Pipeline and FlowMatchEulerDiscreteScheduler is md.FlowMatchEulerDiscreteScheduler
    assert md.models.autoencoders.autoencoder_kl.AutoencoderKL is AutoencoderKL  # submodules as attributes
    with pytest.raises(AttributeError, match="no attribute 'NotAModel'"):
        md.models.NotAModel
    # layers where diffusers (or mindone, for its GroupNorm cell) has them
    from mindone.diffusers.models import activations, attention, cpu_layers, normalization

    assert activations.FP32SiLU is attention.FP32SiLU and normalization.GroupNorm is cpu_layers.GroupNorm


def test_unsupported_options_raise():
    from mindone.diffusers.models.downsampling import Downsample2D
    from mindone.diffusers.models.resnet import ResnetBlock2D
    from mindone.diffusers.models.unets import UNetMidBlock2D, get_down_block, get_up_block
    from mindone.diffusers.models.upsampling import Upsample2D

    with pytest.raises(ValueError, match="DownBlock2D"):
        get_down_block("DownBlock2D", 1, 4, 4, None, True, 1e-6, "silu", attention_head_dim=4)
    with pytest.raises(ValueError, match="UpBlock2D"):
        get_up_block("UpBlock2D", 1, 4, 4, 4, None, True, 1e-6, "silu", attention_head_dim=4)
    with pytest.raises(ValueError, match="spatial"):
        get_up_block(
            "AttnUpDecoderBlock2D", 1, 4, 4, 4, None, True, 1e-6, "silu", 4, resnet_time_scale_shift="spatial"
        )
    with pytest.raises(ValueError, match="latent_embeds"):
        Decoder(block_out_channels=(4,), norm_num_groups=2)(ms.Tensor(randn((1, 3, 2, 2))), ms.Tensor(randn((1, 3))))
    with pytest.raises(ValueError, match="spatial"):
        UNetMidBlock2D(8, 4, resnet_time_scale_shift="spatial", resnet_groups=4, attention_head_dim=8)
    with pytest.raises(ValueError, match="kernel"):
        ResnetBlock2D(in_channels=4, groups=2, temb_channels=None, up=True, kernel="fir")
    with pytest.raises(ValueError, match="ResnetBlockCondNorm2D"):
        ResnetBlock2D(in_channels=4, groups=2, temb_channels=None, time_embedding_norm="ada_group")
    with pytest.raises(ValueError, match="use_conv_transpose"):
        Upsample2D(4, use_conv_transpose=True)
    with pytest.raises(ValueError, match="norm_type"):
        Downsample2D(4, use_conv=True, name="op", norm_type="rms_norm")
    with pytest.raises(ValueError, match="Conv2d_0"):
        Downsample2D(4, use_conv=True, name="conv")
    from mindone.diffusers.models.attention_processor import Attention

    for option in (
        dict(spatial_norm_dim=4), dict(cross_attention_norm="layer_norm"), dict(added_kv_proj_dim=4),
        dict(only_cross_attention=True), dict(out_context_dim=4), dict(context_pre_only=True), dict(pre_only=True),
        dict(is_causal=True),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=f"{next(iter(option))}.*not ported"):
            Attention(8, **option)
    # upstream's defaults of those options are accepted (diffusers' own blocks pass them explicitly)
    Attention(8, spatial_norm_dim=None, added_proj_bias=True, cross_attention_norm_num_groups=32, is_causal=False)
    with pytest.raises(ValueError, match="norm_type"):
        Decoder(norm_type="spatial")
    with pytest.raises(ValueError, match="activation function"):
        ResnetBlock2D(in_channels=4, groups=2, temb_channels=None, non_linearity="tanh")


def test_gradient_checkpointing_gives_the_same_gradients(monkeypatch):
    # upstream checkpoints the encoder's down and mid blocks and the decoder's mid and up blocks: their forward runs
    # again in the backward pass
    from mindone.diffusers.models.resnet import ResnetBlock2D
    from mindone.diffusers.models.unets.unet_2d_blocks import DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D

    calls = []
    for block_type in (DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D, ResnetBlock2D):
        construct = block_type.construct

        def counted(self, *args, _construct=construct, **kwargs):
            calls.append(type(self).__name__)
            return _construct(self, *args, **kwargs)

        monkeypatch.setattr(block_type, "construct", counted)
    vae = AutoencoderKL(**TINY_32_64)
    x = ms.Tensor(randn((2, 3, 16, 16)))
    params = vae.trainable_params()

    def loss_fn(sample):
        return (vae(sample)[0] ** 2).mean()

    grad_fn = ms.value_and_grad(loss_fn, None, params)
    vae.set_train(True)
    loss, grads = grad_fn(x)
    blocks = [c for c in calls if c != "ResnetBlock2D"]
    resnets = sum(isinstance(c, ResnetBlock2D) for _, c in vae.cells_and_names())
    assert len(blocks) == 6 and len(calls) - len(blocks) == resnets == 10  # 2 down (1 each), 2 up (2), 2 mid (2)
    vae.enable_gradient_checkpointing()
    assert vae.is_gradient_checkpointing and vae.encoder.gradient_checkpointing and vae.decoder.gradient_checkpointing
    # the cells that take the flag are upstream's
    reference = TorchAutoencoderKL(**TINY_32_64)
    reference.enable_gradient_checkpointing()
    flagged = {type(c).__name__ for _, c in vae.cells_and_names() if getattr(c, "gradient_checkpointing", False)}
    assert flagged == {type(m).__name__ for m in reference.modules() if getattr(m, "gradient_checkpointing", False)}
    calls.clear()
    loss_ckpt, grads_ckpt = grad_fn(x)
    blocks_ckpt = [c for c in calls if c != "ResnetBlock2D"]
    assert len(blocks_ckpt) == 12
    # every resnet runs twice, and the mid blocks' second resnets once more inside the recomputation of their block
    assert len(calls) - len(blocks_ckpt) == 2 * resnets + 2
    vae.disable_gradient_checkpointing()
    assert not vae.is_gradient_checkpointing
    assert float(loss) == float(loss_ckpt)
    assert all(float(g.abs().max()) > 0 for g in grads[:4])
    for param, g, g_ckpt in zip(params, grads, grads_ckpt):
        assert rel_l2(g_ckpt, g) <= 1e-6, param.name
    with pytest.raises(ValueError, match="gradient_checkpointing_func"):
        vae.enable_gradient_checkpointing(gradient_checkpointing_func=lambda *a: None)


def test_gradients_match_torch():
    """The gradients of a loss through encode (posterior mode) and decode with respect to every parameter and the image
    equal diffusers' (mid-block attention, quant convs, odd size, batch 2). The reference is diffusers in float64:
    these gradients are ill-conditioned enough that diffusers' own float32 ones are up to ~1e-5 from it, so each of
    ours must be within 1e-5 or twice diffusers' float32 error, whichever is larger. Gradients that are zero in exact
    arithmetic (a key bias under the softmax, a bias the next group norm removes) must stay at rounding level."""
    torch_model, ms_model = make_twins({**TINY_32_64, "norm_num_groups": 8})
    image = randn((2, 3, 18, 22), seed=3)
    with torch.no_grad():
        out_shape = torch_model(torch.from_numpy(image)).sample.shape
    weights = randn(tuple(out_shape), seed=4)

    def torch_grads(dtype):
        model = copy.deepcopy(torch_model).to(dtype)
        x = torch.from_numpy(image).to(dtype).requires_grad_()
        (model(x).sample * torch.from_numpy(weights).to(dtype)).sum().backward()
        grads = {name: p.grad.double().numpy() for name, p in model.named_parameters()}
        return grads, x.grad.double().numpy()

    exact, exact_image = torch_grads(torch.float64)
    single, single_image = torch_grads(torch.float32)

    weights_ms = ms.Tensor(weights)

    def loss(x):
        return (ms_model(x)[0] * weights_ms).sum()

    params = ms_model.trainable_params()
    grad_image, grads = ms.grad(loss, grad_position=0, weights=params)(ms.Tensor(image))
    assert rel_l2(grad_image, exact_image) <= max(TOL, 2 * rel_l2(single_image, exact_image))
    assert sorted(p.name for p in params) == sorted(exact)
    typical = np.median([np.linalg.norm(g) for g in exact.values()])
    zero = 0
    for param, grad in zip(params, grads):
        name, grad = param.name, grad.asnumpy().astype(np.float64)
        if np.linalg.norm(exact[name]) < 1e-6 * typical:
            zero += 1
            assert np.linalg.norm(grad) < 1e-5 * typical, name
            continue
        bound = max(TOL, 2 * rel_l2(single[name], exact[name]))
        assert rel_l2(grad, exact[name]) <= bound, f"gradient of {name}: {rel_l2(grad, exact[name]):.2e} > {bound:.2e}"
    assert 0 < zero < len(params) // 4  # the two attention blocks' key biases at least


@pytest.mark.parametrize("path", ["graph", "jit"])
def test_posterior_inside_a_compiled_function_raises(path):
    # the posterior is a host object: inside `ms.grad` in GRAPH_MODE or `ms.jit` its gradients came out as zeros
    # (sample_posterior=True failed in a convolution): a clear error now; the moments' halves are the graph's way
    from mindspore import mint

    torch_model, ms_model = make_twins(TINY_32_64)
    image = randn((1, 3, 10, 14), seed=5)
    x = torch.from_numpy(image).requires_grad_()
    torch_model.encode(x).latent_dist.mode().square().sum().backward()

    def through_posterior(x):
        return ms_model.encode(x)[0].mode().square().sum()

    def sampled(x):
        return ms_model(x, sample_posterior=True)[0].sum()

    def through_moments(x):
        return mint.chunk(ms_model._encode(x), 2, dim=1)[0].square().sum()

    def compiled(fn):
        grad = ms.grad(fn, 0)
        return ms.jit(grad) if path == "jit" else grad

    if path == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        for fn in (through_posterior, sampled):
            with pytest.raises(RuntimeError, match="cannot run inside a compiled function"):
                compiled(fn)(ms.Tensor(image))
        assert_close(compiled(through_moments)(ms.Tensor(image)), x.grad, TOL, "gradient through the moments")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    # from Python the posterior keeps working, with its gradients
    assert_close(ms.grad(through_posterior, 0)(ms.Tensor(image)), x.grad, TOL, "gradient through the posterior")


def test_gradient_checkpointing_unsupported_raises():
    from mindone.diffusers import ModelMixin

    class NoCheckpointing(ModelMixin):
        pass

    with pytest.raises(ValueError, match="NoCheckpointing does not support gradient checkpointing"):
        NoCheckpointing().enable_gradient_checkpointing()
    NoCheckpointing().disable_gradient_checkpointing()  # a no-op, as upstream


@pytest.mark.parametrize("mode", ["pynative", "compiled", "graph"])
def test_bad_inputs_raise_clear_errors(monkeypatch, mode):
    from mindone.diffusers.models import cpu_layers

    if mode == "compiled":  # the compiled CPU paths: helpers and the whole encoder / decoder graph
        monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
        monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 1)
    vae = AutoencoderKL(**TINY)
    vae.set_train(False)
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    with pytest.raises(ValueError, match=r"`x` must be \(batch_size, in_channels=3, height, width\)"):
        vae.encode(ms.Tensor(randn((1, 4, 16, 16))))
    with pytest.raises(ValueError, match=r"`z` must be \(batch_size, latent_channels=4, height, width\)"):
        vae.decode(ms.Tensor(randn((1, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"`x` must be"):
        vae.encode(ms.Tensor(randn((3, 16, 16))))
    # too small for the stride-2 convolution of the downsampler (diffusers fails too, with torch's message)
    with pytest.raises(ValueError, match=r"`x` is 1x1, but its 1 downsamplers need a height and width of at least 2"):
        vae.encode(ms.Tensor(randn((1, 3, 1, 1))))
    assert vae.encode(ms.Tensor(randn((1, 3, 2, 2))))[0].mean.shape == (1, 4, 1, 1)
    assert vae.encode(ms.Tensor(randn((1, 3, 16, 16))))[0].mean.shape == (1, 4, 8, 8)
    vae.enable_tiling()  # tiles of 32 pixels, 24 apart: the last tiles of a 49x34 image are 1x10
    with pytest.raises(ValueError, match=r"the last tile of the tiled encode is 1x10 pixels, .* at least 2: pad"):
        vae.encode(ms.Tensor(randn((1, 3, 49, 34))))
    assert vae.encode(ms.Tensor(randn((1, 3, 50, 34))))[0].mean.shape == (1, 4, 25, 17)
    vae.tile_overlap_factor = 1.0  # upstream: "range() arg 3 must not be zero"
    with pytest.raises(ValueError, match=r"`tile_overlap_factor` 1.0 leaves no stride between tiles of 32 pixels"):
        vae.encode(ms.Tensor(randn((1, 3, 50, 34))))
    vae.tile_overlap_factor = 0.25
    vae.disable_tiling()
    # an empty batch (MindSpore's convolutions refuse it; diffusers fails in the mid-block attention)
    with pytest.raises(ValueError, match=r"`z` has an empty batch \(shape \(0, 4, 8, 8\)\)"):
        vae.decode(ms.Tensor(randn((0, 4, 8, 8))))
    with pytest.raises(ValueError, match="`x` has an empty batch"):
        vae(ms.Tensor(randn((0, 3, 16, 16))))
    # NumPy arrays (the dtype check compared a NumPy and a MindSpore dtype) and lists
    with pytest.raises(TypeError, match=r"`x` must be a mindspore.Tensor, got numpy.ndarray"):
        vae.encode(randn((1, 3, 16, 16)))
    with pytest.raises(TypeError, match=r"`z` must be a mindspore.Tensor, got builtins.list"):
        vae.decode(randn((1, 4, 8, 8)).tolist())
    with pytest.raises(ValueError, match=r"`x` is Float16 but the parameters of AutoencoderKL are Float32"):
        vae.encode(ms.Tensor(randn((1, 3, 16, 16))).astype(ms.float16))
    with pytest.raises(ValueError, match=r"`z` is Float64"):
        vae.decode(ms.Tensor(randn((1, 4, 8, 8))).astype(ms.float64))
    vae.to(ms.bfloat16)
    with pytest.raises(TypeError, match="bfloat16 parameters, which MindSpore cannot compute on CPU"):
        vae.decode(ms.Tensor(randn((1, 4, 8, 8))).astype(ms.bfloat16))
    vae.to(ms.float64)  # diffusers runs float64; MindSpore has no float64 convolution
    with pytest.raises(TypeError, match="float64 parameters, but MindSpore's convolutions have no float64 kernel"):
        vae.decode(ms.Tensor(randn((1, 4, 8, 8))).astype(ms.float64))


def test_forward_checks_its_input_before_a_jit_compiled_construct():
    # `vae.construct = ms.jit(vae.construct)`: the checks inside `construct` are skipped in the graph (they failed in
    # MindSpore's compiler); `__call__` makes them on the host first
    vae = AutoencoderKL(**TINY)
    vae.construct = ms.jit(vae.construct)
    image = randn((2, 3, 16, 16))
    expected = vae(ms.Tensor(image))[0].asnumpy()
    for bad, error, match in [
        (ms.Tensor(image).astype(ms.float16), ValueError, r"`x` is Float16 but the parameters"),
        (image, TypeError, r"`x` must be a mindspore.Tensor, got numpy.ndarray"),
        (ms.Tensor(image[:0]), ValueError, r"`x` has an empty batch"),
        (ms.Tensor(image[:, :, :1, :1]), ValueError, r"`x` is 1x1, but its 1 downsamplers"),
        (ms.Tensor(image[:, :2]), ValueError, r"`x` must be \(batch_size, in_channels=3"),
    ]:
        with pytest.raises(error, match=match):
            vae(bad)
        with pytest.raises(error, match=match):
            vae(sample=bad)
    np.testing.assert_array_equal(vae(ms.Tensor(image))[0].asnumpy(), expected)


@pytest.mark.parametrize(
    "buffer, compiled", [(None, False), (300, False), (None, True)], ids=["eager", "strips", "jit"]
)
@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 0), (3, 2, 1), (1, 1, 0), (2, 1, 0)])
def test_cpu_conv2d(monkeypatch, buffer, compiled, kernel, stride, padding):
    from mindone.diffusers.models import cpu_layers

    if buffer is not None:  # tiny im2col buffer: the convolution runs in many row strips
        monkeypatch.setattr(cpu_layers, "IM2COL_BUFFER_ELEMENTS", buffer)
    if compiled:  # the Conv2d cell takes its compiled (large input) path
        monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    x = randn((2, 5, 11, 8))
    weight, bias = randn((6, 5, kernel, kernel), seed=1), randn((6,), seed=2)
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), stride=stride, padding=padding
    )
    got = cpu_layers.conv2d_im2col(ms.Tensor(x), ms.Tensor(weight), ms.Tensor(bias), stride, padding)
    assert_close(got, expected, TOL, "conv2d_im2col")
    if stride == 1:
        got = cpu_layers.conv2d_shift_sum(ms.Tensor(x), ms.Tensor(weight), ms.Tensor(bias), padding)
        assert_close(got, expected, TOL, "conv2d_shift_sum")
    conv = cpu_layers.Conv2d(5, 6, kernel, stride=stride, padding=padding, bias=False)
    conv.weight.set_data(ms.Tensor(weight))
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(weight), stride=stride, padding=padding
    )
    assert_close(conv(ms.Tensor(x)), expected, TOL, "Conv2d cell")
    assert [name for name, _ in conv.parameters_and_names()] == ["weight"]


@pytest.mark.parametrize("compiled", [False, True], ids=["native", "composite"])
@pytest.mark.parametrize("shape, groups", [((2, 8, 5, 3), 4), ((1, 64, 9, 9), 32), ((3, 6, 1, 1), 3)])
def test_cpu_group_norm(monkeypatch, compiled, shape, groups):
    from mindone.diffusers.models import cpu_layers
    from mindone.diffusers.models.cpu_layers import GroupNorm

    if compiled:  # the composite (large input) path
        monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
        x = randn(shape) * 3 + 2
        ref = torch.nn.functional.group_norm(torch.from_numpy(x), groups, eps=1e-6)
        assert_close(cpu_layers.group_norm_cpu(ms.Tensor(x), groups, None, None, 1e-6), ref, TOL, "no affine")

    x = randn(shape) * 3 + 2  # an offset mean: the statistics are two-pass like torch's
    torch_norm = torch.nn.GroupNorm(groups, shape[1], eps=1e-6)
    with torch.no_grad():
        torch_norm.weight.normal_()
        torch_norm.bias.normal_()
        expected = torch_norm(torch.from_numpy(x))
    norm = GroupNorm(groups, shape[1], eps=1e-6)
    load_torch_weights(norm, torch_norm)
    assert_close(norm(ms.Tensor(x)), expected, TOL, "GroupNorm")


def test_cpu_group_norm_half_precision(monkeypatch):
    """float16 statistics in float32, as torch: each group's sum of squares here (~1e5) overflows float16, and the
    composite path gave all NaN (a float16 VAE decoding latents of 64x64 and more)."""
    from mindone.diffusers.models import cpu_layers
    from mindone.diffusers.models.cpu_layers import GroupNorm

    monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    x = randn((1, 8, 64, 64)) * 3 + 2
    torch_norm = torch.nn.GroupNorm(4, 8, eps=1e-6)
    with torch.no_grad():
        torch_norm.weight.normal_()
        torch_norm.bias.normal_()
        expected = torch_norm.half()(torch.from_numpy(x).half()).float()
    norm = GroupNorm(4, 8, eps=1e-6)
    load_torch_weights(norm, torch_norm)
    out = norm(ms.Tensor(x).astype(ms.float16))
    assert out.dtype == ms.float16
    assert_close(out.astype(ms.float32), expected, 1e-3, "float16 GroupNorm")


def test_native_conv_selection(monkeypatch):
    """The CPU convolution path follows oneDNN's ISA: the native kernel where it is oneDNN's GEMM convolution (AVX2 or
    lower), the im2col composite (and the fused upsampler) otherwise."""
    from mindone.diffusers.models import cpu_layers
    from mindone.diffusers.models.upsampling import Upsample2D

    native = cpu_layers.native_conv_is_fast()
    if os.environ.get("MINDONE_EXPECT_NATIVE_CONV") == "1":  # set by test_vae_with_onednn_avx2 below
        assert native
    assert cpu_layers.Conv2d(4, 4, 3, padding=1).use_im2col is not native
    assert cpu_layers.Conv2d(4, 4, 1).use_im2col is False
    assert Upsample2D(4, use_conv=True).fused_cpu is not native

    def detect(isa, machine="x86_64", flags=None):
        cpu_layers.native_conv_is_fast.cache_clear()
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        monkeypatch.setattr(cpu_layers.platform, "machine", lambda: machine)
        monkeypatch.setattr(cpu_layers, "_cpu_flags", lambda: flags)
        try:
            return cpu_layers.native_conv_is_fast()
        finally:
            cpu_layers.native_conv_is_fast.cache_clear()

    avx512 = {"avx2", "avx512f", "avx512bw"}
    assert detect("AVX2", flags=avx512) and detect("avx2", flags=avx512) and detect("SSE41", flags=avx512)
    assert not detect("", flags=avx512) and not detect("AVX512_CORE", flags=avx512)
    assert detect("", flags={"avx", "avx2", "fma"})  # no AVX-512: oneDNN's default is its GEMM convolution
    assert not detect("", flags=None)  # unknown CPU: the composite
    assert not detect("AVX2", machine="aarch64", flags=None)


@pytest.mark.slow
def test_vae_with_onednn_avx2():
    """With `ONEDNN_MAX_CPU_ISA=AVX2` (set before MindSpore starts) the convolutions run on MindSpore's kernel: the
    parity, compiled-path and GRAPH_MODE tests of this file, again, in such a process."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "MINDONE_EXPECT_NATIVE_CONV": "1"}
    selected = (
        "native_conv_selection or encode_decode_parity or compiled_cpu_paths or graph_mode_equals_pynative"
        " or upsample_options or downsample_options or cpu_conv2d"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", __file__, "-k", selected],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # exit code 0: every selected test passed (5 if none had been collected)
    assert " passed" in summary and "skipped" not in summary, summary


def test_cpu_group_norm_of_flat_activations(monkeypatch):
    # piecewise-constant inputs (what a solid-colour image makes): float32 sums of long rows of alike values round
    # coherently (1e-5 over 64k terms) and a flat group's normalisation divides its mean's error by a small deviation;
    # the composite sums short blocks and adds their sums in float64 (as accurate as torch's cascade sum)
    from mindone.diffusers.models import cpu_layers
    from mindone.diffusers.models.cpu_layers import GroupNorm

    x = np.ones((1, 64, 256, 256), np.float32) * randn((1, 64, 1, 1))
    x[..., 0, :] *= 0.3
    x[..., :, -1] += 1
    x = x[..., :255, :253]  # rows of an odd length: blocks of another size
    expected = torch.nn.functional.group_norm(torch.from_numpy(x).double(), 32, eps=1e-6).numpy()
    torch_error = rel_l2(torch.nn.functional.group_norm(torch.from_numpy(x), 32, eps=1e-6), expected)
    bound = max(3 * torch_error, 3e-7)
    assert rel_l2(cpu_layers.group_norm_cpu(ms.Tensor(x), 32, None, None, 1e-6), expected) <= bound
    # inside a graph: the cell compiled in GRAPH_MODE
    monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
    norm = GroupNorm(32, 64, eps=1e-6)
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        assert rel_l2(norm(ms.Tensor(x)), expected) <= bound
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_encode_of_a_solid_colour_matches_diffusers():
    # the whole encoder at a size that takes the CPU composites (`SMALL_ELEMENTS`) on its own. (Decoding such flat
    # latents is 1.5e-5 from diffusers: MindSpore's float32 softmax and GEMMs in the mid-block attention after a
    # near-flat group norm, see docs/guides/differences.md.)
    torch_model, ms_model = make_twins(TINY_32_64)
    image = np.ones((1, 3, 256, 256), np.float32) * np.array([0.8, -0.3, 0.1], np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        posterior = torch_model.encode(torch.from_numpy(image)).latent_dist
    ours = ms_model.encode(ms.Tensor(image))[0]
    assert_close(ours.mode(), posterior.mode(), TOL, "posterior mode")
    assert_close(ours.std, posterior.std, TOL, "posterior std")
