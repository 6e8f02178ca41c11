"""Fetching LoRA state dicts as diffusers does (`lora_state_dict`, `load_lora_weights`): from a folder, a file, a dict,
a repo id in the Hugging Face cache (offline); `weight_name` selection and guessing; the adapter metadata; writing
(`save_lora_weights`) files diffusers reads with the same metadata; pickle files refused with a hint."""

import json
import os
import shutil

import diffusers
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch

import mindspore as ms

from mindone.diffusers import Lumina2Pipeline
from mindone.diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY, LoraBaseMixin
from mindone.safetensors.mindspore import SafetensorError, load_metadata
from tests.lora.lumina2_lora_utils import (
    add_torch_lora,
    assert_same_params,
    diffusers_twin,
    make_inputs,
    make_twins,
    param_snapshot,
    run_ms,
    run_torch,
    save_torch_lora,
    torch_lora_state_dict,
)
from tests.testing_utils import assert_close

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """A folder with diffusers' `pytorch_lora_weights.safetensors` (with metadata) and the torch model it came from."""
    root = tmp_path_factory.mktemp("lora_files")
    torch_model = diffusers_twin()
    add_torch_lora(torch_model, "x", seed=5, r=4, lora_alpha=2)
    path = save_torch_lora(torch_model, "x", str(root / "lora"))
    return torch_model, os.path.dirname(path), path


def _same(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(ours[key].asnumpy(), value.numpy(), err_msg=key)


def _parsed(header_metadata):
    """Header metadata with the adapter metadata parsed (target modules as a set: diffusers lists a set in its
    iteration order, we sort it)."""
    out = dict(header_metadata)
    adapter = json.loads(out.pop(LORA_ADAPTER_METADATA_KEY))
    adapter["transformer.target_modules"] = set(adapter["transformer.target_modules"])
    return out, adapter


def _copy(src, dst_dir, name):
    os.makedirs(dst_dir, exist_ok=True)
    shutil.copy(src, os.path.join(dst_dir, name))
    return os.path.join(dst_dir, name)


def test_folder_file_and_dict_like_diffusers(lora):
    _, directory, path = lora
    for source in (directory, path):
        ours, metadata = Lumina2Pipeline.lora_state_dict(source, return_lora_metadata=True)
        theirs, their_metadata = diffusers.Lumina2Pipeline.lora_state_dict(source, return_lora_metadata=True)
        _same(ours, theirs)
        assert metadata == their_metadata and metadata["transformer.lora_alpha"] == 2
        assert all(isinstance(v, ms.Tensor) for v in ours.values())
    only = Lumina2Pipeline.lora_state_dict(directory)
    assert isinstance(only, dict) and sorted(only) == sorted(ours)
    state_dict, metadata = Lumina2Pipeline.lora_state_dict(ours, return_lora_metadata=True)
    assert state_dict is ours and metadata is None


def test_weight_name_selection(lora, tmp_path):
    _, _, path = lora
    other_model = diffusers_twin()
    add_torch_lora(other_model, "y", seed=6, r=2, lora_alpha=2)
    other = save_torch_lora(other_model, "y", str(tmp_path / "other"), weight_name="other.safetensors")
    both = str(tmp_path / "both")
    _copy(path, both, "pytorch_lora_weights.safetensors")
    _copy(other, both, "other.safetensors")
    _copy(other, both, "optimizer.safetensors")
    # the default name wins; weight_name picks another file
    default = Lumina2Pipeline.lora_state_dict(both)
    _same(default, diffusers.Lumina2Pipeline.lora_state_dict(path))
    picked = Lumina2Pipeline.lora_state_dict(both, weight_name="other.safetensors")
    _same(picked, diffusers.Lumina2Pipeline.lora_state_dict(other))
    # one LoRA file of another name is found; "optimizer" / "scheduler" files are not LoRAs
    single = str(tmp_path / "single")
    _copy(other, single, "my_lora.safetensors")
    _copy(path, single, "scheduler.safetensors")
    _same(Lumina2Pipeline.lora_state_dict(single), diffusers.Lumina2Pipeline.lora_state_dict(other))
    # a subfolder
    nested = str(tmp_path / "nested")
    _copy(other, os.path.join(nested, "sub"), "pytorch_lora_weights.safetensors")
    _same(Lumina2Pipeline.lora_state_dict(nested, subfolder="sub"), diffusers.Lumina2Pipeline.lora_state_dict(other))


def test_repo_id_in_the_hub_cache(lora, tmp_path):
    torch_model, _, path = lora
    snapshot = tmp_path / "hub" / "models--lora-org--tiny-lora" / "snapshots" / COMMIT
    _copy(path, str(snapshot), "pytorch_lora_weights.safetensors")
    (tmp_path / "hub" / "models--lora-org--tiny-lora" / "refs").mkdir()
    (tmp_path / "hub" / "models--lora-org--tiny-lora" / "refs" / "main").write_text(COMMIT)
    cache = str(tmp_path / "hub")
    expected = diffusers.Lumina2Pipeline.lora_state_dict(
        "lora-org/tiny-lora", cache_dir=cache, weight_name="pytorch_lora_weights.safetensors"
    )
    ours, metadata = Lumina2Pipeline.lora_state_dict(
        "lora-org/tiny-lora",
        cache_dir=cache,
        weight_name="pytorch_lora_weights.safetensors",
        return_lora_metadata=True,
    )
    _same(ours, expected)
    assert metadata["transformer.r"] == 4
    # offline without weight_name: diffusers gives up, we look into the cached snapshot
    with pytest.raises(ValueError, match="you must specify a `weight_name`"):
        diffusers.Lumina2Pipeline.lora_state_dict("lora-org/tiny-lora", cache_dir=cache)
    _same(Lumina2Pipeline.lora_state_dict("lora-org/tiny-lora", cache_dir=cache), expected)
    with pytest.raises(ValueError, match="you must specify a `weight_name`"):
        Lumina2Pipeline.lora_state_dict("lora-org/absent", cache_dir=cache)
    with pytest.raises(EnvironmentError):
        Lumina2Pipeline.lora_state_dict("lora-org/absent", cache_dir=cache, weight_name="x.safetensors")

    # and into a transformer, as load_lora_weights does
    _, model = make_twins()
    model.load_lora_adapter("lora-org/tiny-lora", cache_dir=cache, adapter_name="hub")
    assert_close(run_ms(model, make_inputs()), run_torch(torch_model, make_inputs()), 1e-5, "LoRA from the cache")


def test_pickle_and_missing_files(lora, tmp_path):
    _, _, path = lora
    pickled = str(tmp_path / "pickled")
    os.makedirs(pickled)
    open(os.path.join(pickled, "pytorch_lora_weights.bin"), "wb").close()
    with pytest.raises(ValueError, match="holds the pickle LoRA file 'pytorch_lora_weights.bin'"):
        Lumina2Pipeline.lora_state_dict(pickled)
    with pytest.raises(ValueError, match="names a pickle file"):
        Lumina2Pipeline.lora_state_dict(pickled, weight_name="pytorch_lora_weights.bin")
    with pytest.raises(ValueError, match="is a pickle file"):
        Lumina2Pipeline.lora_state_dict(os.path.join(pickled, "pytorch_lora_weights.bin"))
    # upstream's save-with-pickle-then-load flow: the safetensors file this port wrote instead is named
    safetensors_dir = os.path.dirname(path)
    with pytest.raises(ValueError, match=r"does not exist, but .*\.safetensors does"):
        Lumina2Pipeline.lora_state_dict(os.path.splitext(path)[0] + ".bin")
    # loading options upstream accepts and ignores
    state = Lumina2Pipeline.lora_state_dict(safetensors_dir, safe_serialization=True, network_alphas=None)
    assert state
    with pytest.raises(TypeError, match="network_alphas"):
        Lumina2Pipeline.lora_state_dict(safetensors_dir, network_alphas={"x": 1.0})
    with pytest.raises(TypeError, match=r"\['weight_nmae'\]: not options of this loader"):
        Lumina2Pipeline.lora_state_dict(safetensors_dir, weight_nmae="x")
    with pytest.raises(ValueError, match="`use_safetensors=False`"):
        Lumina2Pipeline.lora_state_dict(os.path.dirname(path), use_safetensors=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EnvironmentError, match="no file named pytorch_lora_weights.safetensors"):
        Lumina2Pipeline.lora_state_dict(str(empty))
    corrupt = str(tmp_path / "corrupt.safetensors")
    with open(corrupt, "wb") as f:
        f.write(b"not a safetensors file at all")
    with pytest.raises(SafetensorError):
        Lumina2Pipeline.lora_state_dict(corrupt)
    with pytest.raises(TypeError, match="must be a path, a repo id or a dict"):
        Lumina2Pipeline.lora_state_dict(3)
    # a path that does not exist: diffusers asks the Hub (offline: "you must specify a `weight_name`")
    for missing in (str(tmp_path / "nope" / "lora.safetensors"), "lora.safetensors", str(tmp_path / "nope")):
        with pytest.raises(EnvironmentError, match="neither an existing local file or folder nor a valid"):
            Lumina2Pipeline.lora_state_dict(missing)
    # values that are not tensors (an AttributeError deep in the loader)
    key = "transformer.layers.0.attn.to_q.lora_A.weight"
    with pytest.raises(TypeError, match=rf"LoRA state dict entry '{key}' is a builtins.str"):
        Lumina2Pipeline.lora_state_dict({key: "x"})


@pytest.mark.parametrize("raw", ["{not json", "[4, 2]"])
def test_malformed_adapter_metadata(lora, tmp_path, raw):
    """A header whose adapter metadata is no JSON object: an error naming the file and the entry (diffusers raises
    json's own error), before anything is injected."""
    _, _, path = lora
    with safetensors.safe_open(path, "np") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    bad = str(tmp_path / "bad.safetensors")
    safetensors.numpy.save_file(tensors, bad, metadata={"format": "pt", LORA_ADAPTER_METADATA_KEY: raw})
    match = (
        rf"`{LORA_ADAPTER_METADATA_KEY}` entry of the header of .*bad\.safetensors is (invalid JSON|no JSON object)"
    )
    with pytest.raises(ValueError, match=match):
        Lumina2Pipeline.lora_state_dict(bad, return_lora_metadata=True)
    _, model = make_twins()
    snapshot = param_snapshot(model)
    with pytest.raises(ValueError, match=match):
        model.load_lora_adapter(bad, adapter_name="bad")
    assert not getattr(model, "peft_config", None)
    assert_same_params(model, snapshot)


def test_adapter_metadata_with_unknown_keys_is_refused_as_in_diffusers(lora, tmp_path):
    """Adapter metadata with keys `LoraConfig` does not take: a TypeError naming them, as diffusers' (PEFT's
    constructor refuses them), before anything is injected."""
    _, _, path = lora
    with safetensors.safe_open(path, "np") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        header = f.metadata()
    adapter = json.loads(header[LORA_ADAPTER_METADATA_KEY])
    adapter.update({"transformer.foo": 1, "transformer.bar": 2})
    folder = tmp_path / "unknown"
    folder.mkdir()
    name = "pytorch_lora_weights.safetensors"
    safetensors.numpy.save_file(
        tensors, str(folder / name), metadata={**header, LORA_ADAPTER_METADATA_KEY: json.dumps(adapter)}
    )
    theirs = diffusers_twin()
    with pytest.raises(TypeError, match="`LoraConfig` class could not be instantiated"):
        theirs.load_lora_adapter(str(folder), weight_name=name, prefix="transformer")
    _, model = make_twins()
    snapshot = param_snapshot(model)
    match = (
        r"`LoraConfig` class could not be instantiated: LoraConfig got unexpected keyword arguments \['bar', 'foo'\]"
    )
    with pytest.raises(TypeError, match=match):
        model.load_lora_adapter(str(folder), weight_name=name, prefix="transformer", adapter_name="bad")
    with pytest.raises(TypeError, match=match):
        model.load_lora_adapter(str(folder / name), prefix="transformer", adapter_name="bad")
    assert not getattr(model, "peft_config", None)
    assert_same_params(model, snapshot)


def test_save_lora_weights_like_diffusers(lora, tmp_path):
    torch_model, _, path = lora
    ours = Lumina2Pipeline.lora_state_dict(path)
    transformer_layers = {k.removeprefix("transformer."): v for k, v in ours.items()}
    config = torch_model.peft_config["x"].to_dict()
    Lumina2Pipeline.save_lora_weights(
        str(tmp_path / "ours"),
        transformer_lora_layers=transformer_layers,
        transformer_lora_adapter_metadata=dict(config),
        weight_name="mine.safetensors",
    )
    written = str(tmp_path / "ours" / "mine.safetensors")
    # the same tensors and header metadata diffusers writes
    theirs_dir = str(tmp_path / "theirs")
    diffusers.Lumina2Pipeline.save_lora_weights(
        theirs_dir,
        transformer_lora_layers=torch_lora_state_dict(torch_model, "x"),
        transformer_lora_adapter_metadata=dict(config),
        weight_name="mine.safetensors",
    )
    with (
        safetensors.safe_open(written, "pt") as f,
        safetensors.safe_open(os.path.join(theirs_dir, "mine.safetensors"), "pt") as g,
    ):
        assert _parsed(f.metadata()) == _parsed(g.metadata())
        assert sorted(f.keys()) == sorted(g.keys())
        for key in g.keys():
            np.testing.assert_array_equal(f.get_tensor(key).numpy(), g.get_tensor(key).numpy())
    assert json.loads(load_metadata(written)[LORA_ADAPTER_METADATA_KEY])["transformer.r"] == 4

    # no metadata: only the format entry
    Lumina2Pipeline.save_lora_weights(str(tmp_path / "plain"), transformer_lora_layers=transformer_layers)
    assert load_metadata(str(tmp_path / "plain" / "pytorch_lora_weights.safetensors")) == {"format": "pt"}
    # not the main process: nothing written
    Lumina2Pipeline.save_lora_weights(
        str(tmp_path / "worker"), transformer_lora_layers=transformer_layers, is_main_process=False
    )
    assert not os.path.exists(tmp_path / "worker")
    # upstream's pickle request: the safetensors file anyway (with a warning); a pickle file name is refused
    Lumina2Pipeline.save_lora_weights(
        str(tmp_path / "x"), transformer_lora_layers=transformer_layers, safe_serialization=False
    )
    assert os.listdir(tmp_path / "x") == ["pytorch_lora_weights.safetensors"]
    with pytest.raises(ValueError, match="names a pickle file"):
        Lumina2Pipeline.save_lora_weights(
            str(tmp_path / "x"), transformer_lora_layers=transformer_layers, weight_name="lora.bin"
        )
    with pytest.raises(ValueError, match="should be a directory, not a file"):
        Lumina2Pipeline.save_lora_weights(path, transformer_lora_layers=transformer_layers)
    with pytest.raises(
        ValueError, match="`lora_adapter_metadata` cannot be specified when not using `safe_serialization`"
    ):
        LoraBaseMixin.write_lora_layers(transformer_layers, str(tmp_path / "y"), True, None, print, False, {"r": 4})
    # a custom writer
    calls = []
    Lumina2Pipeline.save_lora_weights(
        str(tmp_path / "custom"),
        transformer_lora_layers=transformer_layers,
        save_function=lambda sd, p: calls.append((sorted(sd), p)),
    )
    assert calls[0][0] == sorted(ours) and calls[0][1].endswith("custom/pytorch_lora_weights.safetensors")
    # the file loads back in diffusers' pipeline-level reader
    reread = diffusers.Lumina2Pipeline.lora_state_dict(written)
    for key, value in ours.items():
        np.testing.assert_array_equal(reread[key].numpy(), value.asnumpy())
    assert safetensors.torch.load_file(written)
