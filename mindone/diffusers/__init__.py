"""mindone.diffusers: the Lumina-Image-2.0 closure of diffusers v0.42.1, in MindSpore.

Public names are imported lazily (as diffusers does), so `import mindone.diffusers` stays cheap.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__version__ = "0.42.1"

_import_structure = {
    "configuration_utils": ["ConfigMixin", "FrozenDict", "register_to_config"],
    "image_processor": ["VaeImageProcessor"],
    "models.auto_model": ["AutoModel"],
    "models.modeling_utils": ["ModelMixin"],
    "models.modeling_outputs": ["Transformer2DModelOutput", "AutoencoderKLOutput"],
    "models.transformers.transformer_lumina2": ["Lumina2Transformer2DModel"],
    "models.autoencoders.autoencoder_kl": ["AutoencoderKL"],
    "schedulers.scheduling_utils": ["SchedulerMixin"],
    "utils": ["logging"],
    "schedulers.scheduling_flow_match_euler_discrete": ["FlowMatchEulerDiscreteScheduler"],
    "pipelines.auto_pipeline": ["AutoPipelineForText2Image"],
    "pipelines.pipeline_utils": ["DiffusionPipeline", "ImagePipelineOutput"],
    "pipelines.lumina2.pipeline_lumina2": ["Lumina2Pipeline"],
    "loaders.lora_pipeline": ["Lumina2LoraLoaderMixin"],
    "loaders.peft": ["PeftAdapterMixin"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _import_structure)


if TYPE_CHECKING:  # pragma: no cover (static imports for type checkers and the API docs' mkdocstrings)
    from .configuration_utils import ConfigMixin, FrozenDict, register_to_config  # noqa: F401
    from .image_processor import VaeImageProcessor  # noqa: F401
    from .loaders.lora_pipeline import Lumina2LoraLoaderMixin  # noqa: F401
    from .loaders.peft import PeftAdapterMixin  # noqa: F401
    from .models.auto_model import AutoModel  # noqa: F401
    from .models.autoencoders.autoencoder_kl import AutoencoderKL  # noqa: F401
    from .models.modeling_outputs import AutoencoderKLOutput, Transformer2DModelOutput  # noqa: F401
    from .models.modeling_utils import ModelMixin  # noqa: F401
    from .models.transformers.transformer_lumina2 import Lumina2Transformer2DModel  # noqa: F401
    from .pipelines.auto_pipeline import AutoPipelineForText2Image  # noqa: F401
    from .pipelines.lumina2.pipeline_lumina2 import Lumina2Pipeline  # noqa: F401
    from .pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput  # noqa: F401
    from .schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler  # noqa: F401
    from .schedulers.scheduling_utils import SchedulerMixin  # noqa: F401
    from .utils import logging  # noqa: F401
