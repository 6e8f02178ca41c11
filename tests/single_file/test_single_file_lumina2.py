"""Lumina2Transformer2DModel single files: original Lumina-Image-2.0 and ComfyUI layouts in, original layout out.

The original-layout files are made from diffusers checkpoints with the test-side inverse of diffusers' mapping
(checked against diffusers' converter in test_single_file_conversions.py and against our writer here)."""

import json
import os

import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import Lumina2Transformer2DModel as TorchLumina2

import mindspore as ms

from mindone.diffusers import Lumina2Transformer2DModel
from mindone.diffusers.loaders.single_file_model import save_single_file
from mindone.diffusers.loaders.single_file_utils import LUMINA2_2B_CONFIG, SingleFileComponentError
from mindone.diffusers.models.model_loading_utils import CheckpointError
from mindone.safetensors.mindspore import load_file, safe_open, save_file
from tests.single_file.single_file_testing_utils import lumina2_diffusers_to_original
from tests.testing_utils import assert_close, captured_warnings

TINY = dict(
    sample_size=4,
    patch_size=2,
    in_channels=4,
    hidden_size=32,
    num_layers=2,
    num_refiner_layers=2,
    num_attention_heads=4,
    num_kv_heads=2,
    multiple_of=16,
    ffn_dim_multiplier=None,
    norm_eps=1e-5,
    scaling_factor=1.0,
    axes_dim_rope=(4, 2, 2),
    axes_lens=(128, 128, 128),
    cap_feat_dim=16,
)
# The 2B release's widths (hidden 2304, 24 heads / 8 kv heads of 96), one block of each kind, a narrow feed-forward
# (width 512) and small caption features, so diffusers' hard-coded qkv split applies and the test stays light.
WIDE = dict(
    LUMINA2_2B_CONFIG, num_layers=1, num_refiner_layers=1, in_channels=4, cap_feat_dim=32, ffn_dim_multiplier=0.05
)
COMFY = "model.diffusion_model."


def _torch_model(config, seed=0, scale=0.1):
    torch.manual_seed(seed)
    model = TorchLumina2(**config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)  # norms and zero-initialised layers get non-trivial values
    return model


def _inputs(config, batch=2, seq=6, size=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, config["in_channels"], size, size)).astype(np.float32)
    cap = rng.standard_normal((batch, seq, config["cap_feat_dim"])).astype(np.float32)
    mask = np.ones((batch, seq), dtype=bool)
    mask[-1, seq - 2 :] = False  # ragged captions: the masked / gathered path
    t = rng.uniform(0.1, 0.9, (batch,)).astype(np.float32)
    return x, t, cap, mask


def _run_ours(model, inputs):
    x, t, cap, mask = inputs
    return model(ms.Tensor(x), ms.Tensor(t), ms.Tensor(cap), ms.Tensor(mask))[0].asnumpy()


def _run_torch(model, inputs):
    x, t, cap, mask = (torch.from_numpy(a) for a in inputs)
    with torch.no_grad():
        return model(x, t, cap, mask, return_dict=False)[0].numpy()


def _params(model):
    return {k: v.asnumpy().copy() for k, v in model.parameters_and_names()}


def _write_original(torch_model, path, prefix=""):
    sd = {k: v.contiguous() for k, v in torch_model.state_dict().items()}
    safetensors.torch.save_file(lumina2_diffusers_to_original(sd, prefix=prefix), str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    model = _torch_model(TINY)
    model.save_pretrained(d / "pipe" / "transformer")
    _write_original(model, d / "lumina2.safetensors")
    _write_original(model, d / "comfy.safetensors", prefix=COMFY)
    return model, d


@pytest.fixture(scope="module")
def reference(tiny):
    """Our model loaded from the diffusers folder by the core loader: what every single-file load must equal."""
    _, d = tiny
    return _params(Lumina2Transformer2DModel.from_pretrained(d / "pipe" / "transformer"))


def _assert_params_equal(model, ref):
    got = _params(model)
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), k


# ---- loading: tiny widths, every way of giving the config ------------------------------------------------------
# (MindSpore forwards are slow on a shared CPU: one forward proves the mapping, the other loads are compared
# parameter by parameter with the core loader's load of the diffusers folder.)


def test_original_file_matches_torch(tiny, reference):
    torch_model, d = tiny
    ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=d / "pipe" / "transformer")
    _assert_params_equal(ours, reference)
    inputs = _inputs(TINY)
    assert_close(_run_ours(ours, inputs), _run_torch(torch_model, inputs), 1e-5)


@pytest.mark.parametrize("how", ["pipeline_folder", "config_json", "dict", "subfolder"])
def test_every_form_of_config(tiny, reference, how):
    torch_model, d = tiny
    config = {
        "pipeline_folder": d / "pipe",  # falls back to its `transformer/` subfolder
        "config_json": d / "pipe" / "transformer" / "config.json",
        "dict": dict(torch_model.config),
        "subfolder": d / "pipe",
    }[how]
    kwargs = {"subfolder": "transformer"} if how == "subfolder" else {}
    ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=config, **kwargs)
    assert ours.config.num_kv_heads == 2 and list(ours.config.axes_dim_rope) == [4, 2, 2]
    _assert_params_equal(ours, reference)


def test_comfyui_prefix_state_dict_and_diffusers_layout(tiny, reference, tmp_path):
    torch_model, d = tiny
    config = d / "pipe" / "transformer"
    _assert_params_equal(Lumina2Transformer2DModel.from_single_file(d / "comfy.safetensors", config=config), reference)
    state = {k: ms.Tensor(v) for k, v in load_file(d / "comfy.safetensors").items()}
    _assert_params_equal(Lumina2Transformer2DModel.from_single_file(state, config=config), reference)
    # a single file already in diffusers layout loads as is
    diffusers_layout = {k: v.contiguous() for k, v in torch_model.state_dict().items()}
    safetensors.torch.save_file(diffusers_layout, tmp_path / "d.safetensors")
    _assert_params_equal(
        Lumina2Transformer2DModel.from_single_file(tmp_path / "d.safetensors", config=config), reference
    )


def test_config_overrides_and_dtype(tiny):
    _, d = tiny
    ours = Lumina2Transformer2DModel.from_single_file(
        d / "lumina2.safetensors", config=d / "pipe" / "transformer", sample_size=8, mindspore_dtype=ms.bfloat16
    )
    assert ours.config.sample_size == 8 and ours.dtype == ms.bfloat16
    assert ours.config._name_or_path == os.fspath(d / "lumina2.safetensors")
    alias = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=TINY, dtype="bfloat16")
    assert alias.dtype == ms.bfloat16  # `dtype=`, upstream's newer name
    auto = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=TINY, mindspore_dtype="auto")
    assert auto.dtype == ms.float32  # upstream warns that "auto" is not a dtype and loads in float32


def test_hub_link_through_the_cache(tiny, reference, tmp_path, monkeypatch):
    torch_model, d = tiny
    snapshot = tmp_path / "cache" / "models--org--lumina" / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "lumina2.safetensors").write_bytes((d / "lumina2.safetensors").read_bytes())
    (tmp_path / "cache" / "models--org--lumina" / "refs").mkdir()
    (tmp_path / "cache" / "models--org--lumina" / "refs" / "main").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = Lumina2Transformer2DModel.from_single_file(
        "https://huggingface.co/org/lumina/blob/main/lumina2.safetensors",
        config=dict(torch_model.config),
        cache_dir=tmp_path / "cache",
    )
    _assert_params_equal(ours, reference)
    # the link of the Hub's download button carries a query
    ours = Lumina2Transformer2DModel.from_single_file(
        "https://huggingface.co/org/lumina/resolve/main/lumina2.safetensors?download=true",
        config=dict(torch_model.config),
        cache_dir=tmp_path / "cache",
    )
    _assert_params_equal(ours, reference)
    # `blob/<revision>/` is optional in the link, as upstream's link pattern
    ours = Lumina2Transformer2DModel.from_single_file(
        "https://huggingface.co/org/lumina/lumina2.safetensors",
        config=dict(torch_model.config),
        cache_dir=tmp_path / "cache",
    )
    _assert_params_equal(ours, reference)


# ---- the other direction: our model -> original single file -------------------------------------------------------


def test_writer_is_the_inverse_and_round_trips(tiny, tmp_path):
    _, d = tiny
    ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=d / "pipe" / "transformer")
    for comfyui, reference in ((False, "lumina2.safetensors"), (True, "comfy.safetensors")):
        path = ours.save_single_file(tmp_path / f"out_{comfyui}.safetensors", comfyui=comfyui)
        written = safetensors.torch.load_file(path)
        expected = safetensors.torch.load_file(d / reference)
        assert sorted(written) == sorted(expected)
        assert all(torch.equal(written[k], expected[k]) for k in expected)
        again = Lumina2Transformer2DModel.from_single_file(path, config=ours.config)
        ref, got = _params(ours), _params(again)
        assert all(np.array_equal(got[k], ref[k]) for k in ref)
    assert safe_open(path).metadata() == {"format": "pt"}
    # the module-level writer with an explicit prefix
    save_single_file(ours, tmp_path / "p.safetensors", prefix="net.")
    assert all(k.startswith("net.") for k in safe_open(tmp_path / "p.safetensors").keys())


def test_bf16_round_trip_is_exact(tiny, tmp_path):
    _, d = tiny
    ours = Lumina2Transformer2DModel.from_single_file(
        d / "lumina2.safetensors", config=d / "pipe" / "transformer", mindspore_dtype="bfloat16"
    )
    path = ours.save_single_file(tmp_path / "bf16.safetensors")
    handle = safe_open(path)
    assert {handle.get_dtype(k) for k in handle.keys()} == {"BF16"}
    again = Lumina2Transformer2DModel.from_single_file(path, config=ours.config, mindspore_dtype=ms.bfloat16)
    wide = Lumina2Transformer2DModel.from_single_file(path, config=ours.config)  # float32: exact widening
    for k, p in ours.parameters_and_names():
        a = p.astype(ms.float32).asnumpy()
        assert np.array_equal(dict(again.parameters_and_names())[k].astype(ms.float32).asnumpy(), a), k
        assert np.array_equal(dict(wide.parameters_and_names())[k].asnumpy(), a), k


# ---- 2B widths: diffusers' own from_single_file on the same file agrees with ours ---------------------------------


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    d = tmp_path_factory.mktemp("wide")
    model = _torch_model(WIDE, scale=0.02)
    model.save_pretrained(d / "transformer")
    _write_original(model, d / "lumina2.safetensors")
    _write_original(model, d / "comfy.safetensors", prefix=COMFY)
    return model, d


def test_2b_widths_agree_with_diffusers_from_single_file(wide, monkeypatch):
    torch_model, d = wide
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    theirs = TorchLumina2.from_single_file(str(d / "lumina2.safetensors"), config=str(d / "transformer")).eval()
    ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors")  # config inferred from the shapes
    inferred = dict(ours.config)
    for name in (
        "hidden_size",
        "num_attention_heads",
        "num_kv_heads",
        "num_layers",
        "num_refiner_layers",
        "cap_feat_dim",
        "in_channels",
    ):
        assert inferred[name] == WIDE[name], name
    assert list(inferred["axes_dim_rope"]) == [32, 32, 32]
    inputs = _inputs(WIDE)
    expected = _run_torch(theirs, inputs)
    assert_close(_run_ours(ours, inputs), expected, 1e-5)
    assert_close(_run_torch(torch_model, inputs), expected, 1e-6)
    # ComfyUI's prefix: diffusers 0.42.1 renames the prefixed keys then pops them by their old names (KeyError), so
    # the ComfyUI file is compared with diffusers' load of the bare file.
    with pytest.raises(KeyError, match="model.diffusion_model."):
        TorchLumina2.from_single_file(str(d / "comfy.safetensors"), config=str(d / "transformer"))
    comfy = Lumina2Transformer2DModel.from_single_file(d / "comfy.safetensors")
    _assert_params_equal(comfy, _params(ours))


# ---- all-in-one ComfyUI files ---------------------------------------------------------------------------------------


def test_all_in_one_file_picks_the_transformer(tiny, reference, tmp_path):
    torch_model, d = tiny
    tensors = safetensors.torch.load_file(d / "comfy.safetensors")
    tensors["first_stage_model.encoder.down.0.block.0.norm1.weight"] = torch.ones(32)
    tensors["text_encoders.gemma2_2b.model.layers.0.self_attn.q_proj.weight"] = torch.ones(4, 4)
    safetensors.torch.save_file(tensors, tmp_path / "aio.safetensors")
    ours = Lumina2Transformer2DModel.from_single_file(tmp_path / "aio.safetensors", config=dict(torch_model.config))
    _assert_params_equal(ours, reference)

    # a bare transformer next to the ComfyUI one: ambiguous (diffusers fails on the prefixed copy)
    tensors.update({k[len(COMFY) :]: v.clone() for k, v in tensors.items() if k.startswith(COMFY)})
    safetensors.torch.save_file(tensors, tmp_path / "twice.safetensors")
    with pytest.raises(
        SingleFileComponentError, match=r"more than once \(without a prefix, `model\.diffusion_model\.`\)"
    ):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "twice.safetensors", config=dict(torch_model.config))


# ---- errors: clear messages, nothing half-built ---------------------------------------------------------------------


def test_pickle_files_are_refused_with_a_conversion_hint(tiny, tmp_path):
    _, d = tiny
    sd = safetensors.torch.load_file(d / "lumina2.safetensors")
    for name in ("model.pth", "model.ckpt", "disguised.safetensors"):
        torch.save(sd, tmp_path / name)
        with pytest.raises(SingleFileComponentError, match=r"(?s)pickle checkpoint.*safetensors\.torch\.save_file"):
            Lumina2Transformer2DModel.from_single_file(tmp_path / name, config=TINY)


def test_truncated_missing_and_directory_paths(tiny, tmp_path):
    _, d = tiny
    data = (d / "lumina2.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(SingleFileComponentError, match="truncated"):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "cut.safetensors", config=TINY)
    with pytest.raises(SingleFileComponentError, match="No such checkpoint file"):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "absent.safetensors", config=TINY)
    with pytest.raises(SingleFileComponentError, match="is a directory.*from_pretrained"):
        Lumina2Transformer2DModel.from_single_file(d / "pipe", config=TINY)


@pytest.mark.parametrize(
    "keys, match",
    [
        (["double_blocks.0.img_attn.norm.key_norm.scale", "img_in.weight"], "it holds a FLUX transformer"),
        (["model.diffusion_model.input_blocks.0.0.weight"], r"Stable Diffusion UNet under the prefix `model\.diff"),
        (["encoder.down.0.block.0.norm1.weight", "decoder.conv_in.weight"], r"a VAE \(FLUX"),
        (["cap_embedder.0.weight", "layers.0.adaLN_modulation.0.weight"], "a Z-Image transformer"),
        (["foo.weight"], r"no known model family \(first keys: foo.weight\)"),
        # a Lumina2 transformer under a prefix no format uses: the prefix is named
        (
            ["diffusion_model.cap_embedder.0.weight", "diffusion_model.layers.0.attention.qkv.weight"],
            r"no known model family .* It holds one under the prefix `diffusion_model\.`, which is not read",
        ),
    ],
)
def test_files_of_other_families_are_refused(tmp_path, keys, match):
    safetensors.torch.save_file({k: torch.zeros(2) for k in keys}, tmp_path / "other.safetensors")
    with pytest.raises(
        SingleFileComponentError, match="does not hold a Lumina-Image-2.0 transformer checkpoint.*" + match
    ):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "other.safetensors")


def test_checkpoint_and_config_mismatches(tiny, tmp_path):
    torch_model, d = tiny
    # a file in diffusers' names with a key too many, its config inferred: the error names the file
    extra = {**{k: v.clone() for k, v in torch_model.state_dict().items()}, "foo.bar": torch.ones(1)}
    safetensors.torch.save_file(extra, tmp_path / "diffusers_extra.safetensors")
    with pytest.raises(SingleFileComponentError, match=r"diffusers_extra\.safetensors: 1 keys are not part of the"):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "diffusers_extra.safetensors")
    sd = safetensors.torch.load_file(d / "lumina2.safetensors")
    config = dict(torch_model.config)
    # the qkv does not fit the heads of the config
    with pytest.raises(SingleFileComponentError, match=r"attention.qkv.weight` has 64 rows .* 32/32/32"):
        Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config={**config, "num_kv_heads": 4})
    # widths that disagree with the config: every mismatch listed at once
    with pytest.raises(CheckpointError, match=r"shape mismatches .*feed_forward.linear_1.weight"):
        Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config={**config, "multiple_of": 256})
    # a missing tensor
    partial = {k: v for k, v in sd.items() if k != "layers.1.ffn_norm2.weight"}
    safetensors.torch.save_file(partial, tmp_path / "partial.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): layers.1.ffn_norm2.weight"):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "partial.safetensors", config=config)
    # the tensor that marked the format missing: still recognised (by its other markers), the missing tensor named
    for prefix in ("", "model.diffusion_model."):
        no_marker = {prefix + k: v for k, v in sd.items() if k != "cap_embedder.0.weight"}
        safetensors.torch.save_file(no_marker, tmp_path / "no_marker.safetensors")
        with pytest.raises(
            SingleFileComponentError, match=r"lacks `cap_embedder.0.weight`, .* the file is incomplete"
        ):
            Lumina2Transformer2DModel.from_single_file(tmp_path / "no_marker.safetensors")
        with pytest.raises(CheckpointError, match=r"missing keys \(1\): .*caption_embedder.0.weight"):
            Lumina2Transformer2DModel.from_single_file(tmp_path / "no_marker.safetensors", config=config)
    # a key outside the layout
    safetensors.torch.save_file({**sd, "layers.0.attention.gate": torch.zeros(4)}, tmp_path / "extra.safetensors")
    with pytest.raises(SingleFileComponentError, match=r"1 keys are not part of .*layers.0.attention.gate"):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "extra.safetensors", config=config)
    # no config and a head size other than the release's: the RoPE split is unknown
    with pytest.raises(SingleFileComponentError, match=r"heads of 8 channels.*Pass `axes_dim_rope=`.*or `config=`"):
        Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors")
    # ... which the config entry, given as a keyword, supplies (the rest is inferred)
    # (another model than the release: a warning names the entries taken from the release, as the VAE's guesses)
    with captured_warnings() as warnings:
        ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", axes_dim_rope=[4, 2, 2])
    assert len(warnings) == 1
    assert "`patch_size` 2, `norm_eps` 1e-05, `axes_lens` [300, 512, 512] (not stored in the weights)" in warnings[0]
    inferred = {k: ours.config[k] for k in ("hidden_size", "num_layers", "num_refiner_layers", "num_kv_heads")}
    assert inferred == {k: config[k] for k in inferred} and list(ours.config.axes_dim_rope) == [4, 2, 2]
    with captured_warnings() as warnings:
        from_config = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=config)
        Lumina2Transformer2DModel.from_single_file(
            d / "lumina2.safetensors",
            **{k: config[k] for k in ("axes_dim_rope", "patch_size", "norm_eps", "axes_lens")},
        )
    assert warnings == []
    _assert_params_equal(ours, _params(from_config))


def test_bad_arguments(tiny, tmp_path):
    _, d = tiny
    path = d / "lumina2.safetensors"
    with pytest.raises(TypeError, match="`torch_dtype` is not supported.*mindspore_dtype"):
        Lumina2Transformer2DModel.from_single_file(path, config=TINY, torch_dtype="float16")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['num_blocks'\]"):
        Lumina2Transformer2DModel.from_single_file(path, config=TINY, num_blocks=3)
    # what upstream's from_single_file accepts and ignores
    plain = Lumina2Transformer2DModel.from_single_file(path, config=TINY)
    ignored = Lumina2Transformer2DModel.from_single_file(path, config=TINY, use_safetensors=True, variant="fp16")
    for (name, a), (_, b) in zip(plain.parameters_and_names(), ignored.parameters_and_names()):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=name)
    with pytest.raises(TypeError, match="`config` must be a dict"):
        Lumina2Transformer2DModel.from_single_file(path, config=3)
    torch_state = {"cap_embedder.0.weight": torch.ones(8)}
    with pytest.raises(TypeError, match=r"got str -> torch.Tensor .*v.float\(\).numpy\(\)"):
        Lumina2Transformer2DModel.from_single_file(torch_state, config=TINY)
    save_file({}, tmp_path / "empty.safetensors")
    with pytest.raises(SingleFileComponentError, match="holds no tensors at all"):
        Lumina2Transformer2DModel.from_single_file(tmp_path / "empty.safetensors", config=TINY)
    vae_config = tmp_path / "config.json"
    vae_config.write_text(json.dumps({"_class_name": "AutoencoderKL", "latent_channels": 16}))
    with pytest.raises(ValueError, match="is for `AutoencoderKL`, not `Lumina2Transformer2DModel`"):
        Lumina2Transformer2DModel.from_single_file(path, config=vae_config)
    with pytest.raises(EnvironmentError, match="`config` .*/no_such_dir does not exist: pass the path of a config"):
        Lumina2Transformer2DModel.from_single_file(path, config=tmp_path / "no_such_dir")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(
        EnvironmentError, match=r"looked for it at the top of .*empty_dir .* and in its `transformer` sub"
    ):
        Lumina2Transformer2DModel.from_single_file(path, config=tmp_path / "empty_dir")


def test_writer_errors_leave_no_file(tiny, tmp_path):
    _, d = tiny
    ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=TINY)
    with pytest.raises(ValueError, match="pickle formats are never written"):
        ours.save_single_file(tmp_path / "x.pth")
    with pytest.raises(ValueError, match="either `comfyui=True` or `prefix=`"):
        ours.save_single_file(tmp_path / "x.safetensors", prefix="a.", comfyui=True)
    with pytest.raises(ValueError, match="`metadata` must be a dict of str"):
        ours.save_single_file(tmp_path / "x.safetensors", metadata={"step": 3})
    assert os.listdir(tmp_path) == []


def test_lora_must_be_fused_and_unloaded_before_writing(tiny, tmp_path):
    import mindone.peft as mp

    _, d = tiny
    ours = Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=TINY)
    lora = mp.LoraConfig(r=2, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False)
    ours.add_adapter(lora, "style")
    with pytest.raises(
        SingleFileComponentError,
        match=r"Cannot write Lumina2Transformer2DModel as a single file: .* has LoRA layers .*`unload_lora\(\)`",
    ):
        ours.save_single_file(tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    ours.fuse_lora()
    ours.unload_lora()
    merged = _params(ours)
    assert not np.array_equal(
        merged["layers.0.attn.to_q.weight"],
        _params(Lumina2Transformer2DModel.from_single_file(d / "lumina2.safetensors", config=TINY))[
            "layers.0.attn.to_q.weight"
        ],
    )
    again = Lumina2Transformer2DModel.from_single_file(ours.save_single_file(tmp_path / "x.safetensors"), config=TINY)
    _assert_params_equal(again, merged)
