"""The models of mindone.diffusers (imported lazily, as `diffusers.models`)."""

from ..._lazy import lazy_exports

_import_structure = {
    "auto_model": ["AutoModel"],
    "modeling_utils": ["ModelMixin"],
    "modeling_outputs": ["AutoencoderKLOutput", "Transformer2DModelOutput"],
    "autoencoders.autoencoder_kl": ["AutoencoderKL"],
    "transformers.transformer_lumina2": ["Lumina2Transformer2DModel"],
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _import_structure)
