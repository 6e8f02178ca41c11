"""Lumina2Pipeline and DiffusionPipeline: parity with diffusers 0.42.1 on the same weights and initial latents.

The reference side is diffusers' `Lumina2Pipeline` (torch) built from upstream's tiny test components with a
transformers `Gemma2Model` text encoder and the local Gemma tokenizer; diffusers saves it and our pipeline loads that
folder unchanged. Images are compared with the relative L2 error (fp32, <= 1e-5).
"""

import inspect
import io
import json
import os
import shutil
import subprocess
import sys

import diffusers
import numpy as np
import PIL.Image
import pytest
import torch
from transformers import Gemma2Config
from transformers import Gemma2ForCausalLM as TorchGemma2ForCausalLM
from transformers import Gemma2Model as TorchGemma2Model

import mindspore as ms

from mindone.diffusers import (
    AutoPipelineForText2Image,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    ImagePipelineOutput,
    Lumina2Pipeline,
)
from mindone.diffusers.pipelines.lumina2 import pipeline_lumina2
from mindone.diffusers.pipelines.lumina2.pipeline_lumina2 import SYSTEM_PROMPTS
from mindone.testing import build_gemma_tokenizer
from mindone.transformers import Gemma2Model
from tests.testing_utils import assert_close, captured_warnings, rel_l2

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PROMPT = "A painting of a squirrel eating a burger"
LONG_PROMPT = "A futuristic city skyline at night with neon lights, flying cars and a red apple on a white plate"


# ----------------------------------------------------------------------------------------------------------------------
# reference components (diffusers / transformers, torch)


def _torch_pipeline(tokenizer, real_widths=False, dynamic_shift=False):
    """Upstream's dummy Lumina2 components (or the real widths with one layer each), as a diffusers pipeline."""
    if real_widths:
        transformer_kw = dict(
            sample_size=4, patch_size=2, in_channels=16, hidden_size=2304, num_layers=1, num_refiner_layers=1,
            num_attention_heads=24, num_kv_heads=8, multiple_of=256, axes_dim_rope=(32, 32, 32), cap_feat_dim=2304,
        )  # fmt: skip
        vae_kw = dict(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=1,
            latent_channels=16, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
            scaling_factor=0.3611, shift_factor=0.1159,
        )  # fmt: skip
        text_kw = dict(
            hidden_size=2304, intermediate_size=9216, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
            num_hidden_layers=1,
        )  # fmt: skip
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=6.0)
    else:
        transformer_kw = dict(
            sample_size=4, patch_size=2, in_channels=4, hidden_size=8, num_layers=2, num_attention_heads=1,
            num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5, scaling_factor=1.0,
            axes_dim_rope=[4, 2, 2], cap_feat_dim=8,
        )  # fmt: skip
        vae_kw = dict(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
            latent_channels=4, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
            shift_factor=0.0609, scaling_factor=1.5035,
        )  # fmt: skip
        text_kw = dict(
            head_dim=2, hidden_size=8, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            num_key_value_heads=4,
        )  # fmt: skip
        # with dynamic shifting, a short sequence range so the tiny images get clearly different shifts
        shift_kw = dict(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=64) if dynamic_shift else {}
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**shift_kw)
    torch.manual_seed(0)
    transformer = diffusers.Lumina2Transformer2DModel(**transformer_kw)
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(**vae_kw)
    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, bos_token_id=2, **text_kw)
    text_encoder = TorchGemma2Model(config)
    pipe = diffusers.Lumina2Pipeline(
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=scheduler,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ms_pipeline(path, **kwargs):
    pipe = Lumina2Pipeline.from_pretrained(path, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tokenizer():
    return build_gemma_tokenizer()


@pytest.fixture(scope="module")
def tiny(tokenizer, tmp_path_factory):
    """(diffusers pipeline, our pipeline loaded from the folder diffusers saved, that folder)."""
    path = str(tmp_path_factory.mktemp("lumina2") / "tiny")
    tp = _torch_pipeline(tokenizer)
    tp.save_pretrained(path)
    return tp, _ms_pipeline(path), path


def _latents(batch, channels=4, height=32, width=32, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, channels, height // 8, width // 8)).astype(np.float32)


def _run_torch(tp, latents, **kwargs):
    with torch.no_grad():
        return tp(latents=torch.from_numpy(latents), output_type="np", **kwargs).images


def _run_ms(mp, latents, **kwargs):
    return mp(latents=ms.Tensor(latents), output_type="np", **kwargs)[0]


BASE = dict(prompt=PROMPT, num_inference_steps=2, guidance_scale=5.0, height=32, width=32)

PARITY_CASES = {
    "default": dict(BASE),
    "negative_prompt": dict(BASE, negative_prompt="blurry, low quality"),
    "num_images_per_prompt_2": dict(BASE, num_images_per_prompt=2),
    "two_prompts_different_lengths": dict(BASE, prompt=["a cat", LONG_PROMPT]),
    "cfg_trunc_ratio": dict(BASE, num_inference_steps=4, cfg_trunc_ratio=0.5),
    "cfg_normalization_off": dict(BASE, cfg_normalization=False),
    "guidance_1": dict(BASE, guidance_scale=1.0),
    "custom_sigmas": dict(BASE, sigmas=[1.0, 0.7, 0.3]),
    "system_prompt_seq_len_non_square": dict(
        BASE, width=48, system_prompt="You draw pictures.", max_sequence_length=32, negative_prompt="dark"
    ),
}


@pytest.fixture(scope="module")
def base_image(tiny):
    """Our image for `BASE` with `_latents(1)`, shared by the tests that only need some reference output."""
    return _run_ms(tiny[1], _latents(1), **BASE)


@pytest.fixture(scope="module")
def embeds(tiny):
    return tiny[1].encode_prompt(PROMPT, True)


def _batch(kwargs):
    prompts = kwargs["prompt"] if isinstance(kwargs["prompt"], list) else [kwargs["prompt"]]
    return len(prompts) * kwargs.get("num_images_per_prompt", 1)


# ----------------------------------------------------------------------------------------------------------------------
# parity with diffusers


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_parity_with_diffusers(tiny, case):
    tp, mp, _ = tiny
    kwargs = PARITY_CASES[case]
    latents = _latents(_batch(kwargs), height=kwargs["height"], width=kwargs["width"])
    expected = _run_torch(tp, latents, **kwargs)
    actual = _run_ms(mp, latents, **kwargs)
    assert actual.shape == expected.shape == (_batch(kwargs), kwargs["height"] // 8, kwargs["width"] // 8, 3)
    assert_close(actual, expected, 1e-5, what=case)


def test_parity_with_layerwise_casting(tiny):
    """The transformer and the VAE stored in bfloat16 / float16 and computed in float32 (`enable_layerwise_casting`),
    in both pipelines: the same image."""
    _, _, path = tiny
    tp = diffusers.Lumina2Pipeline.from_pretrained(path)
    mp = _ms_pipeline(path)
    for pipe, (bf16, fp16, fp32) in (
        (tp, (torch.bfloat16, torch.float16, torch.float32)),
        (mp, (ms.bfloat16, ms.float16, ms.float32)),
    ):
        pipe.transformer.enable_layerwise_casting(storage_dtype=bf16, compute_dtype=fp32)
        pipe.vae.enable_layerwise_casting(storage_dtype=fp16, compute_dtype=fp32)
    kwargs = PARITY_CASES["negative_prompt"]
    latents = _latents(1)
    expected = _run_torch(tp, latents, **kwargs)
    assert_close(_run_ms(mp, latents, **kwargs), expected, 1e-5, what="layerwise casting")
    assert rel_l2(expected, _run_torch(tiny[0], latents, **kwargs)) > 1e-4  # the stored weights' rounding shows


def test_parity_latents_output(tiny):
    """The denoised latents themselves (no VAE, no clamping) match too."""
    tp, mp, _ = tiny
    latents = _latents(2)
    kwargs = dict(BASE, prompt=["a cat", PROMPT], negative_prompt=["", "dark"])
    with torch.no_grad():
        expected = tp(latents=torch.from_numpy(latents), output_type="latent", **kwargs).images
    actual = mp(latents=ms.Tensor(latents), output_type="latent", **kwargs)[0]
    assert isinstance(actual, ms.Tensor)
    assert_close(actual, expected, 1e-5)
    # latents in another dtype are cast to the pipeline's (upstream fails in the transformer's first matmul)
    as_float64 = mp(latents=latents.astype(np.float64), output_type="latent", **kwargs)[0]
    assert as_float64.dtype == ms.float32
    np.testing.assert_array_equal(as_float64.asnumpy(), actual.asnumpy())


def test_latents_of_another_size_set_the_image_size_as_upstream(tiny):
    """diffusers takes passed latents as they are: their size, not `height` / `width`, sets the image's (ours warns)."""
    tp, mp, _ = tiny
    latents = _latents(1, height=48, width=32)
    kwargs = {k: v for k, v in BASE.items() if k not in ("height", "width")}
    expected = _run_torch(tp, latents, **kwargs)
    with captured_warnings() as records:
        actual = _run_ms(mp, latents, **kwargs)
    assert actual.shape == expected.shape == (1, 6, 4, 3)
    assert_close(actual, expected, 1e-5)
    assert any("`latents` of spatial size (6, 4) give an image of 48x32 pixels" in r for r in records), records
    with captured_warnings() as records:
        _run_ms(mp, latents, **dict(kwargs, height=48, width=32))
    assert not any("spatial size" in r for r in records), records


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 256])
def test_parity_real_widths(tokenizer, tmp_path, size):
    """Transformer, VAE and Gemma2 at Lumina-Image-2.0's widths (one layer each). At 32x32 the transformer runs op by
    op; at 256x256 (256 image tokens) its calls, one per guidance branch, run compiled on CPU, as a real image does."""
    tp = _torch_pipeline(tokenizer, real_widths=True)
    tp.save_pretrained(tmp_path)
    mp = _ms_pipeline(str(tmp_path))
    del tp.vae.encoder  # not used by the pipeline; frees memory
    # a short text (32 tokens) keeps the 2304-wide matmuls cheap
    kwargs = dict(
        BASE, prompt="a cat", negative_prompt="dark", system_prompt="Draw.", max_sequence_length=32, height=size,
        width=size,
    )  # fmt: skip
    latents = _latents(1, channels=16, height=size, width=size)
    expected = _run_torch(tp, latents, **kwargs)
    actual = _run_ms(mp, latents, **kwargs)
    assert_close(actual, expected, 1e-5, what=f"real widths, {size}x{size}")
    assert bool(mp.transformer.layers[0].compile_cache) == (size == 256)


def test_encode_prompt_matches_diffusers(tiny):
    """System prompt + " <Prompt Start> ", right padding, penultimate hidden state, masks, negative prompt."""
    tp, mp, _ = tiny
    with torch.no_grad():
        expected = tp.encode_prompt(
            ["a cat", LONG_PROMPT], True, negative_prompt=["dark", ""], max_sequence_length=112
        )
    actual = mp.encode_prompt(["a cat", LONG_PROMPT], True, negative_prompt=["dark", ""], max_sequence_length=112)
    for a, e, name in zip(actual, expected, ("prompt_embeds", "mask", "negative_prompt_embeds", "negative_mask")):
        assert tuple(a.shape) == tuple(e.shape), name
        assert_close(a.astype(ms.float32), e.float(), 1e-5, what=name)
    assert actual[1].asnumpy()[0].sum() < actual[1].asnumpy()[1].sum()  # the short prompt is padded on the right
    assert actual[1].asnumpy()[0, 0] == 1 and actual[1].asnumpy()[0, -1] == 0


def test_encode_prompt_device_is_explained(tiny):
    # upstream's `encode_prompt(prompt, cfg, negative_prompt, n, device, ...)`: the device would land in `prompt_embeds`
    _, mp, _ = tiny
    for call in (
        lambda: mp.encode_prompt("a cat", True, None, 1, "cpu"),
        lambda: mp.encode_prompt("a cat", True, None, 1, torch.device("cpu")),
        lambda: mp.encode_prompt("a cat", device="cpu"),
    ):
        with pytest.raises(TypeError, match="`encode_prompt` takes no `device`"):
            call()
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['clip_skip'\]"):
        mp.encode_prompt("a cat", clip_skip=1)


def test_dynamic_shift_mu_fix(tokenizer, tmp_path):
    """diffusers issue 12913: `mu` must come from the image token count, not the channel count. Ours equals diffusers
    once diffusers is given the right count, and differs from unpatched diffusers."""
    tp = _torch_pipeline(tokenizer, dynamic_shift=True)
    tp.save_pretrained(tmp_path)
    mp = _ms_pipeline(str(tmp_path))
    kwargs = dict(BASE, height=64, width=96)
    latents = _latents(1, height=64, width=96)
    image_tokens = (64 // 8 // 2) * (96 // 8 // 2)

    upstream = _run_torch(tp, latents, **kwargs)
    original = diffusers.pipelines.lumina2.pipeline_lumina2.calculate_shift
    seen = []

    def fixed_shift(image_seq_len, *args):
        seen.append(image_seq_len)
        return original(image_tokens, *args)

    diffusers.pipelines.lumina2.pipeline_lumina2.calculate_shift = fixed_shift
    try:
        expected = _run_torch(tp, latents, **kwargs)
    finally:
        diffusers.pipelines.lumina2.pipeline_lumina2.calculate_shift = original
    assert seen == [4]  # upstream passes the channel count

    calls = []
    ours = pipeline_lumina2.calculate_shift

    def spy(image_seq_len, *args):
        calls.append(image_seq_len)
        return ours(image_seq_len, *args)

    pipeline_lumina2.calculate_shift = spy
    try:
        actual = _run_ms(mp, latents, **kwargs)
    finally:
        pipeline_lumina2.calculate_shift = ours
    assert calls == [image_tokens]
    assert_close(actual, expected, 1e-5)
    np.testing.assert_allclose(mp.scheduler.sigmas.asnumpy(), tp.scheduler.sigmas.numpy(), rtol=1e-6)
    assert rel_l2(actual, upstream) > 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# fixes of upstream bugs with several prompts / images per prompt


def test_masks_follow_embeddings_with_several_images_per_prompt(tiny):
    """Upstream tiles the masks (p0 p1 p0 p1) but repeats the embeddings per prompt (p0 p0 p1 p1); ours keeps them
    together, so [p0, p1] x 2 equals diffusers on [p0, p0, p1, p1] x 1."""
    tp, mp, _ = tiny
    latents = _latents(4)
    expected = _run_torch(tp, latents, **dict(BASE, prompt=["a cat", "a cat", LONG_PROMPT, LONG_PROMPT]))
    actual = _run_ms(mp, latents, **dict(BASE, prompt=["a cat", LONG_PROMPT], num_images_per_prompt=2))
    assert_close(actual, expected, 1e-5)


def test_passed_negative_embeds_are_duplicated(tiny, embeds):
    _, mp, _ = tiny
    pe, pm, ne, nm = embeds
    kwargs = dict(BASE, num_images_per_prompt=2)
    kwargs.pop("prompt")
    latents = _latents(2)
    from_embeds = _run_ms(
        mp,
        latents,
        prompt_embeds=pe,
        prompt_attention_mask=pm,
        negative_prompt_embeds=ne,
        negative_prompt_attention_mask=nm,
        **kwargs,
    )
    from_prompt = _run_ms(mp, latents, **dict(BASE, num_images_per_prompt=2))
    assert_close(from_embeds, from_prompt, 1e-6)


# ----------------------------------------------------------------------------------------------------------------------
# opt-in extras: the original Lumina-Image-2.0 guidance and system prompts


def _original_guidance_reference(tp, prompts, latents, steps, guidance_scale, trunc, factor):
    """The sampling loop of the original code's `forward_with_cfg` (renorm clamp over the whole latent, truncation on
    the shifted time), written with diffusers' components, one clamp per sample."""
    with torch.no_grad():
        pe, pm, ne, nm = tp.encode_prompt(prompts, True)
        scheduler = tp.scheduler
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))
        scheduler.set_begin_index(0)
        x = torch.from_numpy(latents)
        for t in scheduler.timesteps:
            time = (1 - t / scheduler.config.num_train_timesteps).expand(x.shape[0])
            cond = tp.transformer(x, time, pe, pm, return_dict=False)[0]
            if time[0] < trunc:
                uncond = tp.transformer(x, time, ne, nm, return_dict=False)[0]
                guided = uncond + guidance_scale * (cond - uncond)
                max_norm = torch.linalg.vector_norm(cond, dim=(1, 2, 3), keepdim=True) * factor
                norm = torch.linalg.vector_norm(guided, dim=(1, 2, 3), keepdim=True)
                guided = torch.where(norm >= max_norm, guided * (max_norm / norm), guided)
            else:
                guided = cond
            x = scheduler.step(-guided, t, x, return_dict=False)[0]
        x = x / tp.vae.config.scaling_factor + tp.vae.config.shift_factor
        return tp.image_processor.postprocess(tp.vae.decode(x, return_dict=False)[0], output_type="np")


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_original_guidance_mode(tiny, factor):
    tp, mp, _ = tiny
    prompts = ["a cat", LONG_PROMPT]
    latents = _latents(2)
    kwargs = dict(BASE, prompt=prompts, num_inference_steps=4, cfg_trunc_ratio=0.6)
    expected = _original_guidance_reference(tp, prompts, latents, 4, 5.0, 0.6, factor)
    actual = _run_ms(mp, latents, guidance_mode="original", cfg_renorm_factor=factor, **kwargs)
    assert_close(actual, expected, 1e-5)
    # the option changes the result, and each sample is clamped on its own (batch == one by one)
    assert rel_l2(actual, _run_ms(mp, latents, **kwargs)) > 1e-4
    single = _run_ms(
        mp, latents[1:], guidance_mode="original", cfg_renorm_factor=factor, **dict(kwargs, prompt=prompts[1])
    )
    assert_close(actual[1:], single, 1e-5)


def test_original_guidance_large_factor_is_plain_cfg(tiny):
    _, mp, _ = tiny
    latents = _latents(1)
    clamped_never = _run_ms(mp, latents, guidance_mode="original", cfg_renorm_factor=1e6, **BASE)
    plain = _run_ms(mp, latents, guidance_mode="original", cfg_normalization=False, **BASE)
    assert_close(clamped_never, plain, 1e-6)


@pytest.mark.parametrize("name", sorted(SYSTEM_PROMPTS))
def test_system_prompt_presets(tiny, name):
    tp, mp, _ = tiny
    actual = mp.encode_prompt(PROMPT, False, system_prompt=name)
    if name == "empty":  # the original code puts nothing before the prompt
        expected = mp._get_gemma_prompt_embeds(PROMPT)
        assert_close(actual[0], expected[0], 0.0)
        return
    text = SYSTEM_PROMPTS[name]
    assert text.endswith(" <Prompt Start> ")
    with torch.no_grad():
        expected = tp.encode_prompt(PROMPT, False, system_prompt=text[: -len(" <Prompt Start> ")])
    assert_close(actual[0], expected[0], 1e-5)
    np.testing.assert_array_equal(actual[1].asnumpy(), expected[1].numpy())


def test_default_system_prompt_is_the_real_preset(tiny):
    _, mp, _ = tiny
    assert mp._system_prompt_prefix(None) == SYSTEM_PROMPTS["real"]
    assert mp._system_prompt_prefix("Be nice.") == "Be nice. <Prompt Start> "


# ----------------------------------------------------------------------------------------------------------------------
# prompt embeddings, generators, outputs, callbacks (upstream's PipelineTesterMixin checks that fit)


def test_prompt_embeds_give_the_prompt_image(tiny, embeds, base_image):
    _, mp, _ = tiny
    latents = _latents(1)
    with_prompt = base_image
    pe, pm, ne, nm = embeds
    kwargs = dict(BASE)
    kwargs.pop("prompt")
    with_embeds = _run_ms(mp, latents, prompt_embeds=pe, prompt_attention_mask=pm, **kwargs)
    assert np.abs(with_prompt - with_embeds).max() < 1e-6
    both = _run_ms(
        mp, latents, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne,
        negative_prompt_attention_mask=nm, **kwargs,
    )  # fmt: skip
    assert np.abs(with_prompt - both).max() < 1e-6
    # NumPy embeddings and masks are taken as tensors
    as_numpy = _run_ms(
        mp, latents, prompt_embeds=pe.asnumpy(), prompt_attention_mask=pm.asnumpy(),
        negative_prompt_embeds=ne.asnumpy(), negative_prompt_attention_mask=nm.asnumpy(), **kwargs,
    )  # fmt: skip
    assert np.abs(with_prompt - as_numpy).max() < 1e-6


def test_call_signature_has_every_diffusers_argument():
    ours = inspect.signature(Lumina2Pipeline.__call__).parameters
    theirs = inspect.signature(diffusers.Lumina2Pipeline.__call__).parameters
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"missing __call__ arguments: {missing}"
    for name, param in theirs.items():
        if name in ("self", "return_dict"):
            continue
        assert ours[name].default == param.default, name
    assert ours["return_dict"].default is False  # mindone's convention
    assert set(inspect.signature(Lumina2Pipeline.encode_prompt).parameters) == set(
        inspect.signature(diffusers.Lumina2Pipeline.encode_prompt).parameters
    ) - {"device"} | {"kwargs"}  # `kwargs` only to explain a `device=`


def test_dict_and_tuple_outputs_are_equal(tiny, base_image):
    _, mp, _ = tiny
    output = mp(latents=ms.Tensor(_latents(1)), output_type="np", return_dict=True, **BASE)
    assert isinstance(output, ImagePipelineOutput)
    np.testing.assert_array_equal(output.images, base_image)
    np.testing.assert_array_equal(output[0], output.images)


def test_attention_kwargs_and_numpy_to_pil(tiny, base_image):
    _, mp, _ = tiny
    image = _run_ms(mp, _latents(1), attention_kwargs={"scale": 1.0}, **BASE)  # no LoRA loaded: no change
    np.testing.assert_array_equal(image, base_image)
    pil = Lumina2Pipeline.numpy_to_pil(base_image)
    assert len(pil) == 1 and pil[0].size == (4, 4) and pil[0].mode == "RGB"
    assert DiffusionPipeline.numpy_to_pil(base_image[0, :, :, :1])[0].mode == "L"


def test_single_and_batch_give_the_same_image(tiny):
    """Batch consistency: a batch of prompts gives one image per prompt, the first equal to the single call."""
    _, mp, _ = tiny
    latents = _latents(3)
    batch = _run_ms(mp, latents, **dict(BASE, prompt=[PROMPT, "a cat", LONG_PROMPT]))
    assert batch.shape == (3, 4, 4, 3)
    single = _run_ms(mp, latents[:1], **BASE)
    assert np.abs(batch[:1] - single).max() < 1e-5


def test_output_types_and_shapes(tiny):
    _, mp, _ = tiny
    kwargs = dict(BASE, width=48, generator=np.random.default_rng(0))
    pil = mp(**kwargs)[0]
    assert isinstance(pil, list) and isinstance(pil[0], PIL.Image.Image) and pil[0].size == (6, 4)
    as_np = mp(**dict(kwargs, generator=np.random.default_rng(0)), output_type="np")[0]
    assert isinstance(as_np, np.ndarray) and as_np.shape == (1, 4, 6, 3)
    np.testing.assert_array_equal(np.asarray(pil[0]), (as_np[0] * 255).round().astype(np.uint8))
    as_ms = mp(**dict(kwargs, generator=np.random.default_rng(0)), output_type="ms")[0]
    assert isinstance(as_ms, ms.Tensor) and tuple(as_ms.shape) == (1, 3, 4, 6)
    assert_close(as_ms.asnumpy().transpose(0, 2, 3, 1), as_np, 1e-6)
    pt_alias = mp(**dict(kwargs, generator=np.random.default_rng(0)), output_type="pt")[0]
    assert isinstance(pt_alias, ms.Tensor)
    latent = mp(**dict(kwargs, generator=np.random.default_rng(0)), output_type="latent")[0]
    assert isinstance(latent, ms.Tensor) and tuple(latent.shape) == (1, 4, 4, 6)


def test_outdated_output_type_and_numpy_scalars_as_upstream(tiny, base_image):
    tp, mp, _ = tiny
    latents = _latents(2)
    # upstream's VaeImageProcessor.postprocess: an unknown output_type (or None) is "np", with a FutureWarning
    for output_type in ("numpy", None):
        with pytest.warns(FutureWarning, match="has been set to `np`"):
            image = mp(latents=ms.Tensor(latents[:1]), output_type=output_type, **BASE)[0]
        np.testing.assert_array_equal(image, base_image)
    # NumPy scalars (a guidance sweep with np.linspace) work as Python numbers do
    numpy_args = dict(BASE, guidance_scale=np.float32(5.0), num_images_per_prompt=np.int64(2))
    image = _run_ms(mp, latents, **numpy_args)
    np.testing.assert_array_equal(image, _run_ms(mp, latents, **dict(BASE, num_images_per_prompt=2)))
    assert_close(image, _run_torch(tp, latents, **numpy_args), 1e-5)
    assert len(mp(**dict(BASE, cfg_renorm_factor=np.float32(1.0), num_inference_steps=1))[0]) == 1
    # encode_prompt: embeddings without their mask (upstream fails on the missing mask)
    pe, pm, ne, nm = mp.encode_prompt(PROMPT, True)
    with pytest.raises(ValueError, match="Must provide `prompt_attention_mask` when specifying `prompt_embeds`"):
        mp.encode_prompt(None, False, prompt_embeds=pe)
    with pytest.raises(ValueError, match="Must provide `negative_prompt_attention_mask`"):
        mp.encode_prompt(None, True, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne)


def test_default_call_returns_a_pil_image(tiny):
    """`pipe(prompt)[0][0]` is a PIL image of the model's default size (sample_size * 8)."""
    _, mp, _ = tiny
    image = mp(PROMPT, num_inference_steps=2)[0][0]
    assert isinstance(image, PIL.Image.Image) and image.size == (4, 4)  # upstream's 1-block test VAE does not upsample
    assert mp.default_sample_size * mp.vae_scale_factor == 32


def test_numpy_generators(tiny):
    _, mp, _ = tiny
    first = mp(**BASE, output_type="np", generator=np.random.default_rng(7))[0]
    again = mp(**BASE, output_type="np", generator=np.random.default_rng(7))[0]
    np.testing.assert_array_equal(first, again)
    other = mp(**BASE, output_type="np", generator=np.random.default_rng(8))[0]
    assert np.abs(first - other).max() > 1e-3
    # a list of generators: one per image, the first image as the single call with that generator
    pair = mp(
        **BASE, num_images_per_prompt=2, output_type="np",
        generator=[np.random.default_rng(7), np.random.default_rng(8)],
    )[0]  # fmt: skip
    assert np.abs(pair[0] - first).max() < 1e-5 and np.abs(pair[1] - other).max() < 1e-5
    # the same draw as `np.random.default_rng(7).standard_normal(shape)` passed as latents
    as_latents = _run_ms(mp, np.random.default_rng(7).standard_normal((1, 4, 4, 4), dtype=np.float32), **BASE)
    np.testing.assert_array_equal(first, as_latents)


def test_stochastic_sampling_draws_from_the_generator(tiny, monkeypatch):
    """A `stochastic_sampling` scheduler takes each step's noise from the pipeline's generator (upstream: torch's
    global generator), so a seeded generator repeats the image, and without one `np.random.seed` does; with diffusers
    drawing the same noise, the images agree."""
    import diffusers.schedulers.scheduling_flow_match_euler_discrete as upstream_scheduler

    tp, mp, _ = tiny
    kwargs = dict(BASE, num_inference_steps=3)
    latents = _latents(2, seed=3)
    scheduler, torch_scheduler = mp.scheduler, tp.scheduler
    mp.scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config, stochastic_sampling=True)
    tp.scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(
        torch_scheduler.config, stochastic_sampling=True
    )
    try:
        first = _run_ms(mp, latents, generator=np.random.default_rng(5), num_images_per_prompt=2, **kwargs)
        again = _run_ms(mp, latents, generator=np.random.default_rng(5), num_images_per_prompt=2, **kwargs)
        np.testing.assert_array_equal(first, again)
        deterministic = _run_ms(mp, latents, num_images_per_prompt=2, **BASE)
        assert np.abs(first - _run_ms(mp, latents, generator=np.random.default_rng(6), num_images_per_prompt=2,
                                      **kwargs)).max() > 1e-3  # fmt: skip
        np.random.seed(0)
        unseeded = _run_ms(mp, latents, num_images_per_prompt=2, **kwargs)
        np.random.seed(0)
        np.testing.assert_array_equal(unseeded, _run_ms(mp, latents, num_images_per_prompt=2, **kwargs))

        noise = np.random.default_rng(5)
        monkeypatch.setattr(
            upstream_scheduler,
            "randn_tensor",
            lambda shape, generator=None, device=None, dtype=None: torch.from_numpy(
                noise.standard_normal(tuple(shape), dtype=np.float32)
            ).to(dtype),
        )
        expected = _run_torch(tp, latents, num_images_per_prompt=2, **kwargs)
    finally:
        mp.scheduler, tp.scheduler = scheduler, torch_scheduler
    assert rel_l2(first, expected) <= 1e-5
    assert np.abs(first - deterministic).max() > 1e-3


class _StepWithoutGenerator(FlowMatchEulerDiscreteScheduler):
    """A scheduler whose `step` takes no generator (and one that takes `eta`), as other schedulers' steps."""

    def step(self, model_output, timestep, sample, eta=0.5, return_dict=True):
        assert eta == 0.0
        return super().step(model_output, timestep, sample, return_dict=return_dict)


def test_scheduler_step_gets_only_the_arguments_it_accepts(tiny):
    tp, mp, _ = tiny
    rng = np.random.default_rng(0)
    assert mp.prepare_extra_step_kwargs(rng, 0.3) == {"generator": rng}
    assert tp.prepare_extra_step_kwargs(rng, 0.3) == {"generator": rng}  # the same inspection upstream
    scheduler = mp.scheduler
    mp.scheduler = _StepWithoutGenerator.from_config(scheduler.config)
    try:
        assert mp.prepare_extra_step_kwargs(rng, 0.0) == {"eta": 0.0}
        latents = _latents(1)
        out = _run_ms(mp, latents, generator=np.random.default_rng(1), **BASE)
    finally:
        mp.scheduler = scheduler
    np.testing.assert_array_equal(out, _run_ms(mp, latents, generator=np.random.default_rng(1), **BASE))


def test_callback_on_step_end_can_alter_latents(tiny):
    _, mp, _ = tiny
    seen = []

    def callback(pipe, i, t, callback_kwargs):
        assert pipe is mp and pipe.scheduler.begin_index == 0
        assert sorted(callback_kwargs) == ["latents", "prompt_embeds"]
        seen.append((i, float(t)))
        if i == pipe.num_timesteps - 1:
            return {"latents": callback_kwargs["latents"] * 0.0}
        return {}

    latents = mp(
        **dict(BASE, num_inference_steps=3), generator=np.random.default_rng(0), output_type="latent",
        callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
    )[0]  # fmt: skip
    assert [i for i, _ in seen] == [0, 1, 2]
    assert seen[0][1] == pytest.approx(1000.0)
    assert float(np.abs(latents.asnumpy()).max()) == 0.0

    only_latents = []
    mp(
        **BASE, generator=np.random.default_rng(0),
        callback_on_step_end=lambda p, i, t, kw: only_latents.append(sorted(kw)) or {},
    )  # fmt: skip
    assert only_latents == [["latents"], ["latents"]]

    # a callback that returns nothing: upstream fails with an AttributeError on `None.pop`
    with pytest.raises(TypeError, match="`callback_on_step_end` must return a dict .* got NoneType"):
        mp(**BASE, generator=np.random.default_rng(0), callback_on_step_end=lambda p, i, t, kw: None)
    # a callback that turns guidance on in a run without it: there are no negative embeddings (upstream: AttributeError)
    with pytest.raises(ValueError, match="set `_guidance_scale` above 1 in a run without guidance"):
        mp(
            **dict(BASE, guidance_scale=1.0), generator=np.random.default_rng(0),
            callback_on_step_end=lambda p, i, t, kw: setattr(p, "_guidance_scale", 8.0) or {},
        )  # fmt: skip
    # `sigmas` alone set the steps (`num_inference_steps=None` is then fine, as upstream)
    steps = []
    mp(
        **dict(BASE, num_inference_steps=None), sigmas=[1.0, 0.6, 0.2], generator=np.random.default_rng(0),
        callback_on_step_end=lambda p, i, t, kw: steps.append(i) or {},
    )  # fmt: skip
    assert steps == [0, 1, 2]


def test_progress_bar(tiny):
    _, mp, _ = tiny
    stream = io.StringIO()
    mp.set_progress_bar_config(file=stream, ascii=True)
    try:
        mp(**dict(BASE, num_inference_steps=3), generator=np.random.default_rng(0))
    finally:
        mp.set_progress_bar_config(disable=True)
    assert "3/3" in stream.getvalue()
    with mp.progress_bar(total=5) as bar:
        assert bar.total == 5 and bar.disable
    with pytest.raises(ValueError, match="total"):
        mp.progress_bar()


def test_truncation_warning_and_dtype_of_embeds(tiny):
    _, mp, _ = tiny
    with captured_warnings() as records:
        embeds, mask = mp._get_gemma_prompt_embeds(LONG_PROMPT, max_sequence_length=8)
    assert any("truncated" in r and "8 tokens" in r for r in records), records
    assert tuple(embeds.shape) == (1, 8, 8) and embeds.dtype == ms.float32
    assert mask.asnumpy().tolist() == [[1] * 8]


# ----------------------------------------------------------------------------------------------------------------------
# check_inputs: each error


CHECK_INPUT_ERRORS = {
    "height_not_multiple_of_16": (
        dict(height=40),
        r"`height` and `width` have to be divisible by 16 but are 40 and 32",
    ),
    "width_not_multiple_of_16": (dict(width=20), r"divisible by 16 but are 32 and 20"),
    "negative_height": (dict(height=-16), r"`height` and `width` must be positive but are -16 and 32"),
    "bad_callback_inputs": (
        dict(callback_on_step_end_tensor_inputs=["latents", "noise_pred"]),
        r"`callback_on_step_end_tensor_inputs` has to be in \['latents', 'prompt_embeds'\], but found \['noise_pred'\]",
    ),
    "prompt_and_prompt_embeds": (
        dict(prompt_embeds="pe", prompt_attention_mask="pm"),
        r"Cannot forward both `prompt`",
    ),
    "no_prompt_and_no_embeds": (dict(prompt=None), r"Provide either `prompt` or `prompt_embeds`"),
    "prompt_wrong_type": (dict(prompt=3), r"`prompt` has to be of type `str` or `list` but is <class 'int'>"),
    "prompt_and_negative_embeds": (
        dict(negative_prompt_embeds="ne", negative_prompt_attention_mask="nm"),
        r"Cannot forward both `prompt`: .* and `negative_prompt_embeds`",
    ),
    "negative_prompt_and_negative_embeds": (
        dict(
            prompt=None,
            prompt_embeds="pe",
            prompt_attention_mask="pm",
            negative_prompt="dark",
            negative_prompt_embeds="ne",
            negative_prompt_attention_mask="nm",
        ),
        r"Cannot forward both `negative_prompt`: dark and `negative_prompt_embeds`",
    ),  # fmt: skip
    "prompt_embeds_without_mask": (
        dict(prompt=None, prompt_embeds="pe"),
        r"Must provide `prompt_attention_mask` when specifying `prompt_embeds`",
    ),
    "negative_embeds_without_mask": (
        dict(prompt=None, prompt_embeds="pe", prompt_attention_mask="pm", negative_prompt_embeds="ne"),
        r"Must provide `negative_prompt_attention_mask` when specifying `negative_prompt_embeds`",
    ),
    "embeds_shape_mismatch": (
        dict(
            prompt=None,
            prompt_embeds="pe",
            prompt_attention_mask="pm",
            negative_prompt_embeds="ne_short",
            negative_prompt_attention_mask="nm_short",
        ),
        r"`prompt_embeds` and `negative_prompt_embeds` must have the same shape .* \(1, 256, 8\) != .* \(1, 128, 8\)",
    ),  # fmt: skip
    "mask_shape_mismatch": (
        dict(
            prompt=None,
            prompt_embeds="pe",
            prompt_attention_mask="pm",
            negative_prompt_embeds="ne",
            negative_prompt_attention_mask="nm_short",
        ),
        r"`prompt_attention_mask` and `negative_prompt_attention_mask` must have the same shape .* \(1, 256\) != .* \(1, 128\)",
    ),  # fmt: skip
    "mask_does_not_fit_embeds": (
        dict(prompt=None, prompt_embeds="pe", prompt_attention_mask="nm_short"),
        r"`prompt_attention_mask` must have shape \(1, 256\) .* got \(1, 128\)",
    ),
    "max_sequence_length_over_512": (
        dict(max_sequence_length=513),
        r"`max_sequence_length` cannot be greater than 512 but is 513",
    ),
    "max_sequence_length_0": (dict(max_sequence_length=0), r"`max_sequence_length` must be at least 1 but is 0"),
    "bad_guidance_mode": (dict(guidance_mode="flux"), r"`guidance_mode` must be one of .* but is 'flux'"),
    "bad_renorm_factor": (dict(cfg_renorm_factor=0.0), r"`cfg_renorm_factor` must be a number > 0 but is 0.0"),
    "bad_num_images_per_prompt": (dict(num_images_per_prompt=0), r"`num_images_per_prompt` must be an int >= 1"),
    "generator_list_length": (
        dict(generator=[np.random.default_rng(0)] * 3),
        r"list of generators of length 3, but requested an effective batch size of 1",
    ),
    "latents_batch": (dict(latents=np.zeros((2, 4, 4, 4), np.float32)), r"`latents` must have shape \(1, 4, 4, 4\)"),
    "latents_channels": (
        dict(latents=np.zeros((1, 3, 4, 4), np.float32)),
        r"`latents` must have shape \(1, 4, 4, 4\)",
    ),
    "latents_rank": (dict(latents=np.zeros((1, 4, 16), np.float32)), r"`latents` must have shape \(1, 4, 4, 4\)"),
    "latents_odd_size": (
        dict(latents=np.zeros((1, 4, 5, 4), np.float32)),
        r"`latents` height and width \(5 and 4\) have to be divisible by the transformer's `patch_size` \(2\)",
    ),
    "negative_prompt_batch": (
        dict(prompt=["a", "b"], negative_prompt=["x", "y", "z"]),
        r"`negative_prompt`: .* has batch size 3, but `prompt`: .* has batch size 2",
    ),
    "negative_prompt_type": (dict(negative_prompt=3), r"`negative_prompt` should be the same type to `prompt`"),
    "system_prompt_type": (dict(system_prompt=3), r"`system_prompt` must be a string or None, got int"),
    "prompt_list_item_type": (
        dict(prompt=["a", 3]),
        r"`prompt` has to be a `str` or a `list` of `str`, but is a list with items of type \['int', 'str'\]",
    ),
    "prompt_empty_list": (dict(prompt=[]), r"`prompt` is an empty list"),
    "num_inference_steps_0": (dict(num_inference_steps=0), r"`num_inference_steps` must be an int >= 1 .* but is 0"),
    "num_inference_steps_none": (dict(num_inference_steps=None), r"`num_inference_steps` must be an int >= 1"),
    "max_sequence_length_float": (dict(max_sequence_length=32.0), r"`max_sequence_length` must be an int but is 32.0"),
    # MindSpore additions (upstream fails later, in a comparison, a format or the tokenizer, without the name)
    "height_str": (dict(height="32"), r"`height` must be a number, got '32'"),
    "guidance_scale_str": (dict(guidance_scale="5"), r"`guidance_scale` must be a number, got '5'"),
    "cfg_trunc_ratio_none": (dict(cfg_trunc_ratio=None), r"`cfg_trunc_ratio` must be a number, got None"),
    "latents_list": (
        dict(latents=np.zeros((1, 4, 4, 4), np.float32).tolist()),
        r"`latents` must be a mindspore.Tensor or a NumPy array, got builtins.list",
    ),
    "latents_torch": (
        dict(latents=torch.zeros((1, 4, 4, 4))),
        r"`latents` must be a mindspore.Tensor or a NumPy array, got torch.Tensor",
    ),
    "sigmas_str": (dict(sigmas="abc"), r"`sigmas` must be a 1-D list / array / tensor of floats, got 'abc'"),
    "prompt_embeds_width": (
        dict(prompt=None, prompt_embeds="pe_narrow", prompt_attention_mask="pm"),
        r"`prompt_embeds` must have the transformer's `cap_feat_dim` \(8\) as last dim .* got shape \(1, 256, 7\)",
    ),
}
TYPE_ERRORS = {
    "negative_prompt_type",
    "system_prompt_type",
    "height_str",
    "guidance_scale_str",
    "cfg_trunc_ratio_none",
    "latents_list",
    "latents_torch",
    "sigmas_str",
}


def test_numbers_given_as_one_element_tensors_and_arrays(tiny):
    # as torch's 0-d tensors upstream (the number checks above must not refuse them)
    _, mp, _ = tiny
    call = dict(BASE, output_type="np", generator=np.random.default_rng(0))
    expected = mp(**call)[0]
    call.update(guidance_scale=ms.Tensor(5.0), cfg_trunc_ratio=np.array(1.0), height=np.array(32), width=ms.Tensor(32))
    call["generator"] = np.random.default_rng(0)
    np.testing.assert_array_equal(mp(**call)[0], expected)


@pytest.mark.parametrize("case", sorted(CHECK_INPUT_ERRORS))
def test_check_inputs_errors(tiny, embeds, case):
    _, mp, _ = tiny
    kwargs, match = CHECK_INPUT_ERRORS[case]
    pe, pm, ne, nm = embeds
    tensors = {"pe": pe, "pm": pm, "ne": ne, "nm": nm, "ne_short": ne[:, :128], "nm_short": nm[:, :128]}
    tensors["pe_narrow"] = pe[:, :, :7]
    kwargs = {k: tensors.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    call = dict(BASE, num_inference_steps=1)
    call.update(kwargs)
    error = TypeError if case in TYPE_ERRORS else ValueError
    with pytest.raises(error, match=match):
        mp(**call)


def test_bfloat16_on_cpu_fails_early_and_float16_warns(tiny):
    _, mp, path = tiny
    with pytest.raises(ValueError, match="CPU .* needs float32"):
        Lumina2Pipeline.from_pretrained(path, mindspore_dtype=ms.bfloat16)
    with pytest.raises(ValueError, match="needs float32"):
        DiffusionPipeline.from_pretrained(path, mindspore_dtype={"transformer": ms.bfloat16})
    with pytest.raises(ValueError, match="needs float32"):  # `dtype=`, upstream's newer name, is an alias
        DiffusionPipeline.from_pretrained(path, dtype={"transformer": ms.bfloat16})
    with pytest.raises(ValueError, match="needs float32"):
        Lumina2Pipeline(**mp.components).to(ms.bfloat16)
    with captured_warnings() as records:
        half = Lumina2Pipeline.from_pretrained(path, mindspore_dtype="float16")
    assert any("not fp16-safe" in r for r in records), records
    assert half.transformer.dtype == ms.float16 and half.dtype == ms.float16


def test_components_in_other_dtypes(tiny, base_image):
    _, _, path = tiny
    latents = _latents(1)
    # a float16 text encoder with a float32 transformer runs upstream: its caption embedder takes the float16
    # embeddings, and passed latents stay float32
    torch_half = diffusers.Lumina2Pipeline.from_pretrained(
        path, dtype={"text_encoder": torch.float16, "default": torch.float32}
    )
    torch_half.set_progress_bar_config(disable=True)
    ours_half = _ms_pipeline(path, mindspore_dtype={"text_encoder": ms.float16, "default": ms.float32})
    assert (ours_half.text_encoder.dtype, ours_half.transformer.dtype) == (ms.float16, ms.float32)
    expected = _run_torch(torch_half, latents, **BASE)
    assert_close(_run_ms(ours_half, latents, **BASE), expected, 1e-5)
    # drawn latents follow the transformer's dtype (upstream draws them in the embeddings' float16, then fails)
    drawn = ours_half(generator=np.random.default_rng(3), output_type="np", **BASE)[0]
    noise = np.random.default_rng(3).standard_normal(latents.shape, dtype=np.float32)
    assert_close(drawn, _run_torch(torch_half, noise, **BASE), 1e-5)
    # float16 embeddings passed to a float32 pipeline, with float32 latents
    pe, pm, ne, nm = ours_half.encode_prompt(PROMPT, True)
    assert pe.dtype == ne.dtype == ms.float16
    kwargs = {k: v for k, v in BASE.items() if k != "prompt"}
    with_embeds = _run_ms(
        _ms_pipeline(path), latents, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne,
        negative_prompt_attention_mask=nm, **kwargs,
    )  # fmt: skip
    assert_close(with_embeds, expected, 1e-5)
    # a VAE in another dtype decodes the latents cast to its dtype (upstream fails in its first convolution)
    ours_vae_half = _ms_pipeline(path, mindspore_dtype={"vae": ms.float16, "default": ms.float32})
    assert rel_l2(_run_ms(ours_vae_half, latents, **BASE), base_image) < 1e-2


def test_auto_dtype_as_upstream(tiny):
    _, mp, path = tiny
    with captured_warnings() as records:
        auto = Lumina2Pipeline.from_pretrained(path, mindspore_dtype="auto")
    assert any("'auto' is not a MindSpore dtype. Defaulting to float32" in r for r in records), records
    assert {m.dtype for m in (auto.transformer, auto.vae, auto.text_encoder)} == {ms.float32}
    # as a dict value "auto" goes to the component: diffusers' models warn and load float32, the text encoder takes
    # its config's dtype (float32 in this folder)
    with captured_warnings() as records:
        auto = Lumina2Pipeline.from_pretrained(path, mindspore_dtype={"default": "auto"})
    assert sum("'auto' is not a MindSpore dtype" in r for r in records) == 2, records
    assert {m.dtype for m in (auto.transformer, auto.vae, auto.text_encoder)} == {ms.float32}
    # a bfloat16 text encoder (a bf16 checkpoint loaded with "auto") fails with a clear error on CPU
    auto.text_encoder.to(ms.bfloat16)
    with pytest.raises(ValueError, match="text encoder's dtype is bfloat16.*needs float32"):
        auto(PROMPT, num_inference_steps=1, height=32, width=32)


# ----------------------------------------------------------------------------------------------------------------------
# DiffusionPipeline: loading, saving, components


def test_model_index_of_a_saved_pipeline(tiny, tmp_path):
    _, mp, _ = tiny
    mp.save_pretrained(tmp_path)
    index = json.load(open(tmp_path / "model_index.json"))
    assert index["_class_name"] == "Lumina2Pipeline"
    assert index["transformer"] == ["diffusers", "Lumina2Transformer2DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert index["text_encoder"] == ["transformers", "Gemma2Model"]
    assert index["tokenizer"][0] == "transformers"
    for name in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer"):
        assert os.path.isdir(tmp_path / name)
    # a file as the folder: the models' message, before anything is written (diffusers: NotADirectoryError)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="should be a directory, not a file"):
        mp.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"
    # and an unreadable shard size (upstream writes the first components first)
    with pytest.raises(ValueError, match="`max_shard_size` must be"):
        mp.save_pretrained(tmp_path / "bad_size", max_shard_size="10XB")
    assert not (tmp_path / "bad_size").exists()
    with pytest.raises(ValueError, match="`max_shard_size` must be"):
        mp.text_encoder.save_pretrained(tmp_path / "bad_size", max_shard_size="1 GB or so")
    assert not (tmp_path / "bad_size").exists()


def test_to_without_dtype_unsaveable_component_and_ignored_kwargs(tiny, tmp_path):
    """As diffusers: `to()` changes nothing, a component set to None is saved as `[null, null]` with a warning, and
    `output_loading_info` (a model option) is reported as ignored by a pipeline."""
    tp, _, path = tiny
    pipe = _ms_pipeline(path)
    assert pipe.to() is pipe and pipe.transformer.to() is pipe.transformer and pipe.dtype == ms.float32
    for call in (lambda: pipe.to("cuda"), lambda: pipe.to(device="cpu"), lambda: pipe.to("cuda", ms.float32)):
        with pytest.raises(TypeError, match="no device placement"):
            call()
    assert pipe.to(dtype=ms.float32) is pipe and pipe.text_encoder.to(None) is pipe.text_encoder
    # upstream's test_pipe_to: a `None` device is no device
    assert pipe.to(None, ms.float32) is pipe and pipe.to(None, dtype=ms.float32) is pipe and pipe.dtype == ms.float32
    with pytest.raises(TypeError, match="no device placement"):
        pipe.text_encoder.to("cuda")
    pipe.text_encoder = None
    with captured_warnings() as records:
        pipe.save_pretrained(tmp_path / "ours")
    assert any("self.text_encoder=None" in r and "cannot be saved" in r for r in records), records
    reference = diffusers.Lumina2Pipeline.from_pretrained(path, text_encoder=None)
    reference.save_pretrained(tmp_path / "theirs")
    ours, theirs = (json.load(open(tmp_path / d / "model_index.json")) for d in ("ours", "theirs"))
    assert ours["text_encoder"] == theirs["text_encoder"] == [None, None]
    assert sorted(os.listdir(tmp_path / "ours")) == sorted(os.listdir(tmp_path / "theirs"))
    with captured_warnings() as records:
        _ms_pipeline(path, output_loading_info=True)
    assert any("output_loading_info" in r and "not expected" in r for r in records), records


def test_save_load_round_trip_both_ways(tiny, base_image, tmp_path):
    """Ours -> ours and ours -> diffusers give the same image (diffusers -> ours is the `tiny` fixture)."""
    tp, mp, _ = tiny
    mp.save_pretrained(tmp_path / "ours", safe_serialization=False)  # upstream's pickle request: safetensors anyway
    assert not any(f.endswith(".bin") for _, _, files in os.walk(tmp_path / "ours") for f in files)
    latents = _latents(1)
    expected = base_image
    reloaded = _ms_pipeline(str(tmp_path / "ours"))
    np.testing.assert_array_equal(_run_ms(reloaded, latents, **BASE), expected)
    in_diffusers = diffusers.Lumina2Pipeline.from_pretrained(str(tmp_path / "ours"))
    in_diffusers.set_progress_bar_config(disable=True)
    assert_close(_run_torch(in_diffusers, latents, **BASE), expected, 1e-5)
    # variant and sharded weights
    mp.save_pretrained(tmp_path / "fp16", variant="fp16", max_shard_size="20KB")
    assert os.path.isfile(tmp_path / "fp16" / "text_encoder" / "model.safetensors.index.fp16.json")
    variant = _ms_pipeline(str(tmp_path / "fp16"), variant="fp16")
    np.testing.assert_array_equal(_run_ms(variant, latents, **BASE), expected)
    # a variant no component has is an error upstream (the plain weights are not loaded instead)
    with pytest.raises(ValueError, match="no such modeling files"):
        diffusers.Lumina2Pipeline.from_pretrained(str(tmp_path / "ours"), variant="bf16")
    with pytest.raises(ValueError, match="variant=bf16.*no such modeling files"):
        Lumina2Pipeline.from_pretrained(str(tmp_path / "ours"), variant="bf16")


def test_components_reuse_and_overrides(tiny, base_image):
    tp, mp, path = tiny
    components = mp.components
    assert sorted(components) == ["scheduler", "text_encoder", "tokenizer", "transformer", "vae"]
    again = Lumina2Pipeline(**components)
    again.set_progress_bar_config(disable=True)
    assert again.transformer is mp.transformer and again.text_encoder is mp.text_encoder
    latents = _latents(1)
    np.testing.assert_array_equal(_run_ms(again, latents, **BASE), base_image)
    # a component passed to from_pretrained replaces the stored one
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    overridden = _ms_pipeline(path, scheduler=scheduler, transformer=mp.transformer)
    assert overridden.scheduler is scheduler and overridden.transformer is mp.transformer
    assert overridden.scheduler.config.shift == 3.0
    # assigning a component updates the model index
    overridden.scheduler = FlowMatchEulerDiscreteScheduler(shift=2.0)
    assert overridden.config.scheduler == ("diffusers", "FlowMatchEulerDiscreteScheduler")
    # a component of another type: upstream's warning (the call still loads)
    with captured_warnings() as records:
        Lumina2Pipeline.from_pretrained(path, transformer=mp.vae)
    assert any("Expected types for transformer" in r and "AutoencoderKL" in r for r in records), records
    with captured_warnings() as records:
        _ms_pipeline(path, transformer=mp.transformer, text_encoder=mp.text_encoder)
    assert not any("Expected types" in r for r in records), records
    # non-float dtypes are refused (upstream: "not a floating point dtype")
    with pytest.raises(ValueError, match="not a floating point dtype"):
        Lumina2Pipeline.from_pretrained(path, mindspore_dtype=ms.int8)
    with pytest.raises(TypeError, match="floating MindSpore dtype"):
        overridden.to(ms.int32)
    # a torch component is refused with the expected class
    with pytest.raises(ValueError, match="`transformer` is of type: .*, but should be mindone.diffusers.*ModelMixin"):
        Lumina2Pipeline.from_pretrained(path, transformer=tp.transformer)


def test_from_pipe_as_upstream(tiny, base_image):
    tp, mp, path = tiny
    same = Lumina2Pipeline.from_pipe(mp)
    same.set_progress_bar_config(disable=True)
    assert same is not mp and same.name_or_path == mp.name_or_path == path
    assert all(same.components[name] is component for name, component in mp.components.items())
    assert dict(same.config) == dict(mp.config)
    public = {k: v for k, v in diffusers.Lumina2Pipeline.from_pipe(tp).config.items() if not k.startswith("_")}
    assert {k: tuple(v) for k, v in same.config.items() if not k.startswith("_")} == public
    np.testing.assert_array_equal(_run_ms(same, _latents(1), **BASE), base_image)

    # a component passed replaces the original one, in the new pipeline only; the image equals diffusers' from_pipe
    shifted = Lumina2Pipeline.from_pipe(mp, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    shifted.set_progress_bar_config(disable=True)
    assert shifted.scheduler.config.shift == 3.0 and mp.scheduler.config.shift == 1.0
    assert shifted.transformer is mp.transformer
    torch_shifted = diffusers.Lumina2Pipeline.from_pipe(
        tp, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    )
    expected = _run_torch(torch_shifted, _latents(1), **BASE)
    assert_close(_run_ms(shifted, _latents(1), **BASE), expected, 1e-5, what="from_pipe with another scheduler")
    assert rel_l2(expected, base_image) > 1e-3  # the scheduler mattered

    # as upstream, the dtype (float32 by default) is applied to the shared models in place
    fresh = _ms_pipeline(path)
    half = Lumina2Pipeline.from_pipe(fresh, mindspore_dtype="float16")
    assert half.transformer is fresh.transformer and fresh.transformer.dtype == ms.float16
    assert Lumina2Pipeline.from_pipe(fresh).transformer.dtype == ms.float32
    with pytest.raises(TypeError, match="`torch_dtype` is not supported .*mindspore_dtype"):
        Lumina2Pipeline.from_pipe(fresh, torch_dtype=torch.float16)
    assert Lumina2Pipeline.from_pipe(fresh, dtype="float16").transformer.dtype == ms.float16
    fresh.to(ms.float32)

    # a model of another class than the signature's is not switched over: a warning, then the missing component
    wrong = Lumina2Pipeline(**{**fresh.components, "vae": fresh.transformer})
    with captured_warnings() as records, pytest.raises(ValueError, match="expected .*vae.* but only"):
        Lumina2Pipeline.from_pipe(wrong)
    assert any("component vae is not switched over" in r for r in records), records


def test_attention_slicing_dispatches_as_upstream(tiny, base_image, monkeypatch):
    _, mp, _ = tiny
    calls = []
    monkeypatch.setattr(mp.transformer, "set_attention_slice", calls.append, raising=False)
    mp.enable_attention_slicing()
    np.testing.assert_array_equal(_run_ms(mp, _latents(1), **BASE), base_image)
    mp.disable_attention_slicing()
    mp.enable_attention_slicing(2)
    assert calls == ["auto", None, 2]


def test_generic_loader_and_skipped_text_encoder(tiny, embeds, base_image):
    _, mp, path = tiny
    generic = DiffusionPipeline.from_pretrained(path)
    assert type(generic) is Lumina2Pipeline and generic.name_or_path == path
    without = _ms_pipeline(path, text_encoder=None)
    assert without.text_encoder is None
    pe, pm, ne, nm = embeds
    latents = _latents(1)
    kwargs = dict(BASE)
    kwargs.pop("prompt")
    image = _run_ms(
        without, latents, prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne,
        negative_prompt_attention_mask=nm, **kwargs,
    )  # fmt: skip
    np.testing.assert_array_equal(image, base_image)
    # a prompt needs the text encoder (upstream fails calling None)
    with pytest.raises(ValueError, match="needs the pipeline's text_encoder, which is None.*pass `prompt_embeds`"):
        _run_ms(without, latents, **BASE)


def test_loading_errors(tiny, tmp_path):
    _, _, path = tiny
    with pytest.raises(TypeError, match="`torch_dtype` is not supported .*mindspore_dtype"):
        Lumina2Pipeline.from_pretrained(path, torch_dtype="float32")
    # upstream's ONNX / connected-pipeline arguments: accepted silently at their defaults, refused when set
    with captured_warnings() as records:
        Lumina2Pipeline.from_pretrained(path, provider=None, load_connected_pipeline=False, sess_options=None)
    assert not any("not expected" in r for r in records), records
    with pytest.raises(TypeError, match="`provider` is not supported .*ONNX"):
        Lumina2Pipeline.from_pretrained(path, provider="CPUExecutionProvider")
    with pytest.raises(EnvironmentError, match="model_index.json"):
        Lumina2Pipeline.from_pretrained(str(tmp_path))
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    index = json.load(open(broken / "model_index.json"))
    index["text_encoder"] = ["transformers", "T5EncoderModel"]
    json.dump(index, open(broken / "model_index.json", "w"))
    with pytest.raises(ValueError, match="T5EncoderModel.*not port"):
        Lumina2Pipeline.from_pretrained(str(broken))
    missing = tmp_path / "missing_vae"
    shutil.copytree(path, missing)
    shutil.rmtree(missing / "vae")
    with pytest.raises(EnvironmentError, match="lists the component `vae`.*has no `vae` folder"):
        Lumina2Pipeline.from_pretrained(str(missing))
    # a tokenizer without its folder (transformers builds an empty tokenizer there, which diffusers loads silently)
    no_tokenizer = tmp_path / "missing_tokenizer"
    shutil.copytree(path, no_tokenizer)
    shutil.rmtree(no_tokenizer / "tokenizer")
    with pytest.raises(
        EnvironmentError, match=r"lists the component `tokenizer`.*has no `tokenizer` folder.*no tokenizer"
    ):
        Lumina2Pipeline.from_pretrained(str(no_tokenizer))
    # ... unless the component is passed, as the message says (and diffusers allows)
    text_encoder = Gemma2Model.from_pretrained(os.path.join(path, "text_encoder"))
    assert Lumina2Pipeline.from_pretrained(str(broken), text_encoder=text_encoder).text_encoder is text_encoder
    # entries that are not [library, class name] (upstream: bare unpacking / getattr errors)
    for entry in (["diffusers"], ["diffusers", "AutoencoderKL", "x"], "AutoencoderKL", ["diffusers", 5]):
        json.dump({**index, "vae": entry}, open(broken / "model_index.json", "w"))
        with pytest.raises(ValueError, match=r"has 'vae': .*, where a component entry is \[library, class name\]"):
            Lumina2Pipeline.from_pretrained(str(broken))
    # a key that is no component of the pipeline is ignored with a warning, as upstream, whatever its value
    json.dump({**index, "extra": [1, 2, 3]}, open(broken / "model_index.json", "w"))
    with captured_warnings() as records:
        Lumina2Pipeline.from_pretrained(str(broken), text_encoder=text_encoder)
    assert any("extra" in r and "will be ignored" in r for r in records), records
    index.pop("text_encoder")
    json.dump(index, open(broken / "model_index.json", "w"))
    with pytest.raises(ValueError, match="expected .* but only"):
        Lumina2Pipeline.from_pretrained(str(broken))


def test_causal_lm_text_encoder_loads_as_in_diffusers(tiny, base_image, tmp_path):
    """A folder whose text encoder is a `Gemma2ForCausalLM` (head and all): diffusers loads the LM, the port its base
    model (the pipeline reads hidden states only); both give the image of the base model's weights."""
    tp, _, path = tiny
    folder = tmp_path / "causal_lm"
    shutil.copytree(path, folder)
    shutil.rmtree(folder / "text_encoder")
    lm = TorchGemma2ForCausalLM(tp.text_encoder.config)
    lm.model.load_state_dict(tp.text_encoder.state_dict())
    lm.save_pretrained(str(folder / "text_encoder"))
    index = json.load(open(folder / "model_index.json"))
    index["text_encoder"] = ["transformers", "Gemma2ForCausalLM"]
    json.dump(index, open(folder / "model_index.json", "w"))

    theirs = diffusers.Lumina2Pipeline.from_pretrained(str(folder))
    assert type(theirs.text_encoder).__name__ == "Gemma2ForCausalLM"
    theirs.set_progress_bar_config(disable=True)
    ours = _ms_pipeline(str(folder))
    assert isinstance(ours.text_encoder, Gemma2Model)
    image = _run_ms(ours, _latents(1), **BASE)
    np.testing.assert_array_equal(image, base_image)
    assert_close(image, _run_torch(theirs, _latents(1), **BASE), 1e-5, what="Gemma2ForCausalLM text encoder")
    # a passed base model is accepted for that entry
    assert (
        Lumina2Pipeline.from_pretrained(str(folder), text_encoder=ours.text_encoder).text_encoder is ours.text_encoder
    )
    ours.save_pretrained(str(tmp_path / "saved"))
    assert json.load(open(tmp_path / "saved" / "model_index.json"))["text_encoder"] == ["transformers", "Gemma2Model"]


def test_repo_id_from_the_hub_cache(tiny, base_image, tmp_path):
    """A repo id resolves through the huggingface_hub cache (offline here: a snapshot laid out as the Hub does)."""
    _, mp, path = tiny
    repo = tmp_path / "hub" / "models--Alpha-VLLM--Lumina-Image-2.0"  # the release's id (with a dot)
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    pipe = Lumina2Pipeline.from_pretrained(
        "Alpha-VLLM/Lumina-Image-2.0", cache_dir=str(tmp_path / "hub"), local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    latents = _latents(1)
    np.testing.assert_array_equal(_run_ms(pipe, latents, **BASE), base_image)
    with pytest.raises(EnvironmentError):
        Lumina2Pipeline.from_pretrained("tiny-org/absent", cache_dir=str(tmp_path / "hub"), local_files_only=True)
    # a pipeline in a subfolder of a repo (and of a local folder)
    shutil.copytree(path, repo / "snapshots" / commit / "pipe")
    nested = AutoPipelineForText2Image.from_pretrained(
        "Alpha-VLLM/Lumina-Image-2.0", subfolder="pipe", cache_dir=str(tmp_path / "hub"), local_files_only=True
    )
    assert nested.transformer.config.hidden_size == 8
    local = Lumina2Pipeline.from_pretrained(str(repo / "snapshots" / commit), subfolder="pipe")
    assert local.vae.config.latent_channels == 4


# ----------------------------------------------------------------------------------------------------------------------
# GRAPH_MODE


def test_graph_mode_equals_pynative(tiny):
    _, mp, _ = tiny
    latents = _latents(2)
    kwargs = dict(
        BASE, prompt=["a cat", LONG_PROMPT], negative_prompt=["", "dark"], num_inference_steps=3, cfg_trunc_ratio=0.7
    )
    pynative = _run_ms(mp, latents, **kwargs)
    modes = []
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        graph = _run_ms(
            mp, latents, callback_on_step_end=lambda *a: modes.append(ms.get_context("mode")) or {}, **kwargs
        )
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert modes == [ms.GRAPH_MODE] * 3
    assert_close(graph, pynative, 1e-5, what="GRAPH_MODE vs PyNative")


# ----------------------------------------------------------------------------------------------------------------------
# demo


def test_demo_command(tmp_path):
    """The README's first command (the bundled tiny pipeline), in a fresh process."""
    output = tmp_path / "out" / "demo.png"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "mindone.diffusers.pipelines.lumina2.demo", "--prompt", "a cat in a spacesuit",
         "--steps", "3", "--seed", "1", "--output", str(output)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(output) in result.stdout
    image = PIL.Image.open(output)
    assert image.size == (128, 128)
    pixels = np.asarray(image)
    assert pixels.std() > 0  # not a constant picture


def test_bundled_pipeline_loads_in_diffusers_with_the_same_image():
    """The bundled demo folder (written by our `save_pretrained`: 16 latent channels, a 4-block VAE, Gemma2) loads in
    diffusers and gives the same image."""
    from mindone.diffusers.pipelines.lumina2.demo import TINY_PIPELINE

    tp = diffusers.Lumina2Pipeline.from_pretrained(TINY_PIPELINE)
    tp.set_progress_bar_config(disable=True)
    mp = _ms_pipeline(TINY_PIPELINE)
    kwargs = dict(BASE, height=64, width=48, negative_prompt="dark", max_sequence_length=96)
    latents = _latents(1, channels=16, height=64, width=48)
    expected = _run_torch(tp, latents, **kwargs)
    actual = _run_ms(mp, latents, **kwargs)
    assert actual.shape == (1, 64, 48, 3)
    assert_close(actual, expected, 1e-5)


def test_bundled_pipeline_is_what_the_builder_makes():
    """`build_tiny_pipeline` (seeded numpy draws) reproduces the bundled weights exactly."""
    from mindone.diffusers.pipelines.lumina2.demo import TINY_PIPELINE, build_tiny_pipeline
    from mindone.safetensors.mindspore import load_file

    built = build_tiny_pipeline(seed=0)
    for name, weights in (
        ("transformer", "diffusion_pytorch_model.safetensors"),
        ("vae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors"),
    ):
        stored = load_file(os.path.join(TINY_PIPELINE, name, weights))
        params = dict(getattr(built, name).parameters_and_names())
        assert sorted(stored) == sorted(params), name
        for key, value in stored.items():
            np.testing.assert_array_equal(value.asnumpy(), params[key].asnumpy(), err_msg=f"{name}.{key}")


def test_demo_main_with_a_model_folder(tiny, tmp_path, capsys):
    from mindone.diffusers.pipelines.lumina2.demo import main

    _, _, path = tiny
    output = main(
        ["--model", path, "--steps", "2", "--height", "32", "--width", "48", "--output", str(tmp_path / "x.png")]
    )
    assert output == str(tmp_path / "x.png") and PIL.Image.open(output).size == (6, 4)
    assert output in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--height", "40"])


def test_demo_launch_flags():
    from mindone.diffusers.pipelines.lumina2.demo import parse_args

    assert parse_args([]).async_launch is False
    assert parse_args(["--async-launch"]).async_launch is True
    with pytest.raises(SystemExit):
        parse_args(["--steps", "0"])
