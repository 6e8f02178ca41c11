"""Loader mixins of mindone.diffusers (diffusers v0.42.1 `loaders/__init__.py`, the Lumina2 closure).

Names are imported lazily, as upstream does, so importing a model module that uses one mixin does not import them all.
"""

import importlib
from typing import TYPE_CHECKING

_import_structure = {
    "lora_base": ["LoraBaseMixin"],
    "lora_pipeline": ["Lumina2LoraLoaderMixin"],
    "peft": ["PeftAdapterMixin"],
    "single_file_model": ["FromOriginalModelMixin"],
}
_name_to_module = {name: module for module, names in _import_structure.items() for name in names}
__all__ = sorted(_name_to_module)


def __getattr__(name):
    if name in _name_to_module:
        module = importlib.import_module(f".{_name_to_module[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from .lora_base import LoraBaseMixin  # noqa: F401
    from .lora_pipeline import Lumina2LoraLoaderMixin  # noqa: F401
    from .peft import PeftAdapterMixin  # noqa: F401
    from .single_file_model import FromOriginalModelMixin  # noqa: F401
