"""MindSpore helpers shared across models and pipelines: seeded noise from NumPy generators, device checks, dtypes."""

import numbers
from typing import List, Optional, Tuple, Union

import numpy as np

import mindspore as ms
from mindspore import mint

from . import logging

logger = logging.get_logger(__name__)


def randn_tensor(
    shape: Union[Tuple, List],
    generator: Optional[Union[List[np.random.Generator], np.random.Generator]] = None,
    dtype: Optional[ms.Type] = None,
) -> ms.Tensor:
    """Standard-normal noise drawn from ``numpy.random.Generator``(s), as mindone's ``randn_tensor``.

    A list of generators draws one sample of the batch from each (at least ``shape[0]`` of them; a list of one is that
    generator, as upstream). The draw is made in float32 then cast to ``dtype``, so results do not depend on the
    compute dtype. Without a generator, the noise comes from NumPy's global random state (``np.random.seed`` makes it
    repeatable, as ``torch.manual_seed`` does for diffusers' draws without a generator).
    """
    shape = tuple(shape)
    dtype = dtype or ms.float32
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]  # as upstream: a list of one generator is that generator
    if isinstance(generator, (list, tuple)):
        if len(generator) < shape[0]:
            raise ValueError(
                f"You have passed a list of generators of length {len(generator)}, but requested an effective batch"
                f" size of {shape[0]}. Make sure the batch size matches the length of the generators."
            )
        for i, g in enumerate(generator):
            if not isinstance(g, np.random.Generator):
                raise TypeError(
                    f"`generator` must be a numpy.random.Generator (or a list of them), but element {i} of the list "
                    f"is a {type(g)}: use `np.random.default_rng(seed)`."
                )
        # as upstream, sample i comes from generator i (generators beyond the batch are not used)
        arr = np.stack([g.standard_normal((1,) + shape[1:], dtype=np.float32)[0] for g in generator[: shape[0]]])
    else:
        if generator is None:
            arr = np.random.standard_normal(shape).astype(np.float32)
        elif not isinstance(generator, np.random.Generator):
            raise TypeError(
                f"`generator` must be a numpy.random.Generator (or a list of them), got {type(generator)}: use "
                "`np.random.default_rng(seed)`."
            )
        else:
            arr = generator.standard_normal(shape, dtype=np.float32)
    return ms.Tensor(arr).astype(dtype)


_FLOATS = (ms.float16, ms.bfloat16, ms.float32, ms.float64)


def promote_types(*dtypes: ms.Type) -> ms.Type:
    """The dtype torch promotes tensors (of one or more dimensions) of these dtypes to, e.g. in `torch.cat` or `a * b`.

    bool < integers < floats; the widest float wins, and float16 with bfloat16 gives float32. MindSpore's kernels take
    one dtype (Concat) or promote differently, and a dtype mismatch in PyNative fails only at the next synchronisation.
    """
    floats = [d for d in dtypes if d in _FLOATS]
    if floats:
        if ms.float64 in floats:
            return ms.float64
        if ms.float32 in floats or (ms.float16 in floats and ms.bfloat16 in floats):
            return ms.float32
        return floats[0]
    ints = [d for d in dtypes if d != ms.bool_]
    if not ints:
        return ms.bool_
    promoted = np.result_type(*(np.dtype(str(d).lower()) for d in ints))  # e.g. uint8 with int8: int16, as torch
    return getattr(ms, promoted.name)


def is_ascend() -> bool:
    return ms.get_context("device_target") == "Ascend"


def tanh(x: ms.Tensor, in_float64: bool) -> ms.Tensor:
    """`tanh`, computed in float64 when `in_float64` (on CPU: callers decide with `not is_ascend()` when they are built,
    since the device cannot be read inside a graph).

    MindSpore 2.10's CPU float32 Tanh is off by up to 1e-4 (relative L2 ~1.3e-5 on N(0, 2) inputs, torch's 2e-8; it
    returns -1.0000068 at -4.99); its float64 kernel is exact to float32, in PyNative and in graphs.
    """
    if in_float64:
        return mint.tanh(x.astype(ms.float64)).astype(x.dtype)
    return mint.tanh(x)


def exp(x: ms.Tensor, in_float64: bool) -> ms.Tensor:
    """`exp`, computed in float64 when `in_float64` (on CPU, as `tanh` above).

    MindSpore 2.10's CPU float32 Exp is off by 8-127 ulp (relative 1.7e-6 at -1, 1.1e-5 at -29.5; torch under 0.5
    ulp): `var - 1 - logvar` in the VAE posterior's KL magnified it to 1.2e-5 of the result.
    """
    if in_float64:
        return mint.exp(x.astype(ms.float64)).astype(x.dtype)
    return mint.exp(x)


def auto_dtype_as_float32(dtype):
    """`dtype`, or float32 (with upstream's warning) for `"auto"`: diffusers loads its models and pipelines in float32
    when given a dtype argument that is not a dtype."""
    if isinstance(dtype, str) and dtype == "auto":
        logger.warning(f"Passed `mindspore_dtype` {dtype!r} is not a MindSpore dtype. Defaulting to float32.")
        return ms.float32
    return dtype


_NOT_GIVEN = object()


def _comparable_dtype(dtype):
    if isinstance(dtype, dict) or (isinstance(dtype, str) and dtype == "auto"):
        return dtype
    try:
        return str_to_dtype(dtype)
    except ValueError:
        return dtype


def pop_mindspore_dtype(kwargs, mindspore_dtype=_NOT_GIVEN):
    """The dtype argument of a loading call: `mindspore_dtype=`, or `dtype=` (upstream's name since diffusers 0.36
    and transformers 5), taking the same values (a dtype, its name, a dict per component, "auto"). Both names with
    different values raise. Pass `mindspore_dtype` when the caller has it as a named parameter; otherwise it is popped
    from `kwargs`."""
    if mindspore_dtype is _NOT_GIVEN:
        mindspore_dtype = kwargs.pop("mindspore_dtype", None)
    dtype = kwargs.pop("dtype", None)
    if dtype is None:
        return mindspore_dtype
    if mindspore_dtype is not None and _comparable_dtype(mindspore_dtype) != _comparable_dtype(dtype):
        raise ValueError(
            f"`dtype={dtype!r}` and `mindspore_dtype={mindspore_dtype!r}` disagree: pass one of them (they are aliases)."
        )
    return dtype


def dtype_to_str(dtype) -> str:
    return {ms.float32: "float32", ms.float16: "float16", ms.bfloat16: "bfloat16", ms.float64: "float64"}.get(
        dtype, str(dtype)
    )


_STR_TO_DTYPE = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16, "float64": ms.float64}


def str_to_dtype(name):
    """Accept a floating MindSpore dtype or its name ("bfloat16", "torch.bfloat16", "fp32"...); other dtypes raise a
    `ValueError`, as upstream's `torch_dtype` does (parameters cast to integers would not run)."""
    if name is None:
        return name
    if isinstance(name, ms.dtype.Type):
        if name not in _STR_TO_DTYPE.values():
            raise ValueError(
                f"{name} is not a floating point dtype: use ms.float32, ms.float16 or ms.bfloat16 (or ms.float64)."
            )
        return name
    key = str(name).replace("torch.", "").replace("mindspore.", "").lower()
    key = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16", "float": "float32"}.get(
        key, key
    )
    if key not in _STR_TO_DTYPE:
        raise ValueError(f"Unknown dtype {name!r}: use ms.float32, ms.float16 or ms.bfloat16.")
    return _STR_TO_DTYPE[key]


def is_number(value) -> bool:
    """A Python / NumPy number, or a one-element tensor or array (as torch's 0-d tensors work upstream)."""
    if isinstance(value, (ms.Tensor, np.ndarray)):
        return value.size == 1 and (isinstance(value, ms.Tensor) or value.dtype.kind in "biuf")
    return isinstance(value, numbers.Real)


def type_name(value) -> str:
    """The qualified type of `value` for error messages: `torch.Tensor` and `mindspore.Tensor` are both `Tensor`."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


_DEVICE_NAMES = ("cpu", "cuda", "npu", "mps", "xpu", "meta", "hpu", "xla", "ascend", "gpu")
_NO_DEVICES = (
    "MindSpore has no device placement: remove the device call (`.to(device)`, `.cpu()`, `.cuda()`) and choose the "
    "device once with `ms.set_context(device_target=...)` (`.to` here only casts, e.g. `.to(ms.float32)`)."
)


def _is_device(value) -> bool:
    if type(value).__name__ == "device":  # a torch.device
        return True
    return isinstance(value, str) and value.split(":")[0].strip().lower() in _DEVICE_NAMES


def to_arguments(args: tuple, kwargs: dict) -> Optional[ms.Type]:
    """The dtype of a `.to(...)` call written for torch / diffusers: `.to(dtype)` or `.to(dtype=...)`; a device
    (`"cuda"`, `device=`, `.to("cuda", dtype)`) raises a `TypeError` saying there is no device placement. `None`: no
    dtype given (nothing changes, as torch's `to()`)."""
    # a `None` device is no device (torch's `.to(None, dtype)`, `.to(device=None, dtype=...)`)
    args = tuple(a for a in args if a is not None)
    if kwargs.get("device") is None:
        kwargs = {k: v for k, v in kwargs.items() if k != "device"}
    if "device" in kwargs or any(_is_device(a) for a in args):
        raise TypeError(_NO_DEVICES)
    unknown = set(kwargs) - {"dtype", "silence_dtype_warnings", "non_blocking", "copy"}
    if unknown:
        raise TypeError(f"`to` got unexpected keyword arguments {sorted(unknown)}: it takes a dtype.")
    dtypes = list(args) + ([kwargs["dtype"]] if kwargs.get("dtype") is not None else [])
    if len(dtypes) > 1:
        raise TypeError(f"`to` takes one dtype, got {dtypes!r}.")
    return to_dtype_argument(dtypes[0]) if dtypes else None


def to_dtype_argument(dtype) -> ms.Type:
    """The dtype of a `.to(dtype)` call: a floating MindSpore dtype or its name; anything else raises a `TypeError`
    (torch's `Module.to` refuses integer dtypes with one; there is no device argument here)."""
    if _is_device(dtype):
        raise TypeError(_NO_DEVICES)
    try:
        target = str_to_dtype(dtype)
    except ValueError as error:
        raise TypeError(f"`to` takes a floating MindSpore dtype such as ms.float32, got {dtype!r}: {error}") from None
    if not isinstance(target, ms.dtype.Type):
        raise TypeError(f"`to` takes a MindSpore dtype such as ms.float32, got {dtype!r} (no device argument).")
    return target
