"""`make_image_grid`, as diffusers v0.42.1 `utils/pil_utils.py` has it (PIL only)."""

from typing import List, Optional

import PIL.Image


def make_image_grid(
    images: List[PIL.Image.Image], rows: int, cols: int, resize: Optional[int] = None
) -> PIL.Image.Image:
    """
    One RGB image of `rows` x `cols` cells of the size of the first image (each image resized to `resize` x `resize`
    first when given), filled row by row. Useful for visualization purposes.
    """
    if len(images) != rows * cols:
        raise ValueError(f"make_image_grid: {len(images)} images do not fill {rows} rows x {cols} columns.")

    if resize is not None:
        images = [img.resize((resize, resize)) for img in images]

    w, h = images[0].size
    grid = PIL.Image.new("RGB", size=(cols * w, rows * h))

    for i, img in enumerate(images):
        grid.paste(img, box=(i % cols * w, i // cols * h))
    return grid
