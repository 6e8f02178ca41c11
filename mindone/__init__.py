"""mindone: a MindSpore port of the diffusers Lumina-Image-2.0 stack."""

__version__ = "0.1.0"
