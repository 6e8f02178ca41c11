"""The Lumina-Image-2.0 pipeline (imported lazily, as `diffusers.pipelines.lumina2`)."""

from ...._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"pipeline_lumina2": ["Lumina2Pipeline"]})
