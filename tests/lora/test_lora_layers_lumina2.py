"""LoRA on Lumina2Transformer2DModel (`PeftAdapterMixin`): LoRAs made with PEFT on diffusers' (torch) transformer and
saved with diffusers' `save_lora_weights` load into ours and give diffusers' outputs (fp32 relative L2 <= 1e-5) with
scales, several adapters, fusing; unfuse / disable / unload give the base model back exactly; LoRAs we save load in
diffusers; bad input raises and leaves the model exactly as it was. PyNative and GRAPH_MODE."""

import json
import os

import diffusers
import numpy as np
import peft
import pytest
import torch

import mindspore as ms

import mindone.peft as mp
from mindone.diffusers import Lumina2Pipeline
from mindone.diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from mindone.safetensors.mindspore import load_file, load_metadata, save_file
from tests.lora.lumina2_lora_utils import (
    ATTN_TARGETS,
    TINY,
    TOL,
    add_torch_lora,
    assert_same_params,
    lora_scalings,
    make_inputs,
    make_lora_dir,
    make_twins,
    param_snapshot,
    run_ms,
    run_torch,
    save_torch_lora,
)
from tests.testing_utils import assert_close, rel_l2

WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' model-level loader needs it for a folder


def _base_params(model) -> dict:
    """Parameter values keyed by their base-model names (`...to_q.base_layer.weight` -> `...to_q.weight`), LoRA
    weights left out."""
    out = {}
    for name, param in model.parameters_and_names():
        if ".lora_" in name:
            continue
        value = param.astype(ms.float32) if param.dtype == ms.bfloat16 else param  # NumPy has no bfloat16
        out[name.replace(".base_layer.", ".")] = value.asnumpy().copy()
    return out


def _assert_base_params_equal(model, base_snapshot):
    now = _base_params(model)
    assert sorted(now) == sorted(base_snapshot)
    for name, value in base_snapshot.items():
        np.testing.assert_array_equal(now[name], value, err_msg=name)


@pytest.mark.parametrize(
    "mode, compile_on_cpu",
    [(ms.PYNATIVE_MODE, False), (ms.PYNATIVE_MODE, True), (ms.GRAPH_MODE, False)],
    ids=["pynative", "pynative-compiled", "graph"],
)
def test_transformer_lora_lifecycle_matches_diffusers(tmp_path, monkeypatch, mode, compile_on_cpu):
    # pynative-compiled: every call takes the compiled PyNative CPU path of large inputs (`COMPILE_ON_CPU_ELEMENTS`)
    from mindone.diffusers.models.transformers import transformer_lumina2

    monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1 if compile_on_cpu else 1 << 40)
    torch_model, model = make_twins()
    inputs = make_inputs()
    base_torch = run_torch(torch_model, inputs)
    ms.set_context(mode=mode)
    base = run_ms(model, inputs)
    assert_close(base, base_torch, TOL, "base model")
    base_params = _base_params(model)

    # two LoRAs made with PEFT on the torch side, saved with diffusers' save_lora_weights (with metadata)
    add_torch_lora(torch_model, "a", seed=1)  # r 4, alpha 8, attention + feed-forward + adaLN linears
    add_torch_lora(torch_model, "b", seed=2, r=2, lora_alpha=3, targets=ATTN_TARGETS, rank_pattern={"to_q": 3})
    dir_a = os.path.dirname(save_torch_lora(torch_model, "a", str(tmp_path / "a")))
    dir_b = os.path.dirname(save_torch_lora(torch_model, "b", str(tmp_path / "b")))

    # both loaded before the first LoRA call (each structural change recompiles in GRAPH_MODE)
    model.load_lora_adapter(dir_a, adapter_name="a")
    assert model.active_adapters() == ["a"] and list(model.peft_config) == ["a"]
    model.load_lora_adapter(dir_b, adapter_name="b")
    assert model.active_adapters() == ["b"] and model.peft_config["b"].rank_pattern == {"to_q": 3}
    for m in (model, torch_model):
        m.set_adapter("a")
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "adapter a")
    assert np.abs(run_ms(model, inputs) - base).max() > 1e-3  # the LoRA changes the output

    # the run-time scale of `attention_kwargs`, restored after the call
    scaled = run_ms(model, inputs, attention_kwargs={"scale": 0.5})
    assert_close(scaled, run_torch(torch_model, inputs, attention_kwargs={"scale": 0.5}), TOL, "scale 0.5")
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "scale restored")

    # both adapters active with weights
    for m in (model, torch_model):
        m.set_adapters(["a", "b"], weights=[0.7, -0.4])
    two = run_ms(model, inputs)
    assert_close(two, run_torch(torch_model, inputs), TOL, "adapters a, b with weights")
    for m in (model, torch_model):
        m.set_adapters("b", weights=2.0)
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "adapter b with weight 2")

    # fused == unfused (same effective scale), and == diffusers fused
    for m in (model, torch_model):
        m.set_adapters(["a", "b"], weights=[0.7, -0.4])
    unfused = run_ms(model, inputs, attention_kwargs={"scale": 0.5})
    for m in (model, torch_model):
        m.fuse_lora(lora_scale=0.5)
    fused = run_ms(model, inputs)
    assert_close(fused, unfused, TOL, "fused vs unfused")
    assert_close(fused, run_torch(torch_model, inputs), TOL, "fused vs diffusers fused")

    # unfuse: base weights back bit for bit; the LoRA scales keep the fused lora_scale, as upstream
    for m in (model, torch_model):
        m.unfuse_lora()
    _assert_base_params_equal(model, base_params)
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "after unfuse")
    model.disable_lora()
    np.testing.assert_array_equal(run_ms(model, inputs), base)
    model.enable_lora()
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "enabled again")
    # fusing while disabled: PEFT merges, then unmerges at the next forward of the disabled layers (the base
    # model comes out, and enabling again gives the unfused LoRA); nothing is merged here, with a warning
    for m in (model, torch_model):
        m.disable_lora()
    torch_model.fuse_lora()
    with pytest.warns(UserWarning, match="The adapters are disabled: nothing is merged"):
        model.fuse_lora()
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "fused while disabled")
    np.testing.assert_array_equal(run_ms(model, inputs), base)
    _assert_base_params_equal(model, base_params)
    for m in (model, torch_model):
        m.enable_lora()
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "enabled after the disabled fuse")
    for m in (model, torch_model):
        m.unfuse_lora()

    # delete one adapter (GRAPH_MODE: the engine's tests cover deleting; spare a compilation here)
    for m in (model, torch_model):
        m.delete_adapters("b")
    assert list(model.peft_config) == ["a"] and model.active_adapters() == ["a"]
    if mode == ms.PYNATIVE_MODE:
        assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "after deleting b")

    # unload: the base model, by names, values and output
    model.unload_lora()
    assert not hasattr(model, "peft_config") and not model._hf_peft_config_loaded
    assert not any(True for _ in mp.iter_tuner_layers(model))
    assert sorted(name for name, _ in model.parameters_and_names()) == sorted(base_params)
    _assert_base_params_equal(model, base_params)
    np.testing.assert_array_equal(run_ms(model, inputs), base)


def test_lora_through_dtype_casts_as_diffusers(tmp_path):
    """Casting a model with LoRA layers leaves the run-time scales float32 (a bfloat16 round trip rounded a weight of
    0.7 to 0.69921875 for good); parameter counts and state-dict keys are upstream's; fusing in bfloat16 runs on CPU
    (MindSpore 2.10 has no bfloat16 Identity / Add / IsFinite CPU kernels) with PEFT's bfloat16 weights."""
    torch_model, model = make_twins()
    inputs = make_inputs()
    add_torch_lora(torch_model, "a", seed=1)
    model.load_lora_adapter(os.path.dirname(save_torch_lora(torch_model, "a", str(tmp_path / "a"))), adapter_name="a")
    for m in (model, torch_model):
        m.set_adapters(["a"], [0.7])
    assert model.num_parameters() == torch_model.num_parameters()
    assert model.get_memory_footprint() == torch_model.get_memory_footprint()  # not the run-time scales
    assert sorted(model.state_dict()) == sorted(torch_model.state_dict())
    for m, dtype in ((model, ms), (torch_model, torch)):
        m.to(dtype.bfloat16).to(dtype.float32)
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "after a bfloat16 round trip")

    for m, dtype in ((model, ms), (torch_model, torch)):
        m.to(dtype.bfloat16)
    before = _base_params(model)
    model.fuse_lora(lora_scale=0.5, safe_fusing=True)
    torch_model.fuse_lora(lora_scale=0.5, safe_fusing=True)
    fused = _base_params(model)
    expected = {k.replace(".base_layer.", "."): v.float().numpy() for k, v in torch_model.state_dict().items()}
    assert any(np.abs(fused[k] - before[k]).max() > 0 for k in fused)
    for name, value in fused.items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    model.unfuse_lora()
    _assert_base_params_equal(model, before)


def test_adapter_weights_reloaded_under_jit():
    # `set_peft_model_state_dict` into a loaded adapter writes in place: an `ms.jit` graph keeps the storage it was
    # compiled with, and with `set_data` it went on with the old weights
    config = mp.LoraConfig(r=4, lora_alpha=8, target_modules=ATTN_TARGETS)
    inputs = make_inputs()
    models = [make_twins()[1] for _ in range(2)]
    for model in models:
        model.add_adapter(config, "a")
    rng = np.random.default_rng(0)
    names = [n.replace(".a.", ".") for n, _ in models[0].parameters_and_names() if ".lora_A." in n or ".lora_B." in n]
    shapes = {n.replace(".a.", "."): p.shape for n, p in models[0].parameters_and_names()}
    first, second = ({n: rng.standard_normal(shapes[n]).astype(np.float32) * 0.3 for n in names} for _ in range(2))
    model, fresh = models
    mp.set_peft_model_state_dict(model, first, adapter_name="a")
    model.construct = ms.jit(model.construct)
    before = run_ms(model, inputs)
    mp.set_peft_model_state_dict(model, second, adapter_name="a")
    mp.set_peft_model_state_dict(fresh, second, adapter_name="a")
    after = run_ms(model, inputs)
    assert rel_l2(after, before) > 1e-2
    assert rel_l2(after, run_ms(fresh, inputs)) <= 1e-6


def test_compiled_blocks_with_lora_on_some_layers(tmp_path, monkeypatch):
    """Compiled PyNative CPU path: blocks share a graph only with blocks of the same structure. With a LoRA on both
    joint blocks they share one graph, each block with its own LoRA weights; with a second LoRA on one block only,
    each compiles its own; a LoRA on the time / caption embedding and the output layer too. Both as diffusers and as
    op by op."""
    from mindone.diffusers.models.transformers import transformer_lumina2

    torch_model, model = make_twins()
    inputs = make_inputs()

    def check(what, compiled_blocks):
        monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1 << 40)
        eager = run_ms(model, inputs)
        monkeypatch.setattr(transformer_lumina2, "COMPILE_ON_CPU_ELEMENTS", 1)
        compiled = run_ms(model, inputs)
        assert_close(compiled, eager, 1e-6, f"{what}: compiled vs op by op")
        assert_close(compiled, run_torch(torch_model, inputs), TOL, f"{what}: compiled vs diffusers")
        assert [i for i, block in enumerate(model.layers) if block.compile_cache] == compiled_blocks

    add_torch_lora(torch_model, "all", seed=5, targets=ATTN_TARGETS)
    model.load_lora_adapter(
        os.path.dirname(save_torch_lora(torch_model, "all", str(tmp_path / "all"))), adapter_name="all"
    )
    check("LoRA on both blocks", [0])
    add_torch_lora(torch_model, "one", seed=4, targets=["layers.1.attn.to_q", "layers.1.feed_forward.linear_2"])
    model.load_lora_adapter(
        os.path.dirname(save_torch_lora(torch_model, "one", str(tmp_path / "one"))), adapter_name="one"
    )
    for adapters in (["one"], ["all", "one"]):
        for m in (model, torch_model):
            m.set_adapters(adapters)
        check(f"{adapters}, one on block 1 only", [0, 1])
    # the time / caption embedding and the output layer (compiled on their own in such calls) with a LoRA
    edges = ["norm_out.linear_1", "time_caption_embed.caption_embedder.1"]
    add_torch_lora(torch_model, "edges", seed=3, targets=edges)
    model.load_lora_adapter(
        os.path.dirname(save_torch_lora(torch_model, "edges", str(tmp_path / "edges"))), adapter_name="edges"
    )
    for m in (model, torch_model):
        m.set_adapters(["all", "one", "edges"])
    check("LoRA on the embedding and the output layer too", [0, 1])
    assert model.time_caption_embed.compile_cache and model.norm_out.compile_cache


def test_load_without_metadata_and_from_a_dict(tmp_path):
    """No metadata: ranks from the shapes, alpha = rank (diffusers' convention); a state dict in memory works the
    same and is not modified; default adapter names `default_<n>`."""
    torch_model, model = make_twins()
    inputs = make_inputs()
    add_torch_lora(torch_model, "a", seed=3, r=4, lora_alpha=4, rank_pattern={"to_k": 2, "linear_2": 3})
    directory = str(tmp_path / "a")
    path = save_torch_lora(torch_model, "a", directory, with_metadata=False)
    assert load_metadata(path) == {"format": "pt"}
    model.load_lora_adapter(directory)
    assert list(model.peft_config) == ["default_0"]
    config = model.peft_config["default_0"]
    assert config.r == 4 and config.lora_alpha == 4
    assert config.rank_pattern == config.alpha_pattern and len(config.rank_pattern) > 0
    reference, _ = make_twins()
    reference.load_lora_adapter(directory, weight_name=WEIGHT_NAME)  # diffusers reads the file the same way
    expected = run_torch(reference, inputs)
    assert rel_l2(expected, run_torch(torch_model, inputs)) > 1e-2  # alpha = rank differs from the trained alphas
    assert_close(run_ms(model, inputs), expected, TOL, "no metadata")

    state_dict = load_file(path)
    keys = list(state_dict)
    model.load_lora_adapter(state_dict, adapter_name="again")
    assert list(state_dict) == keys
    model.set_adapters("again")
    assert_close(run_ms(model, inputs), expected, TOL, "from a dict")
    model.load_lora_adapter({k: v.asnumpy() for k, v in state_dict.items()})  # NumPy values, default name
    assert list(model.peft_config) == ["default_0", "again", "default_2"]
    # the old diffusers key layout (`lora.down` / `lora.up`) is converted to PEFT's
    old_layout = {k.replace("lora_A", "lora.down").replace("lora_B", "lora.up"): v for k, v in state_dict.items()}
    model.load_lora_adapter(old_layout, adapter_name="old")
    model.set_adapters("old")
    assert_close(run_ms(model, inputs), expected, TOL, "old diffusers key layout")


def test_peft_folder_with_its_adapter_config(tmp_path):
    """A folder PEFT's `save_pretrained` wrote (`adapter_model.safetensors` with `base_model.model.` keys, and
    `adapter_config.json`): the docs' recipe (guides/lora.md) keeps its alpha and gives PEFT's output; loading the
    folder alone, as diffusers does, ignores the json (alpha = rank)."""
    torch_model, model = make_twins()
    inputs = make_inputs()
    torch.manual_seed(5)
    config = peft.LoraConfig(r=4, lora_alpha=12, target_modules=ATTN_TARGETS, init_lora_weights=False)
    peft_model = peft.get_peft_model(torch_model, config)
    folder = str(tmp_path / "peft")
    peft_model.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    expected = run_torch(torch_model, inputs)  # the LoRA layers are injected in place

    state_dict = load_file(os.path.join(folder, "adapter_model.safetensors"))
    model.load_lora_adapter(
        {k.removeprefix("base_model.model."): v for k, v in state_dict.items()},
        prefix=None,
        metadata=mp.LoraConfig.from_pretrained(folder).to_dict(),
        adapter_name="peft",
    )
    assert model.peft_config["peft"].lora_alpha == 12
    assert_close(run_ms(model, inputs), expected, TOL, "PEFT folder with its adapter_config.json")

    model.load_lora_adapter(folder, prefix="base_model.model", adapter_name="folder_only")
    assert model.peft_config["folder_only"].lora_alpha == 4
    reference, _ = make_twins()
    reference.load_lora_adapter(folder, prefix="base_model.model", weight_name="adapter_model.safetensors")
    assert reference.peft_config["default_0"].lora_alpha == 4
    model.set_adapters("folder_only")
    assert_close(run_ms(model, inputs), run_torch(reference, inputs), TOL, "PEFT folder without its json")


def test_lora_saved_by_us_loads_in_diffusers(tmp_path):
    torch_model, model = make_twins()
    inputs = make_inputs()
    # a LoRA created on our side (random A and B), saved with our save_lora_weights
    ms.set_seed(0)
    model.add_adapter(mp.LoraConfig(r=3, lora_alpha=6, target_modules=ATTN_TARGETS, init_lora_weights=False), "ours")
    ours = run_ms(model, inputs)
    state_dict = mp.get_peft_model_state_dict(model, adapter_name="ours")
    Lumina2Pipeline.save_lora_weights(
        str(tmp_path / "pipe"),
        transformer_lora_layers=state_dict,
        transformer_lora_adapter_metadata=model.peft_config["ours"].to_dict(),
    )
    metadata = json.loads(load_metadata(str(tmp_path / "pipe" / "pytorch_lora_weights.safetensors"))[
        LORA_ADAPTER_METADATA_KEY
    ])  # fmt: skip
    assert metadata["transformer.r"] == 3 and metadata["transformer.lora_alpha"] == 6
    torch_model.load_lora_adapter(str(tmp_path / "pipe"), adapter_name="ours", weight_name=WEIGHT_NAME)
    assert_close(ours, run_torch(torch_model, inputs), TOL, "diffusers with our LoRA")
    assert torch_model.peft_config["ours"].lora_alpha == 6

    # the model-level writer (no prefix), read by diffusers' load_lora_adapter(prefix=None)
    model.save_lora_adapter(str(tmp_path / "model"), adapter_name="ours", weight_name="ours.safetensors")
    other, _ = make_twins()
    other.load_lora_adapter(str(tmp_path / "model"), prefix=None, weight_name="ours.safetensors", adapter_name="ours")
    assert_close(ours, run_torch(other, inputs), TOL, "diffusers with our save_lora_adapter file")
    # and back into a fresh model of ours
    _, again = make_twins()
    again.load_lora_adapter(str(tmp_path / "model"), prefix=None, weight_name="ours.safetensors", adapter_name="x")
    np.testing.assert_array_equal(run_ms(again, inputs), ours)


def test_save_pretrained_with_lora_layers(tmp_path):
    """A model with LoRA layers is not saved as a plain model (upstream writes the adapter-wrapped names, a folder that
    loads back with random base layers): a clear error, nothing written. Fused and unloaded, it saves its fused
    weights, which diffusers loads."""
    _, model = make_twins()
    inputs = make_inputs()
    ms.set_seed(0)
    model.add_adapter(mp.LoraConfig(r=3, lora_alpha=6, target_modules=ATTN_TARGETS, init_lora_weights=False), "ours")
    with_lora = run_ms(model, inputs)
    with pytest.raises(ValueError, match=r"has LoRA layers .*save_lora_adapter.*unload_lora"):
        model.save_pretrained(tmp_path / "wrapped")
    assert not (tmp_path / "wrapped").exists()
    model.fuse_lora()
    model.unload_lora()
    model.save_pretrained(tmp_path / "fused")
    fused = diffusers.Lumina2Transformer2DModel.from_pretrained(tmp_path / "fused").eval()
    assert_close(with_lora, run_torch(fused, inputs), TOL, "fused and saved, in diffusers")


def test_fusing_a_fused_adapter_again_changes_nothing(tmp_path):
    """A second `fuse_lora(lora_scale)` merges nothing and leaves the adapter's scale (diffusers multiplies it again):
    after `unfuse_lora` the adapter runs at the first fuse's scale, not its square."""
    _, model = make_twins()
    inputs = make_inputs()
    model.load_lora_adapter(make_lora_dir(tmp_path, "a", seed=1), adapter_name="a")
    at_08 = run_ms(model, inputs, attention_kwargs={"scale": 0.8})
    model.fuse_lora(lora_scale=0.8)
    fused, snapshot, scalings = run_ms(model, inputs), param_snapshot(model), lora_scalings(model)
    with pytest.warns(UserWarning, match="already merged"):
        model.fuse_lora(lora_scale=0.8)
    assert lora_scalings(model) == scalings
    assert_same_params(model, snapshot)
    np.testing.assert_array_equal(run_ms(model, inputs), fused)
    model.unfuse_lora()
    assert_close(run_ms(model, inputs), at_08, 1e-6, "unfused after fusing twice at 0.8")


def test_fuse_with_nan_lora(tmp_path):
    torch_model, model = make_twins()
    inputs = make_inputs()
    model.load_lora_adapter(make_lora_dir(tmp_path, "a", seed=1), adapter_name="a")
    model.layers[0].attn.to_q.lora_A["a"].weight.set_data(
        ms.Tensor(np.full((4, TINY["hidden_size"]), np.nan, np.float32))
    )
    snapshot, scalings = param_snapshot(model), lora_scalings(model)
    with pytest.raises(ValueError, match="NaN"):
        model.fuse_lora(lora_scale=0.5, safe_fusing=True)
    # nothing fused, nothing rescaled
    assert_same_params(model, snapshot)
    assert lora_scalings(model) == scalings
    assert not any(layer.merged for _, layer in mp.iter_tuner_layers(model))
    # without safe fusing the NaN goes in (as upstream): every output is NaN
    model.fuse_lora(safe_fusing=False)
    assert np.isnan(run_ms(model, inputs)).all()
    model.unfuse_lora()
    model.disable_lora()
    assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, "base after unfuse")


def test_fuse_lora_bias_over_a_layer_without_bias(tmp_path):
    """A `lora_bias` adapter on a layer without a bias cannot merge: the error comes before any layer is scaled or
    merged (diffusers has already scaled and merged the layers before the failing one), here with a plain adapter
    loaded first."""
    torch_model, model = make_twins()
    inputs = make_inputs()
    model.load_lora_adapter(make_lora_dir(tmp_path, "a", seed=1, targets=["to_q", "norm1.linear"]), adapter_name="a")
    with_lora_bias = make_lora_dir(tmp_path, "b", seed=2, targets=["to_k", "to_v"], lora_bias=True)
    with pytest.warns(mp.PeftWarning, match="has no bias"):  # PEFT's category (a UserWarning)
        model.load_lora_adapter(with_lora_bias, adapter_name="b")
    model.set_adapters(["a", "b"])
    expected = run_ms(model, inputs)
    snapshot, scalings = param_snapshot(model), lora_scalings(model)
    with pytest.raises(RuntimeError, match="Impossible to merge LoRA with `lora_bias=True`"):
        model.fuse_lora(lora_scale=0.5)
    assert_same_params(model, snapshot)
    assert lora_scalings(model) == scalings
    assert not any(layer.merged for _, layer in mp.iter_tuner_layers(model))
    np.testing.assert_array_equal(run_ms(model, inputs), expected)
    # the mergeable adapter alone still fuses
    model.fuse_lora(adapter_names=["a"])
    assert any(layer.merged for _, layer in mp.iter_tuner_layers(model))


# ----------------------------------------------------------------------------------------------------------------------
# bad input: clear errors, the model left exactly as it was


def _check_unchanged(model, snapshot, configs, inputs, expected):
    assert_same_params(model, snapshot)
    assert list(getattr(model, "peft_config", {})) == configs
    np.testing.assert_array_equal(run_ms(model, inputs), expected)


@pytest.fixture
def loaded(tmp_path):
    """Our transformer with adapter "a" loaded, and the state dict of that LoRA (diffusers format)."""
    _, model = make_twins()
    directory = make_lora_dir(tmp_path, "a", seed=1)
    model.load_lora_adapter(directory, adapter_name="a")
    return model, load_file(os.path.join(directory, "pytorch_lora_weights.safetensors"))


def test_bad_keys_and_shapes_leave_the_model_unchanged(loaded, tmp_path):
    model, state_dict = loaded
    inputs = make_inputs()
    expected, snapshot = run_ms(model, inputs), param_snapshot(model)

    only_unknown = {
        "transformer.nowhere.proj.lora_A.weight": state_dict["transformer.layers.0.attn.to_q.lora_A.weight"]
    }
    only_unknown["transformer.nowhere.proj.lora_B.weight"] = state_dict["transformer.layers.0.attn.to_q.lora_B.weight"]
    with pytest.raises(ValueError, match="not found in the base model"):
        model.load_lora_adapter(only_unknown, adapter_name="b")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    some_unknown = dict(state_dict, **only_unknown)
    with pytest.raises(ValueError, match="match no weight") as err:
        model.load_lora_adapter(some_unknown, adapter_name="b")
    assert "nowhere.proj.lora_A.weight" in str(err.value)
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    wrong_shape = dict(state_dict)
    key = "transformer.layers.1.feed_forward.linear_2.lora_B.weight"
    wrong_shape[key] = ms.Tensor(np.ones((TINY["hidden_size"] + 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"feed_forward\.linear_2\.lora_B\.weight: shape \(9, 4\)"):
        model.load_lora_adapter(wrong_shape, adapter_name="b")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    missing_b = {k: v for k, v in state_dict.items() if k != "transformer.layers.0.attn.to_k.lora_B.weight"}
    with pytest.raises(ValueError, match="missing from the state dict"):
        model.load_lora_adapter(missing_b, adapter_name="b")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    with pytest.raises(TypeError, match=r"\['adaptor_name'\]: not options of this loader"):
        model.load_lora_adapter(state_dict, adaptor_name="b")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    with pytest.raises(ValueError, match="Adapter name a already in use in the model"):
        model.load_lora_adapter(state_dict, adapter_name="a")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    # metadata with no entry under the prefix: upstream fails building its config from `{}`; inferring the config
    # from the shapes instead would load alpha = rank (scale 1, not the 2 meant here)
    with pytest.raises(ValueError, match=r"metadata has no entry .*`transformer\.`"):
        model.load_lora_adapter(state_dict, adapter_name="b", metadata={"r": 4, "lora_alpha": 8})
    _check_unchanged(model, snapshot, ["a"], inputs, expected)
    with pytest.raises(ValueError, match=r"metadata has no entry for these weights \(it is empty\)"):
        model.load_lora_adapter(state_dict, adapter_name="b", metadata={})
    _check_unchanged(model, snapshot, ["a"], inputs, expected)
    # the same metadata in a file's header: the error's advice (the file's weights as a state dict) loads them
    path = str(tmp_path / "unprefixed" / "lora.safetensors")
    os.makedirs(os.path.dirname(path))
    save_file(state_dict, path, metadata={LORA_ADAPTER_METADATA_KEY: json.dumps({"r": 4, "lora_alpha": 8})})
    with pytest.raises(ValueError, match=r"metadata has no entry .*load_file\(path\)`, a state dict, with no"):
        model.load_lora_adapter(path, adapter_name="b")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)
    model.load_lora_adapter(load_file(path), adapter_name="b")
    assert model.peft_config["b"].lora_alpha == model.peft_config["b"].r  # inferred from the shapes
    model.delete_adapters("b")

    with pytest.raises(ValueError, match="This LoRA is a DoRA .* not support"):  # PEFT's magnitude vectors
        model.load_lora_adapter(
            dict(state_dict, **{"transformer.layers.0.attn.to_q.lora_magnitude_vector": ms.Tensor(np.ones(8))}),
            adapter_name="b",
        )
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    # a first adapter failing on a fresh model leaves no LoRA layer behind
    _, fresh = make_twins()
    fresh_expected, fresh_snapshot = run_ms(fresh, inputs), param_snapshot(fresh)
    with pytest.raises(ValueError):
        fresh.load_lora_adapter(wrong_shape, adapter_name="a")
    _check_unchanged(fresh, fresh_snapshot, [], inputs, fresh_expected)
    assert not any(True for _ in mp.iter_tuner_layers(fresh))
    # the padding of enable_lora_hotswap fails after the injection: the injection is undone
    fresh.enable_lora_hotswap(target_rank=2)
    with pytest.raises(ValueError, match="target rank 2, but the original rank is larger"):
        fresh.load_lora_adapter(state_dict, adapter_name="a")
    _check_unchanged(fresh, fresh_snapshot, [], inputs, fresh_expected)
    assert not any(True for _ in mp.iter_tuner_layers(fresh))
    # upstream's hotswap tests pass the saving option `safe_serialization` to the loader, which ignores it
    _, other = make_twins()
    other.load_lora_adapter(state_dict, adapter_name="b", safe_serialization=True)
    assert list(other.peft_config) == ["b"]


def test_bad_arguments(loaded, tmp_path):
    model, state_dict = loaded
    inputs = make_inputs()
    expected, snapshot = run_ms(model, inputs), param_snapshot(model)
    with pytest.raises(ValueError, match="could not be found: zz"):
        model.set_adapters(["a", "zz"])
    with pytest.raises(ValueError, match="Length of adapter names 1 is not equal to the length of their weights 2"):
        model.set_adapters("a", weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"must be unique, got \['a'\] more than once"):
        model.set_adapters(["a", "a"], weights=[0.5, 2.0])
    with pytest.raises(ValueError, match="could not be found: zz"):
        model.set_adapter("zz")
    with pytest.raises(ValueError, match="could not be found: zz"):
        model.delete_adapters(["a", "zz"])
    with pytest.raises(ValueError, match="could not be found: zz"):
        model.fuse_lora(adapter_names=["zz"])
    with pytest.raises(TypeError, match="weight_nam"):
        model.load_lora_adapter(state_dict, adapter_name="b", weight_nam="x.safetensors")
    with pytest.raises(ValueError, match="Adapter name zz not found in the model"):
        model.save_lora_adapter(str(tmp_path / "x"), adapter_name="zz")
    with pytest.raises(ValueError, match="adapter_config should be an instance of PeftConfig"):
        model.add_adapter({"r": 4}, adapter_name="b")
    with pytest.raises(ValueError, match="Adapter with name a already exists"):
        model.add_adapter(mp.LoraConfig(target_modules=["to_q"]), adapter_name="a")
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    model.fuse_lora()
    with pytest.raises(ValueError, match="while they are merged"):
        model.delete_adapters("a")
    model.unfuse_lora()
    _check_unchanged(model, snapshot, ["a"], inputs, expected)

    _, fresh = make_twins()
    with pytest.raises(ValueError, match="No adapter loaded"):
        fresh.set_adapter("a")
    with pytest.raises(ValueError, match="No adapter loaded"):
        fresh.disable_adapters()


# ----------------------------------------------------------------------------------------------------------------------
# hotswap


def test_hotswap_refuses_weights_a_normal_load_refuses(tmp_path):
    """PEFT's hotswap checks only that shapes are not larger: a short in / out axis was zero-padded, a half pair
    zeroed the layer, ranks of A and B or of the weights and the config could differ. Here each is refused, as a
    normal load refuses it, and the loaded adapter is unchanged."""
    inputs = make_inputs()
    directory = make_lora_dir(tmp_path, "r4", seed=1, r=4, lora_alpha=8)
    path = os.path.join(directory, WEIGHT_NAME)
    good, metadata = load_file(path), load_metadata(path)
    key_a = "transformer.layers.0.attn.to_q.lora_A.weight"
    key_b = key_a.replace("lora_A", "lora_B")
    config = json.loads(metadata[LORA_ADAPTER_METADATA_KEY])
    width = good[key_a].shape[1]  # to_q: hidden_size in and out
    variants = {
        "in_features": (
            {**good, key_a: good[key_a][:, :7]},
            None,
            rf"lora_A.a.weight: shape \(4, 7\), .* \(r, {width}\)",
        ),
        "out_features": (
            {**good, key_b: good[key_b][:7]},
            None,
            rf"lora_B.a.weight: shape \(7, 4\), .* \({width}, r\)",
        ),
        "ranks": ({**good, key_b: good[key_b][:, :2]}, None, r"to_q: lora_A of rank 4, lora_B of rank 2"),
        "half_pair": ({k: v for k, v in good.items() if k != key_b}, None, r"to_q: lora_A without lora_B"),
        "config_rank": (
            good,
            {**config, "transformer.r": 8},
            r"weights of rank 4, but the adapter's config gives it r=8",
        ),
    }
    _, model = make_twins()
    model.load_lora_adapter(directory, adapter_name="a", weight_name=WEIGHT_NAME)
    out, snapshot = run_ms(model, inputs), param_snapshot(model)
    for name, (state_dict, new_config, match) in variants.items():
        bad_path = str(tmp_path / f"{name}.safetensors")
        save_file(state_dict, bad_path, metadata={LORA_ADAPTER_METADATA_KEY: json.dumps(new_config or config)})
        with pytest.raises(ValueError, match=match):
            model.load_lora_adapter(bad_path, adapter_name="a", hotswap=True, prefix="transformer")
        _check_unchanged(model, snapshot, ["a"], inputs, out)
        with pytest.raises(ValueError, match="nothing was loaded"):  # the same file, loaded normally
            model.load_lora_adapter(bad_path, adapter_name="b", prefix="transformer")
        _check_unchanged(model, snapshot, ["a"], inputs, out)
    model.load_lora_adapter(path, adapter_name="a", hotswap=True, prefix="transformer")  # the good file swaps in
    np.testing.assert_array_equal(run_ms(model, inputs), out)


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def test_hotswap(tmp_path, mode):
    inputs = make_inputs()
    dir_r4 = make_lora_dir(tmp_path, "r4", seed=1, r=4, lora_alpha=8)
    dir_r8 = make_lora_dir(tmp_path, "r8", seed=2, r=8, lora_alpha=4)
    dir_r2 = make_lora_dir(tmp_path, "r2", seed=3, r=2, lora_alpha=2)
    dir_dropout = make_lora_dir(tmp_path, "dropout", seed=4, r=4, lora_alpha=8, lora_dropout=0.1)

    def expected(directory):
        torch_model, _ = make_twins()
        torch_model.load_lora_adapter(directory, adapter_name="x", weight_name=WEIGHT_NAME)
        return run_torch(torch_model, inputs)

    ms.set_context(mode=mode)
    # without enable_lora_hotswap: a larger rank is refused, the model unchanged
    _, model = make_twins()
    model.load_lora_adapter(dir_r4, adapter_name="a")
    out_r4, snapshot = run_ms(model, inputs), param_snapshot(model)
    assert_close(out_r4, expected(dir_r4), TOL, "r4")
    with pytest.raises(ValueError, match="larger rank"):
        model.load_lora_adapter(dir_r8, adapter_name="a", hotswap=True)
    _check_unchanged(model, snapshot, ["a"], inputs, out_r4)
    with pytest.raises(ValueError, match="Configs are incompatible: for lora_dropout"):
        model.load_lora_adapter(dir_dropout, adapter_name="a", hotswap=True)
    _check_unchanged(model, snapshot, ["a"], inputs, out_r4)
    with pytest.raises(ValueError, match="there is no existing adapter by that name"):
        model.load_lora_adapter(dir_r2, adapter_name="zz", hotswap=True)
    _check_unchanged(model, snapshot, ["a"], inputs, out_r4)
    # a smaller rank swaps in place
    phases = set(model.compile_cache)
    model.load_lora_adapter(dir_r2, adapter_name="a", hotswap=True)
    assert_close(run_ms(model, inputs), expected(dir_r2), TOL, "hotswapped r2 into r4")
    assert set(model.compile_cache) == phases  # no recompilation

    # with enable_lora_hotswap(target_rank=8): r4 first, then r8 and r2 swapped in without recompiling
    _, model = make_twins()
    model.enable_lora_hotswap(target_rank=8)
    model.load_lora_adapter(dir_r4, adapter_name="a")
    assert_close(run_ms(model, inputs), expected(dir_r4), TOL, "r4 padded to 8")
    assert model.layers[0].attn.to_q.lora_A["a"].weight.shape == (8, TINY["hidden_size"])
    phases = set(model.compile_cache)
    for directory in (dir_r8, dir_r2):
        model.load_lora_adapter(directory, adapter_name="a", hotswap=True)
        assert_close(run_ms(model, inputs), expected(directory), TOL, f"hotswapped {os.path.basename(directory)}")
    assert set(model.compile_cache) == phases
    with pytest.raises(RuntimeError, match="before loading the first adapter"):
        model.enable_lora_hotswap(target_rank=16)
    # as in diffusers, only the first adapter was padded: one loaded later keeps its rank, and the error says how to
    # pad it (diffusers, uncompiled, reassigns the tensors instead)
    model.load_lora_adapter(dir_r2, adapter_name="b")
    model.set_adapters(["b"])
    out_b, snapshot = run_ms(model, inputs), param_snapshot(model)
    with pytest.raises(ValueError, match=r"larger rank than adapter 'b' as loaded \(rank 4 against the loaded 2\)"):
        model.load_lora_adapter(dir_r4, adapter_name="b", hotswap=True)
    _check_unchanged(model, snapshot, ["a", "b"], inputs, out_b)
    mp.prepare_model_for_compiled_hotswap(model, target_rank=8, check_compiled="warn")  # as the error advises
    model.load_lora_adapter(dir_r4, adapter_name="b", hotswap=True)
    assert_close(run_ms(model, inputs), expected(dir_r4), TOL, "r4 hotswapped into the padded second adapter")

    # a first adapter of a larger rank than target_rank is refused before anything is injected: the compiled
    # graph of the model without LoRA stays valid
    _, model = make_twins()
    model.enable_lora_hotswap(target_rank=2)
    out_plain, snapshot = run_ms(model, inputs), param_snapshot(model)
    phases = set(model.compile_cache)
    with pytest.raises(
        ValueError, match=r"target rank 2, but the original rank is larger \(4, e.g. for context_refiner.0.attn.to_k\)"
    ):
        model.load_lora_adapter(dir_r4, adapter_name="a")
    _check_unchanged(model, snapshot, [], inputs, out_plain)
    assert set(model.compile_cache) == phases
    model.load_lora_adapter(dir_r2, adapter_name="a")  # the hotswap preparation is still pending
    assert_close(run_ms(model, inputs), expected(dir_r2), TOL, "r2 after a refused r4")


def _ms_adapter_from_torch(torch_model, ms_model, name, **kwargs):
    """The same adapter on our transformer, with the weights of the diffusers transformer's."""
    from tests.lora.lumina2_lora_utils import to_numpy_dict, torch_lora_state_dict

    ms_model.add_adapter(mp.LoraConfig(init_lora_weights=False, **kwargs), adapter_name=name)
    state = to_numpy_dict(torch_lora_state_dict(torch_model, name))
    mp.set_peft_model_state_dict(ms_model, state, adapter_name=name)


@pytest.mark.parametrize("scale", [None, 0.5])
def test_lora_gradients_with_a_call_scale(scale):
    """Training through a call with `attention_kwargs={"scale": s}`: the run-time scale is set for the call and restored
    after it, before a PyNative backward; the gradients are those of the scaled call (diffusers + PEFT)."""
    torch_model, ms_model = make_twins()
    add_torch_lora(torch_model, "a", r=4, lora_alpha=8, targets=ATTN_TARGETS)
    _ms_adapter_from_torch(torch_model, ms_model, "a", r=4, lora_alpha=8, target_modules=ATTN_TARGETS)
    inputs = make_inputs()
    attention_kwargs = None if scale is None else {"scale": scale}
    torch_model.eval()
    out = torch_model(*(torch.from_numpy(a) for a in inputs), attention_kwargs=attention_kwargs, return_dict=False)[0]
    (out**2).mean().backward()
    expected = {name: p.grad.numpy() for name, p in torch_model.named_parameters() if p.requires_grad}
    x, t, e, mask = (ms.Tensor(a) for a in inputs)
    params = ms_model.trainable_params()
    assert sorted(p.name for p in params) == sorted(expected)
    grads = ms.grad(
        lambda x: (ms_model(x, t, e, mask, attention_kwargs=attention_kwargs)[0] ** 2).mean(),
        grad_position=None,
        weights=params,
    )(x)
    actual = np.concatenate([g.asnumpy().ravel() for g in grads])
    assert rel_l2(actual, np.concatenate([expected[p.name].ravel() for p in params])) <= TOL
    for param, grad in zip(params, grads):
        # per parameter: MindSpore's float32 softmax (docs/mindspore_notes.md) leaves up to ~1.5e-5 on small ones
        assert rel_l2(grad, expected[param.name]) <= 3e-5, param.name
    assert all(s == {"a": 2.0} for s in lora_scalings(ms_model).values())  # alpha / r again after the call
    assert_close(run_ms(ms_model, inputs), run_torch(torch_model, inputs), TOL, "after the scaled call")


@pytest.mark.parametrize("mode", ["pynative", "graph"])
def test_lora_dropout_of_adapters_added_in_training(mode, tmp_path):
    """An adapter added to (or loaded into) a model already in training mode applies its dropout: its new cells
    started in MindSpore's inference mode, so dropout stayed off until the next `set_train(True)`."""
    lora_dir = make_lora_dir(tmp_path, "dropout", seed=4, r=4, lora_alpha=8, lora_dropout=0.5)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        _, ms_model = make_twins()
        ms_model.set_train(True)
        ms_model.add_adapter(
            mp.LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], lora_dropout=0.5, init_lora_weights=False),
            adapter_name="a",
        )
        ms_model.load_lora_adapter(lora_dir, adapter_name="b")
        dropouts = [c for n, c in ms_model.cells_and_names() if ".lora_dropout." in n]
        assert dropouts and all(c.training for c in dropouts)
        inputs = make_inputs()
        first, second = run_ms(ms_model, inputs), run_ms(ms_model, inputs)
        ms_model.set_train(False)
        inference = run_ms(ms_model, inputs)
        ms_model.add_adapter(mp.LoraConfig(r=2, target_modules=["to_k"], lora_dropout=0.5), adapter_name="c")
        assert not any(c.training for n, c in ms_model.cells_and_names() if ".lora_dropout." in n)
        again, more = run_ms(ms_model, inputs), run_ms(ms_model, inputs)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert rel_l2(second, first) > 1e-2 and rel_l2(first, inference) > 1e-2
    np.testing.assert_array_equal(again, more)


def test_lora_dropout_under_gradient_checkpointing_is_refused(tmp_path):
    """MindSpore's recompute draws new dropout masks when it runs a block again in the backward pass (torch's
    checkpoint replays them): the gradients would not belong to the forward pass. Each way of reaching the combination
    raises and changes nothing; without dropout, or in inference, it is allowed."""
    match = "Dropout .* under gradient checkpointing"
    lora_dir = make_lora_dir(tmp_path, "dropout", seed=4, r=4, lora_alpha=8, lora_dropout=0.5)
    _, ms_model = make_twins()
    ms_model.enable_gradient_checkpointing()
    ms_model.set_train(True)
    config = mp.LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], lora_dropout=0.5, init_lora_weights=False)
    with pytest.raises(ValueError, match=match):
        ms_model.add_adapter(config, adapter_name="a")
    with pytest.raises(ValueError, match=match):
        ms_model.load_lora_adapter(lora_dir, adapter_name="b")
    assert not any(".lora_" in n for n, _ in ms_model.parameters_and_names())
    ms_model.add_adapter(mp.LoraConfig(r=4, target_modules=["to_q"]), adapter_name="no_dropout")  # allowed
    ms_model.set_train(False)
    ms_model.add_adapter(config, adapter_name="a")  # inference: allowed
    with pytest.raises(ValueError, match=match):
        ms_model.set_train(True)
    assert not ms_model.training
    ms_model.disable_gradient_checkpointing()
    ms_model.set_train(True)
    with pytest.raises(ValueError, match=match):
        ms_model.enable_gradient_checkpointing()
    assert not ms_model.is_gradient_checkpointing


@pytest.mark.parametrize("mode", ["pynative", "graph", "jit-model", "jit-blocks"])
def test_lora_dropout_in_training(mode):
    """`lora_dropout` applies in training mode only, also when the model ran for inference before `set_train(True)`
    (a graph compiled for inference is not reused), and inference is deterministic again afterwards. `ms.jit` graphs
    are keyed by each cell's phase, which MindSpore's `set_train` sets on the model only: the blocks' graphs were
    reused across modes."""
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        _, ms_model = make_twins()
        ms_model.add_adapter(
            mp.LoraConfig(r=4, lora_alpha=8, target_modules=ATTN_TARGETS, lora_dropout=0.5, init_lora_weights=False),
            adapter_name="a",
        )
        if mode == "jit-model":
            ms_model.construct = ms.jit(ms_model.construct)
        elif mode == "jit-blocks":
            for block in [*ms_model.context_refiner, *ms_model.noise_refiner, *ms_model.layers]:
                block.construct = ms.jit(block.construct)
        inputs = make_inputs()
        inference = run_ms(ms_model, inputs)
        ms_model.set_train(True)
        first, second = run_ms(ms_model, inputs), run_ms(ms_model, inputs)
        ms_model.set_train(False)
        again = run_ms(ms_model, inputs)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert rel_l2(first, inference) > 1e-2 and rel_l2(second, first) > 1e-2
    assert rel_l2(again, inference) <= 1e-6


def test_dict_of_weights_matches_diffusers(tmp_path):
    """`set_adapters` with per-module weights: name substrings, then upstream's UNet-style fallback key
    (`layers.1.attentions.to_q` reaches `layers.1.attn.to_q`). Attention targets only: diffusers fails on any dict once
    a LoRA module has a name of fewer than four parts."""
    torch_model, model = make_twins()
    inputs = make_inputs()
    add_torch_lora(torch_model, "b", seed=2, r=2, lora_alpha=3, targets=ATTN_TARGETS)
    model.load_lora_adapter(os.path.dirname(save_torch_lora(torch_model, "b", str(tmp_path / "b"))), adapter_name="b")
    for weights in ({"layers.0": 0.3, "noise_refiner": -0.5, "layers.1.attentions.to_q": 0.2}, {"to_q": 2.0}):
        for m in (model, torch_model):
            m.set_adapters(["b"], weights=[weights])
        assert_close(run_ms(model, inputs), run_torch(torch_model, inputs), TOL, f"weights {weights}")


def test_lora_keeps_the_parameter_prefix_of_a_wrapping_cell(tmp_path):
    # MindSpore prefixes the parameters of a model held by a user cell (`self.a = model`: `a.x_embedder.weight`);
    # loading, fusing and deleting adapters keep that prefix, so two models in one cell keep distinct names (the same
    # names clash when the cell compiles, and `ms.save_checkpoint(cell)` wrote one parameter of each name)
    directory = make_lora_dir(tmp_path, "a", seed=1)

    class Two(ms.nn.Cell):
        def __init__(self, a, b):
            super().__init__()
            self.a = a
            self.b = b

    wrapper = Two(make_twins(seed=0)[1], make_twins(seed=1)[1])
    for step in ("load", "fuse", "unfuse", "delete"):
        for prefix in ("a", "b"):
            model = getattr(wrapper, prefix)
            if step == "load":
                model.load_lora_adapter(directory, adapter_name="x")
            elif step == "fuse":
                model.fuse_lora()
            elif step == "unfuse":
                model.unfuse_lora()
            else:
                model.delete_adapters("x")
            names = [(name, param.name) for name, param in model.parameters_and_names()]
            assert all(param_name == f"{prefix}.{name}" for name, param_name in names), (step, names[:3])
        all_names = [param.name for param in wrapper.get_parameters()]
        assert len(all_names) == len(set(all_names)), step
    # a model on its own keeps its structural names
    model = make_twins()[1]
    model.load_lora_adapter(directory, adapter_name="x")
    assert all(param.name == name for name, param in model.parameters_and_names())
