from .modeling_auto import MODEL_MAPPING_NAMES, AutoModel

__all__ = ["AutoModel", "MODEL_MAPPING_NAMES"]
