"""mindone.transformers: the transformers models the Lumina-Image-2.0 stack needs (Gemma2), in MindSpore.

Public names are imported lazily, so `import mindone.transformers` loads no model; accessing `Gemma2Model` imports the
Gemma2 module only. Configs and tokenizers come from the `transformers` package itself.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__version__ = "5.24.0"

_import_structure = {
    "modeling_utils": ["PreTrainedModel"],
    "modeling_outputs": ["BaseModelOutputWithPast"],
    "models.auto.modeling_auto": ["AutoModel"],
    "models.gemma2.modeling_gemma2": ["Gemma2Model", "Gemma2PreTrainedModel"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _import_structure)


if TYPE_CHECKING:  # pragma: no cover
    from .modeling_outputs import BaseModelOutputWithPast  # noqa: F401
    from .modeling_utils import PreTrainedModel  # noqa: F401
    from .models.auto.modeling_auto import AutoModel  # noqa: F401
    from .models.gemma2.modeling_gemma2 import Gemma2Model, Gemma2PreTrainedModel  # noqa: F401
