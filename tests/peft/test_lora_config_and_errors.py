"""LoraConfig compatibility with PEFT's `adapter_config.json` / diffusers' `lora_adapter_metadata`, PEFT's module
matching rules, and the bad-input paths of the engine (each must leave the model exactly as it was)."""

import json

import numpy as np
import peft
import pytest
import torch
from peft.tuners.tuners_utils import check_target_module_exists as torch_check_target_module_exists
from peft.utils.other import get_pattern_key as torch_get_pattern_key

import mindspore as ms

import mindone.peft as mp
from mindone.peft.utils.other import get_pattern_key
from tests.peft.lora_twins import (
    ALL_TARGETS,
    assert_same_params,
    make_twins,
    param_snapshot,
    torch_sd_to_numpy,
)


def _same(a, b) -> bool:
    """Equal configs, `peft_version` aside (PEFT stamps its own version)."""
    da, db = a.to_dict(), b.to_dict()
    da.pop("peft_version"), db.pop("peft_version")
    return da == db


def _json(d):
    return json.loads(json.dumps({k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}))


def test_config_round_trips_with_peft(tmp_path):
    kwargs = dict(
        r=6,
        lora_alpha=12,
        target_modules=["to_q", "to_k"],
        exclude_modules=["blocks.1.to_k"],
        lora_dropout=0.1,
        use_rslora=True,
        rank_pattern={"^blocks.0.to_q": 2},
        alpha_pattern={"to_k": 3},
        init_lora_weights="gaussian",
    )
    ours = mp.LoraConfig(**kwargs)
    theirs = peft.LoraConfig(**kwargs)
    ours_dict, theirs_dict = _json(ours.to_dict()), _json(theirs.to_dict())
    # same keys as PEFT's to_dict (runtime_config aside); peft_version is left to the reader
    assert set(ours_dict) == set(theirs_dict)
    assert {k: v for k, v in ours_dict.items() if k != "peft_version"} == {
        k: v for k, v in theirs_dict.items() if k != "peft_version"
    }
    # PEFT metadata (as diffusers writes it) -> ours, and ours -> PEFT
    assert _same(mp.LoraConfig(**theirs_dict), ours)
    assert _same(mp.LoraConfig.from_dict(theirs_dict), ours)
    assert _same(mp.get_peft_config(theirs_dict), ours)
    back = peft.LoraConfig(**ours_dict)
    assert back.target_modules == {"to_q", "to_k"} and back.rank_pattern == {"^blocks.0.to_q": 2}
    assert back.use_rslora and back.init_lora_weights == "gaussian"
    # adapter_config.json
    ours.save_pretrained(str(tmp_path))
    assert mp.LoraConfig.from_pretrained(str(tmp_path)) == ours
    theirs.save_pretrained(str(tmp_path / "peft"))
    assert _same(mp.LoraConfig.from_pretrained(str(tmp_path / "peft")), ours)
    assert peft.LoraConfig.from_pretrained(str(tmp_path)).target_modules == {"to_q", "to_k"}


def test_config_from_diffusers_get_peft_kwargs():
    """The keyword set diffusers' `get_peft_kwargs` builds for LoRAs without metadata."""
    kwargs = {
        "r": 4,
        "lora_alpha": 4,
        "rank_pattern": {"^blocks.0.to_q": 8},
        "alpha_pattern": {"^blocks.0.to_q": 8},
        "target_modules": ["blocks.0.to_q", "blocks.1.to_k"],
        "use_dora": False,
        "lora_bias": False,
    }
    config = mp.LoraConfig(**kwargs)
    assert config.target_modules == {"blocks.0.to_q", "blocks.1.to_k"} and config.rank_pattern["^blocks.0.to_q"] == 8


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(use_dora=True), ValueError, "use_dora"),
        (dict(modules_to_save=["proj_out"]), ValueError, "modules_to_save"),
        (dict(init_lora_weights="pissa"), ValueError, "init_lora_weights.*'pissa', 'olora', 'orthogonal'"),
        (dict(init_lora_weights="orthogonal"), ValueError, "init_lora_weights"),
        (dict(r=0), ValueError, "`r` should be a positive integer"),
        (dict(r=2.5), ValueError, "`r` should be a positive integer"),
        (dict(bias="some"), ValueError, "`bias` must be one of"),
        (dict(lora_dropout=1.5), ValueError, "`lora_dropout`"),
        (dict(target_modules=5), TypeError, "`target_modules`"),
        (dict(rank_pattern={"to_q": 0}), ValueError, "rank_pattern"),
        (dict(layers_pattern="blocks"), ValueError, "layers_to_transform"),
        (dict(target_modules=".*q", layers_to_transform=[0]), ValueError, "layers_to_transform"),
        (dict(lora_bias=True, init_lora_weights="gaussian"), ValueError, "lora_bias"),
    ],
)
def test_config_rejects_bad_or_unsupported_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        mp.LoraConfig(**{"target_modules": ["to_q"], **kwargs})


def test_config_unknown_keys_raise_in_the_constructor_and_are_dropped_by_from_dict(tmp_path):
    """As PEFT: its constructor refuses unknown keys; `from_pretrained` (`from_peft_type`) drops them with a warning,
    so a file written by a newer PEFT loads."""
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        peft.LoraConfig(target_modules=["to_q"], some_future_option=3)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['some_future_option'\]"):
        mp.LoraConfig(target_modules=["to_q"], some_future_option=3)
    peft.LoraConfig(r=3, target_modules=["to_q"]).save_pretrained(str(tmp_path / "peft"))
    with open(tmp_path / "peft" / "adapter_config.json") as f:
        saved = json.load(f)
    with open(tmp_path / "peft" / "adapter_config.json", "w") as f:
        json.dump(dict(saved, some_future_option=3), f)
    with pytest.warns(
        UserWarning, match=r"Unexpected keyword arguments \['some_future_option'\] for class LoraConfig"
    ):
        theirs = peft.LoraConfig.from_pretrained(str(tmp_path / "peft"))
    for load in (mp.LoraConfig.from_pretrained, mp.PeftConfig.from_pretrained):
        with pytest.warns(
            UserWarning, match=r"Unexpected keyword arguments \['some_future_option'\] for class LoraConfig"
        ):
            ours = load(str(tmp_path / "peft"))
        assert ours.r == theirs.r == 3 and "some_future_option" not in ours.to_dict()
    with pytest.warns(UserWarning, match="some_future_option"):
        mp.LoraConfig.from_dict({"peft_type": "LORA", "target_modules": ["to_q"], "some_future_option": 3})
    # a file of unknown keys without `peft_type` is no PEFT config at all: refused, as PEFT's
    with open(tmp_path / "peft" / "adapter_config.json", "w") as f:
        json.dump({"foo": "bar", "baz": 123}, f)
    with pytest.raises(TypeError, match=r"missing required keys: \{'peft_type'\}"):
        peft.LoraConfig.from_pretrained(str(tmp_path / "peft"))
    for load in (mp.LoraConfig.from_pretrained, mp.PeftConfig.from_pretrained):
        with pytest.raises(TypeError, match=r"missing required keys: \{'peft_type'\}"):
            load(str(tmp_path / "peft"))
    config = mp.LoraConfig(target_modules=["to_q"], runtime_config={"ephemeral_gpu_offload": False})
    assert "runtime_config" not in config.to_dict()


CONFIGS = [
    dict(target_modules=ALL_TARGETS),
    dict(target_modules=["to_q", "blocks.1.ff.linear_1", "proj_out"]),
    dict(target_modules=r".*\.to_(q|k)"),
    dict(target_modules=r"blocks\.\d\.to_out\.0"),
    dict(target_modules=ALL_TARGETS, exclude_modules=["to_k", "blocks.0.ff.linear_1"]),
    dict(target_modules=ALL_TARGETS, exclude_modules=r".*blocks\.1\..*"),
    dict(target_modules=["to_q", "linear_1"], layers_to_transform=1),
    dict(target_modules=["to_q", "linear_1"], layers_to_transform=[0], layers_pattern=["blocks"]),
    dict(target_modules=["to_q"], layers_to_transform=[0, 1], layers_pattern="nothing"),
]


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_target_matching_equals_peft(index):
    torch_model, ms_model = make_twins()
    ours, theirs = mp.LoraConfig(**CONFIGS[index]), peft.LoraConfig(**CONFIGS[index])
    for name, _ in ms_model.cells_and_names():
        if not name:
            continue
        a, b = mp.check_target_module_exists(ours, name), torch_check_target_module_exists(theirs, name)
        assert bool(a) == bool(b), name
        assert type(a).__name__ == type(b).__name__ if not a else True, name


def test_pattern_key_equals_peft():
    patterns = ["^blocks.0.to_q", "to_v", "blocks.1.ff.linear_1", r"blocks\.\d\.to_k", "q", "ff"]
    names = [n for n, _ in make_twins()[1].cells_and_names() if n]
    for name in names:
        assert get_pattern_key(patterns, name) == torch_get_pattern_key(patterns, name), name


# ---- injection errors: nothing may change ----


def _snapshot(model):
    return param_snapshot(model), [n for n, _ in model.cells_and_names()], dict(getattr(model, "peft_config", {}))


def _assert_unchanged(model, snapshot):
    params, cells, configs = snapshot
    assert_same_params(model, params)
    assert [n for n, _ in model.cells_and_names()] == cells
    assert dict(getattr(model, "peft_config", {})) == configs


def test_inject_errors_leave_model_unchanged():
    torch_model, ms_model = make_twins()
    mp.inject_adapter_in_model(mp.LoraConfig(r=2, target_modules=["to_q"], init_lora_weights=False), ms_model, "a")
    snapshot = _snapshot(ms_model)

    with pytest.raises(ValueError, match="Adapter with name a already exists"):
        mp.inject_adapter_in_model(mp.LoraConfig(r=2, target_modules=["to_k"]), ms_model, "a")
    _assert_unchanged(ms_model, snapshot)

    # no match: PEFT's error type and message
    with pytest.raises(ValueError) as theirs:
        peft.inject_adapter_in_model(peft.LoraConfig(target_modules=["nope"]), torch_model, "x")
    with pytest.raises(mp.NoMatchingPeftModuleError) as ours:
        mp.inject_adapter_in_model(mp.LoraConfig(target_modules=["nope"]), ms_model, "x")
    assert str(ours.value) == str(theirs.value)
    _assert_unchanged(ms_model, snapshot)

    kwargs = dict(target_modules=["to_v"], exclude_modules=["to_v"])
    with pytest.raises(ValueError) as theirs:
        peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, "x")
    with pytest.raises(mp.NoMatchingPeftModuleError, match="No modules were targeted") as ours:
        mp.inject_adapter_in_model(mp.LoraConfig(**kwargs), ms_model, "x")
    assert str(theirs.value).startswith(str(ours.value))
    _assert_unchanged(ms_model, snapshot)
    # a matched module that is not a Linear layer (PEFT raises a ValueError too), after valid matches
    with pytest.raises(ValueError, match=r"Target module blocks.0.act \(SiLU\) is not supported"):
        mp.inject_adapter_in_model(mp.LoraConfig(target_modules=["to_v", "act"]), ms_model, "x")
    with pytest.raises(ValueError, match="Please specify `target_modules`"):
        mp.inject_adapter_in_model(mp.LoraConfig(), ms_model, "x")
    for bad_name in ("b.c", "", 3, "\u00e4", "a b", "a/b"):
        with pytest.raises(ValueError, match="`adapter_name` must be"):
            mp.inject_adapter_in_model(mp.LoraConfig(target_modules=["to_v"]), ms_model, bad_name)
    # names PEFT takes, but MindSpore's `nn.CellDict` refuses as keys (attributes of a Cell)
    for cell_attribute in ("construct", "cells", "phase", "requires_grad", "_params"):
        with pytest.raises(ValueError, match=f"'{cell_attribute}' is the name of an attribute of MindSpore's"):
            mp.inject_adapter_in_model(mp.LoraConfig(target_modules=["to_v"]), ms_model, cell_attribute)
    _assert_unchanged(ms_model, snapshot)
    with pytest.raises(TypeError, match=r"mindone.peft LoraConfig, got peft\.tuners\.lora\.config\.LoraConfig"):
        mp.inject_adapter_in_model(peft.LoraConfig(target_modules=["to_v"]), ms_model, "x")
    # a second adapter with bias != "none"
    mp.inject_adapter_in_model(mp.LoraConfig(target_modules=["to_v"], bias="all"), ms_model, "b1")
    snapshot = _snapshot(ms_model)
    with pytest.raises(ValueError, match="only 1 adapter with bias"):
        mp.inject_adapter_in_model(mp.LoraConfig(target_modules=["to_v"], bias="lora_only"), ms_model, "b2")
    _assert_unchanged(ms_model, snapshot)


def test_set_state_dict_errors_leave_model_unchanged():
    torch_model, ms_model = make_twins()
    kwargs = dict(r=3, lora_alpha=3, target_modules=["to_q", "to_v"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, "a")
    mp.inject_adapter_in_model(mp.LoraConfig(**kwargs), ms_model, "a")
    good = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="a"))
    snapshot = param_snapshot(ms_model)

    unknown = dict(good, **{"blocks.0.to_k.lora_A.weight": np.zeros((3, 12), np.float32)})
    with pytest.raises(mp.AdapterStateDictError, match="blocks.0.to_k.lora_A.weight"):
        mp.set_peft_model_state_dict(ms_model, unknown, adapter_name="a")
    assert_same_params(ms_model, snapshot)

    wrong_shape = dict(good, **{"blocks.1.to_v.lora_B.weight": np.zeros((12, 4), np.float32)})
    with pytest.raises(
        ValueError, match=r"blocks.1.to_v.lora_B.weight: shape \(12, 4\) in the state dict, \(12, 3\)"
    ) as err:
        mp.set_peft_model_state_dict(ms_model, wrong_shape, adapter_name="a")
    assert "missing" not in str(err.value)  # reported once, as a mismatch
    assert_same_params(ms_model, snapshot)

    missing = {k: v for k, v in good.items() if k != "blocks.0.to_q.lora_B.weight"}
    with pytest.raises(ValueError, match="missing from the state dict.*blocks.0.to_q.lora_B.a.weight"):
        mp.set_peft_model_state_dict(ms_model, missing, adapter_name="a")
    assert_same_params(ms_model, snapshot)
    with pytest.raises(ValueError, match="Adapter 'b' is not in the model"):
        mp.set_peft_model_state_dict(ms_model, good, adapter_name="b")

    # PEFT's non-strict behaviour on request: load what fits, report the rest
    result = mp.set_peft_model_state_dict(ms_model, dict(missing, extra=np.zeros(1)), adapter_name="a", strict=False)
    assert result.missing_keys == ["blocks.0.to_q.lora_B.a.weight"] and result.unexpected_keys == ["extra"]
    result = mp.set_peft_model_state_dict(
        ms_model, wrong_shape, adapter_name="a", ignore_mismatched_sizes=True, strict=False
    )
    assert result.unexpected_keys == ["blocks.1.to_v.lora_B.weight"]
    # ms.Tensor values of another dtype and PEFT's `base_model.model.` prefix are accepted
    prefixed = {f"base_model.model.{k}": ms.Tensor(v).astype(ms.float16) for k, v in good.items()}
    mp.set_peft_model_state_dict(ms_model, prefixed, adapter_name="a")
    layer = ms_model.blocks[1].to_v
    assert layer.lora_B["a"].weight.dtype == ms.float32
    np.testing.assert_array_equal(
        layer.lora_B["a"].weight.asnumpy(), good["blocks.1.to_v.lora_B.weight"].astype(np.float16).astype(np.float32)
    )


@pytest.mark.filterwarnings("ignore:While injecting the PEFT adapters")
def test_inject_and_load_is_atomic():
    """diffusers' load path (inject by the state dict's modules, then load) through `inject_and_load_adapter`: a LoRA
    made for another width, a key of a missing module or a missing weight raises and leaves the model as it was."""
    torch_model, ms_model = make_twins()
    kwargs = dict(r=3, lora_alpha=6, target_modules=["to_q", "to_out.0"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, "a")
    good = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="a"))
    mp.inject_and_load_adapter(mp.LoraConfig(**kwargs), ms_model, good, adapter_name="first")
    mp.set_adapter(ms_model, ["first"])
    snapshot = _snapshot(ms_model)
    active = {name: layer.active_adapters for name, layer in mp.iter_tuner_layers(ms_model)}

    wider = dict(good, **{"blocks.1.to_out.0.lora_A.weight": np.zeros((3, 16), np.float32)})
    unknown = dict(good, **{"blocks.0.nope.lora_A.weight": np.zeros((3, 12), np.float32)})
    missing = {k: v for k, v in good.items() if k != "blocks.0.to_q.lora_B.weight"}
    new_module = dict(good, **{"proj_out.lora_A.weight": np.zeros((3, 12), np.float32)})  # no lora_B for proj_out
    for bad, match in (
        (wider, r"blocks.1.to_out.0.lora_A.weight: shape \(3, 16\) in the state dict, \(3, 12\)"),
        (unknown, "match no weight.*blocks.0.nope.lora_A.weight"),
        (missing, "missing from the state dict.*blocks.0.to_q.lora_B.second.weight"),
        (new_module, "missing from the state dict.*proj_out.lora_B.second.weight"),
    ):
        with pytest.raises(mp.AdapterStateDictError, match=match):
            mp.inject_and_load_adapter(mp.LoraConfig(**kwargs), ms_model, bad, adapter_name="second")
        _assert_unchanged(ms_model, snapshot)
        assert {name: layer.active_adapters for name, layer in mp.iter_tuner_layers(ms_model)} == active
    with pytest.raises(ValueError, match="already exists"):
        mp.inject_and_load_adapter(mp.LoraConfig(**kwargs), ms_model, good, adapter_name="first")
    _assert_unchanged(ms_model, snapshot)
    result = mp.inject_and_load_adapter(mp.LoraConfig(**kwargs), ms_model, good, adapter_name="second")
    assert result.missing_keys == [] and result.unexpected_keys == []


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_bias_options_save_and_load_base_biases_like_peft(bias):
    torch_model, ms_model = make_twins()
    kwargs = dict(r=2, target_modules=["to_q", "to_k"], bias=bias, init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, "a")
    with torch.no_grad():
        for name, param in torch_model.named_parameters():
            if name.endswith("bias"):
                param.add_(1.0)  # trained biases: the state dict must carry them over
    state = torch_sd_to_numpy(peft.get_peft_model_state_dict(torch_model, adapter_name="a"))
    assert any(k.endswith("base_layer.bias") for k in state)
    mp.inject_and_load_adapter(mp.LoraConfig(**kwargs), ms_model, state, adapter_name="a")
    ours = mp.get_peft_model_state_dict(ms_model, adapter_name="a")
    assert sorted(ours) == sorted(state)
    for key, value in state.items():
        np.testing.assert_array_equal(ours[key].asnumpy(), value, err_msg=key)


def test_fan_in_fan_out_is_reset_for_linear_layers():
    _, ms_model = make_twins()
    config = mp.LoraConfig(target_modules=["to_q"], fan_in_fan_out=True)
    with pytest.warns(UserWarning, match="Setting fan_in_fan_out to False"):
        mp.inject_adapter_in_model(config, ms_model)
    assert config.fan_in_fan_out is False


def _trainable(named_params):
    return sorted(name for name, p in named_params if p.requires_grad)


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_bias_option_makes_the_same_parameters_trainable_as_peft(bias):
    torch_model, ms_model = make_twins()
    kwargs = dict(r=2, target_modules=["to_q", "to_v"], bias=bias)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, "a")
    mp.inject_adapter_in_model(mp.LoraConfig(**kwargs), ms_model, "a")
    assert _trainable(ms_model.parameters_and_names()) == _trainable(torch_model.named_parameters())


def test_bias_all_with_two_adapters_keeps_the_other_adapters_biases_out():
    torch_model, ms_model = make_twins()
    first = dict(r=2, target_modules=["to_q"], lora_bias=True, init_lora_weights=False)
    second = dict(r=2, target_modules=["to_k"], bias="all", init_lora_weights=False)
    for name, kwargs in (("a", first), ("b", second)):
        peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, name)
        mp.inject_adapter_in_model(mp.LoraConfig(**kwargs), ms_model, name)
    expected = peft.get_peft_model_state_dict(torch_model, adapter_name="b")
    ours = mp.get_peft_model_state_dict(ms_model, adapter_name="b")
    assert sorted(ours) == sorted(expected) and not any(".lora_B.a." in k for k in ours)
    # loading adapter b's dict leaves adapter a's LoRA bias alone
    snapshot = {k: v.asnumpy().copy() for k, v in mp.get_peft_model_state_dict(ms_model, adapter_name="a").items()}
    mp.set_peft_model_state_dict(ms_model, {k: v.asnumpy() + 1.0 for k, v in ours.items()}, adapter_name="b")
    for key, value in mp.get_peft_model_state_dict(ms_model, adapter_name="a").items():
        if "base_layer" not in key:
            np.testing.assert_array_equal(value.asnumpy(), snapshot[key], err_msg=key)


def test_state_dict_keys_with_the_adapter_name_load_as_in_peft():
    torch_model, ms_model = make_twins()
    kwargs = dict(r=2, target_modules=["to_q", "to_k"], init_lora_weights=False)
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), torch_model, "default")
    mp.inject_adapter_in_model(mp.LoraConfig(r=2, target_modules=["to_q", "to_k"]), ms_model, "default")
    # model-style keys (`...lora_A.default.weight`), as `model.state_dict()` gives them
    state = {k: v for k, v in torch_sd_to_numpy(torch_model.state_dict()).items() if "lora_" in k}
    assert all(".default." in k for k in state)
    result = mp.set_peft_model_state_dict(ms_model, state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    params = dict(ms_model.parameters_and_names())
    for key, value in state.items():
        np.testing.assert_array_equal(params[key].asnumpy(), value, err_msg=key)


def test_ignore_mismatched_sizes_skips_with_strict_loading():
    _, ms_model = make_twins()
    mp.inject_adapter_in_model(mp.LoraConfig(r=2, target_modules=["to_q"]), ms_model)
    state = {k: v.asnumpy() for k, v in mp.get_peft_model_state_dict(ms_model).items()}
    wrong = next(k for k in state if k.endswith("lora_A.weight"))
    state[wrong] = np.ones((3, state[wrong].shape[1]), dtype=np.float32)  # rank 3, not 2
    with pytest.raises(mp.AdapterStateDictError, match="shape"):
        mp.set_peft_model_state_dict(ms_model, state)
    result = mp.set_peft_model_state_dict(ms_model, state, ignore_mismatched_sizes=True)
    assert wrong in result.unexpected_keys


def test_peft_config_classes_dispatch_on_peft_type(tmp_path):
    peft.LoraConfig(r=3, lora_alpha=5, target_modules=["to_q"]).save_pretrained(tmp_path)
    loaded = mp.PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, mp.LoraConfig) and loaded.r == 3 and loaded.lora_alpha == 5
    assert isinstance(mp.PeftConfig.from_dict({"peft_type": "LORA", "r": 4}), mp.LoraConfig)
    # PEFT's `to_dict()` keeps the enum member; both packages' members are accepted
    for peft_type in (peft.PeftType.LORA, mp.PeftType.LORA):
        assert mp.get_peft_config({"peft_type": peft_type, "r": 6}).r == 6
    with pytest.raises(ValueError, match="'BOFT' is not supported"):
        mp.get_peft_config({"peft_type": peft.PeftType.BOFT})
    # task types checked and the type reset to LoRA, as PEFT's `__post_init__`
    assert [t.value for t in mp.TaskType] == [t.value for t in peft.TaskType]
    for task_type in ("CAUSAL_LM", mp.TaskType.FEATURE_EXTRACTION, peft.TaskType.SEQ_CLS, None):
        assert mp.LoraConfig(task_type=task_type).task_type == peft.LoraConfig(task_type=task_type).task_type
    for config_class in (mp.LoraConfig, peft.LoraConfig):
        with pytest.raises(ValueError, match="Invalid task type: 'invalid-task-type'. Must be one of the following"):
            config_class(task_type="invalid-task-type")
        assert config_class(peft_type="test").peft_type == "LORA"
    # a config of another method is refused where files are read (dispatch on `peft_type`)
    with pytest.raises(ValueError, match="'LOHA' is not supported"):
        mp.PeftConfig.from_dict({"peft_type": "LOHA", "r": 4})
    # stamped with PEFT's version, as PEFT stamps its own (a loaded file keeps its value)
    assert mp.LoraConfig(r=2).to_dict()["peft_version"] == peft.LoraConfig(r=2).to_dict()["peft_version"]
    assert loaded.peft_version == peft.LoraConfig.from_pretrained(tmp_path).peft_version
