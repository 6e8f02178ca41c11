"""The diffusion transformers of mindone.diffusers (imported lazily, as `diffusers.models.transformers`)."""

from ...._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"transformer_lumina2": ["Lumina2Transformer2DModel"]})
