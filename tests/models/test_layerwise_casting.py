"""`ModelMixin.enable_layerwise_casting` / `apply_layerwise_casting` against diffusers': the same layers stored in the
storage dtype, the same outputs (weights rounded alike, computed in float32), PyNative, GRAPH_MODE and the compiled CPU
paths, LoRA layers skipped, and errors that change nothing."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL as TorchAutoencoderKL
from diffusers.hooks import apply_layerwise_casting as torch_apply_layerwise_casting

import mindspore as ms

from mindone.diffusers import AutoencoderKL
from mindone.diffusers.hooks import apply_layerwise_casting
from mindone.diffusers.models import cpu_layers
from mindone.diffusers.models.transformers import transformer_lumina2
from tests.lora.lumina2_lora_utils import GQA, make_lora_dir, make_twins, run_ms, run_torch
from tests.lora.lumina2_lora_utils import make_inputs as transformer_inputs
from tests.models.autoencoders.test_models_autoencoder_kl import TINY_32_64, randn
from tests.models.autoencoders.test_models_autoencoder_kl import make_twins as vae_twins
from tests.testing_utils import assert_close, rel_l2

TOL = 1e-5
DTYPES = {"bf16": (ms.bfloat16, torch.bfloat16), "fp16": (ms.float16, torch.float16)}
VAE_CONFIG = {
    **TINY_32_64,
    "down_block_types": ["AttnDownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"],
}


def stored_dtypes(model):
    """Parameter name -> dtype name ("BFloat16", "Float32", ...), for either framework."""
    if isinstance(model, torch.nn.Module):
        names = {torch.bfloat16: "BFloat16", torch.float16: "Float16", torch.float32: "Float32"}
        return {name: names[p.dtype] for name, p in model.state_dict().items()}
    return {name: str(p.dtype) for name, p in model.state_dict().items()}


@pytest.fixture(params=["pynative", "graph"])
def mode(request):
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("compiled_blocks", [False, True], ids=["op-by-op", "compiled-blocks"])
def test_transformer_as_diffusers(dtype, compiled_blocks, mode, monkeypatch):
    if compiled_blocks:  # every call takes the large-call path (blocks as shared compiled graphs)
        monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1)
    ms_dtype, torch_dtype = DTYPES[dtype]
    torch_model, model = make_twins(GQA)
    inputs = transformer_inputs(GQA, batch=2, seq=7)
    full = run_ms(model, inputs)  # a first call: compiled graphs must follow the new dtypes
    torch_model.enable_layerwise_casting(storage_dtype=torch_dtype, compute_dtype=torch.float32)
    model.enable_layerwise_casting(storage_dtype=ms_dtype, compute_dtype=ms.float32)
    stored = stored_dtypes(model)
    assert stored == stored_dtypes(torch_model)
    # linear layers stored small; the patch embedder and every norm (adaLN linears included) kept
    assert (
        stored["layers.0.attn.to_q.weight"] == stored["time_caption_embed.caption_embedder.1.weight"] == str(ms_dtype)
    )
    assert stored["x_embedder.weight"] == stored["norm_out.linear_1.weight"] == stored["layers.0.norm1.linear.weight"]
    assert stored["x_embedder.weight"] == "Float32"
    assert model.dtype == ms.float32 and torch_model.dtype == torch.float32
    expected = run_torch(torch_model, inputs)
    out = run_ms(model, inputs)
    assert_close(out, expected, TOL, "layerwise casting vs diffusers")
    assert rel_l2(out, full) > 1e-4  # the rounding of the stored weights shows
    if compiled_blocks and mode == "pynative":
        assert any(layer.compile_cache for layer in model.layers)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("compiled", [False, True], ids=["op-by-op", "compiled"])
def test_vae_as_diffusers(dtype, compiled, monkeypatch):
    if compiled:  # the convolutions' im2col and upsampling helpers, and the whole encoder / decoder as one graph
        monkeypatch.setattr(cpu_layers, "SMALL_ELEMENTS", 1)
        monkeypatch.setattr(cpu_layers, "WHOLE_GRAPH_ELEMENTS", 1)
    ms_dtype, torch_dtype = DTYPES[dtype]
    torch_model, model = vae_twins(VAE_CONFIG, seed=3)
    image, latents = randn((1, 3, 24, 16)), randn((2, 4, 12, 8), seed=1)
    model.decode(ms.Tensor(latents))
    torch_model.enable_layerwise_casting(storage_dtype=torch_dtype, compute_dtype=torch.float32)
    model.enable_layerwise_casting(storage_dtype=ms_dtype, compute_dtype=ms.float32)
    stored = stored_dtypes(model)
    assert stored == stored_dtypes(torch_model)
    assert stored["decoder.conv_in.weight"] == stored["encoder.mid_block.attentions.0.to_q.weight"] == str(ms_dtype)
    assert stored["decoder.up_blocks.0.upsamplers.0.conv.weight"] == str(ms_dtype)
    with torch.no_grad():
        t_mode = torch_model.encode(torch.from_numpy(image)).latent_dist.mode()
        t_dec = torch_model.decode(torch.from_numpy(latents)).sample
    assert_close(model.encode(ms.Tensor(image))[0].mode(), t_mode, TOL, "encode")
    assert_close(model.decode(ms.Tensor(latents))[0], t_dec, TOL, "decode")
    if compiled:
        assert model.decoder.compile_cache


def test_skip_patterns_and_classes_as_diffusers():
    torch_model, model = vae_twins(VAE_CONFIG, seed=4)
    torch_apply_layerwise_casting(torch_model, torch.bfloat16, torch.float32, ("decoder", "attentions"))
    apply_layerwise_casting(model, ms.bfloat16, ms.float32, ("decoder", "attentions"))
    assert stored_dtypes(model) == stored_dtypes(torch_model)
    assert "BFloat16" in stored_dtypes(model).values()

    torch_model, model = vae_twins(VAE_CONFIG, seed=4)
    torch_model.enable_layerwise_casting(torch.float16, torch.float32, skip_modules_classes=(torch.nn.Conv2d,))
    model.enable_layerwise_casting(ms.float16, ms.float32, skip_modules_classes=(cpu_layers.Conv2d,))
    stored = stored_dtypes(model)
    assert stored == stored_dtypes(torch_model)
    assert {name for name, d in stored.items() if d == "Float16"} == {
        name for name in stored if ".attentions." in name and "group_norm" not in name
    }
    image = randn((1, 3, 24, 16))
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(image)).sample
    assert_close(model(ms.Tensor(image))[0], expected, TOL, "forward, convolutions skipped")

    # user patterns replace the defaults (norm layers are not linear or convolution layers: nothing to cast there)
    torch_model, model = make_twins(GQA)
    torch_model.enable_layerwise_casting(torch.bfloat16, torch.float32, skip_modules_pattern=("feed_forward",))
    model.enable_layerwise_casting(ms.bfloat16, ms.float32, skip_modules_pattern=("feed_forward",))
    assert stored_dtypes(model) == stored_dtypes(torch_model)
    assert stored_dtypes(model)["layers.0.norm1.linear.weight"] == "Float32"  # the model's own "norm" pattern

    # no patterns and no classes: the layer itself
    layer = model.layers[0].feed_forward.linear_1
    apply_layerwise_casting(layer, ms.float16, ms.float32, None, None)
    assert layer.weight.dtype == ms.float16 and layer.layerwise_compute_dtype == ms.float32


def test_lora_layers_stay_float32(tmp_path):
    torch_model, model = make_twins(GQA)
    directory = make_lora_dir(tmp_path, "lora", seed=5, config=GQA)
    torch_model.load_lora_adapter(
        directory, weight_name="pytorch_lora_weights.safetensors", prefix="transformer", adapter_name="x"
    )
    model.load_lora_adapter(directory, adapter_name="x")
    torch_model.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    model.enable_layerwise_casting(storage_dtype=ms.bfloat16, compute_dtype=ms.float32)
    stored = stored_dtypes(model)
    assert stored == stored_dtypes(torch_model)
    assert stored["layers.0.attn.to_q.lora_A.x.weight"] == "Float32"
    assert stored["layers.0.attn.to_q.base_layer.weight"] == "BFloat16"
    inputs = transformer_inputs(GQA, batch=2, seq=7)
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "LoRA under layerwise casting")
    # another scale of the adapter, over the same stored base weights
    model.set_adapters("x", 0.5)
    torch_model.set_adapters("x", 0.5)
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "LoRA scaled")

    # a LoRA loaded after the casting: diffusers makes it in the storage dtype and computes it in bfloat16, which
    # MindSpore cannot on CPU; here it takes the compute dtype, as when loaded before the casting
    expected = run_ms(model, inputs)
    _, model = make_twins(GQA)
    model.enable_layerwise_casting(storage_dtype=ms.bfloat16, compute_dtype=ms.float32)
    model.load_lora_adapter(directory, adapter_name="x")
    model.set_adapters("x", 0.5)
    assert stored_dtypes(model) == stored
    assert_close(run_ms(model, inputs), expected, 1e-6, "LoRA loaded after the casting")


def test_errors_change_nothing():
    _, model = make_twins(GQA)
    before = stored_dtypes(model)
    with pytest.raises(TypeError, match="float8 cast kernel, which MindSpore does not have on CPU"):
        model.enable_layerwise_casting()  # upstream's default storage dtype, float8
    with pytest.raises(TypeError, match="cannot compute bfloat16 on CPU"):
        model.enable_layerwise_casting(storage_dtype=ms.bfloat16, compute_dtype=ms.bfloat16)
    with pytest.raises(TypeError, match="`storage_dtype` must be a MindSpore floating dtype"):
        model.enable_layerwise_casting(storage_dtype=ms.int8)
    with pytest.raises(TypeError, match="`storage_dtype` must be a MindSpore floating dtype"):
        model.enable_layerwise_casting(storage_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="must be a Linear or Conv2d"):
        apply_layerwise_casting(model, ms.bfloat16, ms.float32, None, None)
    # the LoRA layers (`mint.nn.Linear`) when the user's patterns do not skip them: refused before anything is cast
    from mindone.peft import LoraConfig

    model.add_adapter(LoraConfig(r=2, target_modules=["to_q"]), adapter_name="a")
    before = stored_dtypes(model)
    with pytest.raises(NotImplementedError, match=r"`layers.0.attn.to_q.lora_A.a` \(Linear\) is not ported"):
        model.enable_layerwise_casting(ms.bfloat16, ms.float32, skip_modules_pattern=("refiner",))
    assert stored_dtypes(model) == before
    assert model.layers[0].attn.to_k.layerwise_compute_dtype is None


def test_vae_dtype_and_save(tmp_path):
    """Saved after casting, the files hold the storage dtypes, as diffusers writes them; both load them in float32
    (the rounded values)."""
    from safetensors.torch import load_file

    torch_model, model = vae_twins(VAE_CONFIG, seed=6)
    torch_model.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    model.enable_layerwise_casting(storage_dtype=ms.bfloat16, compute_dtype=ms.float32)
    assert model.dtype == ms.float32
    model.save_pretrained(str(tmp_path / "ours"))
    torch_model.save_pretrained(str(tmp_path / "theirs"))
    ours, theirs = (load_file(str(tmp_path / d / "diffusion_pytorch_model.safetensors")) for d in ("ours", "theirs"))
    assert {k: v.dtype for k, v in ours.items()} == {k: v.dtype for k, v in theirs.items()}
    assert ours["decoder.conv_in.weight"].dtype == torch.bfloat16
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0, msg=name)
    loaded = TorchAutoencoderKL.from_pretrained(str(tmp_path / "ours"))
    reloaded = AutoencoderKL.from_pretrained(str(tmp_path / "ours"))
    for name, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        np.testing.assert_array_equal(reloaded.state_dict()[name].asnumpy(), value.numpy(), err_msg=name)
