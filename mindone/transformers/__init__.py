"""mindone.transformers: the transformers models the Lumina-Image-2.0 stack needs (Gemma2), in MindSpore.

Public names are imported lazily, so `import mindone.transformers` loads no model; accessing `Gemma2Model` imports the
Gemma2 module only. Configs and tokenizers come from the `transformers` package itself.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "5.24.0"

_import_structure = {
    "modeling_utils": ["PreTrainedModel"],
    "modeling_outputs": ["BaseModelOutputWithPast"],
    "models.gemma2.modeling_gemma2": ["Gemma2Model", "Gemma2PreTrainedModel"],
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
    from .modeling_outputs import BaseModelOutputWithPast  # noqa: F401
    from .modeling_utils import PreTrainedModel  # noqa: F401
    from .models.gemma2.modeling_gemma2 import Gemma2Model, Gemma2PreTrainedModel  # noqa: F401
