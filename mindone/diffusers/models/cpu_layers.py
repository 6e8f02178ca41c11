# Copyright 2025 The HuggingFace Inc. team.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Convolution, group norm and zero padding with fast CPU paths: the MindSpore 2.10 CPU workarounds of the VAE, in one
place (no diffusers counterpart).

`Conv2d` and `GroupNorm` keep torch's parameter names and shapes (`weight`, `bias`), so checkpoints load unchanged. On
other devices they run MindSpore's kernels; on CPU (decided at construction: the device cannot be read in a graph):

- Conv2D, CPU with AVX-512: MindSpore hands oneDNN plain NCHW layouts, and oneDNN 3.10 as MindSpore builds it
  (threadpool runtime) then takes its reference path (`jit_uni_ncsp:conv+ref`), ~100x slower than a GEMM for kernels
  larger than 1x1 -> im2col (`ops.unfold`) + `mint.matmul` in row strips (bounded column buffer), or one GEMM of all
  kernel taps + shifted sums when the output has few channels. 1x1 kernels keep the native kernel (fast). The weight is
  multiplied as 2-D x 3-D (BatchMatMul): 2-D x 2-D MatMul is ~4x slower on CPU. Where oneDNN's ISA is AVX2 or lower
  (no AVX-512, or `ONEDNN_MAX_CPU_ISA=AVX2` set before the first MindSpore op) it takes its GEMM convolution
  (`gemm:jit`), faster and leaner than the composite: the native kernel is kept (`native_conv_is_fast`).
- Nearest 2x upsampling + 3x3 convolution (the decoder's upsamplers), CPU with the composite convolution: four 2x2
  convolutions of the low-resolution input, one per output phase (4/9 of the multiplies, no upsampled copy).
- GroupNorm, CPU: on large inputs the kernel is ~5x slower than torch's -> two-pass group statistics with GEMV
  reductions over short blocks, summed in float64 (accurate like torch's, flat images included) and normalisation +
  affine as one inference `ops.batch_norm`.
- PadV3 (`ops.pad`), CPU: ~10x slower than copying -> zero padding by concatenation.
- Broadcasting Mul / Add, CPU: slow in PyNative and holding output-sized buffers per kernel in compiled graphs ->
  `broadcast_mul` / `broadcast_add` tile the smaller operand first.
- ReduceMean over the last axis and ReverseV2 (`mint.flip`), CPU: slow kernels -> `mean_last_axis` (GEMV with a ones
  vector) and `pair_swap_matrix` (the rotary pair swap as a matmul with a permutation).
- Dense (`mint.nn.Linear`), CPU, PyNative: 30-50% slower than the MatMul kernel at transformer sizes (2x for few
  rows) -> `Linear` multiplies with `MatMul(transpose_b=True)` + `BiasAdd` (compiled graphs choose MatMul either way).
- PyNative runs these composites several times slower than a compiled graph (per-op overhead; slicing and
  concatenation ~10-20x slower), so on large inputs they run as `ms.jit` functions (compiled once per shape, ~0.5 s;
  inlined when the caller is itself compiled); small inputs run op by op (and group norm on its kernel).
- The CPU memory pool reuses freed memory poorly across graphs and op-by-op calls (docs/mindspore_notes.md): op by op
  with one helper graph per shape, a 512x512 FLUX VAE decode grew by 3.6 GB (torch: 1.0) and took 1.4x torch's time.
  So a VAE encoder / decoder called in PyNative on a large input runs as one compiled graph (`CompiledWhenLarge`: 1.7
  GB, 1.2x); Gemma2 does the same. The Lumina2 transformer compiles its large blocks instead, one graph per kind of
  block bound to each block's parameters in turn (`shared_graphs`): MindSpore's compiler keeps memory per compiled
  graph, and a graph per layer (or of all layers) cost 0.3-0.8 GB more. Compiled cells give the C heap that compiling
  freed back to the system before their graph runs (`ReleasesHeapAfterCompile`).
"""

import contextlib
import ctypes
import functools
import os
import platform
import types
from typing import Optional, Tuple

import mindspore as ms
from mindspore import mint, nn, ops
from mindspore.graph.api import _pynative_executor
from mindspore.ops.primitive import constexpr

from ..utils.mindspore_utils import dtype_to_str, type_name

# floats in one im2col strip (256 MiB in float32)
IM2COL_BUFFER_ELEMENTS = 1 << 26
# below this size (im2col elements of a convolution, input elements of a group norm) the CPU paths run op by op and
# group norm keeps its native kernel: compiling a graph per shape (~0.5 s) would cost more than it saves
SMALL_ELEMENTS = 1 << 20
# from this many elements in its largest activation, a `CompiledWhenLarge` cell called in PyNative on CPU runs as one
# compiled graph (a 512x512 FLUX VAE decode: 128 x 512 x 512 = 2 ** 25)
WHOLE_GRAPH_ELEMENTS = 1 << 24


def _marker():
    return 0


@constexpr(check=False)
def _is_none(value) -> bool:
    return value is None


def _in_graph() -> bool:
    """True in code being compiled, False in PyNative (what `mindspore.graph.api._run_in_jit` does, whose inner import
    its own graph parser rejects): a constexpr sees a Python function as None in a graph."""
    return _is_none(_marker)


def _arg(param: Optional[ms.Tensor]) -> Optional[ms.Tensor]:
    # a Parameter passed to an `ms.jit` function is part of the compile key: every layer compiled a graph of its own
    # (~0.35 s each), and each kept its working memory (VAE decode at 512x512: 6.0 -> 3.3 GB peak growth). A product by 1
    # is an exact, cheap copy (weights are small next to activations) that keeps gradients. Inside a compiled graph
    # (the helper is inlined there) the parameter itself is passed: the copies were scheduled early and cost ~0.09 GB
    # of the 512x512 FLUX VAE decode.
    if param is None or _in_graph():
        return param
    return param * 1


def _on_cpu() -> bool:
    return ms.get_context("device_target") == "CPU"


def check_cpu_compute_dtype(model: nn.Cell, dtype: ms.Type) -> None:
    """A bfloat16 model cannot run on MindSpore's CPU backend (2.10: no bfloat16 MatMul / Gather kernels): say so
    before the first kernel fails with MindSpore's own message."""
    if dtype == ms.bfloat16 and _on_cpu():
        raise TypeError(
            f"{type(model).__name__} holds bfloat16 parameters, which MindSpore cannot compute on CPU. Load it with "
            "`mindspore_dtype=ms.float32` (or call `.to(ms.float32)`); bfloat16 compute is for Ascend."
        )


def check_batch_inputs(model: nn.Cell, **inputs) -> None:
    """Inputs of a model call are MindSpore tensors with at least one sample. A NumPy array would reach a dtype check
    that compares NumPy and MindSpore dtypes; an empty batch fails in a kernel (MindSpore's convolutions and reshapes
    refuse zero-size inputs; upstream's attention reshapes fail too)."""
    for name, value in inputs.items():
        if not isinstance(value, ms.Tensor):
            raise TypeError(
                f"`{name}` must be a mindspore.Tensor, got {type_name(value)}: wrap it with `ms.Tensor(...)`."
            )
        if value.ndim and value.shape[0] == 0:
            raise ValueError(
                f"`{name}` has an empty batch (shape {value.shape}): {type(model).__name__} needs at least one sample."
            )


def check_input_dtype(model: nn.Cell, dtype: ms.Type, **inputs) -> None:
    """Floating inputs in another dtype than the model's parameters fail inside the first matmul / convolution (as in
    torch): name the input and the cast instead."""
    for name, value in inputs.items():
        if value is not None and value.dtype != dtype:
            raise ValueError(
                f"`{name}` is {value.dtype} but the parameters of {type(model).__name__} are {dtype}: cast the input "
                f"(`{name}.astype(ms.{dtype_to_str(dtype)})`) or the model (`.to(...)`)."
            )


# oneDNN ISA names (`ONEDNN_MAX_CPU_ISA`) at or below which its NCHW float32 convolution is the GEMM one
_GEMM_CONV_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


@functools.lru_cache(maxsize=None)
def native_conv_is_fast() -> bool:
    """Whether MindSpore's CPU Conv2D kernel is fast here (see the module notes): True on x86-64 when oneDNN's ISA is
    capped at AVX2 or below by `ONEDNN_MAX_CPU_ISA` (or the older `DNNL_MAX_CPU_ISA`), or the CPU has no AVX-512. Other
    CPUs (AVX-512, or not x86) use the im2col composite. The variable only takes effect when set before MindSpore runs
    its first CPU kernel."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if isa in _GEMM_CONV_ISAS:
        return True
    flags = _cpu_flags()
    return flags is not None and "avx512f" not in flags


def _cpu_flags() -> Optional[set]:
    """The CPU feature flags of `/proc/cpuinfo` (Linux), None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):
        return None


def release_free_heap() -> None:
    """Return the C heap's free pages to the system (glibc `malloc_trim`; a no-op elsewhere). Compiling a large graph
    leaves hundreds of MB of heap freed but resident that the run cannot use (MindSpore's memory pool has mappings of
    its own): trimmed between compiling and running, the 512x512 FLUX VAE decode peaked ~0.15 GB lower."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class ReleasesHeapAfterCompile:
    """Mixin for an `nn.Cell`: `release_free_heap` after each fresh compile of the cell's graph (a GRAPH_MODE call,
    `compile_and_run` from PyNative), before the graph first runs. Compiling the real-width 2+2+2-layer Lumina2
    transformer in GRAPH_MODE then grew the process by 0.79 GB instead of 0.94."""

    def compile(self, *args, **kwargs):
        # the phase names the compiled graph: MindSpore's Cell starts with `training=False` but phase "train" (and
        # `set_train` sets the phase of the cell it is called on only), so a graph compiled for inference was reused
        # after `set_train(True)` (LoRA dropout never applied)
        self._phase = "train" if self.training else "predict"
        compiled = len(self.compile_cache)
        super().compile(*args, **kwargs)
        if len(self.compile_cache) > compiled:
            release_free_heap()


# MindSpore's own attributes of a Cell, and those it adds when the cell compiles (`current_phase` names the cell's
# compiled graph: counted as a constant, it made a compiled block differ from the blocks that had not compiled yet, so
# each call compiled the graph of one more block of a kind)
_CELL_INTERNALS = (frozenset(vars(nn.Cell())) | {"current_phase", "sequence_modified"}) - {"training"}
_BY_IDENTITY = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial, type)


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, ms.dtype.Type))


def _constant_key(value, depth: int = 0):
    """A hashable stand-in for a Python value a compiled `construct` folds in as a constant: the value for numbers,
    strings, dtypes and None, element-wise for tuples / lists / dicts, the type and attributes of a plain Python object
    (an attention processor and what it holds, two levels deep), the type of a MindSpore object (primitives: equal for
    layers built alike) and otherwise the object's identity (two objects never pass for equal)."""
    if _is_scalar(value):
        return value
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_constant_key(v, depth) for v in value)
    if isinstance(value, dict):
        return dict, tuple((_constant_key(k, depth), _constant_key(v, depth)) for k, v in value.items())
    if type(value).__module__.startswith("mindspore"):
        return type(value)
    if depth < 2 and not isinstance(value, _BY_IDENTITY) and hasattr(value, "__dict__"):
        attributes = sorted(vars(value).items(), key=lambda item: item[0])
        return type(value), tuple((k, _constant_key(v, depth + 1)) for k, v in attributes)
    return "id", id(value)


def graph_signature(cell: nn.Cell) -> tuple:
    """What a compiled graph of `cell.construct` depends on besides its inputs: the names and types of its sub-cells
    (LoRA adapters included), their own scalar Python attributes (flags, sizes, scales, the training flag), their
    attention processors with what those hold (`set_processor`, or a processor's settings changed by hand), and the
    names, shapes and dtypes of its parameters. Cells with equal signatures can run one compiled graph
    (`shared_graphs`)."""
    cells = tuple((name, type(sub_cell), _cell_constants(sub_cell)) for name, sub_cell in cell.cells_and_names())
    params = tuple((name, tuple(param.shape), param.dtype) for name, param in cell.parameters_and_names())
    return cells, params


def _cell_constants(cell: nn.Cell) -> tuple:
    # the public scalars (and tuples of them) a `construct` may fold in, without MindSpore's own (`arguments_key`,
    # `is_top_cell`... change as graphs compile) and without containers that name the layer (a LoRA layer's `kwargs`
    # holds its module path: every layer would compile its own graph), plus the attention processor
    attributes = []
    for k, v in sorted(vars(cell).items(), key=lambda item: item[0]):
        if k == "processor":
            attributes.append((k, _constant_key(v)))
        elif not k.startswith("_") and k not in _CELL_INTERNALS:
            if _is_scalar(v) or (isinstance(v, tuple) and all(_is_scalar(x) for x in v)):
                attributes.append((k, v))
    return tuple(attributes)


@contextlib.contextmanager
def shared_graphs(*layer_lists):
    """Within this block, a layer of one of `layer_lists` (lists of layers built with the same arguments, as a model's
    `CellList` of blocks) that takes the compiled path runs through `call_shared_graph`: with the compiled graph of the
    first layer of its list with the same `graph_signature` (its template), bound to its own parameters for the call.

    MindSpore's compiler keeps memory per compiled graph and leaves much of what it allocates freed but not returned to
    the system (see docs/mindspore_notes.md), and compiling takes as long per layer: the real-width Lumina2 transformer
    grew by 1.49 GB at 26 layers compiled as one graph, 2.0 GB with a graph per block, 0.67 GB with one graph per kind
    of block (first call 86, 150 and 68 s).

    Enter it only for calls that `compile_this_call` lets run compiled (not while PyNative records gradients)."""
    marked = []
    try:
        for layers in layer_lists:
            templates = {}
            for layer in layers:
                layer.__dict__["_graph_template"] = templates.setdefault(graph_signature(layer), layer)
                marked.append(layer)
        yield
    finally:
        for layer in marked:
            layer.__dict__.pop("_graph_template", None)


def call_shared_graph(cell: nn.Cell, *args):
    """`cell(*args)` as one compiled graph shared by the layers alike (see `shared_graphs`; `cell` must be inside that
    block): the graph of `cell`'s template, compiled once per input signature through the cell graph executor, which
    binds the parameters' current storage at each run (unlike an `ms.jit` graph), so the template's parameters point to
    `cell`'s storage for the call (no copies) and are restored afterwards, also when the call fails."""
    template = cell.__dict__["_graph_template"]
    if template is cell:
        return cell.compile_and_run(*args)
    template_params = list(template.get_parameters())
    own = [param.data for param in template_params]
    try:
        for param, source in zip(template_params, cell.get_parameters()):
            param.set_data(source.data)
        return template.compile_and_run(*args)
    finally:
        for param, data in zip(template_params, own):
            param.set_data(data)


class RunsSharedGraph:
    """A cell that, inside `shared_graphs` (the compiled CPU path of a model's large calls), runs as a compiled graph
    (`call_shared_graph`) when called with positional arguments, and as a plain cell otherwise."""

    def __call__(self, *args, **kwargs):
        if "_graph_template" in self.__dict__ and not kwargs:
            return call_shared_graph(self, *args)
        return super().__call__(*args, **kwargs)


def compile_this_call(cell: nn.Cell, elements: int, threshold: float) -> bool:
    """Whether a call of `cell` runs compiled (`cell.compile_and_run`, `shared_graphs`): in PyNative, for inference
    (training stays op by op, and so does a call under `ms.grad`: PyNative does not differentiate a `compile_and_run`
    graph, its gradients came out as zeros), on a cell built for CPU (`cell.compile_on_cpu`, set in its `__init__`),
    when its largest activation has at least `threshold` elements. Op by op, PyNative on CPU pays Python dispatch per
    op and MindSpore's asynchronous launch queue spins on a core the kernels need (see the module notes)."""
    return (
        cell.compile_on_cpu
        and not cell.training
        and ms.get_context("mode") == ms.PYNATIVE_MODE
        and elements >= threshold
        and not _pynative_executor.requires_grad()
    )


def blocks_compiled_this_call(cell: nn.Cell, elements: int, threshold: float) -> bool:
    """Whether a call of `cell`, a model of repeated blocks, runs its blocks through `shared_graphs`: where
    `compile_this_call` lets it (PyNative), and in GRAPH_MODE for an inference call of that size on a cell built for
    CPU. The model's `construct` then runs from Python (its caller's job: `Cell.__call__` would compile it whole), every
    sub-cell it calls compiles as a graph of its own, the blocks one graph per kind. Compiling the whole model as one
    graph costs memory of its own (docs/mindspore_notes.md): the real-width 2+2+2-layer Lumina2 transformer in GRAPH_MODE
    peaked at 1.07x torch's memory as one graph and 1.00x this way, at the same speed."""
    if ms.get_context("mode") == ms.GRAPH_MODE:
        return cell.compile_on_cpu and not cell.training and elements >= threshold
    return compile_this_call(cell, elements, threshold)


class CompiledWhenLarge(ReleasesHeapAfterCompile):
    """Mixin for an `nn.Cell` with one tensor input: a call whose largest activation (`input.size *
    self.activation_scale`) has at least `WHOLE_GRAPH_ELEMENTS` elements runs as one compiled graph of the cell
    (`compile_this_call`, `compile_and_run`: compiled once per input signature, bound to the parameters' current
    storage at each run). Other modes, devices and small inputs are unchanged."""

    activation_scale = 1.0  # largest activation's elements per input element, set by the cell
    compile_on_cpu = False  # set by the cell in `__init__` (`_on_cpu()`)

    def __call__(self, sample: ms.Tensor, *args, **kwargs):
        elements = sample.size * self.activation_scale
        if not args and not kwargs and compile_this_call(self, elements, WHOLE_GRAPH_ELEMENTS):
            return self.compile_and_run(sample)
        return super().__call__(sample, *args, **kwargs)


def expand_to(y: ms.Tensor, shape: Tuple[int, ...]) -> ms.Tensor:
    """`y` repeated to `shape` by `ops.tile` when it broadcasts to it (see `broadcast_mul`); otherwise (`y` larger than
    `shape` along some axis, or bfloat16) `y` unchanged, for the caller's operator to broadcast."""
    shape = tuple(shape)
    # bfloat16 (Ascend's compute dtype) has no CPU Tile kernel; Ascend broadcasts natively
    if tuple(y.shape) == shape or y.ndim > len(shape) or y.dtype == ms.bfloat16:
        return y
    dims = (1,) * (len(shape) - y.ndim) + tuple(y.shape)
    if any(d not in (1, s) for d, s in zip(dims, shape)):
        return y
    return ops.tile(y.reshape(dims), tuple(s if d == 1 else 1 for d, s in zip(dims, shape)))


def broadcast_mul(x: ms.Tensor, y: ms.Tensor) -> ms.Tensor:
    """`x * y` for a `y` that broadcasts to the shape of `x` (norm scales, gates, rotary tables).

    On CPU a broadcasting Mul is slow in PyNative (~55 ms for a (2, 1152, 2304) float32 `x`, ~7 ms as tile + Mul of
    equal shapes) and, in a compiled graph, every broadcasting arithmetic kernel keeps ~4 output-sized buffers of its
    own for the life of the graph (one Lumina2 block: ~1.5 GB). Tiling `y` first gives the same products.
    """
    return x * expand_to(y, x.shape)


def broadcast_add(x: ms.Tensor, y: ms.Tensor) -> ms.Tensor:
    """`x + y` for a `y` that broadcasts to the shape of `x`: see `broadcast_mul`."""
    return x + expand_to(y, x.shape)


def mean_last_axis(x: ms.Tensor, as_gemv: bool = True) -> ms.Tensor:
    """`mint.mean(x, -1, keepdim=True)`, with `as_gemv` (callers pass `_on_cpu()` decided at construction) as a
    matrix-vector product with a ones vector (float32 accumulation like the reduction, differences at rounding level):
    the CPU ReduceMean kernel takes ~16 ms on a (2, 1152, 2304) input, the product ~6 ms. Elsewhere the reduction (a
    float32 product could run in reduced precision under an Ascend `precision_mode` such as allow_fp32_to_fp16)."""
    if not as_gemv:
        return mint.mean(x, -1, keepdim=True)
    d = x.shape[-1]
    ones = mint.ones((d, 1), dtype=x.dtype)
    return (ops.matmul(x.reshape(-1, d), ones) * (1.0 / d)).reshape(x.shape[:-1] + (1,))


def pair_swap_matrix(d: int, dtype=ms.float32) -> ms.Tensor:
    """The `(d, d)` permutation `P` with `(x @ P)[..., 2i] = x[..., 2i + 1]` and `(x @ P)[..., 2i + 1] = x[..., 2i]`:
    exact for finite `x` (one product by 1, the rest by 0). On CPU this matmul is ~4x faster than the ReverseV2 kernel
    of `mint.flip` over pairs."""
    return mint.flip(ops.eye(d, d, dtype).reshape(d, d // 2, 2), (-1,)).reshape(d, d)


def zero_pad_nchw(x: ms.Tensor, left: int, right: int, top: int, bottom: int) -> ms.Tensor:
    """Zero-pad the last two axes of an NCHW tensor by concatenation (PadV3 is slow on CPU)."""
    b, c, h, w = x.shape
    if left or right:
        parts = [x]
        if left:
            parts = [mint.zeros((b, c, h, left), dtype=x.dtype)] + parts
        if right:
            parts = parts + [mint.zeros((b, c, h, right), dtype=x.dtype)]
        x = mint.cat(parts, dim=3)
        w = w + left + right
    if top or bottom:
        parts = [x]
        if top:
            parts = [mint.zeros((b, c, top, w), dtype=x.dtype)] + parts
        if bottom:
            parts = parts + [mint.zeros((b, c, bottom, w), dtype=x.dtype)]
        x = mint.cat(parts, dim=2)
    return x


def _after(x: ms.Tensor, strips) -> ms.Tensor:
    # orders a strip after the previous one: a compiled graph then reuses one column buffer for all strips (without
    # it every strip's buffer is live at once, ~4x the peak memory)
    return ops.depend(x, strips[-1]) if strips else x


def conv2d_im2col(x: ms.Tensor, weight: ms.Tensor, bias: Optional[ms.Tensor], stride: int, padding: int) -> ms.Tensor:
    """`torch.nn.functional.conv2d` (groups 1, dilation 1) as im2col + GEMM, in strips of output rows."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    h_out = (h + 2 * padding - kh) // stride + 1
    w_out = (w + 2 * padding - kw) // stride + 1
    w2d = weight.reshape(o, c * kh * kw)
    rows_per_strip = max(1, IM2COL_BUFFER_ELEMENTS // (b * c * kh * kw * w_out))
    if rows_per_strip >= h_out:
        out = mint.matmul(w2d, ops.unfold(x, (kh, kw), padding=padding, stride=stride))
    else:
        if padding:
            x = zero_pad_nchw(x, padding, padding, padding, padding)
        strips = []
        for r0 in range(0, h_out, rows_per_strip):
            r1 = min(r0 + rows_per_strip, h_out)
            rows = _after(x[:, :, r0 * stride : (r1 - 1) * stride + kh, :], strips)
            strips.append(mint.matmul(w2d, ops.unfold(rows, (kh, kw), stride=stride)))
        out = mint.cat(strips, dim=2)
    out = out.reshape(b, o, h_out, w_out)
    if bias is not None:
        out = ops.bias_add(out, bias)
    return out


def conv2d_shift_sum(x: ms.Tensor, weight: ms.Tensor, bias: Optional[ms.Tensor], padding: int) -> ms.Tensor:
    """Stride-1 `torch.nn.functional.conv2d` as one GEMM of all kernel taps against the padded input, the taps' outputs
    then added at their offsets (in the flattened padded image, so every offset is a contiguous range; the columns
    past the output width are cropped). Cheaper than im2col when `out_channels * kh * kw <= in_channels`."""
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    h_out, w_out = hp - kh + 1, wp - kw + 1
    # one extra zero row keeps the last taps' ranges inside the buffer
    xp = zero_pad_nchw(x, padding, padding, padding, padding + 1).reshape(b, c, (hp + 1) * wp)
    taps = weight.transpose(2, 3, 0, 1).reshape(kh * kw * o, c)
    y = mint.matmul(taps, xp).reshape(b, kh * kw, o, (hp + 1) * wp)
    out = None
    for k in range(kh * kw):
        offset = (k // kw) * wp + k % kw
        part = y[:, k, :, offset : offset + h_out * wp]
        out = part if out is None else out + part
    out = out.reshape(b, o, h_out, wp)[:, :, :, :w_out]
    if bias is not None:
        out = ops.bias_add(out, bias)
    return out


def conv2d_cpu(x: ms.Tensor, weight: ms.Tensor, bias: Optional[ms.Tensor], stride: int, padding: int) -> ms.Tensor:
    """`torch.nn.functional.conv2d` (groups 1, dilation 1) by the cheaper of the two GEMM formulations above."""
    o, c, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != c or x.shape[2] + 2 * padding < kh or x.shape[3] + 2 * padding < kw:
        raise ValueError(
            f"Conv2d: expected an input (batch_size, {c}, height, width) with height and width of at least "
            f"{kh - 2 * padding} and {kw - 2 * padding}, got shape {x.shape}."
        )
    if stride == 1 and o * kh * kw <= c:
        return conv2d_shift_sum(x, weight, bias, padding)
    return conv2d_im2col(x, weight, bias, stride, padding)


_conv2d_cpu_jit = ms.jit(conv2d_cpu)


class Conv2d(nn.Conv2d):
    r"""`torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)` (square kernel, zero
    padding, no groups / dilation): legacy `nn.Conv2d(pad_mode="pad")` (`mint.nn.Conv2d` has no CPU kernel), computed by
    im2col + GEMM on CPU for kernels larger than 1x1 unless `native_conv_is_fast()`."""

    # torch's constructor: `mindone.peft` makes a LoRA adapter's convolutions of this class, as PEFT does
    torch_signature = True

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, bias=True
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            pad_mode="pad",
            padding=padding,
            has_bias=bias,
        )
        self.conv_stride = stride
        self.conv_padding = padding
        self.conv_kernel = kernel_size
        self.use_im2col = _on_cpu() and kernel_size > 1 and not native_conv_is_fast()
        self.layerwise_compute_dtype = None  # see `compute_weights`

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        weight, bias = compute_weights(self)
        if self.use_im2col:
            if x.size * self.conv_kernel * self.conv_kernel < SMALL_ELEMENTS * self.conv_stride * self.conv_stride:
                return conv2d_cpu(x, weight, bias, self.conv_stride, self.conv_padding)
            return _conv2d_cpu_jit(x, _arg(weight), _arg(bias), self.conv_stride, self.conv_padding)
        if self.layerwise_compute_dtype is None:
            return super().construct(x)
        out = self.conv2d(x, weight)
        if bias is not None:
            out = self.bias_add(out, bias)
        return out


# rows of the 2x2 phase kernels of a 3x3 kernel after nearest 2x upsampling: phase 0 sees input offsets (-1, 0) with
# kernel rows (0, 1 + 2), phase 1 sees offsets (0, +1) with kernel rows (0 + 1, 2)
_PHASE_ROWS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def upsample_nearest2x_conv2d(x: ms.Tensor, weight: ms.Tensor, bias: Optional[ms.Tensor]) -> ms.Tensor:
    """`conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)` for a 3x3 `weight`, as four
    2x2 convolutions of `x` (im2col + one GEMM for all phases), in strips of rows."""
    b, c, h, w = x.shape
    o = weight.shape[0]
    rows = ms.Tensor(_PHASE_ROWS, dtype=weight.dtype)  # (4, 3): [phase 0 row 0, phase 0 row 1, phase 1 row 0, ...]
    phase = mint.matmul(mint.matmul(rows, weight), rows.T)  # (o, c, 4, 4): [2 * a + i, 2 * b + j]
    phase = phase.reshape(o, c, 2, 2, 2, 2).transpose(2, 4, 0, 1, 3, 5).reshape(4 * o, c * 4)
    # 2x2 windows of the zero-padded input: (h + 1) x (w + 1) positions; phase (a, b) uses positions (y + a, x + b)
    xp = zero_pad_nchw(x, 1, 1, 1, 1)
    rows_per_strip = max(1, IM2COL_BUFFER_ELEMENTS // (b * c * 4 * (w + 1)))
    if rows_per_strip >= h + 1:
        out = mint.matmul(phase, ops.unfold(xp, 2))
    else:
        strips = []
        for r0 in range(0, h + 1, rows_per_strip):
            r1 = min(r0 + rows_per_strip, h + 1)
            strips.append(mint.matmul(phase, ops.unfold(_after(xp[:, :, r0 : r1 + 1, :], strips), 2)))
        out = mint.cat(strips, dim=2)
    out = out.reshape(b, 2, 2, o, h + 1, w + 1)
    phases = [out[:, i // 2, i % 2, :, i // 2 : i // 2 + h, i % 2 : i % 2 + w] for i in range(4)]
    # `mint.permute` (a view; the Transpose kernel keeps two output-sized buffers per compiled call site)
    out = mint.permute(ops.stack(phases).reshape(2, 2, b, o, h, w), (2, 3, 4, 0, 5, 1)).reshape(b, o, 2 * h, 2 * w)
    if bias is not None:
        out = ops.bias_add(out, bias)
    return out


_upsample_nearest2x_conv2d_jit = ms.jit(upsample_nearest2x_conv2d)


def upsample_conv_cpu(x: ms.Tensor, conv: Conv2d) -> ms.Tensor:
    """Nearest 2x upsampling then `conv` (3x3, stride 1, padding 1) by `upsample_nearest2x_conv2d`."""
    weight, bias = compute_weights(conv)
    if x.size * 16 < SMALL_ELEMENTS:
        return upsample_nearest2x_conv2d(x, weight, bias)
    return _upsample_nearest2x_conv2d_jit(x, _arg(weight), _arg(bias))


# A float32 GEMV over a long row rounds coherently where the values are alike (a flat image's activations: 1e-5 off over
# 64k terms, torch's cascade sum 1e-7), and a flat group norm divides its mean's error by a small deviation
ROW_SUM_BLOCK = 16


def _row_sums(x: ms.Tensor) -> ms.Tensor:
    """Float64 sums of the rows of a float32 `(rows, n)` tensor: float32 GEMVs over blocks of at most `ROW_SUM_BLOCK`
    elements (exact or nearly for alike values), the blocks' sums added in float64 (n / block elements per row)."""
    rows, n = x.shape
    block = min(n, ROW_SUM_BLOCK)
    while n % block:  # the largest divisor of n up to ROW_SUM_BLOCK
        block -= 1
    partial = mint.matmul(x.reshape(rows * (n // block), block), mint.ones((block, 1), dtype=x.dtype))
    return partial.reshape(rows, n // block).astype(ms.float64).sum(axis=1)


def group_norm_cpu(x: ms.Tensor, num_groups: int, weight: Optional[ms.Tensor], bias: Optional[ms.Tensor], eps: float):
    """`torch.nn.functional.group_norm` from GEMV reductions and one inference batch norm (fast CPU kernels)."""
    shape = x.shape
    dtype = x.dtype
    if dtype != ms.float32:
        # half precision computes in float32 as torch does: a group's sum of squares overflows float16 (65504)
        x = x.astype(ms.float32)
        weight = None if weight is None else weight.astype(ms.float32)
        bias = None if bias is None else bias.astype(ms.float32)
    b, c = shape[0], shape[1]
    groups = b * num_groups
    n = x.size // groups
    xg = x.reshape(groups, n)
    mean = (_row_sums(xg) / n).astype(ms.float32)
    centered = ops.bias_add(xg.reshape(1, groups, n), -mean)
    var = (_row_sums(mint.square(centered).reshape(groups, n)) / n).astype(ms.float32)
    # per-channel statistics of the (1, b * c, -1, 1) view: each group's mean / var repeated over its channels
    per_group = c // num_groups
    mean_c = mean.reshape(groups, 1).broadcast_to((groups, per_group)).reshape(b * c)
    var_c = var.reshape(groups, 1).broadcast_to((groups, per_group)).reshape(b * c)
    gamma = (
        mint.ones((b * c,), dtype=x.dtype) if weight is None else weight.reshape(1, c).broadcast_to((b, c)).reshape(-1)
    )
    beta = mint.zeros((b * c,), dtype=x.dtype) if bias is None else bias.reshape(1, c).broadcast_to((b, c)).reshape(-1)
    out = ops.batch_norm(x.reshape(1, b * c, n // per_group, 1), mean_c, var_c, gamma, beta, training=False, eps=eps)
    return out.reshape(shape).astype(dtype)


_group_norm_cpu_jit = ms.jit(group_norm_cpu)


class GroupNorm(mint.nn.GroupNorm):
    r"""`mint.nn.GroupNorm` (params `weight`, `bias`), with the composite above for large inputs on CPU."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, dtype=None):
        super().__init__(num_groups, num_channels, eps=eps, affine=affine, dtype=dtype)
        self.use_composite = _on_cpu()

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        if self.use_composite and x.size >= SMALL_ELEMENTS:
            return _group_norm_cpu_jit(x, self.num_groups, _arg(self.weight), _arg(self.bias), self.eps)
        return super().construct(x)


def pad_nchw(x: ms.Tensor, pad: Tuple[int, int, int, int], on_cpu: bool) -> ms.Tensor:
    """Zero padding `(left, right, top, bottom)` of an NCHW tensor: by concatenation on CPU, `ops.pad` elsewhere."""
    if on_cpu:
        return zero_pad_nchw(x, *pad)
    return ops.pad(x, pad, mode="constant", value=0)


_matmul_nt = ops.MatMul(transpose_b=True)


class Linear(mint.nn.Linear):
    r"""`mint.nn.Linear(in_features, out_features, bias=True, ...)` (params `weight`, `bias`), computed on CPU as a 2-D
    `MatMul(transpose_b=True)` + `BiasAdd` instead of the Dense kernel (see the module notes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_matmul = _on_cpu()
        self.layerwise_compute_dtype = None  # see `compute_weights`

    def construct(self, x: ms.Tensor) -> ms.Tensor:
        weight, bias = compute_weights(self)
        if not self.use_matmul:
            return self.dense(x, weight, bias)
        out = _matmul_nt(x.reshape(-1, x.shape[-1]), weight)
        if bias is not None:
            out = ops.bias_add(out, bias)
        return out.reshape(x.shape[:-1] + (weight.shape[0],))


def compute_weights(layer: nn.Cell) -> Tuple[ms.Tensor, Optional[ms.Tensor]]:
    """The `weight` and `bias` a `Linear` / `Conv2d` computes with: its parameters, or, under layerwise casting
    (`ModelMixin.enable_layerwise_casting`: `layer.layerwise_compute_dtype` set), their copies in that dtype. Upstream
    casts the module's parameters in place before its forward and back after it (a hook); a graph cannot, so the layer
    reads cast copies (the same values: the storage dtype converts exactly into a wider compute dtype)."""
    weight, bias = layer.weight, layer.bias
    if layer.layerwise_compute_dtype is not None:
        weight = weight.astype(layer.layerwise_compute_dtype)
        if bias is not None:
            bias = bias.astype(layer.layerwise_compute_dtype)
    return weight, bias
