from .modeling_gemma2 import Gemma2Model, Gemma2PreTrainedModel

__all__ = ["Gemma2Model", "Gemma2PreTrainedModel"]
