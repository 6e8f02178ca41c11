import json
import struct

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import mindspore as ms

from mindone.safetensors.mindspore import (
    SafetensorError,
    float32_to_bf16_bits,
    load,
    load_file,
    load_metadata,
    safe_open,
    save,
    save_file,
)


def _torch_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(4, 2, generator=g).half(),
        "bf16": (torch.randn(7, 3, generator=g) * 1e3).to(torch.bfloat16),
        "i64": torch.arange(6).reshape(2, 3),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
    }


def test_torch_file_loads_bit_exactly(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = _torch_tensors()
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
    loaded = load_file(path)
    assert loaded["bf16"].dtype == ms.bfloat16
    assert loaded["f16"].dtype == ms.float16
    for k, t in tensors.items():
        np.testing.assert_array_equal(
            loaded[k].astype(ms.float32).asnumpy() if k != "i64" else loaded[k].asnumpy(),
            t.float().numpy() if k != "i64" else t.numpy(),
        )
    # cast on load, as `mindspore_dtype` does
    as_f32 = load_file(path, dtype=ms.float32)
    np.testing.assert_array_equal(as_f32["bf16"].asnumpy(), tensors["bf16"].float().numpy())
    assert load_metadata(path) == {"format": "pt"}


def test_bf16_rounding_matches_torch():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(10000).astype(np.float32) * 10,
            np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 3.0e38, 1.00390625, 1.01171875], np.float32),
        ]
    )
    ours = float32_to_bf16_bits(x)
    ref = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, ref)
    nan_bits = float32_to_bf16_bits(np.array([np.nan], np.float32))
    assert np.isnan(torch.from_numpy(nan_bits.view(np.int16)).view(torch.bfloat16).float().item())


@pytest.mark.parametrize("torch_dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_file_is_widened_exactly(tmp_path, torch_dtype):
    # every bit pattern (NaN, inf, subnormals, extremes), and values rounded from float32 by torch
    bits = torch.arange(256, dtype=torch.int16).to(torch.uint8)
    values = (torch.randn(7, 5, generator=torch.Generator().manual_seed(3)) * 30).to(torch_dtype)
    path = tmp_path / "f8.safetensors"
    safetensors.torch.save_file({"all": bits.view(torch_dtype), "values": values}, str(path))
    loaded = load_file(path)
    for name, tensor in [("all", bits.view(torch_dtype)), ("values", values)]:
        assert loaded[name].dtype == ms.float32 and loaded[name].shape == tuple(tensor.shape)
        np.testing.assert_array_equal(loaded[name].asnumpy(), tensor.float().numpy())  # NaN equal to NaN
    assert load_file(path, dtype=ms.float16)["values"].dtype == ms.float16
    with safe_open(path) as f:
        assert f.get_dtype("values") == {torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}[torch_dtype]


def test_our_file_loads_in_torch(tmp_path):
    path = tmp_path / "ours.safetensors"
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 6)).astype(np.float32)
    tensors = {
        "a": ms.Tensor(a),
        "a_bf16": ms.Tensor(a).astype(ms.bfloat16),
        "a_f16": ms.Tensor(a).astype(ms.float16),
        "ids": ms.Tensor(np.arange(5, dtype=np.int32)),
    }
    save_file(tensors, path, metadata={"format": "pt", "note": "x"})
    ref = safetensors.torch.load_file(str(path))
    np.testing.assert_array_equal(ref["a"].numpy(), a)
    assert ref["a_bf16"].dtype == torch.bfloat16
    np.testing.assert_array_equal(
        ref["a_bf16"].float().numpy(), torch.from_numpy(a).to(torch.bfloat16).float().numpy()
    )
    assert ref["a_f16"].dtype == torch.float16
    np.testing.assert_array_equal(ref["ids"].numpy(), np.arange(5))
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}
    # and back through our reader, via bytes too
    again = load(save(tensors))
    for k in tensors:
        np.testing.assert_array_equal(again[k].astype(ms.float32).asnumpy(), tensors[k].astype(ms.float32).asnumpy())


def test_unsigned_dtypes_and_the_numpy_framework(tmp_path):
    # uint16 / 32 / 64 (the safetensors package writes and reads them; a file holding one could not be opened at all)
    path = tmp_path / "u.safetensors"
    values = {f"u{bits}": np.array([[0, 1], [7, 2**bits - 1]], dtype=f"uint{bits}") for bits in (16, 32, 64)}
    safetensors.numpy.save_file(dict(values, bf16_bits=values["u16"].view(np.int16)), str(path))
    loaded = load_file(path)
    for name, value in values.items():
        assert loaded[name].dtype == getattr(ms, f"uint{name[1:]}")
        np.testing.assert_array_equal(loaded[name].asnumpy(), value)
    with safe_open(path, framework="np") as f:  # NumPy arrays, as the safetensors package's numpy framework
        assert isinstance(f.get_tensor("u64"), np.ndarray) and f.get_tensor("u64").dtype == np.uint64
        with pytest.raises(ValueError, match="framework='ms'"):
            f.get_tensor("u16", ms.float32)
    with pytest.raises(ValueError, match=r"framework 'pt' is not supported here: use one of \['mindspore', 'ms'"):
        safe_open(path, framework="pt")
    # and written back: ours (NumPy and MindSpore tensors) read by the safetensors package
    ours = tmp_path / "ours.safetensors"
    save_file({"np_u16": values["u16"], "ms_u32": ms.Tensor(values["u32"]), "ms_u64": ms.Tensor(values["u64"])}, ours)
    ref = safetensors.numpy.load_file(str(ours))
    assert ref["np_u16"].dtype == np.uint16 and ref["ms_u64"].dtype == np.uint64
    np.testing.assert_array_equal(ref["ms_u32"], values["u32"])
    np.testing.assert_array_equal(ref["ms_u64"], values["u64"])


def test_lazy_reader_shapes_and_keys(tmp_path):
    import mindone.safetensors

    # where the safetensors package has them
    assert mindone.safetensors.safe_open is safe_open and mindone.safetensors.SafetensorError is SafetensorError
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file(_torch_tensors(), str(path))
    with safe_open(path) as f:
        assert sorted(f.keys()) == sorted(_torch_tensors())
        assert f.get_shape("f32") == (3, 5)
        assert f.get_dtype("bf16") == "BF16"
        assert f.get_numpy("bf16").dtype == np.float32


def test_missing_file_error(tmp_path):
    with pytest.raises(SafetensorError, match="No such safetensors file"):
        load_file(tmp_path / "nope.safetensors")


def test_truncated_file_error(tmp_path):
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file({"w": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(SafetensorError, match="is truncated: tensor 'w' needs bytes"):
        load_file(path)
    path.write_bytes(data[:20])
    with pytest.raises(SafetensorError, match="header claims"):
        load_file(path)
    path.write_bytes(b"abc")
    with pytest.raises(SafetensorError, match="only 3 bytes"):
        load_file(path)


def _raw_file(path, header: dict, data: bytes):
    header = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@pytest.mark.parametrize("tail", [1, 16])
def test_bytes_after_the_tensors_are_refused(tmp_path, tail):
    # as safetensors' own reader ("incomplete metadata, file not fully covered")
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file({"a": torch.zeros(3), "e": torch.zeros(0, 2), "b": torch.ones(2)}, str(path))
    assert load_file(path)["b"].shape == (2,)
    with open(path, "ab") as f:
        f.write(b"\0" * tail)
    with pytest.raises(Exception, match="not fully covered"):
        safetensors.torch.load_file(str(path))
    with pytest.raises(SafetensorError, match=f"cover 20 bytes of a {20 + tail}-byte data section"):
        load_file(path)


def test_gaps_and_overlaps_between_tensors_are_refused(tmp_path):
    path = tmp_path / "t.safetensors"
    entry = {"dtype": "F32", "shape": [2]}
    _raw_file(path, {"a": {**entry, "data_offsets": [0, 8]}, "b": {**entry, "data_offsets": [12, 20]}}, b"\0" * 20)
    with pytest.raises(SafetensorError, match="tensor 'b' starts at byte 12.*ends at 8 \\(gap or overlap\\)"):
        load_file(path)
    _raw_file(path, {"a": {**entry, "data_offsets": [0, 8]}, "b": {**entry, "data_offsets": [4, 12]}}, b"\0" * 12)
    with pytest.raises(SafetensorError, match="tensor 'b' starts at byte 4"):
        load_file(path)
    _raw_file(path, {"b": {**entry, "data_offsets": [8, 16]}, "a": {**entry, "data_offsets": [0, 8]}}, b"\0" * 16)
    assert list(load_file(path)) == ["b", "a"]  # out-of-order entries are fine when they tile the data


def test_pickle_or_garbage_file_error(tmp_path):
    path = tmp_path / "model.bin"
    torch.save({"w": torch.randn(2, 2)}, str(path))
    with pytest.raises(SafetensorError, match="pickle"):
        load_file(path)
    bad_header = tmp_path / "bad.safetensors"
    header = b"{not json}"
    bad_header.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(SafetensorError, match="corrupt safetensors header"):
        load_file(bad_header)
    wrong_size = tmp_path / "wrong.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    wrong_size.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(SafetensorError, match=r"corrupt header: tensor 'w' \(F32\[4\]\) needs 16 bytes.*span 8"):
        load_file(wrong_size)


def test_save_rejects_bad_metadata(tmp_path):
    with pytest.raises(ValueError, match="metadata"):
        save_file({"a": ms.Tensor(np.ones(2, np.float32))}, tmp_path / "a.safetensors", metadata={"a": 1})


def test_bf16_scalars_load_as_in_safetensors(tmp_path):
    # a 0-d bfloat16 tensor: NumPy 1.x turned the shifted 0-d bits into an int64 scalar, whose view failed
    path = tmp_path / "s.safetensors"
    safetensors.torch.save_file(
        {"s": torch.tensor(1.5, dtype=torch.bfloat16), "v": torch.ones(2).bfloat16()}, str(path)
    )
    loaded = load_file(path)
    assert loaded["s"].dtype == ms.bfloat16 and loaded["s"].shape == ()
    assert float(loaded["s"].astype(ms.float32).asnumpy()) == 1.5
    with safe_open(path, framework="np") as f:
        scalar = f.get_tensor("s")
    assert scalar.dtype == np.float32 and scalar.shape == () and scalar == 1.5


F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
MALFORMED_ENTRIES = {
    "dtype_list": {**F32_2, "dtype": ["F32"]},
    "offsets_strings": {**F32_2, "data_offsets": ["0", "8"]},
    "offsets_floats": {**F32_2, "data_offsets": [0.0, 8.0]},
    "offsets_three": {**F32_2, "data_offsets": [0, 8, 8]},
    "offsets_reversed": {**F32_2, "shape": [-2], "data_offsets": [8, 0]},
    "shape_string": {**F32_2, "shape": "2"},
    "shape_null": {**F32_2, "shape": None},
    "shape_float": {**F32_2, "shape": [2.0]},
    "shape_bool": {**F32_2, "shape": [True, 2]},
    "shape_negative": {**F32_2, "shape": [-1, -2]},
    "shape_huge": {**F32_2, "shape": [0, 2**70]},
    "shape_wrapping": {**F32_2, "shape": [2**32, 2**32], "data_offsets": [0, 0]},
    "not_a_dict": [0, 8],
    "missing_dtype": {"shape": [2], "data_offsets": [0, 8]},
}


@pytest.mark.parametrize("entry", MALFORMED_ENTRIES)
def test_malformed_header_entries_are_safetensor_errors(tmp_path, entry):
    # as the safetensors reader: a clear SafetensorError (a TypeError / OverflowError escaped the loaders' handling)
    path = tmp_path / "t.safetensors"
    _raw_file(path, {"w": MALFORMED_ENTRIES[entry]}, b"\0" * 8)
    with pytest.raises(Exception):
        safetensors.numpy.load_file(str(path))
    with pytest.raises(SafetensorError, match="'w'"):
        load_file(path)


@pytest.mark.parametrize("metadata", [{"a": 1}, [1], {"a": {"b": "c"}}], ids=["int", "list", "nested"])
def test_metadata_of_strings_only(tmp_path, metadata):
    path = tmp_path / "t.safetensors"
    _raw_file(path, {"__metadata__": metadata, "w": F32_2}, b"\0" * 8)
    with pytest.raises(Exception):
        safetensors.numpy.load_file(str(path))
    with pytest.raises(SafetensorError, match="__metadata__"):
        load_file(path)


def test_deep_json_header_is_a_safetensor_error(tmp_path):
    path = tmp_path / "t.safetensors"
    header = ("[" * 100000 + "]" * 100000).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(SafetensorError, match="corrupt safetensors header"):
        load_file(path)


def test_unknown_tensor_name(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"a": ms.Tensor(np.ones(2, np.float32))}, path)
    with safe_open(path) as f:
        for method in (f.get_tensor, f.get_shape, f.get_dtype, f.get_numpy):
            with pytest.raises(SafetensorError, match="does not contain tensor 'b'"):
                method("b")


def test_writer_checks_names_and_values(tmp_path):
    path = tmp_path / "t.safetensors"
    one = ms.Tensor(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="names must be strings"):
        save_file({1: one}, path)
    with pytest.raises(ValueError, match="reserved"):
        save_file({"__metadata__": one}, path)
    with pytest.raises(TypeError, match="is a builtins.list, expected a mindspore.Tensor or a NumPy array"):
        save_file({"a": [1.0, 2.0]}, path)
    with pytest.raises(ValueError, match="metadata"):
        save_file({"a": one}, path, metadata=["x"])
    assert not path.exists()
    save_file({"a": np.float32(2.5)}, path, metadata={})  # a NumPy scalar is a 0-d array; empty metadata is kept
    with safetensors.safe_open(str(path), framework="np") as f:
        assert f.metadata() == {} and f.get_tensor("a") == np.float32(2.5)


def test_writer_aligns_each_tensor_to_its_item_size(tmp_path):
    # wider items first, as the reference writer, so an F64 does not start at an odd byte after an I8
    path = tmp_path / "t.safetensors"
    tensors = {"b": np.arange(3, dtype=np.int8), "a2": np.arange(3, dtype=np.float64), "c": np.ones(1, np.float16)}
    save_file(tensors, path)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + n])
    for name, arr in tensors.items():
        assert header[name]["data_offsets"][0] % arr.itemsize == 0
    for name, value in safetensors.numpy.load_file(str(path)).items():
        np.testing.assert_array_equal(value, tensors[name])
