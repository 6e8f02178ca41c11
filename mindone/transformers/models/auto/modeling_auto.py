"""`AutoModel`: the ported model class of a checkpoint, chosen by its config's `model_type`.

Adapted from transformers v5.24 `models/auto/modeling_auto.py` and `auto_factory.py`; MindSpore changes: the mapping
holds only the models this package ports (`model_type` -> class name), and remote code is refused (it would be torch).
"""

import importlib
import os
from collections import OrderedDict
from typing import Union

from transformers import AutoConfig, PretrainedConfig

from ....diffusers.models.auto_model import instantiation_error

MODEL_MAPPING_NAMES = OrderedDict([("gemma2", "Gemma2Model")])

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "token", "revision", "subfolder")


def _model_class(config: PretrainedConfig):
    model_type = getattr(config, "model_type", None)
    class_name = MODEL_MAPPING_NAMES.get(model_type)
    if class_name is None:
        raise ValueError(
            f"Unrecognized configuration class {type(config).__name__} (model_type={model_type!r}) for AutoModel: "
            f"mindone.transformers ports the model types {', '.join(MODEL_MAPPING_NAMES)} only."
        )
    return getattr(importlib.import_module("mindone.transformers"), class_name)


def _refuse_remote_code(kwargs):
    if kwargs.pop("trust_remote_code", False):
        raise ValueError(
            "`trust_remote_code=True` is not supported: remote code is written for torch and cannot run here."
        )


class AutoModel:
    r"""
    A generic model class that is instantiated as the base model class of the ported architectures (e.g.
    [`Gemma2Model`]) by [`AutoModel.from_pretrained`] or [`AutoModel.from_config`].

    This class cannot be instantiated directly using `__init__()` (throws an error).
    """

    def __init__(self, *args, **kwargs):
        raise instantiation_error(self, "from_config(config)")

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs):
        r"""
        Instantiate the model class of `config` with random weights (no checkpoint is read).

        Args:
            config (`PretrainedConfig`): The transformers config, e.g. a `Gemma2Config`.
            mindspore_dtype (`ms.Type` or `str`, *optional*): The dtype of the floating parameters (default float32).
        """
        _refuse_remote_code(kwargs)
        if not isinstance(config, PretrainedConfig):
            raise TypeError(
                f"`config` must be a transformers `PretrainedConfig`, got {type(config).__name__}; to load a "
                "checkpoint's config use `AutoModel.from_pretrained(path)`."
            )
        return _model_class(config)._from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], *model_args, **kwargs):
        r"""
        Load a checkpoint into the ported model class its `config.json` names (`model_type`). The arguments are
        those of [`PreTrainedModel.from_pretrained`] (e.g. `subfolder`, `variant`, `mindspore_dtype`, `config`).

        Examples:

        ```py
        >>> from mindone.transformers import AutoModel

        >>> text_encoder = AutoModel.from_pretrained("Alpha-VLLM/Lumina-Image-2.0", subfolder="text_encoder")
        ```
        """
        _refuse_remote_code(kwargs)
        config = kwargs.pop("config", None)
        if not isinstance(config, PretrainedConfig):
            hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
            path = os.fspath(pretrained_model_name_or_path if config is None else config)
            missing = os.path.isdir(path) and not os.path.isfile(
                os.path.join(path, hub.get("subfolder", ""), "config.json")
            )
            try:
                if missing:
                    raise OSError(f"{os.path.join(path, hub.get('subfolder', ''), 'config.json')} does not exist")
                config = AutoConfig.from_pretrained(path, **hub)
            except OSError as e:
                raise EnvironmentError(
                    f"Cannot load the config of {path!r} (subfolder={hub.get('subfolder', '')!r}): no config.json in "
                    f"that folder, and it is not a repo id available in the Hugging Face cache or on the Hub. ({e})"
                ) from None
        return _model_class(config).from_pretrained(
            pretrained_model_name_or_path, *model_args, config=config, **kwargs
        )
