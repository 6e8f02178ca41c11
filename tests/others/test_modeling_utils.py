"""ModelMixin / ConfigMixin: checkpoints and configs move both ways between diffusers (torch) and this port."""

import json
import logging
import os
import shutil

import diffusers
import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import ConfigMixin as TorchConfigMixin
from diffusers import ModelMixin as TorchModelMixin
from diffusers.configuration_utils import register_to_config as torch_register_to_config

import mindspore as ms
from mindspore import mint, nn

from mindone.diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline
from mindone.diffusers.configuration_utils import ConfigMixin, FrozenDict, register_to_config
from mindone.diffusers.models.model_loading_utils import CheckpointError
from mindone.diffusers.models.modeling_utils import ModelMixin
from mindone.diffusers.models.normalization import LayerNorm
from mindone.diffusers.utils import dtype_to_str, unsupported
from tests.testing_utils import assert_close, captured_warnings, rel_l2


class TinyNet(TorchModelMixin, TorchConfigMixin):
    @torch_register_to_config
    def __init__(self, dim: int = 8, num_layers: int = 2, out_dim: int = 3):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(dim, dim) for _ in range(num_layers)])
        self.norm = torch.nn.LayerNorm(dim)
        self.proj_out = torch.nn.Linear(dim, out_dim, bias=False)

    def forward(self, x):
        for b in self.blocks:
            x = torch.nn.functional.silu(b(x))
        return self.proj_out(self.norm(x))


# The MindSpore twin must carry the same class name: configs record `_class_name`.
class MsTinyNet(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, dim: int = 8, num_layers: int = 2, out_dim: int = 3):
        super().__init__()
        self.blocks = nn.CellList([mint.nn.Linear(dim, dim) for _ in range(num_layers)])
        self.norm = LayerNorm(dim)
        self.proj_out = mint.nn.Linear(dim, out_dim, bias=False)

    def construct(self, x):
        for b in self.blocks:
            x = mint.nn.functional.silu(b(x))
        return self.proj_out(self.norm(x))


MsTinyNet.__name__ = "TinyNet"


def _torch_model(**kw):
    torch.manual_seed(0)
    model = TinyNet(**kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def _x(dim=8):
    return np.random.default_rng(0).standard_normal((2, 5, dim)).astype(np.float32)


def _run(ms_model, x):
    return ms_model(ms.Tensor(x)).asnumpy()


def _ref(torch_model, x):
    with torch.no_grad():
        return torch_model(torch.from_numpy(x)).numpy()


def _params(model):
    return {k: v.asnumpy().copy() for k, v in model.parameters_and_names()}


def test_deprecated_config_attribute_access_as_upstream():
    # upstream reads a config value missing as an attribute from the config, with a FutureWarning
    from diffusers import FlowMatchEulerDiscreteScheduler as TorchScheduler

    from mindone.diffusers import FlowMatchEulerDiscreteScheduler

    torch_model, model = TinyNet(num_layers=3), MsTinyNet(num_layers=3)
    for ours, ref in ((model, torch_model), (FlowMatchEulerDiscreteScheduler(shift=3.0), TorchScheduler(shift=3.0))):
        names = ["num_layers", "dim"] if ours is model else ["num_train_timesteps", "shift_terminal"]
        for name in names:
            with pytest.warns(FutureWarning, match=f"Accessing config attribute `{name}` directly"):
                value = getattr(ours, name)
            with pytest.warns(FutureWarning):
                assert value == getattr(ref, name)
        with pytest.raises(AttributeError) as ours_error:
            ours.not_in_config
        with pytest.raises(AttributeError) as ref_error:
            ref.not_in_config
        # torch's wording, which upstream's tests compare
        assert str(ours_error.value) == str(ref_error.value).replace(type(ref).__name__, type(ours).__name__)
        assert not hasattr(ours, "not_in_config")
    assert isinstance(model.proj_out, mint.nn.Linear)  # parameters and sub-cells first
    # upstream's models and pipelines have a `device`: the error says what to do instead
    pipe = Lumina2Pipeline(
        transformer=None, scheduler=FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None
    )
    from transformers import Gemma2Config

    from mindone.transformers import Gemma2Model

    gemma = Gemma2Model(
        Gemma2Config(
            vocab_size=16,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=4,
        )
    )
    for obj in (model, AutoencoderKL(block_out_channels=(8,), norm_num_groups=4), gemma, pipe):
        with pytest.raises(AttributeError, match=r"has no attribute 'device': MindSpore has no device placement"):
            obj.device
        assert not hasattr(obj, "device")
    assert ConfigMixin._deprecated_kwargs == TorchConfigMixin._deprecated_kwargs == []
    assert model.proj_out.weight.shape == (3, 8)


def test_keys_written_after_the_config_are_not_config_attributes(tmp_path):
    """`to_json_string` adds `_class_name` / `_diffusers_version` to the live config: upstream's attribute access does
    not see them (no value, no FutureWarning), nor dict methods; upstream's unused hub options are popped."""
    import warnings as warnings_module

    from diffusers import FlowMatchEulerDiscreteScheduler as TorchScheduler

    from mindone.diffusers import FlowMatchEulerDiscreteScheduler

    ours, ref = FlowMatchEulerDiscreteScheduler(), TorchScheduler()
    ours.save_config(tmp_path / "ours")
    ref.save_config(tmp_path / "ref")
    assert "_class_name" in ours.config and "_class_name" in ref.config
    with warnings_module.catch_warnings():
        warnings_module.simplefilter("error", FutureWarning)
        for name in ("_class_name", "_diffusers_version"):
            assert hasattr(ours, name) == hasattr(ref, name), name
        # dict methods are no config values (upstream warns, then raises a KeyError)
        assert not hasattr(ours, "items") and not hasattr(ours, "pop")
        assert getattr(ours, "_class_name", None) is None and getattr(ref, "_class_name", None) is None
    hub_options = dict(mirror="x", local_dir=str(tmp_path / "x"), local_dir_use_symlinks=False)
    _, unused = FlowMatchEulerDiscreteScheduler.from_pretrained(
        tmp_path / "ours", return_unused_kwargs=True, foo=1, **hub_options
    )
    _, ref_unused = TorchScheduler.from_pretrained(tmp_path / "ref", return_unused_kwargs=True, foo=1, **hub_options)
    assert unused == ref_unused and unused["foo"] == 1 and not set(hub_options) & set(unused)


def test_get_config_dict_is_the_deprecated_load_config(tmp_path):
    TinyNet(num_layers=3).save_pretrained(tmp_path)
    with pytest.warns(FutureWarning, match="get_config_dict is deprecated"):
        config = MsTinyNet.get_config_dict(tmp_path)
    assert config == MsTinyNet.load_config(tmp_path) and config["num_layers"] == 3


def test_memory_footprint_matches_diffusers():
    torch_model, model = TinyNet(num_layers=3), MsTinyNet(num_layers=3)
    assert model.get_memory_footprint() == torch_model.get_memory_footprint() == (3 * (8 * 8 + 8) + 2 * 8 + 3 * 8) * 4
    assert model.to(ms.float16).get_memory_footprint() == torch_model.half().get_memory_footprint()


def test_round_trip_diffusers_ours_diffusers(tmp_path):
    ref = _torch_model(dim=8, num_layers=3)
    ref.save_pretrained(tmp_path / "d")
    ours = MsTinyNet.from_pretrained(tmp_path / "d")
    assert ours.config.num_layers == 3 and ours.dtype == ms.float32
    x = _x()
    assert_close(_run(ours, x), _ref(ref, x), 1e-6)
    ours.save_pretrained(tmp_path / "o")
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["_class_name"] == "TinyNet" and cfg["num_layers"] == 3
    back = TinyNet.from_pretrained(tmp_path / "o").eval()
    assert rel_l2(_ref(back, x), _ref(ref, x)) == 0.0


@pytest.mark.parametrize("shard_size", [600, "1KB", 200, 600.5])  # 200: each 8x8 weight (256 bytes) its own shard
def test_sharded_both_ways(tmp_path, shard_size):
    ref = _torch_model(dim=8, num_layers=4)
    ref.save_pretrained(tmp_path / "d", max_shard_size=shard_size)
    assert (tmp_path / "d" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    ours = MsTinyNet.from_pretrained(tmp_path / "d")
    x = _x()
    assert_close(_run(ours, x), _ref(ref, x), 1e-6)
    ours.save_pretrained(tmp_path / "o", max_shard_size=shard_size)
    names = sorted(os.listdir(tmp_path / "o"))
    assert sorted(os.listdir(tmp_path / "d")) == names, "shard file names differ from diffusers'"
    index = "diffusion_pytorch_model.safetensors.index.json"
    with open(tmp_path / "d" / index) as theirs, open(tmp_path / "o" / index) as ours_index:
        assert json.load(ours_index) == json.load(theirs), "shard contents differ from diffusers'"
    back = TinyNet.from_pretrained(tmp_path / "o").eval()
    assert rel_l2(_ref(back, x), _ref(ref, x)) == 0.0
    # saving again unsharded removes stale shards and the index
    ours.save_pretrained(tmp_path / "o")
    assert sorted(os.listdir(tmp_path / "o")) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_bad_shard_size_writes_nothing(tmp_path):
    """An unreadable `max_shard_size` raises before anything is written (upstream has written the config by then)."""
    model = MsTinyNet.from_config(_torch_model().config)
    for size in ("10XB", True, float("nan")):
        with pytest.raises(ValueError, match="`max_shard_size` must be"):
            model.save_pretrained(tmp_path / "o", max_shard_size=size)
        assert not (tmp_path / "o").exists()


def test_variant(tmp_path):
    ref = _torch_model()
    ref.save_pretrained(tmp_path / "d", variant="fp16")
    assert (tmp_path / "d" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    ours = MsTinyNet.from_pretrained(tmp_path / "d", variant="fp16")
    assert_close(_run(ours, _x()), _ref(ref, _x()), 1e-6)
    # upstream's sentence, then the files that were found
    with pytest.raises(
        EnvironmentError,
        match=r"^Error no file named diffusion_pytorch_model.safetensors found in directory .*d\. .*Found "
        r"\['diffusion_pytorch_model.fp16.safetensors'\]: pass the `variant=`",
    ):
        MsTinyNet.from_pretrained(tmp_path / "d")
    ours.save_pretrained(tmp_path / "o", variant="bf16")
    assert (tmp_path / "o" / "diffusion_pytorch_model.bf16.safetensors").is_file()
    TinyNet.from_pretrained(tmp_path / "o", variant="bf16")


def test_bf16_checkpoint_into_fp32_and_bf16(tmp_path):
    ref = _torch_model().to(torch.bfloat16)
    ref.save_pretrained(tmp_path / "d")
    ours = MsTinyNet.from_pretrained(tmp_path / "d")
    assert ours.dtype == ms.float32
    expected = {k: v.float().numpy() for k, v in ref.state_dict().items()}
    for k, v in ours.parameters_and_names():
        np.testing.assert_array_equal(v.asnumpy(), expected[k])
    as_bf16 = MsTinyNet.from_pretrained(tmp_path / "d", mindspore_dtype=ms.bfloat16)
    assert all(p.dtype == ms.bfloat16 for _, p in as_bf16.parameters_and_names())
    for k, v in as_bf16.parameters_and_names():
        np.testing.assert_array_equal(v.astype(ms.float32).asnumpy(), expected[k])
    # our bf16 save loads in diffusers bit-exactly
    as_bf16.save_pretrained(tmp_path / "o")
    back = TinyNet.from_pretrained(tmp_path / "o", torch_dtype=torch.bfloat16)
    for k, v in back.state_dict().items():
        assert v.dtype == torch.bfloat16
        np.testing.assert_array_equal(v.float().numpy(), expected[k])


def test_float8_checkpoint_loads_widened_as_in_diffusers(tmp_path):
    ref = _torch_model()
    ref.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = safetensors.torch.load_file(str(weights))
    safetensors.torch.save_file({k: v.to(torch.float8_e4m3fn) for k, v in state.items()}, str(weights))
    theirs = TinyNet.from_pretrained(tmp_path)
    ours = MsTinyNet.from_pretrained(tmp_path)
    assert ours.dtype == ms.float32
    expected = {k: v.float().numpy() for k, v in theirs.state_dict().items()}
    for k, v in ours.parameters_and_names():
        np.testing.assert_array_equal(v.asnumpy(), expected[k])
    assert_close(_run(ours, _x()), _ref(theirs, _x()), 1e-6)


def test_to_dtype_and_kwargs_override(tmp_path):
    _torch_model().save_pretrained(tmp_path / "d")
    model = MsTinyNet.from_pretrained(tmp_path / "d", mindspore_dtype="float16")
    assert model.dtype == ms.float16
    model.to(ms.float32)
    assert all(p.dtype == ms.float32 for _, p in model.parameters_and_names())
    with pytest.raises(TypeError, match="mindspore_dtype"):
        MsTinyNet.from_pretrained(tmp_path / "d", torch_dtype="float32")
    with pytest.raises(ValueError, match="Unknown dtype"):
        MsTinyNet.from_pretrained(tmp_path / "d", mindspore_dtype="int3")
    # `dtype=` is upstream's newer name of the dtype argument: an alias here, given a MindSpore dtype
    assert MsTinyNet.from_pretrained(tmp_path / "d", dtype=ms.bfloat16).dtype == ms.bfloat16
    assert MsTinyNet.from_pretrained(tmp_path / "d", dtype="float16", mindspore_dtype="float16").dtype == ms.float16
    # a torch dtype (or its name) means its MindSpore twin, under either name, as `str_to_dtype` reads it
    assert MsTinyNet.from_pretrained(tmp_path / "d", dtype=torch.float16).dtype == ms.float16
    assert MsTinyNet.from_pretrained(tmp_path / "d", mindspore_dtype=torch.float16, dtype="fp16").dtype == ms.float16
    with pytest.raises(ValueError, match="disagree"):
        MsTinyNet.from_pretrained(tmp_path / "d", dtype=ms.float16, mindspore_dtype=ms.bfloat16)
    with pytest.raises(TypeError, match="ignore_mismatched_sizes"):
        MsTinyNet.from_pretrained(tmp_path / "d", ignore_mismatched_sizes=True)
    # a `load_config` option that `from_pretrained` sets itself: a TypeError naming it, as upstream
    with pytest.raises(TypeError, match="return_commit_hash"):
        TinyNet.from_pretrained(tmp_path / "d", return_commit_hash=True)
    with pytest.raises(TypeError, match="return_commit_hash"):
        MsTinyNet.from_pretrained(tmp_path / "d", return_commit_hash=True)
    # upstream's forms: loading info (empty: mismatches raise), a dtype that is not one ("auto") -> float32
    model, info = MsTinyNet.from_pretrained(tmp_path / "d", output_loading_info=True, ignore_mismatched_sizes=False)
    _, theirs = TinyNet.from_pretrained(tmp_path / "d", output_loading_info=True)
    assert info == theirs == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    assert isinstance(model, MsTinyNet)
    assert MsTinyNet.from_pretrained(tmp_path / "d", mindspore_dtype="auto").dtype == ms.float32


def test_keep_in_fp32_modules_as_upstream(tmp_path):
    # kept in float32 by from_pretrained; `.to` / `.half()` cast every parameter, as torch's Module.to does
    class KeepNorm(TinyNet):
        _keep_in_fp32_modules = ["norm"]

    class MsKeepNorm(MsTinyNet):
        _keep_in_fp32_modules = ["norm"]

    class MsKeepNormString(MsTinyNet):
        _keep_in_fp32_modules = "norm"  # one name as a string, as upstream accepts

    _torch_model().save_pretrained(tmp_path)
    for ms_dtype, torch_dtype in [(ms.float16, torch.float16), (ms.bfloat16, torch.bfloat16)]:
        ours = MsKeepNorm.from_pretrained(tmp_path, mindspore_dtype=ms_dtype)
        theirs = KeepNorm.from_pretrained(tmp_path, torch_dtype=torch_dtype)
        expected = {name: str(p.dtype).split(".")[-1] for name, p in theirs.named_parameters()}
        assert {name: dtype_to_str(p.dtype) for name, p in ours.parameters_and_names()} == expected
        assert expected["norm.weight"] == "float32" and expected["proj_out.weight"] == dtype_to_str(ms_dtype)
        string_form = MsKeepNormString.from_pretrained(tmp_path, mindspore_dtype=ms_dtype)
        assert {name: dtype_to_str(p.dtype) for name, p in string_form.parameters_and_names()} == expected
        assert {p.dtype for p in ours.float().get_parameters()} == {ms.float32}
        assert {p.dtype for p in ours.half().get_parameters()} == {ms.float16}
        assert {p.dtype for p in theirs.half().parameters()} == {torch.float16}
    # `.to(dtype)` warns about them, as upstream (`.half()` / `.float()` do not); upstream warns with an empty list too
    warned = "There are modules in MsKeepNorm that should be kept in float32: ['norm']. Casting directly with `to()`"
    for model, call, expected in [
        (ours, lambda m: m.to(ms.float32), [warned]),
        (ours, lambda m: m.to(dtype=ms.float16), [warned]),
        (ours, lambda m: m.half(), []),
        (ours, lambda m: m.to(), []),
        (MsTinyNet.from_pretrained(tmp_path), lambda m: m.to(ms.float16), []),
    ]:
        with captured_warnings() as records:
            call(model)
        assert [r[: len(warned)] for r in records] == expected


def test_config_json_compat(tmp_path):
    ref = _torch_model(dim=8)
    ref.save_pretrained(tmp_path / "d")
    cfg_path = tmp_path / "d" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["some_future_option"] = 7  # unknown keys are ignored with a warning, as diffusers does
    cfg_path.write_text(json.dumps(cfg))
    with captured_warnings() as records:
        ours = MsTinyNet.from_pretrained(tmp_path / "d")
    warned = "The config attributes {'some_future_option': 7} were passed to TinyNet, but are not expected"
    assert any(warned in r for r in records)
    theirs = TinyNet.from_pretrained(tmp_path / "d")
    # the same config as diffusers builds, unknown key kept as a hidden entry
    drop = {"_name_or_path", "_diffusers_version"}
    assert {k: v for k, v in ours.config.items() if k not in drop} == {
        k: v for k, v in theirs.config.items() if k not in drop
    }
    assert ours.config["some_future_option"] == 7
    assert isinstance(ours.config, FrozenDict)
    with pytest.raises(Exception, match="update"):
        ours.config.update({"dim": 3})
    # from_config accepts a diffusers config and overrides
    tiny = MsTinyNet.from_config(ref.config, num_layers=1)
    # ... and, deprecated as upstream, a path
    with pytest.warns(FutureWarning, match="deprecated to pass a pretrained model name or path"):
        from_path = MsTinyNet.from_config(tmp_path / "d", num_layers=1)
    assert [from_path.config[k] for k in ("dim", "num_layers", "out_dim")] == [8, 1, 3] and len(from_path.blocks) == 1
    with pytest.warns(FutureWarning):
        assert TinyNet.from_config(str(tmp_path / "d")).config.num_layers == ref.config.num_layers
    assert tiny.config.num_layers == 1 and len(tiny.blocks) == 1
    # defaults that were not in the file are recorded as upstream does
    assert MsTinyNet.from_config({"dim": 4}).config._use_default_values


def test_hub_cache_offline(tmp_path, monkeypatch):
    ref = _torch_model()
    snapshot = tmp_path / "cache" / "models--org--tiny" / "snapshots" / ("a" * 40)
    ref.save_pretrained(snapshot / "transformer")
    (tmp_path / "cache" / "models--org--tiny" / "refs").mkdir(parents=True)
    (tmp_path / "cache" / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ours = MsTinyNet.from_pretrained("org/tiny", subfolder="transformer", cache_dir=tmp_path / "cache")
    assert_close(_run(ours, _x()), _ref(ref, _x()), 1e-6)
    # the snapshot's commit, as upstream's `return_commit_hash`; a plain folder has none
    kwargs = dict(subfolder="transformer", cache_dir=tmp_path / "cache", return_commit_hash=True)
    assert MsTinyNet.load_config("org/tiny", **kwargs)[1] == TinyNet.load_config("org/tiny", **kwargs)[1] == "a" * 40
    assert MsTinyNet.load_config(snapshot / "transformer", return_commit_hash=True)[1] == "a" * 40
    ref.save_pretrained(tmp_path / "plain")
    assert MsTinyNet.load_config(tmp_path / "plain", return_commit_hash=True)[1] is None
    with pytest.raises(EnvironmentError, match="not in the Hugging Face cache|not a valid repository"):
        MsTinyNet.from_pretrained("org/absent", cache_dir=tmp_path / "cache")


def test_non_float_dtypes_are_refused(tmp_path):
    # upstream: `torch_dtype=torch.int8` raises a ValueError, `Module.to(torch.int8)` a TypeError
    _torch_model().save_pretrained(tmp_path)
    for dtype in (ms.int8, ms.int32, ms.bool_, ms.complex64):
        with pytest.raises(ValueError, match="not a floating point dtype"):
            MsTinyNet.from_pretrained(tmp_path, mindspore_dtype=dtype)
    model = MsTinyNet.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="floating MindSpore dtype"):
        model.to(ms.int32)
    assert all(p.dtype == ms.float32 for p in model.get_parameters())  # left unchanged


def test_to_device_says_there_is_no_device_placement(tmp_path):
    # diffusers code calls `.to("cuda")`, `.to(device=...)`, `.to("cuda", dtype)`: a TypeError that says what to do
    # (it read "cuda" as an unknown dtype, or failed on the signature)
    model = MsTinyNet()
    for call in (
        lambda: model.to("cuda"),
        lambda: model.to("cuda:1"),
        lambda: model.to("NPU"),
        lambda: model.to(torch.device("cpu")),
        lambda: model.to(device="cpu"),
        lambda: model.to("cuda", ms.float16),
        lambda: model.to(ms.float16, device="cuda"),
    ):
        with pytest.raises(TypeError, match=r"no device placement.*ms.set_context\(device_target="):
            call()
    assert all(p.dtype == ms.float32 for p in model.get_parameters())
    assert model.to(dtype=ms.float16) is model and model.dtype == ms.float16
    assert model.to("float32", non_blocking=True) is model and model.dtype == ms.float32
    # a `None` device is no device (upstream's test_pipe_to: `.to(None, torch.float16)`)
    assert model.to(None, ms.float16) is model and model.dtype == ms.float16
    assert model.to(None, dtype=ms.float32) is model and model.dtype == ms.float32
    assert model.to(device=None, dtype=ms.float16) is model and model.dtype == ms.float16
    assert model.to(None) is model and model.to(device=None) is model and model.dtype == ms.float16
    model.to(ms.float32)
    with pytest.raises(TypeError, match="one dtype"):
        model.to(ms.float16, dtype=ms.float16)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['memory_format'\\]"):
        model.to(memory_format="channels_last")


def test_save_function_is_ignored_and_config_records_the_save(tmp_path):
    """As diffusers with safetensors: `save_function` (accelerate's) is not used; saving writes `_class_name` and
    `_diffusers_version` into the live config too (upstream's `to_json_string`)."""
    ours, ref = MsTinyNet(), _torch_model()
    calls = []
    ours.save_pretrained(tmp_path / "ours", save_function=lambda *args: calls.append(args))
    ref.save_pretrained(tmp_path / "ref", save_function=lambda *args: calls.append(args))
    assert not calls and sorted(os.listdir(tmp_path / "ours")) == sorted(os.listdir(tmp_path / "ref"))
    assert sorted(ours.config) == sorted(ref.config)
    assert ours.config["_class_name"] == ref.config["_class_name"] == "TinyNet"

    class Unregistered(ConfigMixin):
        config_name = "config.json"

    assert not hasattr(Unregistered(), "config")  # an AttributeError, as upstream


def test_absent_local_subfolder_reads_the_folder_itself(tmp_path):
    # upstream's load_config and _get_model_file: a local folder whose subfolder is absent or lacks the files, with
    # the files in the folder itself
    ref = _torch_model(num_layers=3)
    ref.save_pretrained(tmp_path)
    ours = MsTinyNet.from_pretrained(tmp_path, subfolder="transformer")
    assert_close(_run(ours, _x()), _ref(TinyNet.from_pretrained(tmp_path, subfolder="transformer"), _x()), 1e-6)
    assert MsTinyNet.load_config(tmp_path, subfolder="transformer")["num_layers"] == 3
    (tmp_path / "empty").mkdir()
    assert len(MsTinyNet.from_pretrained(tmp_path, subfolder="empty").blocks) == 3
    assert len(TinyNet.from_pretrained(tmp_path, subfolder="empty").blocks) == 3
    # an existing subfolder with the files is read; without files anywhere it is an error
    _torch_model(num_layers=2).save_pretrained(tmp_path / "transformer")
    assert len(MsTinyNet.from_pretrained(tmp_path, subfolder="transformer").blocks) == 2
    (tmp_path / "empty" / "inner").mkdir()
    with pytest.raises(EnvironmentError, match="config.json"):
        MsTinyNet.from_pretrained(tmp_path / "empty", subfolder="inner")


# ---- bad input: clear errors, nothing half-loaded -------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    _torch_model().save_pretrained(tmp_path / "d")
    return tmp_path / "d"


def test_missing_folder_and_files(tmp_path, saved):
    with pytest.raises(EnvironmentError, match="config.json"):
        MsTinyNet.from_pretrained(tmp_path / "empty_dir_that_exists" if (tmp_path / "x").mkdir() else tmp_path)
    os.remove(saved / "diffusion_pytorch_model.safetensors")
    with pytest.raises(EnvironmentError, match="diffusion_pytorch_model.safetensors"):
        MsTinyNet.from_pretrained(saved)


def test_pickle_only_checkpoint_is_refused(saved):
    model = TinyNet.from_pretrained(saved)
    os.remove(saved / "diffusion_pytorch_model.safetensors")
    torch.save(model.state_dict(), saved / "diffusion_pytorch_model.bin")
    with pytest.raises(EnvironmentError, match="pickle formats are not read"):
        MsTinyNet.from_pretrained(saved)


def test_truncated_checkpoint(saved):
    path = saved / "diffusion_pytorch_model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-50])
    with pytest.raises(CheckpointError, match="truncated"):
        MsTinyNet.from_pretrained(saved)


def test_missing_shard(tmp_path):
    _torch_model(num_layers=4).save_pretrained(tmp_path / "d", max_shard_size=600)
    shard = sorted(p for p in os.listdir(tmp_path / "d") if p.endswith("safetensors"))[0]
    os.remove(tmp_path / "d" / shard)
    # FileNotFoundError, as diffusers'
    with pytest.raises(FileNotFoundError):
        TinyNet.from_pretrained(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=f"shard {shard}"):
        MsTinyNet.from_pretrained(tmp_path / "d")


@pytest.mark.parametrize(
    "weight_map,match",
    [
        ({}, "non-empty mapping"),
        (["diffusion_pytorch_model-00001-of-00002.safetensors"], "non-empty mapping"),
        ({"norm.bias": 3}, "non-empty mapping"),
        ({"norm.bias": "../outside.safetensors"}, "path separator or a parent-directory reference"),
        ({"norm.bias": "/tmp/outside.safetensors"}, "path separator or a parent-directory reference"),
    ],
)
def test_malformed_shard_index(tmp_path, weight_map, match):
    _torch_model(num_layers=4).save_pretrained(tmp_path / "d", max_shard_size=600)
    index = tmp_path / "d" / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(EnvironmentError, match=match):
        MsTinyNet.from_pretrained(tmp_path / "d")


def test_shard_index_not_utf8(tmp_path):
    _torch_model(num_layers=4).save_pretrained(tmp_path / "d", max_shard_size=600)
    (tmp_path / "d" / "diffusion_pytorch_model.safetensors.index.json").write_bytes(b'{"weight_map": "\xff"}')
    with pytest.raises(EnvironmentError, match="not a valid safetensors index"):
        MsTinyNet.from_pretrained(tmp_path / "d")


def test_key_in_two_shards(tmp_path):
    # upstream lets the later shard win silently; a stale shard left beside new ones is refused here
    _torch_model(num_layers=4).save_pretrained(tmp_path / "d", max_shard_size=600)
    shards = sorted(p for p in os.listdir(tmp_path / "d") if p.endswith("safetensors"))
    first, last = (tmp_path / "d" / shards[i] for i in (0, -1))
    key = next(iter(safetensors.torch.load_file(str(first))))
    _rewrite(last, lambda t: {**t, key: torch.zeros_like(safetensors.torch.load_file(str(first))[key])})
    with pytest.raises(CheckpointError, match=f"'{key}' is stored in two shards"):
        MsTinyNet.from_pretrained(tmp_path / "d")
    model = MsTinyNet(num_layers=4)
    before = {k: v.asnumpy().copy() for k, v in model.parameters_and_names()}
    with pytest.raises(CheckpointError, match="stored in two shards"):
        model.load_weights([tmp_path / "d" / shard for shard in shards])
    for k, v in model.parameters_and_names():
        np.testing.assert_array_equal(v.asnumpy(), before[k])


def _rewrite(path, fn):
    tensors = safetensors.torch.load_file(str(path))
    safetensors.torch.save_file(fn(tensors), str(path))


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda t: {k: v for k, v in t.items() if k != "norm.bias"}, r"missing keys \(1\): norm.bias"),
        (lambda t: {**t, "extra.weight": torch.zeros(2)}, r"unexpected keys \(1\): extra.weight"),
        (
            lambda t: {**t, "proj_out.weight": torch.zeros(4, 8)},
            r"shape mismatches.*proj_out.weight: checkpoint \[4, 8\] vs model \[3, 8\]",
        ),
        (lambda t: {"encoder.conv.weight": torch.zeros(3)}, "does not hold a TinyNet checkpoint"),
    ],
)
def test_incompatible_checkpoint(saved, edit, match):
    path = saved / "diffusion_pytorch_model.safetensors"
    _rewrite(path, edit)
    with pytest.raises(CheckpointError, match=match) as err:
        MsTinyNet.from_pretrained(saved)
    assert str(path) in str(err.value)


def test_failed_load_leaves_model_unchanged(tmp_path, saved):
    model = MsTinyNet.from_pretrained(saved)
    before = _params(model)
    # a second checkpoint where one tensor has the wrong shape: nothing may be written
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    _rewrite(
        bad / "diffusion_pytorch_model.safetensors",
        lambda t: {**{k: v + 1 for k, v in t.items()}, "blocks.1.weight": torch.zeros(8, 9)},
    )
    with pytest.raises(CheckpointError, match="blocks.1.weight"):
        model.load_weights([bad / "diffusion_pytorch_model.safetensors"])
    after = _params(model)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    # a good one loads
    good = tmp_path / "good"
    shutil.copytree(saved, good)
    _rewrite(good / "diffusion_pytorch_model.safetensors", lambda t: {k: v * 2 for k, v in t.items()})
    model.load_weights([good / "diffusion_pytorch_model.safetensors"])
    np.testing.assert_allclose(_params(model)["norm.weight"], before["norm.weight"] * 2)


def test_failed_state_dict_load_leaves_model_unchanged(saved):
    # right shapes, but the last value cannot be read (a lazy tensor of a file cut short): nothing may be written
    from mindone.diffusers.models.model_loading_utils import load_state_dict_into_model

    class Unreadable:
        shape = (3, 8)

        def __array__(self, dtype=None, copy=None):
            raise OSError("the file ends early")

    model = MsTinyNet.from_pretrained(saved)
    before = _params(model)
    state = {k: v + 1 for k, v in before.items()}
    state["proj_out.weight"] = Unreadable()
    with pytest.raises(OSError, match="ends early"):
        load_state_dict_into_model(model, state)
    for k, v in _params(model).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    state["proj_out.weight"] = before["proj_out.weight"] + 1
    load_state_dict_into_model(model, state)
    np.testing.assert_array_equal(_params(model)["norm.weight"], before["norm.weight"] + 1)


def test_values_that_are_not_tensors_are_refused_before_anything_is_written(saved):
    # torch names the parameter too; without the check these were an AttributeError / MindSpore's Cast error
    model = MsTinyNet.from_pretrained(saved)
    before = _params(model)
    state = {k: v + 1 for k, v in before.items()}
    for value, kind in [
        (None, "builtins.NoneType"),
        ([[0.0] * 8] * 3, "builtins.list"),
        (np.full((3, 8), "a"), "<U1"),
    ]:
        with pytest.raises(TypeError, match=rf"state dict entry 'proj_out.weight' is a .*{kind}"):
            model.load_state_dict({**state, "proj_out.weight": value})
        for k, v in _params(model).items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)
    with pytest.raises(TypeError, match="must be a dict of parameter names to tensors, got builtins.list"):
        model.load_state_dict(list(state.items()))
    with pytest.raises(TypeError, match=r"a key that is not a string: 3"):
        model.load_state_dict({**state, 3: state["norm.weight"]})
    # NumPy bfloat16 arrays (what `asnumpy()` of a bfloat16 tensor gives, dtype kind "V") are tensors
    bf16 = {k: ms.Tensor(v).astype(ms.bfloat16).asnumpy() for k, v in state.items()}
    assert bf16["proj_out.weight"].dtype.kind == "V"
    model.load_state_dict(bf16)
    for k, v in _params(model).items():
        np.testing.assert_array_equal(v, ms.Tensor(state[k]).astype(ms.bfloat16).astype(ms.float32).asnumpy())
    model.load_state_dict({k: ms.Tensor(v) for k, v in before.items()})
    # `load_weights` takes one file as well as a list, and refuses an empty list
    with pytest.raises(ValueError, match="at least one safetensors file"):
        model.load_weights([])
    model.load_weights(os.path.join(saved, "diffusion_pytorch_model.safetensors"))
    for k, v in _params(model).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_reload_into_a_jit_compiled_model(tmp_path, saved):
    # an `ms.jit` graph keeps the parameter storage it was compiled with: loading writes in place, so the compiled
    # model computes with the new weights (with `set_data` it went on with the old ones)
    model = MsTinyNet.from_pretrained(saved)
    model.construct = ms.jit(model.construct)
    x = _x()
    assert_close(_run(model, x), _ref(_torch_model(), x), 1e-5, "jit, first weights")
    good = tmp_path / "good"
    shutil.copytree(saved, good)
    _rewrite(good / "diffusion_pytorch_model.safetensors", lambda t: {k: v * 2 for k, v in t.items()})
    model.load_weights([good / "diffusion_pytorch_model.safetensors"])
    torch_model = _torch_model()
    with torch.no_grad():
        for p in torch_model.parameters():
            p.mul_(2)
    assert_close(_run(model, x), _ref(torch_model, x), 1e-5, "jit, reloaded weights")


@pytest.mark.parametrize("jit", [False, True])
def test_load_state_dict_as_torch(saved, jit):
    # torch's `load_state_dict` over `state_dict()` keys, written in place: `nn.Cell.load_state_dict` gave the
    # parameters new storage, which an `ms.jit` graph compiled before did not see (it computed with the old weights)
    model = MsTinyNet.from_pretrained(saved)
    if jit:
        model.construct = ms.jit(model.construct)
    x = _x()
    torch_model = _torch_model()
    assert_close(_run(model, x), _ref(torch_model, x), 1e-5, "first weights")
    with torch.no_grad():
        for p in torch_model.parameters():
            p.mul_(-1.5)
    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    result = model.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert_close(_run(model, x), _ref(torch_model, x), 1e-5, "loaded weights")

    # strict: missing or unexpected keys, or a wrong shape, raise and write nothing
    before = _params(model)
    doubled = {k: ms.Tensor(v * 2) for k, v in state.items()}
    for bad, match in [
        ({k: v for k, v in doubled.items() if k != "norm.bias"}, "missing keys"),
        ({**doubled, "extra.weight": ms.Tensor(np.zeros(2, np.float32))}, "unexpected keys"),
        ({**doubled, "proj_out.weight": ms.Tensor(np.zeros((4, 8), np.float32))}, "proj_out.weight"),
    ]:
        with pytest.raises(CheckpointError, match=match):
            model.load_state_dict(bad)
        for k, v in _params(model).items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)
    # not strict: what fits loads; the rest is reported as torch does
    partial = {k: v for k, v in doubled.items() if k != "norm.bias"}
    partial["extra.weight"] = ms.Tensor(np.zeros(2, np.float32))
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["norm.bias"] and result.unexpected_keys == ["extra.weight"]
    after = _params(model)
    np.testing.assert_array_equal(after["norm.weight"], before["norm.weight"] * 2)
    np.testing.assert_array_equal(after["norm.bias"], before["norm.bias"])
    with pytest.raises(CheckpointError, match="proj_out.weight"):
        model.load_state_dict({"proj_out.weight": np.zeros((4, 8), np.float32)}, strict=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_load_state_dict_of_torch_tensors(saved, dtype):
    # a torch state dict in any float dtype loads as it does in diffusers (NumPy has no bfloat16: read through float32)
    model = MsTinyNet.from_pretrained(saved)
    torch_model = _torch_model()
    with torch.no_grad():
        for p in torch_model.parameters():
            p.mul_(-1.5)
    torch_model.to(dtype)
    model.load_state_dict(torch_model.state_dict())
    for k, v in _params(model).items():
        np.testing.assert_array_equal(v, torch_model.state_dict()[k].float().numpy(), err_msg=k)
    torch_model.float()
    x = _x()
    assert_close(_run(model, x), _ref(torch_model, x), 1e-5, "loaded weights")


def test_vae_checkpoint_with_the_attention_names_before_diffusers_0_14(tmp_path):
    # VAE folders written before diffusers 0.14 name the mid-block attention query / key / value / proj_attn:
    # diffusers renames them on load (`_fix_state_dict_keys_on_load`), and so does the port
    config = dict(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    torch.manual_seed(0)
    reference = diffusers.AutoencoderKL(**config).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    reference.save_pretrained(tmp_path / "vae")
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}

    def old_names(tensors):
        out = {}
        for key, value in tensors.items():
            for new, old in renames.items():
                key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
            out[key] = value
        return out

    _rewrite(tmp_path / "vae" / "diffusion_pytorch_model.safetensors", old_names)
    keys = safetensors.torch.load_file(str(tmp_path / "vae" / "diffusion_pytorch_model.safetensors")).keys()
    assert "decoder.mid_block.attentions.0.proj_attn.weight" in keys and not any(".to_q." in k for k in keys)
    reloaded = diffusers.AutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    z = np.random.default_rng(1).standard_normal((1, 4, 5, 6)).astype(np.float32)
    with torch.no_grad():
        expected = reloaded.decode(torch.from_numpy(z)).sample.numpy()
        np.testing.assert_array_equal(expected, reference.decode(torch.from_numpy(z)).sample.numpy())
    ours = AutoencoderKL.from_pretrained(tmp_path / "vae")
    assert_close(ours.decode(ms.Tensor(z))[0].asnumpy(), expected, 1e-5, "decode")
    ours.load_weights([tmp_path / "vae" / "diffusion_pytorch_model.safetensors"])
    assert_close(ours.decode(ms.Tensor(z))[0].asnumpy(), expected, 1e-5, "decode after load_weights")


@pytest.mark.parametrize("name", ["offload_folder", "offload_state_dict", "dduf_file"])
def test_offloading_and_dduf_arguments_are_refused_by_models(saved, name):
    # as `DiffusionPipeline.from_pretrained`: an argument the port cannot honour raises instead of being ignored
    with pytest.raises(TypeError, match=name):
        MsTinyNet.from_pretrained(saved, **{name: "x" if name != "offload_state_dict" else True})
    MsTinyNet.from_pretrained(saved, max_memory=None, disable_mmap=True, offload_state_dict=False)


def test_a_file_instead_of_the_model_folder(saved):
    with pytest.raises(EnvironmentError, match="pass the folder"):
        MsTinyNet.from_pretrained(saved / "config.json")


def test_a_path_that_does_not_exist_or_is_not_a_path(tmp_path):
    # huggingface_hub's repo-id validation message ("Repo id must be in the form ...") named neither the path nor
    # that it does not exist; None gave os.fspath's bare TypeError
    for missing in (tmp_path / "missing", str(tmp_path / "missing" / "sub")):
        with pytest.raises(EnvironmentError, match="neither an existing local file or folder nor a valid"):
            MsTinyNet.from_pretrained(missing)
        with pytest.raises(EnvironmentError, match="neither an existing local file or folder nor a valid"):
            MsTinyNet.load_config(missing)
    with pytest.raises(TypeError, match="must be a local path or a Hugging Face repo id .* got NoneType"):
        MsTinyNet.from_pretrained(None)


def test_save_refuses_pickle_and_files(tmp_path):
    model = MsTinyNet()
    # upstream's pickle request: safetensors anyway, with a warning (diffusers loads the folder)
    with captured_warnings() as records:
        model.save_pretrained(tmp_path / "o", safe_serialization=False)
    assert any("never writes" in r and "saved as safetensors" in r for r in records)
    with pytest.raises(TypeError, match="`use_flashpack` is not supported"):
        model.save_pretrained(tmp_path / "flashpack", use_flashpack=True)
    assert not (tmp_path / "flashpack").exists()
    assert sorted(os.listdir(tmp_path / "o")) == ["config.json", "diffusion_pytorch_model.safetensors"]
    TinyNet.from_pretrained(tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="should be a directory"):
        model.save_pretrained(tmp_path / "file")


def test_graph_mode_releases_heap_once_per_compile(monkeypatch):
    """A model compiled by a GRAPH_MODE call releases the C heap freed by compiling (`ReleasesHeapAfterCompile`) once
    per fresh compile, before its first run; calls that reuse the graph do not, and the outputs match PyNative."""
    from mindone.diffusers.models import cpu_layers

    releases = []
    monkeypatch.setattr(cpu_layers, "release_free_heap", lambda: releases.append(1))
    model = MsTinyNet()
    model.set_train(False)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    expected = model(x).asnumpy()
    assert not releases
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        outs = [model(x).asnumpy(), model(x).asnumpy()]
        assert len(releases) == 1
        model(x[:2])  # a new input signature: a new graph
        assert len(releases) == 2
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for out in outs:
        assert rel_l2(out, expected) <= 1e-6


@pytest.mark.parametrize("name", sorted(unsupported.MODEL_METHODS))
def test_diffusers_model_methods_not_ported_say_what_to_do(name):
    assert hasattr(diffusers.ModelMixin, name)  # every entry is a real diffusers method
    model = AutoencoderKL(block_out_channels=(32,), norm_num_groups=32)
    with pytest.raises(
        NotImplementedError, match=rf"`AutoencoderKL.{name}` is not supported by this MindSpore port: "
    ):
        getattr(model, name)()
    assert unsupported.MODEL_METHODS[name] in getattr(AutoencoderKL, name).__doc__


@pytest.mark.parametrize("name", sorted(unsupported.VAE_METHODS))
def test_diffusers_vae_methods_not_ported_say_what_to_do(name):
    assert hasattr(diffusers.AutoencoderKL, name)  # its fused QKV projections
    model = AutoencoderKL(block_out_channels=(32,), norm_num_groups=32)
    with pytest.raises(NotImplementedError, match=rf"`AutoencoderKL.{name}` is not supported by this MindSpore port"):
        getattr(model, name)()


def test_register_for_auto_class_is_refused():
    for cls in (AutoencoderKL, Lumina2Pipeline, FlowMatchEulerDiscreteScheduler):
        assert hasattr(getattr(diffusers, cls.__name__), "register_for_auto_class")
        with pytest.raises(NotImplementedError, match="remote-code"):
            cls.register_for_auto_class()


@pytest.mark.parametrize("name", sorted(unsupported.PIPELINE_METHODS))
def test_diffusers_pipeline_methods_not_ported_say_what_to_do(name):
    assert hasattr(diffusers.Lumina2Pipeline, name)
    with pytest.raises(
        NotImplementedError, match=rf"`Lumina2Pipeline.{name}` is not supported by this MindSpore port"
    ):
        getattr(Lumina2Pipeline, name)(Lumina2Pipeline.__new__(Lumina2Pipeline), "cpu")
    # hook bookkeeping upstream calls after offloading has nothing to do here
    for no_op in ("maybe_free_model_hooks", "remove_all_hooks", "reset_device_map"):
        assert hasattr(diffusers.DiffusionPipeline, no_op)
        assert getattr(Lumina2Pipeline, no_op)(Lumina2Pipeline.__new__(Lumina2Pipeline)) is None


def test_logging_module_as_upstream(capsys):
    """`mindone.diffusers.logging` has diffusers' names (upstream's tests set `diffusers.logging.FATAL` levels)."""
    import diffusers.utils.logging as torch_logging

    import mindone.diffusers as md
    from mindone.diffusers import logging as ours

    assert md.logging is ours
    public = {n for n, v in vars(torch_logging).items() if not n.startswith("_") and not isinstance(v, type(ours))}
    assert public - set(vars(ours)) == {"is_torch_dist_rank_zero"}  # no torch-distributed ranks here
    for name in ("CRITICAL", "DEBUG", "ERROR", "FATAL", "INFO", "NOTSET", "WARN", "WARNING"):
        assert getattr(ours, name) == getattr(torch_logging, name), name
    assert ours.get_log_levels_dict() == torch_logging.get_log_levels_dict()

    ours.disable_progress_bar()
    try:
        assert not ours.is_progress_bar_enabled() and list(ours.tqdm(range(3))) == [0, 1, 2]
    finally:
        ours.enable_progress_bar()
    assert ours.is_progress_bar_enabled()

    handler = logging.StreamHandler()
    ours.add_handler(handler)
    ours.enable_explicit_format()
    assert handler.formatter is not None
    ours.reset_format()
    ours.remove_handler(handler)
    with pytest.raises(ValueError, match="not a handler"):
        ours.remove_handler(handler)
    logger = ours.get_logger("mindone.diffusers.test")
    logger.setLevel(ours.FATAL)
    logger.warning("hidden")
    logger.setLevel(ours.NOTSET)
    assert "hidden" not in capsys.readouterr().err
