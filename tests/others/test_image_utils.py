"""`load_image` and `make_image_grid` (`mindone.diffusers.utils`, used by diffusers' guides) against diffusers'."""

import numpy as np
import PIL.Image
import pytest
from diffusers.utils import load_image as torch_side_load_image
from diffusers.utils import make_image_grid as torch_side_make_image_grid

from mindone.diffusers.utils import load_image, make_image_grid


def _image(rng, size=(5, 3), mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (size[1], size[0]) + ((channels,) if channels else ())
    return PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_load_image_as_diffusers(mode, rng, tmp_path):
    image = _image(rng, mode=mode)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: rotated, applied by both
    path = tmp_path / "i.png"
    image.save(path, exif=exif)
    for source in (str(path), image):
        expected = torch_side_load_image(source)
        ours = load_image(source)
        assert ours.mode == expected.mode == "RGB" and ours.size == expected.size
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(expected))
    assert load_image(path).size == torch_side_load_image(str(path)).size  # a PathLike too

    def keep(img):
        return img

    assert load_image(str(path), convert_method=keep).mode == torch_side_load_image(str(path), keep).mode == mode


def test_load_image_errors(tmp_path):
    with pytest.raises(ValueError, match="Incorrect path or URL"):
        load_image(str(tmp_path / "absent.png"))
    with pytest.raises(ValueError, match="Incorrect format"):
        load_image(np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize("rows,cols,resize", [(1, 1, None), (2, 3, None), (3, 2, 4), (1, 4, 7)])
def test_make_image_grid_as_diffusers(rows, cols, resize, rng):
    images = [_image(rng, mode="RGBA" if i % 2 else "RGB") for i in range(rows * cols)]
    expected = torch_side_make_image_grid(images, rows, cols, resize)
    ours = make_image_grid(images, rows, cols, resize)
    assert ours.mode == expected.mode and ours.size == expected.size
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(expected))
    with pytest.raises(ValueError, match=f"{rows * cols - 1} images do not fill {rows} rows x {cols} columns"):
        make_image_grid(images[:-1], rows, cols)
