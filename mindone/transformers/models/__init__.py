"""The models of mindone.transformers (submodules imported lazily, as `transformers.models`)."""

from ..._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {})
