"""Original-format (Lumina-Image-2.0 / ComfyUI) LoRAs: `diffusion_model.` prefix, fused `attention.qkv`, `attention.out`,
`feed_forward.w1/w2/w3`, `adaLN_modulation.1`. At the 2B widths our conversion gives exactly diffusers' tensors; at
other widths (where diffusers' hard-coded 2304/768/768 split fails) the converted LoRA gives the output of the base
model with the LoRA deltas merged by hand."""

import diffusers
import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers.loaders.lora_conversion_utils import (
    _convert_non_diffusers_lumina2_lora_to_diffusers as torch_convert,
)

import mindspore as ms

from mindone.diffusers import Lumina2Pipeline
from mindone.diffusers.loaders.lora_conversion_utils import (
    _convert_non_diffusers_lumina2_lora_to_diffusers,
    lumina2_qkv_split_sizes,
)
from mindone.diffusers.loaders.lora_pipeline import Lumina2LoraLoaderMixin
from tests.lora.lumina2_lora_utils import (
    GQA,
    TOL,
    assert_same_params,
    make_inputs,
    make_twins,
    param_snapshot,
    run_ms,
    run_torch,
)
from tests.testing_utils import assert_close, captured_warnings

# the 2B release: hidden 2304, 24 heads / 8 kv heads of 96, feed-forward 6144, adaLN 1024 -> 4 * 2304
TWO_B = dict(hidden_size=2304, num_attention_heads=24, num_kv_heads=8)


def _original_lora(dims, rank=2, seed=0, blocks=(("noise_refiner", 0), ("context_refiner", 0), ("layers", 0))):
    """An original-format LoRA with random A and B. `dims`: hidden, qkv rows, feed-forward inner, adaLN in / out."""
    hidden, qkv, inner, ada_in, ada_out = dims
    shapes = {
        "attention.qkv": (hidden, qkv),
        "attention.out": (hidden, hidden),
        "feed_forward.w1": (hidden, inner),
        "feed_forward.w2": (inner, hidden),
        "feed_forward.w3": (hidden, inner),
        "adaLN_modulation.1": (ada_in, ada_out),
    }
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, index in blocks:
        for module, (fan_in, fan_out) in shapes.items():
            if module.startswith("adaLN") and prefix == "context_refiner":
                continue
            key = f"diffusion_model.{prefix}.{index}.{module}"
            out[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, fan_in)) * 0.2).astype(np.float32)
            out[f"{key}.lora_B.weight"] = (rng.standard_normal((fan_out, rank)) * 0.2).astype(np.float32)
    return out


def _to_torch(state_dict):
    return {k: torch.from_numpy(v) for k, v in state_dict.items()}


def _assert_same_tensors(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        value = value.numpy() if hasattr(value, "numpy") else value
        mine = ours[key].asnumpy() if isinstance(ours[key], ms.Tensor) else np.asarray(ours[key])
        np.testing.assert_array_equal(mine, value, err_msg=key)


def test_conversion_matches_diffusers_at_2b_widths(tmp_path):
    original = _original_lora((2304, 3840, 6144, 1024, 4 * 2304))
    expected = torch_convert(_to_torch(original))
    assert "transformer.layers.0.attn.to_k.lora_B.weight" in expected
    # NumPy and MindSpore values; the split from the 2B config and from the shapes
    _assert_same_tensors(_convert_non_diffusers_lumina2_lora_to_diffusers(original), expected)
    _assert_same_tensors(_convert_non_diffusers_lumina2_lora_to_diffusers(original, TWO_B), expected)
    as_ms = {k: ms.Tensor(v) for k, v in original.items()}
    _assert_same_tensors(_convert_non_diffusers_lumina2_lora_to_diffusers(as_ms, TWO_B), expected)
    assert lumina2_qkv_split_sizes(TWO_B) == (2304, 768, 768)

    # from a file, through lora_state_dict on both sides; DoRA scales dropped with a warning by both
    path = str(tmp_path / "original.safetensors")
    with_dora = dict(_to_torch(original), **{"diffusion_model.layers.0.attention.out.dora_scale": torch.ones(1, 2304)})
    safetensors.torch.save_file(with_dora, path)
    theirs = diffusers.Lumina2Pipeline.lora_state_dict(path)
    with captured_warnings() as records:
        ours = Lumina2Pipeline.lora_state_dict(path)
    assert any("DoRA" in message and "dora_scale" in message for message in records)
    _assert_same_tensors(ours, theirs)


def _merged_torch_reference(torch_model, original, sizes):
    """The diffusers model with each original-format LoRA delta `B @ A` (scale 1: no alphas) merged by hand."""
    modules = dict(torch_model.named_modules())
    names = {"attention.out": "attn.to_out.0", "adaLN_modulation.1": "norm1.linear"}
    names.update({f"feed_forward.w{i}": f"feed_forward.linear_{i}" for i in (1, 2, 3)})
    with torch.no_grad():
        for key in original:
            if not key.endswith("lora_A.weight"):
                continue
            stem = key[len("diffusion_model.") : -len(".lora_A.weight")]
            delta = original[key.replace("lora_A", "lora_B")] @ original[key]
            parts = stem.split(".")
            block, module = ".".join(parts[:2]), ".".join(parts[2:])
            if module == "attention.qkv":
                rows = np.split(delta, np.cumsum(sizes)[:-1], axis=0)
                for proj, part in zip(("to_q", "to_k", "to_v"), rows):
                    modules[f"{block}.attn.{proj}"].weight += torch.from_numpy(part)
            else:
                modules[f"{block}.{names[module]}"].weight += torch.from_numpy(delta)
    return torch_model


class _Pipe(Lumina2LoraLoaderMixin):
    """Just the LoRA loader around a transformer (no text encoder / VAE needed here)."""

    def __init__(self, transformer):
        self.transformer = transformer


def test_original_format_at_other_widths():
    torch_model, model = make_twins(GQA)
    sizes = lumina2_qkv_split_sizes(model.config)
    assert sizes == (24, 8, 8)
    inner = model.layers[0].feed_forward.linear_1.weight.shape[0]
    blocks = (("noise_refiner", 0), ("context_refiner", 0), ("layers", 0), ("layers", 1))
    original = _original_lora((24, 40, inner, 24, 96), rank=3, seed=1, blocks=blocks)
    # upstream's converter cannot split these widths
    with pytest.raises(Exception):
        torch_convert(_to_torch(original))

    inputs = make_inputs(GQA)
    expected = run_torch(_merged_torch_reference(torch_model, original, sizes), inputs)
    base = run_ms(model, inputs)
    assert np.abs(expected - base).max() > 1e-3

    pipe = _Pipe(model)
    pipe.load_lora_weights(original, adapter_name="original")  # split from the pipeline's transformer config
    assert_close(run_ms(model, inputs), expected, TOL, "original-format LoRA at hidden 24 / GQA")
    # the split inferred from the shapes is the same here
    from_shapes = Lumina2Pipeline.lora_state_dict(original)
    _assert_same_tensors(from_shapes, pipe.lora_state_dict(original, transformer_config=model.config))
    model.unload_lora()
    np.testing.assert_array_equal(run_ms(model, inputs), base)


def test_conversion_errors():
    _, model = make_twins(GQA)
    pipe = _Pipe(model)
    inputs = make_inputs(GQA)
    base, snapshot = run_ms(model, inputs), param_snapshot(model)
    two_b = _original_lora((2304, 3840, 6144, 1024, 4 * 2304), blocks=(("layers", 0),))
    with pytest.raises(ValueError, match=r"has 3840 rows, but the transformer config gives q/k/v sizes \[24, 8, 8\]"):
        pipe.load_lora_weights(two_b)
    leftover = dict(_original_lora((24, 40, 64, 24, 96), blocks=(("layers", 0),)))
    leftover["diffusion_model.x_embedder.lora_A.weight"] = np.zeros((2, 16), np.float32)
    with pytest.raises(
        ValueError, match=r"should be empty at this point but has .*x_embedder.* not part of the original"
    ):
        pipe.load_lora_weights(leftover)
    # a key without the prefix is not converted (a bare twin overwrote the prefixed weight); diffusers fails too
    good = dict(_original_lora((24, 40, 64, 24, 96), blocks=(("layers", 0),)))
    kohya_names = {k.replace("lora_A", "lora_down").replace("lora_B", "lora_up"): v for k, v in good.items()}
    with pytest.raises(ValueError, match=r"lora_down.*`lora_down` / `lora_up` names, `.alpha` scales"):
        pipe.load_lora_weights(kohya_names)
    bare = dict(
        good,
        **{"layers.0.attention.out.lora_B.weight": 100 * good["diffusion_model.layers.0.attention.out.lora_B.weight"]},
    )
    with pytest.raises(ValueError, match=r"should be empty at this point but has \['layers.0.attention.out.lora_B"):
        pipe.load_lora_weights(bare)
    half = {k: v for k, v in leftover.items() if "qkv.lora_B" not in k and "x_embedder" not in k}
    with pytest.raises(ValueError, match="lacks `diffusion_model.layers.0.attention.qkv.lora_B.weight`"):
        pipe.load_lora_weights(half)
    odd = {"diffusion_model.layers.0.attention.qkv.lora_A.weight": np.zeros((2, 24), np.float32)}
    odd["diffusion_model.layers.0.attention.qkv.lora_B.weight"] = np.zeros((41, 2), np.float32)
    with pytest.raises(ValueError, match="Cannot split the fused qkv LoRA"):
        Lumina2Pipeline.lora_state_dict(odd)
    with pytest.raises(ValueError, match="`transformer_config` must give positive integers"):
        Lumina2Pipeline.lora_state_dict(odd, transformer_config={"hidden_size": 24})
    assert_same_params(model, snapshot)
    np.testing.assert_array_equal(run_ms(model, inputs), base)


def test_keys_of_no_transformer():
    # diffusers loads nothing from a LoRA without `transformer.` keys (a warning) and drops other components' keys
    # silently: the port refuses the first and names the dropped keys
    _, model = make_twins(GQA)
    pipe = _Pipe(model)
    inputs = make_inputs(GQA)
    base, snapshot = run_ms(model, inputs), param_snapshot(model)
    kohya = {
        "lora_unet_layers_0_attention_qkv.lora_down.weight": np.zeros((2, 24), np.float32),
        "lora_unet_layers_0_attention_qkv.lora_up.weight": np.zeros((40, 2), np.float32),
    }
    with pytest.raises(ValueError, match=r"no `transformer.` keys .*lora_unet_layers_0_attention_qkv"):
        pipe.load_lora_weights(kohya)
    assert_same_params(model, snapshot)
    np.testing.assert_array_equal(run_ms(model, inputs), base)

    inner = model.layers[0].feed_forward.linear_1.weight.shape[0]
    converted = Lumina2Pipeline.lora_state_dict(_original_lora((24, 40, inner, 24, 96), blocks=(("layers", 0),)))
    pipe.load_lora_weights(converted, adapter_name="plain")
    expected = run_ms(model, inputs)
    model.unload_lora()
    extra = dict(converted, **{"text_encoder.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((2, 8), np.float32)})
    with captured_warnings() as records:
        pipe.load_lora_weights(extra, adapter_name="with_extra")
    assert any("1 LoRA keys are not for the transformer" in r and "text_encoder.layers.0" in r for r in records)
    np.testing.assert_array_equal(run_ms(model, inputs), expected)
    model.unload_lora()

    # a transformer-level file (`save_lora_adapter`'s keys) and a PEFT model's keys: the error's advice loads them
    bare = {k.removeprefix("transformer."): v for k, v in converted.items()}
    with pytest.raises(
        ValueError, match=r"no `transformer.` keys .*pipe.transformer.load_lora_adapter\(\.\.\., prefix=None\)"
    ):
        pipe.load_lora_weights(bare)
    assert_same_params(model, snapshot)
    pipe.transformer.load_lora_adapter(bare, prefix=None, adapter_name="bare")
    np.testing.assert_array_equal(run_ms(model, inputs), expected)
    model.unload_lora()
    peft_keys = {"base_model.model." + k: v for k, v in bare.items()}
    with pytest.raises(ValueError, match=r'load_lora_adapter\(\.\.\., prefix="base_model.model"\)'):
        pipe.load_lora_weights(peft_keys)
    assert_same_params(model, snapshot)
    pipe.transformer.load_lora_adapter(peft_keys, prefix="base_model.model", adapter_name="peft")
    np.testing.assert_array_equal(run_ms(model, inputs), expected)
