"""The plain scripts in `examples/` run on the small pipeline bundled with the package (in-process, 1-2 steps)."""

import importlib.util
import os

import numpy as np
import PIL.Image
import pytest

import mindspore as ms

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_script(name):
    path = os.path.join(REPO_ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pixels(path):
    return np.asarray(PIL.Image.open(path), dtype=np.int16)


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """A LoRA for the tiny pipeline, made with mindone.peft and saved as diffusers does (random B: a visible effect)."""
    from mindone.diffusers import Lumina2Pipeline
    from mindone.diffusers.pipelines.lumina2.demo import TINY_PIPELINE
    from mindone.peft import LoraConfig, get_peft_model_state_dict

    pipe = Lumina2Pipeline.from_pretrained(TINY_PIPELINE)
    pipe.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v"]), adapter_name="t")
    rng = np.random.default_rng(0)
    for name, param in pipe.transformer.parameters_and_names():
        if "lora_B" in name:
            param.set_data(ms.Tensor(0.5 * rng.standard_normal(param.shape).astype(np.float32)))
    path = tmp_path_factory.mktemp("lora")
    Lumina2Pipeline.save_lora_weights(
        str(path),
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer, adapter_name="t"),
        transformer_lora_adapter_metadata=pipe.transformer.peft_config["t"].to_dict(),
    )
    return str(path)


def test_console_command_exits_with_status_0(tmp_path, monkeypatch, capsys):
    """The installed `mindone-lumina2` command: a console script exits with what its function returns, so the function
    must return None (the demo's `main` returns the path, which would exit 1 and print it as an error)."""
    from importlib.metadata import entry_points

    (command,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "mindone-lumina2"]
    output = tmp_path / "cli.png"
    monkeypatch.setattr("sys.argv", ["mindone-lumina2", "--steps", "1", "--output", str(output)])
    assert command.load()() is None
    assert output.is_file() and "Saved a 128x128 image" in capsys.readouterr().out


def test_generate_is_the_demo(capsys):
    """examples/generate.py is the demo's command line (its runs are tested in tests/pipelines/lumina2)."""
    from mindone.diffusers.pipelines.lumina2 import demo

    script = _load_script("generate")
    assert script.main is demo.main
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_lora_generate(tmp_path, lora_dir):
    """Two adapters with weights, fused, and the base image for comparison. (That fusing gives the run-time LoRA's
    image is checked in examples/lora.ipynb; one pipeline load here keeps the test short.)"""
    script = _load_script("lora_generate")
    out = str(tmp_path / "lora.png")
    written = script.main(
        ["--lora", lora_dir, "--lora", lora_dir, "--adapter-weights", "0.5", "0.25", "--fuse", "--compare",
         "--steps", "2", "--output", out]
    )  # fmt: skip
    assert written == [str(tmp_path / "lora_base.png"), out]
    assert PIL.Image.open(out).size == (128, 128)
    assert np.abs(_pixels(out) - _pixels(written[0])).max() > 0, "the LoRA changes the image"


def test_lora_generate_rejects_mismatched_weights(lora_dir):
    with pytest.raises(SystemExit):
        _load_script("lora_generate").parse_args(["--lora", lora_dir, "--adapter-weights", "0.5", "0.5"])


def test_scheduler_sweep(tmp_path, capsys):
    grid = _load_script("scheduler_sweep").main(
        ["--steps", "1", "2", "--shifts", "1", "6", "--output-dir", str(tmp_path)]
    )
    assert PIL.Image.open(grid).size == (2 * 128, 2 * 128)
    names = sorted(os.listdir(tmp_path))
    assert names == ["grid.png", "shift1_steps1.png", "shift1_steps2.png", "shift6_steps1.png", "shift6_steps2.png"]
    # one step from pure noise: sigma 1 -> 0 in one Euler step whatever the shift; two steps depend on it
    assert np.array_equal(_pixels(tmp_path / "shift1_steps1.png"), _pixels(tmp_path / "shift6_steps1.png"))
    assert not np.array_equal(_pixels(tmp_path / "shift1_steps2.png"), _pixels(tmp_path / "shift6_steps2.png"))
    assert "rows: shift" in capsys.readouterr().out
