"""AutoModel (mindone.diffusers and mindone.transformers) and AutoPipelineForText2Image: they pick the class diffusers
picks for the same folder, load what that class loads, and refuse what is not ported with a clear error."""

import json
import os
import shutil
from unittest.mock import patch

import diffusers
import numpy as np
import pytest
from transformers import Gemma2Config, LlamaConfig

import mindspore as ms

from mindone import transformers as mindone_transformers
from mindone.diffusers import (
    AutoencoderKL,
    AutoModel,
    AutoPipelineForText2Image,
    FlowMatchEulerDiscreteScheduler,
    Lumina2Pipeline,
    Lumina2Transformer2DModel,
)
from mindone.diffusers.models.model_loading_utils import CheckpointError
from mindone.diffusers.utils.logging import get_logger
from mindone.diffusers.utils.testing_utils import CaptureLogger
from mindone.transformers import Gemma2Model

TINY = os.path.join(os.path.dirname(os.path.abspath(mindone_transformers.__file__)), "..", "assets", "lumina2-tiny")
TINY = os.path.normpath(TINY)
COMPONENTS = ["transformer", "vae", "text_encoder", "scheduler", "tokenizer"]


def _same_parameters(a, b):
    pa, pb = a.parameters_dict(), b.parameters_dict()
    assert sorted(pa) == sorted(pb)
    for name in pa:
        assert pa[name].dtype == pb[name].dtype, name
        np.testing.assert_array_equal(pa[name].float().asnumpy(), pb[name].float().asnumpy(), err_msg=name)


@pytest.fixture(scope="module")
def tiny_pipe():
    return Lumina2Pipeline.from_pretrained(TINY)


# ----------------------------------------------------------------------------------------------------------------------
# mindone.diffusers.AutoModel


@pytest.mark.parametrize("component", COMPONENTS)
def test_model_index_entry_picks_the_class_diffusers_picks(component):
    ours = AutoModel.from_pretrained(TINY, subfolder=component)
    theirs = diffusers.AutoModel.from_pretrained(TINY, subfolder=component)
    assert type(ours).__name__ == type(theirs).__name__
    assert AutoModel.config_name == "config.json"  # reading model_index.json leaves no trace


@pytest.mark.parametrize(
    "component, cls",
    [("transformer", Lumina2Transformer2DModel), ("vae", AutoencoderKL), ("text_encoder", Gemma2Model)],
)
def test_loads_the_weights_the_class_loads(component, cls):
    expected = cls.from_pretrained(TINY, subfolder=component)
    _same_parameters(AutoModel.from_pretrained(TINY, subfolder=component), expected)
    # a model folder itself (no model_index.json): its config.json names the class (`_class_name` / `model_type`)
    _same_parameters(AutoModel.from_pretrained(os.path.join(TINY, component)), expected)


def test_loading_arguments_reach_the_class():
    model = AutoModel.from_pretrained(TINY, subfolder="transformer", mindspore_dtype=ms.bfloat16)
    assert model.dtype == ms.bfloat16
    encoder = AutoModel.from_pretrained(os.path.join(TINY, "text_encoder"), num_hidden_layers=1)
    assert isinstance(encoder, Gemma2Model) and encoder.config.num_hidden_layers == 1 and len(encoder.layers) == 1


def test_variant_weights(tmp_path):
    Lumina2Transformer2DModel.from_pretrained(TINY, subfolder="transformer").save_pretrained(
        tmp_path / "transformer", variant="fp16"
    )
    model = AutoModel.from_pretrained(str(tmp_path / "transformer"), variant="fp16")
    _same_parameters(model, Lumina2Transformer2DModel.from_pretrained(TINY, subfolder="transformer"))


@pytest.mark.parametrize(
    "config, cls",
    [
        ({"_class_name": "Lumina2Transformer2DModel"}, Lumina2Transformer2DModel),
        ({"model_type": "gemma2"}, Gemma2Model),
    ],
)
def test_falls_back_to_the_config_as_upstream_tests_mock_it(config, cls):
    """diffusers' own AutoModel tests patch `AutoModel.load_config`: no model_index.json, then the component config."""
    component = "transformer" if cls is Lumina2Transformer2DModel else "text_encoder"
    with patch("mindone.diffusers.models.AutoModel.load_config", side_effect=[EnvironmentError("no file"), config]):
        assert isinstance(AutoModel.from_pretrained(TINY, subfolder=component), cls)


def test_from_config():
    with open(os.path.join(TINY, "transformer", "config.json")) as f:
        config = json.load(f)
    model = AutoModel.from_config(config)
    assert isinstance(model, Lumina2Transformer2DModel) and model.config.hidden_size == config["hidden_size"]
    assert isinstance(AutoModel.from_config(TINY, subfolder="vae"), AutoencoderKL)
    assert AutoModel.from_config(TINY, subfolder="vae", latent_channels=8).config.latent_channels == 8
    encoder = AutoModel.from_config(os.path.join(TINY, "text_encoder"))
    with open(os.path.join(TINY, "text_encoder", "config.json")) as f:
        assert isinstance(encoder, Gemma2Model) and encoder.config.hidden_size == json.load(f)["hidden_size"]


def test_errors(tmp_path):
    with pytest.raises(EnvironmentError, match="from_pretrained"):
        AutoModel()
    with pytest.raises(ValueError, match="first positional argument"):
        AutoModel.from_pretrained()
    with pytest.raises(EnvironmentError, match="config.json"):
        AutoModel.from_pretrained(TINY)  # a pipeline folder needs a subfolder
    with pytest.raises(EnvironmentError, match="config.json"):
        AutoModel.from_pretrained(TINY, subfolder="missing")
    with pytest.raises(ValueError, match="`_class_name`.*`model_type`"):
        AutoModel.from_config({"hidden_size": 8})
    with pytest.raises(ValueError, match="UNet2DConditionModel: mindone.diffusers does not port it"):
        AutoModel.from_config({"_class_name": "UNet2DConditionModel"})
    with pytest.raises(ValueError, match="custom code"):
        AutoModel.from_pretrained(TINY, subfolder="vae", trust_remote_code=True)
    shutil.copytree(os.path.join(TINY, "vae"), tmp_path / "vae")
    with open(tmp_path / "vae" / "config.json") as f:
        config = json.load(f)
    config["auto_map"] = {"AutoModel": "my_vae.MyVAE"}
    with open(tmp_path / "vae" / "config.json", "w") as f:
        json.dump(config, f)
    with pytest.raises(ValueError, match="custom code"):
        AutoModel.from_pretrained(str(tmp_path / "vae"))

    # a folder of another model class, loaded with the wrong class: say which class it is
    with pytest.raises(ValueError, match="holds the config of a Lumina2Transformer2DModel.*Load it with"):
        AutoencoderKL.from_pretrained(TINY, subfolder="transformer")
    with pytest.raises(CheckpointError, match="does not hold a Lumina2Transformer2DModel checkpoint"):
        Lumina2Transformer2DModel.from_pretrained(TINY, subfolder="vae")


# ----------------------------------------------------------------------------------------------------------------------
# mindone.transformers.AutoModel


def _gemma2_config():
    return Gemma2Config(
        hidden_size=8, intermediate_size=16, num_attention_heads=2, num_key_value_heads=1, head_dim=4,
        num_hidden_layers=1, vocab_size=64,
    )  # fmt: skip


def test_transformers_auto_model(tmp_path):
    model = mindone_transformers.AutoModel.from_config(_gemma2_config())
    assert isinstance(model, Gemma2Model) and model.dtype == ms.float32
    assert (
        mindone_transformers.AutoModel.from_config(_gemma2_config(), mindspore_dtype=ms.bfloat16).dtype == ms.bfloat16
    )
    config = _gemma2_config()
    config.dtype = "bfloat16"
    assert mindone_transformers.AutoModel.from_config(config, mindspore_dtype="auto").dtype == ms.bfloat16
    model.save_pretrained(tmp_path)
    _same_parameters(mindone_transformers.AutoModel.from_pretrained(str(tmp_path)), model)
    loaded = mindone_transformers.AutoModel.from_pretrained(
        TINY, subfolder="text_encoder", mindspore_dtype=ms.bfloat16
    )
    assert isinstance(loaded, Gemma2Model) and loaded.dtype == ms.bfloat16


def test_transformers_auto_model_errors():
    with pytest.raises(EnvironmentError, match="from_pretrained"):
        mindone_transformers.AutoModel()
    with pytest.raises(ValueError, match="model_type='llama'.*gemma2"):
        mindone_transformers.AutoModel.from_config(LlamaConfig())
    with pytest.raises(TypeError, match="PretrainedConfig"):
        mindone_transformers.AutoModel.from_config({"model_type": "gemma2"})
    with pytest.raises(EnvironmentError, match="no config.json"):
        mindone_transformers.AutoModel.from_pretrained(TINY, subfolder="missing")
    with pytest.raises(ValueError, match="trust_remote_code"):
        mindone_transformers.AutoModel.from_pretrained(TINY, subfolder="text_encoder", trust_remote_code=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        mindone_transformers.AutoModel.from_config(_gemma2_config(), foo=1)


# ----------------------------------------------------------------------------------------------------------------------
# AutoPipelineForText2Image


def test_auto_pipeline_from_pretrained(tiny_pipe):
    pipe = AutoPipelineForText2Image.from_pretrained(TINY)
    assert type(pipe) is Lumina2Pipeline
    assert type(diffusers.AutoPipelineForText2Image.from_pretrained(TINY)).__name__ == type(pipe).__name__
    kwargs = dict(prompt="a cat", height=32, width=32, num_inference_steps=2, output_type="np")
    image = pipe(generator=np.random.default_rng(0), **kwargs)[0]
    np.testing.assert_array_equal(image, tiny_pipe(generator=np.random.default_rng(0), **kwargs)[0])
    replaced = FlowMatchEulerDiscreteScheduler(shift=3.0)
    assert AutoPipelineForText2Image.from_pretrained(TINY, scheduler=replaced).scheduler is replaced


def test_auto_pipeline_from_pipe(tiny_pipe):
    new = AutoPipelineForText2Image.from_pipe(tiny_pipe)
    assert type(new) is Lumina2Pipeline and new is not tiny_pipe
    assert all(new.components[k] is v for k, v in tiny_pipe.components.items())
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(tiny_pipe.scheduler.config, shift=3.0)
    assert AutoPipelineForText2Image.from_pipe(tiny_pipe, scheduler=scheduler).scheduler is scheduler


def test_auto_pipeline_from_pipe_keeps_the_dtype_as_upstream():
    """Upstream's AutoPipeline.from_pipe does not cast (DiffusionPipeline.from_pipe casts to float32 by default)."""
    pipe = Lumina2Pipeline.from_pretrained(TINY)
    pipe.transformer.to(ms.float16)
    assert AutoPipelineForText2Image.from_pipe(pipe).transformer.dtype == ms.float16
    assert AutoPipelineForText2Image.from_pipe(pipe, mindspore_dtype=ms.float32).transformer.dtype == ms.float32


def test_auto_pipeline_errors(tiny_pipe, tmp_path):
    with pytest.raises(EnvironmentError, match="from_pipe"):
        AutoPipelineForText2Image()
    with pytest.raises(ValueError, match="perturbed-attention-guidance"):
        AutoPipelineForText2Image.from_pretrained(TINY, enable_pag=True)
    with pytest.raises(ValueError, match="ControlNet"):
        AutoPipelineForText2Image.from_pipe(tiny_pipe, controlnet=object())
    # an argument the pipeline does not take: upstream ignores it silently, the port says so
    with CaptureLogger(get_logger("mindone")) as captured:
        new = AutoPipelineForText2Image.from_pipe(tiny_pipe, foo=1)
    assert "Keyword arguments ['foo'] are not expected by Lumina2Pipeline and will be ignored" in captured.out
    assert type(new) is Lumina2Pipeline and "foo" not in new.config
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):  # as upstream
        Lumina2Pipeline.from_pipe(tiny_pipe, foo=1)
    with pytest.raises(EnvironmentError, match="model_index.json"):
        AutoPipelineForText2Image.from_pretrained(str(tmp_path))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ValueError, match="FluxPipeline: mindone.diffusers ports the text-to-image pipelines Lumina2"):
        AutoPipelineForText2Image.from_pretrained(str(tmp_path))
