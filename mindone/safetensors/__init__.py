"""Safetensors files without torch: `mindone.safetensors.mindspore` has `load_file` / `save_file` (as
`safetensors.torch`); `safe_open` and `SafetensorError` are also here, where upstream's `safetensors` has them."""

from .mindspore import SafetensorError, safe_open

__all__ = ["SafetensorError", "safe_open"]
