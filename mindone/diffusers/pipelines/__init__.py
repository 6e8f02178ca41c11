"""The pipelines of mindone.diffusers (imported lazily, as `diffusers.pipelines`)."""

from ..._lazy import lazy_exports

_import_structure = {
    "auto_pipeline": ["AutoPipelineForText2Image"],
    "pipeline_utils": ["DiffusionPipeline", "ImagePipelineOutput"],
    "lumina2.pipeline_lumina2": ["Lumina2Pipeline"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _import_structure)
