"""diffusers methods this port does not have (torch devices, offloading, other attention backends, hub upload): they
exist here so that code written for diffusers fails on the call with what to do instead, not with an AttributeError."""

from typing import Callable, Dict

from .mindspore_utils import _NO_DEVICES

_OFFLOAD = (
    "MindSpore keeps every model on the device chosen with `ms.set_context(device_target=...)`; there is no "
    "offloading."
)
_BACKENDS = (
    "attention always takes the math path (float32 softmax, chunked on CPU for large inputs) and, on Ascend, "
    "MindSpore's flash-attention kernel for float16 / bfloat16: there is no backend to choose."
)

MODEL_METHODS: Dict[str, str] = {
    "cpu": _NO_DEVICES,  # torch's `Module.cpu()` / `.cuda()` (diffusers' tests write `model.cpu().save_pretrained`)
    "cuda": _NO_DEVICES,
    "enable_group_offload": _OFFLOAD,
    "compile_repeated_blocks": "use `ms.set_context(mode=ms.GRAPH_MODE)` or `ms.jit`; in PyNative on CPU the "
    "transformer's repeated blocks of a large call already run as one compiled graph per kind of block (see the "
    "graph-mode guide).",
    "set_attention_backend": _BACKENDS,
    "reset_attention_backend": _BACKENDS,
    "enable_xformers_memory_efficient_attention": "xformers is a CUDA library for torch; " + _BACKENDS,
    "disable_xformers_memory_efficient_attention": "xformers is a CUDA library for torch; " + _BACKENDS,
    "set_use_memory_efficient_attention_xformers": "xformers is a CUDA library for torch; " + _BACKENDS,
    "enable_npu_flash_attention": _BACKENDS,
    "disable_npu_flash_attention": _BACKENDS,
    "set_use_npu_flash_attention": _BACKENDS,
    "enable_xla_flash_attention": "XLA is a torch backend; " + _BACKENDS,
    "disable_xla_flash_attention": "XLA is a torch backend; " + _BACKENDS,
    "set_use_xla_flash_attention": "XLA is a torch backend; " + _BACKENDS,
    "enable_parallelism": "context parallelism is not ported.",
    "dequantize": "quantized models are not supported by this port.",
    "push_to_hub": "save with `save_pretrained` and upload the folder with `huggingface_hub.upload_folder`.",
}

_VAE_QKV = "fused QKV projections are not ported for the VAE (its attention keeps separate `to_q` / `to_k` / `to_v`)."
# diffusers' `AutoencoderKL` also has `fuse_qkv_projections`
VAE_METHODS: Dict[str, str] = {
    "fuse_qkv_projections": _VAE_QKV,
    "unfuse_qkv_projections": _VAE_QKV,
}

PIPELINE_METHODS: Dict[str, str] = {
    "enable_model_cpu_offload": _OFFLOAD,
    "enable_sequential_cpu_offload": _OFFLOAD,
    "enable_group_offload": _OFFLOAD,
    "set_lora_device": "LoRA weights live with their model, on the device chosen with `ms.set_context`.",
    "enable_xformers_memory_efficient_attention": MODEL_METHODS["enable_xformers_memory_efficient_attention"],
    "disable_xformers_memory_efficient_attention": MODEL_METHODS["disable_xformers_memory_efficient_attention"],
    "set_use_memory_efficient_attention_xformers": MODEL_METHODS["set_use_memory_efficient_attention_xformers"],
    "push_to_hub": MODEL_METHODS["push_to_hub"],
}


def refuse_register_for_auto_class(cls, auto_class="AutoModel"):
    """Not supported by this MindSpore port (diffusers and transformers have it): it marks custom code to share on
    the Hub, and custom (remote) code is not loaded here."""
    raise NotImplementedError(
        f"`{cls.__name__}.register_for_auto_class` is not supported by this MindSpore port: custom (remote-code) "
        "classes are not loaded here (`trust_remote_code` is refused)."
    )


def unsupported_method(name: str, advice: str) -> Callable:
    def method(self, *args, **kwargs):
        raise NotImplementedError(f"`{type(self).__name__}.{name}` is not supported by this MindSpore port: {advice}")

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Not supported by this MindSpore port (diffusers has it): {advice}"
    return method


def add_unsupported_methods(cls: type, methods: Dict[str, str]) -> type:
    """Give ``cls`` a method raising ``NotImplementedError`` (with the advice) for each name it does not define."""
    for name, advice in methods.items():
        if not hasattr(cls, name):
            setattr(cls, name, unsupported_method(name, advice))
    return cls
