"""Read and write safetensors files as MindSpore tensors, without torch.

The format is an 8-byte little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets}}`` (plus an
optional ``__metadata__`` dict of strings) and one flat byte buffer. NumPy has no bfloat16, so bf16 tensors are read as
their raw 16 bits and widened exactly to float32 (bf16 is the upper half of an fp32 word), then cast to what was asked.
float8 tensors (``F8_E4M3``, ``F8_E5M2``, as torch writes ``float8_e4m3fn`` / ``float8_e5m2``) are read and widened to
float32 the same way (through a table of the 256 values); they are not written.
"""

import json
import math
import os
import struct
from typing import Dict, Optional, Tuple, Union

import numpy as np

import mindspore as ms

__all__ = ["SafetensorError", "safe_open", "load_file", "load", "save_file", "save", "load_metadata", "check_tensors"]

_NP_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "U16": np.uint16,
    "U32": np.uint32,
    "U64": np.uint64,
    "BOOL": np.bool_,
    "BF16": np.uint16,  # raw bits, widened in `get_numpy`
    "F8_E4M3": np.uint8,  # raw bits, widened in `get_numpy` (read only: MindSpore's CPU backend has no float8)
    "F8_E5M2": np.uint8,
}
_MS_DTYPES = {
    "F64": ms.float64,
    "F32": ms.float32,
    "F16": ms.float16,
    "BF16": ms.bfloat16,
    "I64": ms.int64,
    "I32": ms.int32,
    "I16": ms.int16,
    "I8": ms.int8,
    "U8": ms.uint8,
    "U16": ms.uint16,
    "U32": ms.uint32,
    "U64": ms.uint64,
    "BOOL": ms.bool_,
}
_ST_DTYPES = {v: k for k, v in _MS_DTYPES.items()}
_MS_DTYPES.update({"F8_E4M3": ms.float32, "F8_E5M2": ms.float32})  # widened exactly
_MAX_HEADER = 100 * 1024 * 1024
_FRAMEWORKS = {"ms": "ms", "mindspore": "ms", "np": "np", "numpy": "np"}


class SafetensorError(ValueError):
    """A file that is not a readable safetensors file (missing, truncated, corrupt)."""


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Exact widening of raw bfloat16 bits (uint16) to float32."""
    # a 0-d array shifted by a Python int became an int64 scalar (NumPy 1.x value-based casting): shift in uint32
    widened = np.left_shift(np.asarray(bits, dtype=np.uint32), np.uint32(16), dtype=np.uint32)
    return np.asarray(widened).view(np.float32)


def float32_to_bf16_bits(array: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bits, as torch's ``.to(torch.bfloat16)`` does."""
    u = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    nan = np.isnan(array)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, np.uint16(0x7FC0), rounded)


def _float8_table(exponent_bits: int, mantissa_bits: int, finite_only: bool) -> np.ndarray:
    """float32 value of each of the 256 float8 bit patterns (sign, exponent, mantissa; IEEE-style bias). `finite_only`
    is e4m3fn's layout: no infinities, NaN only where exponent and mantissa are all ones."""
    bits = np.arange(256, dtype=np.int64)
    bias = (1 << (exponent_bits - 1)) - 1
    exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = (bits & ((1 << mantissa_bits) - 1)).astype(np.float64)
    top = (1 << exponent_bits) - 1
    normal = (1.0 + mantissa / (1 << mantissa_bits)) * np.exp2(exponent - bias)
    subnormal = mantissa / (1 << mantissa_bits) * np.exp2(1 - bias)
    value = np.where(exponent == 0, subnormal, normal)
    if finite_only:
        value = np.where((exponent == top) & (mantissa == (1 << mantissa_bits) - 1), np.nan, value)
    else:
        value = np.where(exponent == top, np.where(mantissa == 0, np.inf, np.nan), value)
    return np.where(bits & 0x80, -value, value).astype(np.float32)


_FLOAT8_TABLES = {"F8_E4M3": _float8_table(4, 3, finite_only=True), "F8_E5M2": _float8_table(5, 2, finite_only=False)}


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_str_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _check_entry(filename: str, name: str, info) -> None:
    """A header entry as the safetensors reader accepts it: a known dtype string, a list of non-negative integer
    dimensions and two non-negative integer offsets in order."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise SafetensorError(f"{filename}: malformed header entry for {name!r} (needs dtype, shape, data_offsets).")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _NP_DTYPES:
        raise SafetensorError(f"{filename}: tensor {name!r} has unsupported dtype {dtype!r}.")
    if not isinstance(shape, list) or not all(_is_size(d) for d in shape):
        raise SafetensorError(f"{filename}: tensor {name!r} has a malformed shape {shape!r} (non-negative integers).")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_size(o) for o in offsets):
        raise SafetensorError(
            f"{filename}: tensor {name!r} has malformed data_offsets {offsets!r} (two non-negative integers)."
        )
    if offsets[1] < offsets[0]:
        raise SafetensorError(f"{filename}: tensor {name!r} has data_offsets {offsets} that end before they start.")


class safe_open:
    """Lazy reader mirroring ``safetensors.safe_open(path, framework=...)``: tensors are read one at a time (plain
    reads, no memory map), so loading a checkpoint never holds a second full copy of it.

    ``get_tensor`` returns a ``mindspore.Tensor`` (bf16 stays bf16 unless ``dtype`` is given), or with
    ``framework="np"`` a NumPy array as ``get_numpy`` does (bf16 and float8 widened exactly to float32).
    """

    def __init__(self, filename, framework: str = "ms"):
        if framework not in _FRAMEWORKS:
            raise ValueError(
                f"framework {framework!r} is not supported here: use one of {sorted(_FRAMEWORKS)} (torch tensors "
                "come from `safetensors.torch`)."
            )
        self.framework = _FRAMEWORKS[framework]
        self.filename = os.fspath(filename)
        if not os.path.isfile(self.filename):
            raise SafetensorError(f"No such safetensors file: {self.filename}")
        file_size = os.path.getsize(self.filename)
        with open(self.filename, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise SafetensorError(f"{self.filename} is not a safetensors file: it is only {file_size} bytes long.")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > file_size:
                raise SafetensorError(
                    f"{self.filename} is not a valid safetensors file: its header claims {n} bytes but the file has "
                    f"{file_size}. The file is truncated or of another format (pickle `.bin`/`.pth`/`.ckpt` files "
                    "are not read)."
                )
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise SafetensorError(f"{self.filename} has a corrupt safetensors header ({e}).") from None
        if not isinstance(header, dict):
            raise SafetensorError(f"{self.filename} has a corrupt safetensors header (not a JSON object).")
        self._metadata = header.pop("__metadata__", None)
        if self._metadata is not None and not _is_str_dict(self._metadata):
            raise SafetensorError(
                f"{self.filename} has a corrupt safetensors header: `__metadata__` must map strings to strings."
            )
        self._offset = 8 + n
        self._header = header
        data_size = file_size - self._offset
        for name, info in header.items():
            _check_entry(self.filename, name, info)
            start, end = info["data_offsets"]
            dtype, shape = info["dtype"], info["shape"]
            # in Python integers: a product of huge dimensions must not wrap around
            expected = math.prod(shape) * np.dtype(_NP_DTYPES[dtype]).itemsize
            if end - start != expected:
                raise SafetensorError(
                    f"{self.filename} has a corrupt header: tensor {name!r} ({dtype}{list(shape)}) needs {expected} "
                    f"bytes, but its data_offsets {start}..{end} span {end - start}."
                )
            if end > data_size:
                raise SafetensorError(
                    f"{self.filename} is truncated: tensor {name!r} needs bytes {start}..{end} "
                    f"({dtype}{list(shape)}) of a {data_size}-byte data section."
                )
        # as the safetensors reader: the tensors tile the data section exactly, with no gap, overlap or tail (bytes
        # left over usually mean a file overwritten in place by a shorter one, or two files concatenated)
        covered = 0
        for name, info in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
            start, end = info["data_offsets"]
            if start != covered:
                raise SafetensorError(
                    f"{self.filename} has a corrupt header: tensor {name!r} starts at byte {start} of the data "
                    f"section, where the previous tensor ends at {covered} (gap or overlap)."
                )
            covered = end
        if covered != data_size:
            raise SafetensorError(
                f"{self.filename} is not a valid safetensors file: its tensors cover {covered} bytes of a "
                f"{data_size}-byte data section ({data_size - covered} bytes at the end belong to no tensor). The "
                "file was probably overwritten or concatenated; export it again."
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def keys(self):
        return list(self._header.keys())

    def metadata(self) -> Optional[Dict[str, str]]:
        return self._metadata

    def _info(self, name: str) -> dict:
        if name not in self._header:
            raise SafetensorError(f"{self.filename} does not contain tensor {name!r}.")
        return self._header[name]

    def get_dtype(self, name: str) -> str:
        return self._info(name)["dtype"]

    def get_shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self._info(name)["shape"])

    def _raw(self, name: str) -> np.ndarray:
        # Read into a fresh array rather than slicing a memory map: pages of a mapped file count in the process's
        # resident memory while it stays mapped, so loading a checkpoint through a map peaked at twice its size (the
        # mapped file + the parameters); a plain read keeps the peak at the parameters + one tensor.
        info = self._info(name)
        start, end = info["data_offsets"]
        out = np.empty(info["shape"], dtype=_NP_DTYPES[info["dtype"]])
        if end > start:
            with open(self.filename, "rb") as f:
                f.seek(self._offset + start)
                read = f.readinto(memoryview(out.reshape(-1)).cast("B"))
            if read != end - start:
                raise SafetensorError(f"{self.filename} is truncated: tensor {name!r} ended after {read} bytes.")
        return out

    def get_numpy(self, name: str) -> np.ndarray:
        """The tensor as a NumPy array (bf16 and float8 widened exactly to float32)."""
        raw = self._raw(name)
        dtype = self._header[name]["dtype"]
        if dtype == "BF16":
            return bf16_bits_to_float32(raw)
        if dtype in _FLOAT8_TABLES:
            return _FLOAT8_TABLES[dtype][raw]
        return raw

    def get_tensor(self, name: str, dtype: Optional[ms.dtype.Type] = None) -> Union[ms.Tensor, np.ndarray]:
        st_dtype = self.get_dtype(name)
        if self.framework == "np":
            if dtype is not None:
                raise ValueError("`dtype` casts MindSpore tensors: open the file with framework='ms' for it.")
            return self.get_numpy(name)
        tensor = ms.Tensor(self.get_numpy(name))
        target = dtype if dtype is not None else _MS_DTYPES[st_dtype]
        if tensor.dtype != target:
            tensor = tensor.astype(target)
        return tensor


def load_file(filename, dtype: Optional[ms.dtype.Type] = None) -> Dict[str, ms.Tensor]:
    """Load every tensor of a safetensors file as a ``mindspore.Tensor`` (optionally cast to ``dtype``)."""
    with safe_open(filename) as f:
        return {k: f.get_tensor(k, dtype) for k in f.keys()}


def load_metadata(filename) -> Optional[Dict[str, str]]:
    return safe_open(filename).metadata()


def load(data: bytes) -> Dict[str, ms.Tensor]:
    """Load tensors from the bytes of a safetensors file."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        return load_file(path)
    finally:
        os.remove(path)


def _to_numpy(name: str, tensor) -> Tuple[str, np.ndarray]:
    if isinstance(tensor, np.ndarray):
        arr = tensor
        if arr.dtype == np.float64:
            return "F64", arr
        for k, v in _NP_DTYPES.items():
            if k != "BF16" and arr.dtype == np.dtype(v):
                return k, arr
        raise ValueError(f"Tensor {name!r}: NumPy dtype {arr.dtype} cannot be written to safetensors.")
    dtype = tensor.dtype
    if dtype not in _ST_DTYPES:
        raise ValueError(f"Tensor {name!r}: dtype {dtype} cannot be written to safetensors.")
    st = _ST_DTYPES[dtype]
    if st == "BF16":
        return st, float32_to_bf16_bits(tensor.astype(ms.float32).asnumpy())
    return st, tensor.asnumpy()


def check_tensors(tensors: Dict[str, ms.Tensor]) -> Dict[str, str]:
    """The safetensors dtype of each tensor; raises on what ``save_file`` cannot write (a name, a type, a dtype), so
    that a saver can check its tensors before it writes anything."""
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"Tensor names must be strings, got {name!r} ({type(name).__name__}).")
        if name == "__metadata__":
            raise ValueError("`__metadata__` is reserved for the file's metadata: rename that tensor.")
        if not isinstance(t, (ms.Tensor, np.ndarray, np.generic)):
            kind = f"{type(t).__module__}.{type(t).__qualname__}"
            raise TypeError(f"Tensor {name!r} is a {kind}, expected a mindspore.Tensor or a NumPy array.")
    dtypes = {}
    for name, t in tensors.items():
        t = np.asarray(t) if isinstance(t, np.generic) else t
        st = _ST_DTYPES.get(t.dtype) if not isinstance(t, np.ndarray) else _to_numpy(name, t)[0]
        if st is None:
            raise ValueError(f"Tensor {name!r}: dtype {t.dtype} cannot be written to safetensors.")
        dtypes[name] = st
    return dtypes


def save_file(tensors: Dict[str, ms.Tensor], filename, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write tensors to a safetensors file readable by ``safetensors`` (torch, numpy) and by ``load_file``."""
    if metadata is not None and not _is_str_dict(metadata):
        raise ValueError("safetensors metadata must be a dict of str -> str.")
    dtypes = check_tensors(tensors)
    tensors = {k: np.asarray(t) if isinstance(t, np.generic) else t for k, t in tensors.items()}
    header, offset, entries = {}, 0, []
    # Sizes first (cheap: shapes and dtypes only), then one tensor at a time to keep memory flat. Wider items first
    # (then by name), as the reference writer orders them, so each tensor starts aligned to its item size.
    for name in sorted(tensors, key=lambda k: (-np.dtype(_NP_DTYPES[dtypes[k]]).itemsize, k)):
        shape = list(tensors[name].shape)
        nbytes = math.prod(shape) * np.dtype(_NP_DTYPES[dtypes[name]]).itemsize
        header[name] = {"dtype": dtypes[name], "shape": shape, "data_offsets": [offset, offset + nbytes]}
        entries.append(name)
        offset += nbytes
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((8 - len(blob) % 8) % 8)  # align the data section like the reference writer
    tmp = os.fspath(filename) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in entries:
            _, arr = _to_numpy(name, tensors[name])
            f.write(np.ascontiguousarray(arr).tobytes())
    os.replace(tmp, filename)


def save(tensors: Dict[str, ms.Tensor], metadata: Optional[Dict[str, str]] = None) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        save_file(tensors, path, metadata)
        with open(path, "rb") as f:
            return f.read()
