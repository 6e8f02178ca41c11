# Copyright 2025 The HuggingFace Inc. team.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""AutoPipelineForText2Image: the text-to-image pipeline of a pipeline folder or of another pipeline's components.

Adapted from diffusers v0.42.1 `pipelines/auto_pipeline.py`; MindSpore changes: the mapping holds the pipelines this
package ports (class names, imported on use), and ControlNet / PAG variants, which are not ported, raise.
"""

import importlib
import os
from collections import OrderedDict
from typing import Union

from ..configuration_utils import ConfigMixin
from ..models.auto_model import instantiation_error
from ..utils import logging, pop_mindspore_dtype, str_to_dtype

logger = logging.get_logger(__name__)

AUTO_TEXT2IMAGE_PIPELINES_MAPPING = OrderedDict([("lumina2", "Lumina2Pipeline")])

_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "local_files_only", "revision")


def _get_task_class(mapping, pipeline_class_name: str):
    """The pipeline class of `mapping` for the model family of `pipeline_class_name` (e.g. `Lumina2Pipeline`)."""
    for class_name in mapping.values():
        if class_name == pipeline_class_name:
            return getattr(importlib.import_module("mindone.diffusers"), class_name)
    raise ValueError(
        f"AutoPipeline can't find a pipeline linked to {pipeline_class_name}: mindone.diffusers ports the text-to-image"
        f" pipelines {', '.join(mapping.values())} only."
    )


def _refuse_variants(kwargs, class_name: str):
    if kwargs.pop("enable_pag", False):
        raise ValueError(
            f"`enable_pag=True`: mindone.diffusers has no perturbed-attention-guidance variant of {class_name}."
        )
    if kwargs.get("controlnet") is not None:
        raise ValueError(f"`controlnet`: mindone.diffusers has no ControlNet variant of {class_name}.")
    kwargs.pop("controlnet", None)


class AutoPipelineForText2Image(ConfigMixin):
    r"""
    [`AutoPipelineForText2Image`] is a generic pipeline class that instantiates a text-to-image pipeline class. The
    specific underlying pipeline class is automatically selected from either the
    [`~AutoPipelineForText2Image.from_pretrained`] or [`~AutoPipelineForText2Image.from_pipe`] methods.

    This class cannot be instantiated using `__init__()` (throws an error).
    """

    config_name = "model_index.json"

    def __init__(self, *args, **kwargs):
        raise instantiation_error(self, "from_pipe(pipeline)")

    @classmethod
    def from_pretrained(cls, pretrained_model_or_path: Union[str, os.PathLike], **kwargs):
        r"""
        Load the text-to-image pipeline of a pipeline folder (chosen by its `model_index.json`'s `_class_name`). The
        arguments are those of [`DiffusionPipeline.from_pretrained`] (e.g. `mindspore_dtype`, `variant`, components).

        Examples:

        ```py
        >>> import mindspore as ms
        >>> from mindone.diffusers import AutoPipelineForText2Image

        >>> pipe = AutoPipelineForText2Image.from_pretrained("Alpha-VLLM/Lumina-Image-2.0", mindspore_dtype=ms.bfloat16)
        ```
        """
        hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        config = cls.load_config(pretrained_model_or_path, subfolder=kwargs.get("subfolder"), **hub)
        orig_class_name = config["_class_name"]
        _refuse_variants(kwargs, orig_class_name)
        text_2_image_cls = _get_task_class(AUTO_TEXT2IMAGE_PIPELINES_MAPPING, orig_class_name)
        return text_2_image_cls.from_pretrained(pretrained_model_or_path, **kwargs)

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        r"""
        The text-to-image pipeline built from the components of `pipeline` (shared, not copied).

        Arguments:
            pipeline (`DiffusionPipeline`): The pipeline whose components and configuration the new one takes.
            mindspore_dtype (`ms.Type` or `str`, *optional*):
                Cast the new pipeline (and so the shared models) to this dtype. Upstream leaves the dtype as it is
                here and ignores `torch_dtype`; without `mindspore_dtype` nothing is cast.
            kwargs (remaining dictionary of keyword arguments, *optional*):
                Components or `__init__` arguments replacing those of `pipeline`.
        """
        original_cls_name = pipeline.__class__.__name__
        _refuse_variants(kwargs, original_cls_name)
        text_2_image_cls = _get_task_class(AUTO_TEXT2IMAGE_PIPELINES_MAPPING, original_cls_name)
        dtype = str_to_dtype(pop_mindspore_dtype(kwargs))
        expected_modules, optional_kwargs = text_2_image_cls._get_signature_keys(text_2_image_cls)
        unused = sorted(k for k in kwargs if k not in expected_modules and k not in optional_kwargs)
        if unused:
            # upstream drops them silently (`DiffusionPipeline.from_pipe` raises a `TypeError`)
            logger.warning(
                f"Keyword arguments {unused} are not expected by {text_2_image_cls.__name__} and will be ignored."
            )
            kwargs = {k: v for k, v in kwargs.items() if k not in unused}
        new_pipeline = text_2_image_cls._from_pipe(pipeline, **kwargs)
        if dtype is not None:
            new_pipeline.to(dtype)
        return new_pipeline
