"""`Lumina2LoraLoaderMixin` / `LoraBaseMixin` on `Lumina2Pipeline`: the pipeline test's tiny components (diffusers'
pipeline saved to a folder, ours loaded from it), the same diffusers-saved LoRAs loaded with `load_lora_weights` on
both sides, images compared (fp32 relative L2 <= 1e-5) through scales, two adapters, fuse / unfuse, disable, delete,
unload; GRAPH_MODE; safe fusing; bad input."""

import numpy as np
import pytest

import mindspore as ms

from mindone.peft import iter_tuner_layers
from mindone.testing import build_gemma_tokenizer
from tests.lora.lumina2_lora_utils import (
    ALL_TARGETS,
    ATTN_TARGETS,
    assert_same_params,
    lora_scalings,
    make_lora_dir,
    param_snapshot,
)
from tests.pipelines.lumina2.test_pipeline_lumina2 import (
    BASE,
    _latents,
    _ms_pipeline,
    _run_ms,
    _run_torch,
    _torch_pipeline,
)
from tests.testing_utils import assert_close

TOL = 1e-5


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    """(diffusers pipeline, our pipeline from the folder diffusers saved, {name: LoRA folder})."""
    root = tmp_path_factory.mktemp("lora_pipe")
    tp = _torch_pipeline(build_gemma_tokenizer())
    tp.save_pretrained(str(root / "tiny"))
    loras = {
        "a": make_lora_dir(root, "a", seed=1, r=4, lora_alpha=8, targets=ALL_TARGETS),
        "b": make_lora_dir(root, "b", seed=2, r=2, lora_alpha=3, targets=ATTN_TARGETS),
    }
    return tp, _ms_pipeline(str(root / "tiny")), loras


@pytest.fixture
def clean(pipes):
    """The pipelines without LoRA after the test, whatever it did."""
    yield pipes
    tp, mp, _ = pipes
    ms.set_context(mode=ms.PYNATIVE_MODE)
    for pipe in (tp, mp):
        pipe.unload_lora_weights()
        pipe._merged_adapters = set()


@pytest.fixture(scope="module")
def base_images(pipes):
    tp, mp, _ = pipes
    latents = _latents(1)
    return _run_ms(mp, latents, **BASE), _run_torch(tp, latents, **BASE)


def _both(tp, mp, **kwargs):
    latents = _latents(1)
    return _run_ms(mp, latents, **BASE, **kwargs), _run_torch(tp, latents, **BASE, **kwargs)


def test_pipeline_lora_matches_diffusers(clean, base_images):
    tp, mp, loras = clean
    base, base_torch = base_images
    assert_close(base, base_torch, TOL, "base pipeline")

    for pipe in (tp, mp):
        pipe.load_lora_weights(loras["a"], adapter_name="a")
    image, expected = _both(tp, mp)
    assert_close(image, expected, TOL, "adapter a")
    assert np.abs(image - base).max() > 1e-3

    image, expected = _both(tp, mp, attention_kwargs={"scale": 0.5})
    assert_close(image, expected, TOL, "attention_kwargs scale 0.5")

    for pipe in (tp, mp):
        pipe.load_lora_weights(loras["b"], adapter_name="b")
    assert mp.get_list_adapters() == tp.get_list_adapters() == {"transformer": ["a", "b"]}
    assert mp.get_active_adapters() == tp.get_active_adapters() == ["b"]
    for pipe in (tp, mp):
        pipe.set_adapters(["a", "b"], adapter_weights=[0.6, 0.4])
    assert mp.get_active_adapters() == ["a", "b"]
    two, expected = _both(tp, mp)
    assert_close(two, expected, TOL, "adapters a, b")

    # fused == unfused with the same scale == diffusers fused
    unfused = _run_ms(mp, _latents(1), **BASE, attention_kwargs={"scale": 0.8})
    for pipe in (tp, mp):
        pipe.fuse_lora(lora_scale=0.8)
    assert mp.num_fused_loras == tp.num_fused_loras == 2 and mp.fused_loras == {"a", "b"}
    fused, expected = _both(tp, mp)
    assert_close(fused, unfused, TOL, "fused vs unfused")
    assert_close(fused, expected, TOL, "fused vs diffusers")

    for pipe in (tp, mp):
        pipe.unfuse_lora()
    assert mp.num_fused_loras == 0
    image, expected = _both(tp, mp)
    assert_close(image, expected, TOL, "after unfuse")

    mp.disable_lora()
    np.testing.assert_array_equal(_run_ms(mp, _latents(1), **BASE), base)
    mp.enable_lora()

    for pipe in (tp, mp):
        pipe.delete_adapters("b")
    assert mp.get_list_adapters() == {"transformer": ["a"]}
    image, expected = _both(tp, mp)
    assert_close(image, expected, TOL, "after deleting b")

    mp.unload_lora_weights()
    assert mp.get_list_adapters() == {} and mp.get_active_adapters() == []
    np.testing.assert_array_equal(_run_ms(mp, _latents(1), **BASE), base)


def test_pipeline_graph_mode_with_lora_scale(clean):
    tp, mp, loras = clean
    for pipe in (tp, mp):
        pipe.load_lora_weights(loras["a"], adapter_name="a")
    expected = _run_torch(tp, _latents(1), **BASE, attention_kwargs={"scale": 0.5})
    ms.set_context(mode=ms.GRAPH_MODE)
    image = _run_ms(mp, _latents(1), **BASE, attention_kwargs={"scale": 0.5})
    assert_close(image, expected, TOL, "GRAPH_MODE, scale 0.5")
    image = _run_ms(mp, _latents(1), **BASE)  # the same graph with the scale back at 1
    assert_close(image, _run_torch(tp, _latents(1), **BASE), TOL, "GRAPH_MODE, scale 1")


def test_pipeline_safe_fusing_and_bad_input(clean, base_images):
    _, mp, loras = clean
    base, _ = base_images
    state_dict = mp.lora_state_dict(loras["a"])
    broken = dict(state_dict)
    key = "transformer.layers.1.feed_forward.linear_1.lora_B.weight"
    broken[key] = ms.Tensor(np.full(state_dict[key].shape, np.inf, np.float32))
    keys = list(broken)
    mp.load_lora_weights(broken, adapter_name="broken")
    assert list(broken) == keys  # the dict passed in is not modified
    snapshot = param_snapshot(mp.transformer)
    with pytest.raises(ValueError, match="NaNs detected in the merged weights"):
        mp.fuse_lora(safe_fusing=True)
    assert mp.num_fused_loras == 0
    assert_same_params(mp.transformer, snapshot)
    mp.set_adapters("broken", adapter_weights=0.0)  # a zero weight: the broken LoRA adds nothing
    np.testing.assert_array_equal(_run_ms(mp, _latents(1), **BASE), base)
    snapshot = param_snapshot(mp.transformer)

    with pytest.raises(ValueError, match="Invalid LoRA checkpoint"):
        mp.load_lora_weights(dict(state_dict, **{"transformer.layers.0.attn.to_q.weight": state_dict[key]}))
    with pytest.raises(ValueError, match="`components` cannot be an empty list"):
        mp.fuse_lora(components=[])
    with pytest.raises(ValueError, match="text_encoder is not found in"):
        mp.unfuse_lora(components=["text_encoder"])
    with pytest.raises(ValueError, match="not in the list of present adapters"):
        mp.set_adapters(["broken", "zz"])
    with pytest.raises(ValueError, match="Length of adapter names 1 is not equal to the length of the weights 2"):
        mp.set_adapters("broken", adapter_weights=[1.0, 2.0])
    with pytest.raises(TypeError, match="weight_nam"):
        mp.load_lora_weights(loras["b"], adapter_name="b", weight_nam="x.safetensors")
    with pytest.raises(ValueError, match="You must pass at least one of `transformer_lora_layers`"):
        type(mp).save_lora_weights("unused")
    with pytest.raises(ValueError, match="The LoRA state dict is empty"):
        mp.load_lora_weights({})  # the advice for PEFT-prefixed keys was chosen: `all()` of no keys
    assert_same_params(mp.transformer, snapshot)
    assert mp.get_list_adapters() == {"transformer": ["broken"]}

    # a weight that is no number is refused before any layer changes (diffusers fails halfway, leaving the first
    # layers switched to the new adapters)
    mp.load_lora_weights(loras["b"], adapter_name="b")
    mp.set_adapters(["b"], adapter_weights=[0.3])
    snapshot, scalings = param_snapshot(mp.transformer), lora_scalings(mp.transformer)
    active = {name: list(layer.active_adapters) for name, layer in iter_tuner_layers(mp.transformer)}
    for weights in [(0.5, 0.7), ["0.5", 0.7], [np.array([0.5, 0.7]), 0.7], [{"transformer": {"layers": "x"}}, 1.0]]:
        with pytest.raises(TypeError, match="a weight is a number, None, or a dict"):
            mp.set_adapters(["broken", "b"], adapter_weights=weights)
        assert_same_params(mp.transformer, snapshot)
        assert lora_scalings(mp.transformer) == scalings
        assert {name: list(layer.active_adapters) for name, layer in iter_tuner_layers(mp.transformer)} == active
    mp.set_adapters(["broken", "b"], adapter_weights=[np.float32(0.0), {"transformer": {"layers": 0.5}}])


def test_default_adapter_names_are_never_taken(clean):
    # upstream names an adapter `default_<adapters of the first LoRA layer>`: after a delete, or when the adapters
    # target different modules, that name is already loaded and diffusers merges the new LoRA into it
    _, mp, loras = clean
    mp.load_lora_weights(loras["b"])
    mp.load_lora_weights(loras["b"])
    mp.delete_adapters("default_0")
    mp.load_lora_weights(loras["b"])
    assert mp.get_list_adapters() == {"transformer": ["default_1", "default_2"]}
    mp.unload_lora_weights()
    mp.load_lora_weights(loras["a"])  # every module, the time embedder included
    mp.load_lora_weights(loras["b"])  # attention only
    mp.load_lora_weights(loras["b"])
    assert mp.get_list_adapters() == {"transformer": ["default_0", "default_1", "default_2"]}


def test_pipeline_save_pretrained_with_lora_is_refused_before_writing(clean, tmp_path):
    _, mp, loras = clean
    mp.load_lora_weights(loras["b"], adapter_name="b")
    with pytest.raises(ValueError, match=r"Lumina2Transformer2DModel has LoRA layers .*save_lora_weights"):
        mp.save_pretrained(tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()  # no component written


def test_pipeline_hotswap_like_diffusers(clean, tmp_path):
    tp, mp, loras = clean
    rank4 = make_lora_dir(tmp_path, "c", seed=3, r=4, lora_alpha=2, targets=ATTN_TARGETS)
    for pipe in (tp, mp):
        pipe.enable_lora_hotswap(target_rank=4)
        pipe.load_lora_weights(loras["b"], adapter_name="swap")  # rank 2, padded to 4
    image, expected = _both(tp, mp)
    assert_close(image, expected, TOL, "rank-2 LoRA padded to rank 4")
    # a LoRA on more modules cannot be swapped in: refused, nothing changed
    snapshot = param_snapshot(mp.transformer)
    with pytest.raises(ValueError, match="unexpected keys found: context_refiner.0.feed_forward.linear_1"):
        mp.load_lora_weights(loras["a"], adapter_name="swap", hotswap=True)
    assert_same_params(mp.transformer, snapshot)
    for pipe in (tp, mp):
        pipe.load_lora_weights(rank4, adapter_name="swap", hotswap=True)
    assert mp.get_list_adapters() == {"transformer": ["swap"]}
    image, expected = _both(tp, mp)
    assert_close(image, expected, TOL, "hotswapped rank-4 LoRA")
