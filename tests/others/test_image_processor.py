"""VaeImageProcessor parity with diffusers 0.42.1 for PIL, NumPy and tensor inputs, every output type and option."""

import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor as TorchProcessor

import mindspore as ms

from mindone.diffusers import VaeImageProcessor
from mindone.diffusers.image_processor import PIL_INTERPOLATION, is_valid_image, is_valid_image_imagelist


def rng_of(seed):
    return np.random.default_rng(seed)


def pil_image(seed, width, height, mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng_of(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return PIL.Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode)


def np_images(seed, shape, dtype=np.float32):
    return rng_of(seed).random(shape).astype(dtype)


def to_torch(x):
    """The reference side's twin of an input (PIL images are shared, arrays copied, ms tensors -> torch)."""
    if isinstance(x, list):
        return [to_torch(i) for i in x]
    if isinstance(x, ms.Tensor):
        return torch.from_numpy(x.asnumpy().copy())
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def to_ms(x):
    if isinstance(x, list):
        return [to_ms(i) for i in x]
    if isinstance(x, np.ndarray):
        return ms.Tensor(x)
    return x


def assert_same(actual, expected, what="output"):
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), what
        for a, e in zip(actual, expected):
            assert_same(a, e, what)
    elif isinstance(expected, PIL.Image.Image):
        assert isinstance(actual, PIL.Image.Image), f"{what}: {type(actual)}"
        assert actual.mode == expected.mode and actual.size == expected.size, what
        np.testing.assert_array_equal(np.array(actual), np.array(expected), err_msg=what)
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, ms.Tensor), f"{what}: {type(actual)}"
        e = expected.float().numpy() if expected.dtype == torch.bfloat16 else expected.numpy()
        a = actual.astype(ms.float32).asnumpy() if actual.dtype == ms.bfloat16 else actual.asnumpy()
        assert a.dtype == e.dtype and a.shape == e.shape, f"{what}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}"
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6, err_msg=what)
    else:
        assert isinstance(actual, np.ndarray), f"{what}: {type(actual)}"
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6, err_msg=what)


def both(config):
    return VaeImageProcessor(**config), TorchProcessor(**config)


# ----------------------------------------------------------------------------------------------------------- inputs
def pil_single():
    return pil_image(0, 37, 29)


def pil_list():
    return [pil_image(1, 37, 29), pil_image(2, 41, 30)]


def pil_gray():
    return pil_image(3, 35, 26, mode="L")


def pil_rgba():
    return pil_image(4, 33, 27, mode="RGBA")


def np_batch():
    return np_images(5, (2, 29, 37, 3))


def np_single():
    return np_images(6, (29, 37, 3))


def np_list():
    return [np_images(7, (29, 37, 3)), np_images(8, (29, 37, 3))]


def np_float64():
    return np_images(9, (1, 20, 27, 3), np.float64)


def np_gray_batch():
    return np_images(10, (2, 25, 34))


def np_gray_single():
    return np_images(11, (25, 34, 1))


def ms_batch():
    return ms.Tensor(np_images(12, (2, 3, 29, 37)))


def ms_single():
    return ms.Tensor(np_images(13, (3, 29, 37)))


def ms_list():
    return [ms.Tensor(np_images(14, (3, 29, 37))), ms.Tensor(np_images(15, (3, 29, 37)))]


def ms_gray_batch():
    return ms.Tensor(np_images(16, (2, 25, 34)))


def ms_gray_single():
    return ms.Tensor(np_images(17, (1, 25, 34)))


INPUTS = {
    f.__name__: f
    for f in [
        pil_single,
        pil_list,
        pil_gray,
        pil_rgba,
        np_batch,
        np_single,
        np_list,
        np_float64,
        np_gray_batch,
        np_gray_single,
        ms_batch,
        ms_single,
        ms_list,
        ms_gray_batch,
        ms_gray_single,
    ]
}
GRAY_INPUTS = {"np_gray_batch", "np_gray_single", "ms_gray_batch", "ms_gray_single"}

CONFIGS = {
    "default": {},
    "lumina2": {"vae_scale_factor": 16},
    "no_resize": {"do_resize": False},
    "no_normalize": {"do_normalize": False},
    "bilinear": {"resample": "bilinear"},
    "bicubic_reducing_gap": {"resample": "bicubic", "reducing_gap": 2},
    "nearest": {"resample": "nearest"},
    "binarize": {"do_binarize": True, "do_normalize": False},
    "binarize_normalized": {"do_binarize": True},
    "convert_rgb": {"do_convert_rgb": True},
    "convert_grayscale": {"do_convert_grayscale": True, "vae_latent_channels": 16},
}


def _applicable(input_name, config_name):
    if input_name in GRAY_INPUTS:
        # 3-d grayscale arrays and tensors need `do_convert_grayscale` to gain their channel axis
        return config_name == "convert_grayscale" or input_name in {"np_gray_single", "ms_gray_single"}
    return True


CASES = [(i, c) for i in INPUTS for c in CONFIGS if _applicable(i, c)]


@pytest.mark.parametrize("input_name,config_name", CASES, ids=[f"{i}-{c}" for i, c in CASES])
def test_preprocess_matches(input_name, config_name):
    ours, ref = both(CONFIGS[config_name])
    image = INPUTS[input_name]()
    try:
        expected = ref.preprocess(to_torch(image))
    except Exception as error:  # e.g. images of different sizes without resizing: we must fail too
        with pytest.raises((type(error), ValueError)):
            ours.preprocess(image)
        return
    actual = ours.preprocess(image)
    assert_same(actual, expected, f"preprocess({input_name}) with {config_name}")


@pytest.mark.parametrize("input_name", ["pil_list", "np_batch", "ms_batch", "np_float64"])
@pytest.mark.parametrize("height,width", [(48, 64), (16, 24), (30, 50)])
def test_preprocess_explicit_size_matches(input_name, height, width):
    ours, ref = both({})
    image = INPUTS[input_name]()
    expected = ref.preprocess(to_torch(image), height=height, width=width)
    actual = ours.preprocess(image, height=height, width=width)
    assert_same(actual, expected, f"preprocess({input_name}, {height}x{width})")


@pytest.mark.parametrize("resize_mode", ["default", "fill", "crop"])
@pytest.mark.parametrize("size", [(37, 29), (29, 37), (40, 40), (90, 20)])
@pytest.mark.parametrize("resample", ["lanczos", "bilinear"])
def test_resize_modes_match(resize_mode, size, resample):
    ours, ref = both({"resample": resample})
    image = pil_image(20, *size)
    assert_same(ours.resize(image, 24, 32, resize_mode), ref.resize(image, 24, 32, resize_mode), "resize")
    expected = ref.preprocess(image, height=32, width=48, resize_mode=resize_mode)
    assert_same(ours.preprocess(image, height=32, width=48, resize_mode=resize_mode), expected, "preprocess")


def test_preprocess_crops_coords_matches():
    ours, ref = both({})
    image = pil_image(21, 60, 50)
    crop = (5, 7, 45, 39)
    assert_same(ours.preprocess(image, crops_coords=crop), ref.preprocess(image, crops_coords=crop), "crop")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
@pytest.mark.parametrize("size", [(5, 4), (14, 18), (7, 9), (3, 23)])
def test_tensor_and_array_resize_match(dtype, size):
    ours, ref = both({})
    x = np_images(22, (2, 3, 7, 9))
    if dtype == "bfloat16":
        ours_x, ref_x = ms.Tensor(x).astype(ms.bfloat16), torch.from_numpy(x).to(torch.bfloat16)
    else:
        ours_x, ref_x = ms.Tensor(x.astype(dtype)), torch.from_numpy(x.astype(dtype))
    out = ours.resize(ours_x, *size)
    assert out.dtype == ours_x.dtype
    assert_same(out, ref.resize(ref_x, *size), "tensor resize")
    if dtype != "bfloat16":
        arr = x.transpose(0, 2, 3, 1).astype(dtype)
        assert_same(ours.resize(arr, *size), ref.resize(arr.copy(), *size), "array resize")


def test_latents_pass_through():
    ours, ref = both({"vae_latent_channels": 16})
    latents = ms.Tensor(np_images(23, (1, 16, 5, 7)) * 4 - 2)
    out = ours.preprocess(latents)
    assert_same(out, ref.preprocess(to_torch(latents)), "latents")


def test_negative_range_input_is_not_normalized_again():
    ours, ref = both({})
    image = ms.Tensor(np_images(24, (1, 3, 16, 16)) * 2 - 1)
    with pytest.warns(FutureWarning):
        expected = ref.preprocess(to_torch(image))
    with pytest.warns(FutureWarning, match="value range"):
        actual = ours.preprocess(image)
    assert_same(actual, expected, "[-1, 1] input")


def test_deprecated_list_of_batches():
    ours, ref = both({})
    arrays = [np_images(25, (1, 16, 24, 3)), np_images(26, (2, 16, 24, 3))]
    tensors = [ms.Tensor(np_images(27, (1, 3, 16, 24))), ms.Tensor(np_images(28, (2, 3, 16, 24)))]
    for image in (arrays, tensors):
        with pytest.warns(FutureWarning):
            expected = ref.preprocess(to_torch(image))
        with pytest.warns(FutureWarning, match="deprecated"):
            actual = ours.preprocess(image)
        assert_same(actual, expected, "list of 4-d inputs")


@pytest.mark.parametrize("output_type", ["pil", "np", "ms", "pt", "latent"])
@pytest.mark.parametrize("config_name", ["default", "no_normalize"])
@pytest.mark.parametrize("channels", [3, 1])
def test_postprocess_matches(output_type, config_name, channels):
    ours, ref = both(CONFIGS[config_name])
    x = np_images(30, (2, channels, 16, 24)) * 2.4 - 1.2  # some values outside the range, to exercise the clamp
    ref_type = "pt" if output_type == "ms" else output_type
    expected = ref.postprocess(torch.from_numpy(x.copy()), output_type=ref_type)
    actual = ours.postprocess(ms.Tensor(x), output_type=output_type)
    assert_same(actual, expected, f"postprocess to {output_type}")


def test_postprocess_per_image_denormalize_and_bf16():
    ours, ref = both({})
    x = np_images(31, (3, 3, 8, 8)) * 2 - 1
    flags = [True, False, True]
    for output_type, ref_type in [("ms", "pt"), ("np", "np")]:
        expected = ref.postprocess(torch.from_numpy(x.copy()), output_type=ref_type, do_denormalize=flags)
        assert_same(ours.postprocess(ms.Tensor(x), output_type=output_type, do_denormalize=flags), expected, "flags")
    expected = ref.postprocess(torch.from_numpy(x).to(torch.bfloat16), output_type="np")
    actual = ours.postprocess(ms.Tensor(x).astype(ms.bfloat16), output_type="np")
    assert_same(actual, expected, "bf16 to np")


def test_bfloat16_bool_and_integer_tensors():
    # MindSpore 2.10 has no bfloat16 CPU kernel for Stack, ReduceMin, Less or UpsampleNearest2D: what torch runs in
    # bfloat16 must still give its values; bool images are read as torch reads them
    x = np_images(33, (2, 3, 9, 7))
    for config in ({}, {"do_normalize": False}, {"do_binarize": True}, {"do_resize": False}):
        ours, ref = both(config)
        for make in (lambda a: a, lambda a: list(a)):  # a batch, and a list of 3-d images (stacked)
            expected = ref.preprocess(make(torch.from_numpy(x).to(torch.bfloat16)), height=16, width=8)
            actual = ours.preprocess(make(ms.Tensor(x).astype(ms.bfloat16)), height=16, width=8)
            assert_same(actual, expected, f"bf16 preprocess {config}")
    ours, ref = both({"do_resize": False})
    assert_same(ours.preprocess(ms.Tensor(x > 0.5)), ref.preprocess(torch.from_numpy(x > 0.5)), "bool preprocess")

    ours, ref = both({})
    flags = [False, True]
    expected = ref.postprocess(torch.from_numpy(x * 2 - 1).to(torch.bfloat16), output_type="pt", do_denormalize=flags)
    actual = ours.postprocess(ms.Tensor(x * 2 - 1).astype(ms.bfloat16), output_type="ms", do_denormalize=flags)
    assert_same(actual, expected, "bf16 per-image denormalize")

    image = ms.Tensor(x).astype(ms.bfloat16)
    assert ours.binarize(image) is image  # in place, as upstream
    assert_same(image, ref.binarize(torch.from_numpy(x).to(torch.bfloat16)), "bf16 binarize")

    # integer tensors: torch has no nearest-neighbour kernel for them (uint8 aside); MindSpore's would fail only at
    # a later call's synchronisation, so the port checks first
    for dtype in (ms.int32, ms.int64, ms.bool_):
        with pytest.raises(TypeError, match="do_resize=False"):
            ours.preprocess(ms.Tensor(np.ones((1, 3, 16, 16), np.float32)).astype(dtype))
    with pytest.raises(RuntimeError):
        ref.preprocess(torch.ones(1, 3, 16, 16, dtype=torch.int32))
    expected = ref.preprocess(torch.from_numpy(x), height=16, width=8)
    assert_same(ours.preprocess(ms.Tensor(x), height=16, width=8), expected, "the next call is unaffected")
    uint8 = (x * 255).astype(np.uint8)
    assert_same(ours.resize(ms.Tensor(uint8), 16, 8), ref.resize(torch.from_numpy(uint8), 16, 8), "uint8 resize")


DTYPE_PAIRS = [
    (ms.float32, ms.float16, torch.float32, torch.float16),
    (ms.float16, ms.bfloat16, torch.float16, torch.bfloat16),
    (ms.bfloat16, ms.bfloat16, torch.bfloat16, torch.bfloat16),
    (ms.uint8, ms.float16, torch.uint8, torch.float16),
    (ms.float64, ms.float32, torch.float64, torch.float32),
]


@pytest.mark.parametrize("do_normalize", [False, True])
@pytest.mark.parametrize("ms_a,ms_b,pt_a,pt_b", DTYPE_PAIRS, ids=[f"{p[0]}-{p[1]}" for p in DTYPE_PAIRS])
def test_lists_of_tensors_of_mixed_dtypes_are_promoted(ms_a, ms_b, pt_a, pt_b, do_normalize):
    # torch.cat / torch.stack promote; MindSpore's Concat failed only at a later call's synchronisation
    ours, ref = both({"do_normalize": do_normalize, "do_resize": False})
    x = np_images(40, (2, 3, 16, 8))
    if pt_a == torch.uint8 or pt_b == torch.uint8:
        x = (x * 255).round()
    for batched in (False, True):  # a list of 3-D images, a list of 4-D batches
        pick = (lambda i: x[i : i + 1]) if batched else (lambda i: x[i])
        images = [ms.Tensor(pick(0)).astype(ms_a), ms.Tensor(pick(1)).astype(ms_b)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = ref.preprocess([torch.from_numpy(pick(0)).to(pt_a), torch.from_numpy(pick(1)).to(pt_b)])
            actual = ours.preprocess(images)
        assert str(actual.dtype).lower() == str(expected.dtype).split(".")[1], (actual.dtype, expected.dtype)
        assert_same(actual, expected, f"mixed {ms_a} / {ms_b}, batched={batched}")
    assert_same(ours.preprocess(ms.Tensor(x)), ref.preprocess(torch.from_numpy(x)), "the next call is unaffected")


@pytest.mark.parametrize("dtype,pt_dtype", [(ms.uint8, torch.uint8), (ms.int32, torch.int32), (ms.bool_, torch.bool)])
def test_postprocess_per_image_denormalize_of_integer_tensors(dtype, pt_dtype):
    # the denormalized images become float, the others keep their dtype: stacking them promotes, as torch.stack
    ours, ref = both({})
    x = rng_of(41).integers(0, 2, size=(3, 3, 8, 8)).astype(np.float32)
    flags = [True, False, True]
    for output_type, ref_type in [("ms", "pt"), ("np", "np"), ("pil", "pil")]:
        expected = ref.postprocess(torch.from_numpy(x).to(pt_dtype), output_type=ref_type, do_denormalize=flags)
        actual = ours.postprocess(ms.Tensor(x).astype(dtype), output_type=output_type, do_denormalize=flags)
        assert_same(actual, expected, f"{dtype} to {output_type}")


def test_bad_tensor_lists_and_shapes_raise_upstream_error_types():
    ours, ref = both({})
    image = ms.Tensor(np_images(42, (3, 16, 8)))
    with pytest.raises(TypeError):
        ref.preprocess([torch.zeros(3, 16, 8), np.zeros((3, 16, 8), np.float32)])
    with pytest.raises(TypeError, match="element 1 is a numpy.ndarray"):
        ours.preprocess([image, np.zeros((3, 16, 8), np.float32)])
    with pytest.raises(RuntimeError):
        ref.preprocess([torch.zeros(3, 16, 8), torch.zeros(3, 8, 8)])
    for error in (ValueError, RuntimeError):  # ours is both: a ValueError, and torch's RuntimeError
        with pytest.raises(error, match="same shape"):
            ours.preprocess([image, image[:, :8]])
        with pytest.raises(error, match="must be positive"):
            ours.resize(image.unsqueeze(0), 0, 8)
    for bad in (image, image[0]):  # tensors are resized as 4-D batches (MindSpore failed only at a later call)
        with pytest.raises(ValueError):
            ref.resize(to_torch(bad), 8, 8)
        with pytest.raises(ValueError, match="batches of shape"):
            ours.resize(bad, 8, 8)
    with pytest.raises(NotImplementedError):  # torch's error type; ours is also a TypeError
        ours.resize(ms.Tensor(np.ones((1, 3, 8, 8), np.int32)), 8, 8)
    assert_same(ours.resize(image.unsqueeze(0), 8, 4), ref.resize(to_torch(image.unsqueeze(0)), 8, 4), "unaffected")


def test_empty_lists_2d_tensors_and_short_do_denormalize_are_explained():
    ours, ref = both({})
    images = np_images(43, (2, 3, 8, 8))
    cases = [
        (lambda p, t: p.preprocess([]), r"`image` is an empty list"),
        (lambda p, t: p.preprocess(t(np.zeros((16, 16), np.float32))), r"got a batch of shape \(1, 16, 16\)"),
        (
            lambda p, t: p.postprocess(t(images), output_type="np", do_denormalize=[True]),
            r"has 1 entries for a batch of 2",
        ),
    ]
    for call, match in cases:
        with pytest.raises(IndexError):
            call(ref, torch.from_numpy)
        for error in (ValueError, IndexError):  # ours is both: a ValueError, and upstream's IndexError
            with pytest.raises(error, match=match):
                call(ours, ms.Tensor)
    # a longer `do_denormalize` list: its first entries, as upstream
    expected = ref.postprocess(torch.from_numpy(images), output_type="np", do_denormalize=[True, False, True])
    actual = ours.postprocess(ms.Tensor(images), output_type="np", do_denormalize=[True, False, True])
    assert_same(actual, expected, "longer do_denormalize")
    # a 2-D NumPy array is one grayscale image, as upstream
    gray = np_images(44, (8, 8))
    assert_same(ours.preprocess(gray), ref.preprocess(gray), "2-D array")


def test_postprocess_keeps_nan_and_clips_infinities():
    # torch.clamp keeps NaN (a diverged float16 run shows as NaN upstream, not as a black image)
    ours, ref = both({})
    x = np.array([np.nan, -np.inf, np.inf, 0.2, -3.0, 0.99, 1.0, -1.0], np.float32).reshape(1, 2, 2, 2)
    for output_type, ref_type in [("ms", "pt"), ("np", "np")]:
        expected = ref.postprocess(torch.from_numpy(x.copy()), output_type=ref_type)
        actual = ours.postprocess(ms.Tensor(x), output_type=output_type)
        assert_same(actual, expected, output_type)  # NaN equal to NaN
        assert np.isnan(actual.asnumpy() if isinstance(actual, ms.Tensor) else actual).sum() == 1
    actual = ours.postprocess(ms.Tensor(x).astype(ms.bfloat16), output_type="np")
    assert_same(actual, ref.postprocess(torch.from_numpy(x).to(torch.bfloat16), output_type="np"), "bf16")


def test_postprocess_errors_and_unknown_output_type():
    ours, ref = both({})
    x = np_images(32, (1, 3, 8, 8))
    with pytest.raises(ValueError):
        ref.postprocess(x)
    with pytest.raises(ValueError, match="MindSpore tensor"):
        ours.postprocess(x)
    with pytest.warns(FutureWarning):
        expected = ref.postprocess(torch.from_numpy(x.copy()), output_type="jpeg")
    with pytest.warns(FutureWarning, match="set to `np`"):
        actual = ours.postprocess(ms.Tensor(x), output_type="jpeg")
    assert_same(actual, expected, "unknown output_type")
    # a single 3-D image to "np" / "pil": torch's RuntimeError (from permute) upstream; "ms" / "latent" pass it through
    single = np_images(33, (3, 8, 8))
    for output_type in ("np", "pil"):
        with pytest.raises(RuntimeError):
            ref.postprocess(torch.from_numpy(single.copy()), output_type=output_type)
        with pytest.raises(RuntimeError, match=r"shape \(batch, channels, height, width\), got shape \(3, 8, 8\)"):
            ours.postprocess(ms.Tensor(single), output_type=output_type)
    for output_type in ("ms", "latent"):
        expected = ref.postprocess(
            torch.from_numpy(single.copy()), output_type="pt" if output_type == "ms" else "latent"
        )
        assert_same(ours.postprocess(ms.Tensor(single), output_type=output_type), expected, output_type)


@pytest.mark.parametrize("config_name", ["default", "no_resize", "convert_rgb"])
def test_round_trips(config_name):
    proc = VaeImageProcessor(**CONFIGS[config_name])
    images = [pil_image(40, 32, 24), pil_image(41, 32, 24)]
    back = proc.postprocess(proc.preprocess(images), output_type="pil")
    assert_same(back, images, "PIL round trip")

    arr = np_images(42, (2, 24, 32, 3))
    np.testing.assert_allclose(proc.postprocess(proc.preprocess(arr), output_type="np"), arr, atol=1e-6)

    tensor = ms.Tensor(np_images(43, (2, 3, 24, 32)))
    out = proc.postprocess(proc.preprocess(tensor), output_type="ms")
    np.testing.assert_allclose(out.asnumpy(), tensor.asnumpy(), atol=1e-6)

    gray = pil_image(44, 32, 24, mode="L")
    gray_proc = VaeImageProcessor(do_convert_grayscale=True)
    assert_same(gray_proc.postprocess(gray_proc.preprocess(gray), output_type="pil"), [gray], "grayscale round trip")


def test_static_helpers_match():
    arr = np_images(50, (2, 6, 5, 3))
    assert_same(VaeImageProcessor.numpy_to_ms(arr), TorchProcessor.numpy_to_pt(arr), "numpy_to_ms")
    assert_same(VaeImageProcessor.numpy_to_ms(arr[..., 0]), TorchProcessor.numpy_to_pt(arr[..., 0]), "3-d numpy_to_ms")
    tensor = np_images(51, (2, 3, 6, 5), np.float64)
    assert_same(
        VaeImageProcessor.ms_to_numpy(ms.Tensor(tensor)), TorchProcessor.pt_to_numpy(torch.from_numpy(tensor)), "to np"
    )
    assert_same(VaeImageProcessor.numpy_to_pil(arr), TorchProcessor.numpy_to_pil(arr), "numpy_to_pil")
    assert_same(VaeImageProcessor.numpy_to_pil(arr[0, ..., :1]), TorchProcessor.numpy_to_pil(arr[0, ..., :1]), "gray")
    images = [pil_image(52, 7, 5), pil_image(53, 7, 5)]
    assert_same(VaeImageProcessor.pil_to_numpy(images), TorchProcessor.pil_to_numpy(images), "pil_to_numpy")
    assert_same(VaeImageProcessor.pil_to_numpy(images[0]), TorchProcessor.pil_to_numpy(images[0]), "pil_to_numpy")

    x = np_images(54, (1, 3, 4, 4)) * 3 - 1.5
    assert_same(VaeImageProcessor.normalize(ms.Tensor(x)), TorchProcessor.normalize(torch.from_numpy(x)), "normalize")
    expected = TorchProcessor.denormalize(torch.from_numpy(x))
    assert_same(VaeImageProcessor.denormalize(ms.Tensor(x)), expected, "denormalize")
    assert_same(VaeImageProcessor.denormalize(x), expected.numpy(), "denormalize numpy")

    ours, ref = both({})
    assert_same(ours.binarize(ms.Tensor(x)), ref.binarize(torch.from_numpy(x.copy())), "binarize")
    assert_same(ours.binarize(x.copy()), ref.binarize(torch.from_numpy(x.copy())).numpy(), "binarize numpy")

    rgba = pil_rgba()
    assert_same(ours.convert_to_rgb(rgba), ref.convert_to_rgb(rgba), "convert_to_rgb")
    assert_same(ours.convert_to_grayscale(rgba), ref.convert_to_grayscale(rgba), "convert_to_grayscale")
    assert_same(ours.blur(rgba, 2), ref.blur(rgba, 2), "blur")


@pytest.mark.parametrize("height,width", [(None, None), (50, None), (None, 70), (33, 47)])
def test_get_default_height_width_matches(height, width):
    ours, ref = both({"vae_scale_factor": 16})
    for image in (pil_image(60, 71, 53), np_images(61, (1, 53, 71, 3)), np_images(62, (1, 3, 53, 71))):
        ref_image = torch.from_numpy(image) if isinstance(image, np.ndarray) and image.shape[1] == 3 else image
        ours_image = ms.Tensor(image) if isinstance(ref_image, torch.Tensor) else image
        expected = ref.get_default_height_width(ref_image, height, width)
        assert ours.get_default_height_width(ours_image, height, width) == expected


def test_crop_region_and_overlay_match():
    ours, ref = both({})
    mask = np.zeros((40, 60), np.uint8)
    mask[10:18, 20:45] = 255
    mask = PIL.Image.fromarray(mask)
    for width, height in [(64, 64), (32, 64), (96, 32)]:
        for pad in (0, 4):
            expected = ref.get_crop_region(mask, width, height, pad=pad)
            assert ours.get_crop_region(mask, width, height, pad=pad) == expected
    init_image, image = pil_image(63, 60, 40), pil_image(64, 60, 40)
    assert_same(ours.apply_overlay(mask, init_image, image), ref.apply_overlay(mask, init_image, image), "overlay")
    crop = ref.get_crop_region(mask, 64, 64, pad=2)
    expected = ref.apply_overlay(mask, init_image, pil_image(65, 30, 30), crop_coords=crop)
    assert_same(ours.apply_overlay(mask, init_image, pil_image(65, 30, 30), crop_coords=crop), expected, "crop")


def test_validity_checks_and_errors():
    assert is_valid_image(pil_single()) and is_valid_image(ms_single()) and is_valid_image(np_single())
    assert not is_valid_image(ms_batch()) and is_valid_image_imagelist(ms_batch())
    assert is_valid_image_imagelist(ms_list()) and not is_valid_image_imagelist([ms_batch(), "x"])

    with pytest.raises(ValueError):
        TorchProcessor(do_convert_rgb=True, do_convert_grayscale=True)
    with pytest.raises(ValueError, match="do_convert_grayscale"):
        VaeImageProcessor(do_convert_rgb=True, do_convert_grayscale=True)
    with pytest.raises(ValueError, match="resample"):
        VaeImageProcessor(resample="box")

    ours, ref = both({})
    for bad in ("image.png", [1, 2], np.zeros((2, 2, 2, 2, 2))):
        with pytest.raises(ValueError):
            ref.preprocess(bad)
        with pytest.raises(ValueError, match="incorrect format"):
            ours.preprocess(bad)
    for mode in ("fill", "crop"):
        with pytest.raises(ValueError):
            ref.resize(torch.zeros(1, 3, 8, 8), 4, 4, resize_mode=mode)
        with pytest.raises(ValueError, match="Only PIL image"):
            ours.resize(ms_batch(), 4, 4, resize_mode=mode)
    with pytest.raises(ValueError, match="not supported"):
        ours.resize(pil_single(), 8, 8, resize_mode="stretch")
    assert set(PIL_INTERPOLATION) == {"linear", "bilinear", "bicubic", "lanczos", "nearest"}


def test_config_round_trip_with_diffusers(tmp_path):
    ref = TorchProcessor(vae_scale_factor=16, resample="bicubic", do_binarize=True)
    ref.save_config(tmp_path)
    ours = VaeImageProcessor.from_config(VaeImageProcessor.load_config(tmp_path))
    ours.save_config(tmp_path / "ours")
    ref_back = TorchProcessor.from_config(TorchProcessor.load_config(tmp_path / "ours"))
    public = {k: v for k, v in ref.config.items() if not k.startswith("_")}
    assert {k: v for k, v in ours.config.items() if not k.startswith("_")} == public
    assert {k: v for k, v in ref_back.config.items() if not k.startswith("_")} == public
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = pil_image(70, 40, 40)
        assert_same(ours.preprocess(image), ref_back.preprocess(image), "preprocess after config round trip")


def test_graph_mode_context_gives_the_same_results(graph_mode):
    """Pipelines may run in GRAPH_MODE: pre/postprocessing of tensors (eager ops) still works and matches."""
    ours, ref = both({"vae_scale_factor": 16})
    x = np_images(80, (2, 3, 37, 29))
    assert_same(ours.preprocess(ms.Tensor(x)), ref.preprocess(torch.from_numpy(x.copy())), "preprocess")
    y = x * 2.2 - 1.1
    assert_same(ours.postprocess(ms.Tensor(y), "ms"), ref.postprocess(torch.from_numpy(y.copy()), "pt"), "postprocess")
    assert_same(ours.postprocess(ms.Tensor(y)), ref.postprocess(torch.from_numpy(y.copy())), "postprocess to PIL")
