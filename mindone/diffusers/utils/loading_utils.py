"""`load_image`, as diffusers v0.42.1 `utils/loading_utils.py` has it; MindSpore changes: URLs are read with the
standard library (no `requests` dependency)."""

import io
import os
import urllib.request
from typing import Callable, Optional, Union

import PIL.Image
import PIL.ImageOps

DIFFUSERS_REQUEST_TIMEOUT = 60


def load_image(
    image: Union[str, os.PathLike, PIL.Image.Image],
    convert_method: Optional[Callable[[PIL.Image.Image], PIL.Image.Image]] = None,
) -> PIL.Image.Image:
    """
    Loads `image` to a PIL Image.

    Args:
        image (`str`, `os.PathLike` or `PIL.Image.Image`):
            A URL (`http://` / `https://`), the path of an image file, or a PIL image.
        convert_method (`Callable[[PIL.Image.Image], PIL.Image.Image]`, *optional*):
            A conversion applied after loading; by default the image is converted to "RGB".

    Returns:
        `PIL.Image.Image`: the image, EXIF orientation applied.
    """
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if isinstance(image, str):
        if image.startswith("http://") or image.startswith("https://"):
            with urllib.request.urlopen(image, timeout=DIFFUSERS_REQUEST_TIMEOUT) as response:
                image = PIL.Image.open(io.BytesIO(response.read()))
        elif os.path.isfile(image):
            image = PIL.Image.open(image)
        else:
            raise ValueError(
                f"Incorrect path or URL. URLs must start with `http://` or `https://`, and {image} is not a valid path."
            )
    elif not isinstance(image, PIL.Image.Image):
        raise ValueError(
            "Incorrect format used for the image. Should be a URL linking to an image, a local path, or a PIL image."
        )

    image = PIL.ImageOps.exif_transpose(image)
    return convert_method(image) if convert_method is not None else image.convert("RGB")
