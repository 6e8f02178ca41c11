"""The autoencoders of mindone.diffusers (imported lazily, as `diffusers.models.autoencoders`)."""

from ...._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"autoencoder_kl": ["AutoencoderKL"]})
