from .layerwise_casting import apply_layerwise_casting

__all__ = ["apply_layerwise_casting"]
