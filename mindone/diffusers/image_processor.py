# Copyright 2026 The HuggingFace Team. All rights reserved.
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
# Adapted from diffusers v0.42.1 `image_processor.py`; MindSpore changes: tensors are `ms.Tensor` (`numpy_to_pt` /
# `pt_to_numpy` become `numpy_to_ms` / `ms_to_numpy`, `output_type="pt"` is read as `"ms"`), only `VaeImageProcessor`
# (no InpaintProcessor / LDM3D / IP-Adapter mask / PixArt processors), `PIL_INTERPOLATION` lives here.

import warnings
from typing import List, Optional, Tuple, Union

import numpy as np
import PIL.Image
from PIL import Image, ImageFilter, ImageOps

import mindspore as ms
from mindspore import mint

from .configuration_utils import ConfigMixin, register_to_config
from .utils import CONFIG_NAME
from .utils.mindspore_utils import promote_types, type_name

PIL_INTERPOLATION = {
    "linear": PIL.Image.Resampling.BILINEAR,
    "bilinear": PIL.Image.Resampling.BILINEAR,
    "bicubic": PIL.Image.Resampling.BICUBIC,
    "lanczos": PIL.Image.Resampling.LANCZOS,
    "nearest": PIL.Image.Resampling.NEAREST,
}

PipelineImageInput = Union[
    PIL.Image.Image,
    np.ndarray,
    ms.Tensor,
    List[PIL.Image.Image],
    List[np.ndarray],
    List[ms.Tensor],
]

PipelineDepthInput = PipelineImageInput


def is_valid_image(image) -> bool:
    r"""
    Checks if the input is a valid image.

    A valid image can be:
    - A `PIL.Image.Image`.
    - A 2D or 3D `np.ndarray` or `ms.Tensor` (grayscale or color image).

    Args:
        image (`Union[PIL.Image.Image, np.ndarray, ms.Tensor]`):
            The image to validate. It can be a PIL image, a NumPy array, or a MindSpore tensor.

    Returns:
        `bool`:
            `True` if the input is a valid image, `False` otherwise.
    """
    return isinstance(image, PIL.Image.Image) or isinstance(image, (np.ndarray, ms.Tensor)) and image.ndim in (2, 3)


def is_valid_image_imagelist(images):
    r"""
    Checks if the input is a valid image or list of images.

    The input can be one of the following formats:
    - A 4D tensor or numpy array (batch of images).
    - A valid single image: `PIL.Image.Image`, 2D `np.ndarray` or `ms.Tensor` (grayscale image), 3D `np.ndarray` or
      `ms.Tensor`.
    - A list of valid images.

    Args:
        images (`Union[np.ndarray, ms.Tensor, PIL.Image.Image, List]`):
            The image(s) to check. Can be a batch of images (4D tensor/array), a single image, or a list of valid
            images.

    Returns:
        `bool`:
            `True` if the input is valid, `False` otherwise.
    """
    if isinstance(images, (np.ndarray, ms.Tensor)) and images.ndim == 4:
        return True
    elif is_valid_image(images):
        return True
    elif isinstance(images, list):
        return all(is_valid_image(image) for image in images)
    return False


class _ImageSizeError(ValueError, RuntimeError):
    """Bad image sizes: a ValueError, and also the RuntimeError torch raises for the same input upstream."""


class _ImageIndexError(ValueError, IndexError):
    """An empty list, a short `do_denormalize`, a 2-D tensor: a ValueError, and also the IndexError upstream hits."""


class _ImageDtypeError(TypeError, NotImplementedError):
    """A dtype no resize kernel takes: a TypeError, and also torch's NotImplementedError upstream."""


def _cat(tensors: List[ms.Tensor], dim: int = 0) -> ms.Tensor:
    for i, t in enumerate(tensors):
        if not isinstance(t, ms.Tensor):
            raise TypeError(f"Expected a list of `ms.Tensor` images, but element {i} is a {type_name(t)}.")
    shapes = {tuple(t.shape[:dim] + t.shape[dim + 1 :]) for t in tensors}
    if len(shapes) > 1 or len({t.ndim for t in tensors}) > 1:
        raise _ImageSizeError(
            f"Images in one list must have the same shape, but got {[tuple(t.shape) for t in tensors]}: resize them "
            "to one size first (or pass PIL images with `do_resize=True`)."
        )
    dtype = promote_types(*(t.dtype for t in tensors))
    return mint.cat([t if t.dtype == dtype else t.astype(dtype) for t in tensors], dim=dim)


def _stack(tensors: List[ms.Tensor]) -> ms.Tensor:
    # Stack has no bfloat16 CPU kernel in MindSpore 2.10; Concat of unsqueezed views has, and is the same copy
    return _cat([t.unsqueeze(0) if isinstance(t, ms.Tensor) else t for t in tensors], dim=0)


def _reducible(image: ms.Tensor) -> ms.Tensor:
    # ReduceMin / ReduceMax have no bfloat16 or bool CPU kernel: read the range in float32 (exact for both)
    return image.astype(ms.float32) if image.dtype in (ms.bfloat16, ms.bool_) else image


class VaeImageProcessor(ConfigMixin):
    """
    Image processor for VAE.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to downscale the image's (height, width) dimensions to multiples of `vae_scale_factor`. Can accept
            `height` and `width` arguments from [`image_processor.VaeImageProcessor.preprocess`] method.
        vae_scale_factor (`int`, *optional*, defaults to `8`):
            VAE scale factor. If `do_resize` is `True`, the image is automatically resized to multiples of this factor.
        vae_latent_channels (`int`, *optional*, defaults to `4`):
            Number of latent channels: a tensor input with this many channels is taken as latents and returned as is.
        resample (`str`, *optional*, defaults to `lanczos`):
            Resampling filter to use when resizing the image.
        reducing_gap (`int`, *optional*, defaults to `None`):
            Passed to `PIL.Image.Image.resize` (optimization of downscaling by steps).
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalize the image to [-1,1].
        do_binarize (`bool`, *optional*, defaults to `False`):
            Whether to binarize the image to 0/1.
        do_convert_rgb (`bool`, *optional*, defaults to be `False`):
            Whether to convert the images to RGB format.
        do_convert_grayscale (`bool`, *optional*, defaults to be `False`):
            Whether to convert the images to grayscale format.
    """

    config_name = CONFIG_NAME

    @register_to_config
    def __init__(
        self,
        do_resize: bool = True,
        vae_scale_factor: int = 8,
        vae_latent_channels: int = 4,
        resample: str = "lanczos",
        reducing_gap: Optional[int] = None,
        do_normalize: bool = True,
        do_binarize: bool = False,
        do_convert_rgb: bool = False,
        do_convert_grayscale: bool = False,
    ):
        super().__init__()
        if do_convert_rgb and do_convert_grayscale:
            raise ValueError(
                "`do_convert_rgb` and `do_convert_grayscale` can not both be set to `True`,"
                " if you intended to convert the image into RGB format, please set `do_convert_grayscale = False`."
                " if you intended to convert the image into grayscale format, please set `do_convert_rgb = False`"
            )
        if resample not in PIL_INTERPOLATION:
            raise ValueError(f"`resample` must be one of {sorted(PIL_INTERPOLATION)}, but is {resample!r}.")

    @staticmethod
    def numpy_to_pil(images: np.ndarray) -> List[PIL.Image.Image]:
        r"""
        Convert a numpy image or a batch of images to a PIL image.

        Args:
            images (`np.ndarray`):
                The image array to convert to PIL format.

        Returns:
            `List[PIL.Image.Image]`:
                A list of PIL images.
        """
        if images.ndim == 3:
            images = images[None, ...]
        images = (images * 255).round().astype("uint8")
        if images.shape[-1] == 1:
            # special case for grayscale (single channel) images
            pil_images = [Image.fromarray(image.squeeze(), mode="L") for image in images]
        else:
            pil_images = [Image.fromarray(image) for image in images]

        return pil_images

    @staticmethod
    def pil_to_numpy(images: Union[List[PIL.Image.Image], PIL.Image.Image]) -> np.ndarray:
        r"""
        Convert a PIL image or a list of PIL images to NumPy arrays.

        Args:
            images (`PIL.Image.Image` or `List[PIL.Image.Image]`):
                The PIL image or list of images to convert to NumPy format.

        Returns:
            `np.ndarray`:
                A NumPy array representation of the images.
        """
        if not isinstance(images, list):
            images = [images]
        images = [np.array(image).astype(np.float32) / 255.0 for image in images]
        images = np.stack(images, axis=0)

        return images

    @staticmethod
    def numpy_to_ms(images: np.ndarray) -> ms.Tensor:
        r"""
        Convert a NumPy image to a MindSpore tensor (NHWC -> NCHW, dtype kept).

        Args:
            images (`np.ndarray`):
                The NumPy image array to convert to MindSpore format.

        Returns:
            `ms.Tensor`:
                A MindSpore tensor representation of the images.
        """
        if images.ndim == 3:
            images = images[..., None]

        images = ms.Tensor(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return images

    @staticmethod
    def ms_to_numpy(images: ms.Tensor) -> np.ndarray:
        r"""
        Convert a MindSpore tensor to a NumPy image (NCHW -> NHWC, float32 like upstream's `.float()`).

        Args:
            images (`ms.Tensor`):
                The MindSpore tensor to convert to NumPy format.

        Returns:
            `np.ndarray`:
                A NumPy array representation of the images.
        """
        images = images.permute(0, 2, 3, 1).astype(ms.float32).asnumpy()
        return images

    @staticmethod
    def normalize(images: Union[np.ndarray, ms.Tensor]) -> Union[np.ndarray, ms.Tensor]:
        r"""
        Normalize an image array to [-1,1].

        Args:
            images (`np.ndarray` or `ms.Tensor`):
                The image array to normalize.

        Returns:
            `np.ndarray` or `ms.Tensor`:
                The normalized image array.
        """
        return 2.0 * images - 1.0

    @staticmethod
    def denormalize(images: Union[np.ndarray, ms.Tensor]) -> Union[np.ndarray, ms.Tensor]:
        r"""
        Denormalize an image array to [0,1].

        Args:
            images (`np.ndarray` or `ms.Tensor`):
                The image array to denormalize.

        Returns:
            `np.ndarray` or `ms.Tensor`:
                The denormalized image array.
        """
        if isinstance(images, np.ndarray):
            return np.clip(images * 0.5 + 0.5, 0, 1)
        images = images * 0.5 + 0.5
        dtype = images.dtype
        if dtype == ms.bfloat16:
            # Maximum/Minimum (clamp) have no bfloat16 CPU kernel: clamp in float32 (exact, values are only selected)
            images = images.astype(ms.float32)
        # MindSpore's CPU clamp turns NaN into 0; `torch.clamp` keeps it (a diverged run shows as NaN, not as black)
        images = mint.where(images != images, images, mint.clamp(images, 0, 1))
        return images.astype(dtype)

    @staticmethod
    def convert_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
        r"""
        Converts a PIL image to RGB format.

        Args:
            image (`PIL.Image.Image`):
                The PIL image to convert to RGB.

        Returns:
            `PIL.Image.Image`:
                The RGB-converted PIL image.
        """
        image = image.convert("RGB")

        return image

    @staticmethod
    def convert_to_grayscale(image: PIL.Image.Image) -> PIL.Image.Image:
        r"""
        Converts a given PIL image to grayscale.

        Args:
            image (`PIL.Image.Image`):
                The input image to convert.

        Returns:
            `PIL.Image.Image`:
                The image converted to grayscale.
        """
        image = image.convert("L")

        return image

    @staticmethod
    def blur(image: PIL.Image.Image, blur_factor: int = 4) -> PIL.Image.Image:
        r"""
        Applies Gaussian blur to an image.

        Args:
            image (`PIL.Image.Image`):
                The PIL image to blur.
            blur_factor (`int`, *optional*, defaults to 4):
                The radius of the Gaussian blur.

        Returns:
            `PIL.Image.Image`:
                The blurred PIL image.
        """
        image = image.filter(ImageFilter.GaussianBlur(blur_factor))

        return image

    @staticmethod
    def get_crop_region(mask_image: PIL.Image.Image, width: int, height: int, pad=0):
        r"""
        Finds a rectangular region that contains all masked ares in an image, and expands region to match the aspect
        ratio of the original image; for example, if user drew mask in a 128x32 region, and the dimensions for
        processing are 512x512, the region will be expanded to 128x128.

        Args:
            mask_image (PIL.Image.Image): Mask image.
            width (int): Width of the image to be processed.
            height (int): Height of the image to be processed.
            pad (int, optional): Padding to be added to the crop region. Defaults to 0.

        Returns:
            tuple: (x1, y1, x2, y2) represent a rectangular region that contains all masked ares in an image and
            matches the original aspect ratio.
        """
        mask_image = mask_image.convert("L")
        mask = np.array(mask_image)

        # 1. find a rectangular region that contains all masked ares in an image
        h, w = mask.shape
        nonzero_cols = np.nonzero((mask != 0).any(axis=0))[0]
        nonzero_rows = np.nonzero((mask != 0).any(axis=1))[0]
        crop_left = int(nonzero_cols[0]) if len(nonzero_cols) else w
        crop_right = int(w - 1 - nonzero_cols[-1]) if len(nonzero_cols) else w
        crop_top = int(nonzero_rows[0]) if len(nonzero_rows) else h
        crop_bottom = int(h - 1 - nonzero_rows[-1]) if len(nonzero_rows) else h

        # 2. add padding to the crop region
        x1, y1, x2, y2 = (
            int(max(crop_left - pad, 0)),
            int(max(crop_top - pad, 0)),
            int(min(w - crop_right + pad, w)),
            int(min(h - crop_bottom + pad, h)),
        )

        # 3. expands crop region to match the aspect ratio of the image to be processed
        ratio_crop_region = (x2 - x1) / (y2 - y1)
        ratio_processing = width / height

        if ratio_crop_region > ratio_processing:
            desired_height = (x2 - x1) / ratio_processing
            desired_height_diff = int(desired_height - (y2 - y1))
            y1 -= desired_height_diff // 2
            y2 += desired_height_diff - desired_height_diff // 2
            if y2 >= mask_image.height:
                diff = y2 - mask_image.height
                y2 -= diff
                y1 -= diff
            if y1 < 0:
                y2 -= y1
                y1 -= y1
            if y2 >= mask_image.height:
                y2 = mask_image.height
        else:
            desired_width = (y2 - y1) * ratio_processing
            desired_width_diff = int(desired_width - (x2 - x1))
            x1 -= desired_width_diff // 2
            x2 += desired_width_diff - desired_width_diff // 2
            if x2 >= mask_image.width:
                diff = x2 - mask_image.width
                x2 -= diff
                x1 -= diff
            if x1 < 0:
                x2 -= x1
                x1 -= x1
            if x2 >= mask_image.width:
                x2 = mask_image.width

        return x1, y1, x2, y2

    def _resize_and_fill(
        self,
        image: PIL.Image.Image,
        width: int,
        height: int,
    ) -> PIL.Image.Image:
        r"""
        Resize the image to fit within the specified width and height, maintaining the aspect ratio, and then center
        the image within the dimensions, filling empty with data from image.

        Args:
            image (`PIL.Image.Image`):
                The image to resize and fill.
            width (`int`):
                The width to resize the image to.
            height (`int`):
                The height to resize the image to.

        Returns:
            `PIL.Image.Image`:
                The resized and filled image.
        """
        ratio = width / height
        src_ratio = image.width / image.height

        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width

        resized = image.resize((src_w, src_h), resample=PIL_INTERPOLATION[self.config.resample])
        res = Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))

        if ratio < src_ratio:
            fill_height = height // 2 - src_h // 2
            if fill_height > 0:
                res.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
                res.paste(
                    resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                    box=(0, fill_height + src_h),
                )
        elif ratio > src_ratio:
            fill_width = width // 2 - src_w // 2
            if fill_width > 0:
                res.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
                res.paste(
                    resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                    box=(fill_width + src_w, 0),
                )

        return res

    def _resize_and_crop(
        self,
        image: PIL.Image.Image,
        width: int,
        height: int,
    ) -> PIL.Image.Image:
        r"""
        Resize the image to fit within the specified width and height, maintaining the aspect ratio, and then center
        the image within the dimensions, cropping the excess.

        Args:
            image (`PIL.Image.Image`):
                The image to resize and crop.
            width (`int`):
                The width to resize the image to.
            height (`int`):
                The height to resize the image to.

        Returns:
            `PIL.Image.Image`:
                The resized and cropped image.
        """
        ratio = width / height
        src_ratio = image.width / image.height

        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width

        resized = image.resize((src_w, src_h), resample=PIL_INTERPOLATION[self.config.resample])
        res = Image.new("RGB", (width, height))
        res.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return res

    @staticmethod
    def _interpolate_nearest(image: ms.Tensor, height: int, width: int) -> ms.Tensor:
        # torch's `F.interpolate(image, size)` default: mode "nearest" (same index rule in MindSpore).
        # MindSpore's CPU kernel fails only at the next synchronisation, in a later call: check what torch checks
        if image.ndim != 4:
            raise ValueError(
                f"Cannot resize an image tensor of shape {tuple(image.shape)} to {(height, width)}: tensors are "
                "resized as batches of shape (batch, channels, height, width)."
            )
        if image.dtype not in (ms.uint8, ms.float16, ms.bfloat16, ms.float32, ms.float64):
            # torch has no "upsample_nearest2d" kernel for integers but uint8 either
            raise _ImageDtypeError(
                f"Cannot resize an image tensor of dtype {image.dtype}: pass a float tensor with values in [0, 1] "
                "(or uint8), or set `do_resize=False`."
            )
        # UpsampleNearest2D has no bfloat16 CPU kernel: go through float32 (exact for a nearest-neighbour copy).
        if image.dtype == ms.bfloat16:
            return mint.nn.functional.interpolate(image.astype(ms.float32), size=(height, width)).astype(ms.bfloat16)
        return mint.nn.functional.interpolate(image, size=(height, width))

    def resize(
        self,
        image: Union[PIL.Image.Image, np.ndarray, ms.Tensor],
        height: int,
        width: int,
        resize_mode: str = "default",  # "default", "fill", "crop"
    ) -> Union[PIL.Image.Image, np.ndarray, ms.Tensor]:
        """
        Resize image.

        Args:
            image (`PIL.Image.Image`, `np.ndarray` or `ms.Tensor`):
                The image input, can be a PIL image, numpy array or MindSpore tensor.
            height (`int`):
                The height to resize to.
            width (`int`):
                The width to resize to.
            resize_mode (`str`, *optional*, defaults to `default`):
                The resize mode to use, can be one of `default` or `fill`. If `default`, will resize the image to fit
                within the specified width and height, and it may not maintaining the original aspect ratio. If `fill`,
                will resize the image to fit within the specified width and height, maintaining the aspect ratio, and
                then center the image within the dimensions, filling empty with data from image. If `crop`, will resize
                the image to fit within the specified width and height, maintaining the aspect ratio, and then center
                the image within the dimensions, cropping the excess. Note that resize_mode `fill` and `crop` are only
                supported for PIL image input. Tensors and arrays are resized with nearest-neighbour interpolation,
                as upstream.

        Returns:
            `PIL.Image.Image`, `np.ndarray` or `ms.Tensor`:
                The resized image.
        """
        if resize_mode != "default" and not isinstance(image, PIL.Image.Image):
            raise ValueError(f"Only PIL image input is supported for resize_mode {resize_mode}")
        if height <= 0 or width <= 0:
            raise _ImageSizeError(f"`height` and `width` must be positive to resize, but are {height} and {width}.")
        if isinstance(image, PIL.Image.Image):
            if resize_mode == "default":
                image = image.resize(
                    (width, height),
                    resample=PIL_INTERPOLATION[self.config.resample],
                    reducing_gap=self.config.reducing_gap,
                )
            elif resize_mode == "fill":
                image = self._resize_and_fill(image, width, height)
            elif resize_mode == "crop":
                image = self._resize_and_crop(image, width, height)
            else:
                raise ValueError(f"resize_mode {resize_mode} is not supported")

        elif isinstance(image, ms.Tensor):
            image = self._interpolate_nearest(image, height, width)
        elif isinstance(image, np.ndarray):
            image = self.numpy_to_ms(image)
            image = self._interpolate_nearest(image, height, width)
            image = self.ms_to_numpy(image)

        return image

    def binarize(self, image: Union[np.ndarray, ms.Tensor]) -> Union[np.ndarray, ms.Tensor]:
        """
        Create a mask.

        Args:
            image (`np.ndarray` or `ms.Tensor`):
                The image input (modified in place, as upstream).

        Returns:
            `np.ndarray` or `ms.Tensor`:
                The binarized image. Values less than 0.5 are set to 0, values greater than 0.5 are set to 1.
        """
        if isinstance(image, ms.Tensor) and image.dtype == ms.bfloat16:
            # Less / Select have no bfloat16 CPU kernel: binarize in float32 (0 and 1 are exact), write back in place
            binary = image.astype(ms.float32)
            binary[binary < 0.5] = 0
            binary[binary >= 0.5] = 1
            image.assign_value(binary.astype(ms.bfloat16))
            return image
        image[image < 0.5] = 0
        image[image >= 0.5] = 1

        return image

    def _denormalize_conditionally(self, images: ms.Tensor, do_denormalize: Optional[List[bool]] = None) -> ms.Tensor:
        r"""
        Denormalize a batch of images based on a condition list.

        Args:
            images (`ms.Tensor`):
                The input image tensor.
            do_denormalize (`Optional[List[bool]`, *optional*, defaults to `None`):
                A list of booleans indicating whether to denormalize each image in the batch. If `None`, will use the
                value of `do_normalize` in the `VaeImageProcessor` config.
        """
        if do_denormalize is not None and len(do_denormalize) < images.shape[0]:  # upstream reads the first ones
            raise _ImageIndexError(
                f"`do_denormalize` has {len(do_denormalize)} entries for a batch of {images.shape[0]} images: give one "
                "per image."
            )
        if do_denormalize is None:
            return self.denormalize(images) if self.config.do_normalize else images

        return _stack(
            [self.denormalize(images[i]) if do_denormalize[i] else images[i] for i in range(images.shape[0])]
        )

    def get_default_height_width(
        self,
        image: Union[PIL.Image.Image, np.ndarray, ms.Tensor],
        height: Optional[int] = None,
        width: Optional[int] = None,
    ) -> Tuple[int, int]:
        r"""
        Returns the height and width of the image, downscaled to the next integer multiple of `vae_scale_factor`.

        Args:
            image (`Union[PIL.Image.Image, np.ndarray, ms.Tensor]`):
                The image input, which can be a PIL image, NumPy array, or MindSpore tensor. If it is a NumPy array, it
                should have shape `[batch, height, width]` or `[batch, height, width, channels]`. If it is a MindSpore
                tensor, it should have shape `[batch, channels, height, width]`.
            height (`Optional[int]`, *optional*, defaults to `None`):
                The height of the preprocessed image. If `None`, the height of the `image` input will be used.
            width (`Optional[int]`, *optional*, defaults to `None`):
                The width of the preprocessed image. If `None`, the width of the `image` input will be used.

        Returns:
            `Tuple[int, int]`:
                A tuple containing the height and width, both resized to the nearest integer multiple of
                `vae_scale_factor`.
        """
        if height is None:
            if isinstance(image, PIL.Image.Image):
                height = image.height
            elif isinstance(image, ms.Tensor):
                height = image.shape[2]
            else:
                height = image.shape[1]

        if width is None:
            if isinstance(image, PIL.Image.Image):
                width = image.width
            elif isinstance(image, ms.Tensor):
                width = image.shape[3]
            else:
                width = image.shape[2]

        width, height = (
            x - x % self.config.vae_scale_factor for x in (width, height)
        )  # resize to integer multiple of vae_scale_factor

        return height, width

    def preprocess(
        self,
        image: PipelineImageInput,
        height: Optional[int] = None,
        width: Optional[int] = None,
        resize_mode: str = "default",  # "default", "fill", "crop"
        crops_coords: Optional[Tuple[int, int, int, int]] = None,
    ) -> ms.Tensor:
        """
        Preprocess the image input.

        Args:
            image (`PipelineImageInput`):
                The image input, accepted formats are PIL images, NumPy arrays, MindSpore tensors; Also accept list of
                supported formats.
            height (`int`, *optional*):
                The height in preprocessed image. If `None`, will use the `get_default_height_width()` to get default
                height.
            width (`int`, *optional*):
                The width in preprocessed. If `None`, will use get_default_height_width()` to get the default width.
            resize_mode (`str`, *optional*, defaults to `default`):
                The resize mode, can be one of `default` or `fill`. If `default`, will resize the image to fit within
                the specified width and height, and it may not maintaining the original aspect ratio. If `fill`, will
                resize the image to fit within the specified width and height, maintaining the aspect ratio, and then
                center the image within the dimensions, filling empty with data from image. If `crop`, will resize the
                image to fit within the specified width and height, maintaining the aspect ratio, and then center the
                image within the dimensions, cropping the excess. Note that resize_mode `fill` and `crop` are only
                supported for PIL image input.
            crops_coords (`List[Tuple[int, int, int, int]]`, *optional*, defaults to `None`):
                The crop coordinates for each image in the batch. If `None`, will not crop the image.

        Returns:
            `ms.Tensor`:
                The preprocessed image.
        """
        supported_formats = (PIL.Image.Image, np.ndarray, ms.Tensor)
        if isinstance(image, list) and not image:
            raise _ImageIndexError("`image` is an empty list: pass at least one image.")

        # Expand the missing dimension for 3-dimensional MindSpore tensor or numpy array that represents grayscale image
        if self.config.do_convert_grayscale and isinstance(image, (ms.Tensor, np.ndarray)) and image.ndim == 3:
            if isinstance(image, ms.Tensor):
                # if image is a MindSpore tensor could have 2 possible shapes:
                #    1. batch x height x width: we should insert the channel dimension at position 1
                #    2. channel x height x width: we should insert batch dimension at position 0,
                #       however, since both channel and batch dimension has same size 1, it is same to insert at position 1
                #    for simplicity, we insert a dimension of size 1 at position 1 for both cases
                image = image.unsqueeze(1)
            else:
                # if it is a numpy array, it could have 2 possible shapes:
                #   1. batch x height x width: insert channel dimension on last position
                #   2. height x width x channel: insert batch dimension on first position
                if image.shape[-1] == 1:
                    image = np.expand_dims(image, axis=0)
                else:
                    image = np.expand_dims(image, axis=-1)

        if isinstance(image, list) and isinstance(image[0], np.ndarray) and image[0].ndim == 4:
            warnings.warn(
                "Passing `image` as a list of 4d np.ndarray is deprecated."
                "Please concatenate the list along the batch dimension and pass it as a single 4d np.ndarray",
                FutureWarning,
            )
            image = np.concatenate(image, axis=0)
        if isinstance(image, list) and isinstance(image[0], ms.Tensor) and image[0].ndim == 4:
            warnings.warn(
                "Passing `image` as a list of 4d ms.Tensor is deprecated."
                "Please concatenate the list along the batch dimension and pass it as a single 4d ms.Tensor",
                FutureWarning,
            )
            image = _cat(image, dim=0)

        if not is_valid_image_imagelist(image):
            raise ValueError(
                f"Input is in incorrect format. Currently, we only support {', '.join(str(x) for x in supported_formats)}"
            )
        if not isinstance(image, list):
            image = [image]

        if isinstance(image[0], PIL.Image.Image):
            if crops_coords is not None:
                image = [i.crop(crops_coords) for i in image]
            if self.config.do_resize:
                height, width = self.get_default_height_width(image[0], height, width)
                image = [self.resize(i, height, width, resize_mode=resize_mode) for i in image]
            if self.config.do_convert_rgb:
                image = [self.convert_to_rgb(i) for i in image]
            elif self.config.do_convert_grayscale:
                image = [self.convert_to_grayscale(i) for i in image]
            image = self.pil_to_numpy(image)  # to np
            image = self.numpy_to_ms(image)  # to ms

        elif isinstance(image[0], np.ndarray):
            image = np.concatenate(image, axis=0) if image[0].ndim == 4 else np.stack(image, axis=0)

            image = self.numpy_to_ms(image)

            height, width = self.get_default_height_width(image, height, width)
            if self.config.do_resize:
                image = self.resize(image, height, width)

        elif isinstance(image[0], ms.Tensor):
            image = _cat(image, dim=0) if image[0].ndim == 4 else _stack(image)

            if self.config.do_convert_grayscale and image.ndim == 3:
                image = image.unsqueeze(1)
            if image.ndim != 4:  # (a 2-D NumPy array is read as one grayscale image)
                raise _ImageIndexError(
                    "`image` tensors must be (channels, height, width) or (batch_size, channels, height, width), got "
                    f"a batch of shape {image.shape}."
                )

            channel = image.shape[1]
            # don't need any preprocess if the image is latents
            if channel == self.config.vae_latent_channels:
                return image

            height, width = self.get_default_height_width(image, height, width)
            if self.config.do_resize:
                image = self.resize(image, height, width)

        # expected range [0,1], normalize to [-1,1]
        do_normalize = self.config.do_normalize
        if do_normalize and float(_reducible(image).min()) < 0:
            warnings.warn(
                "Passing `image` as MindSpore tensor with value range in [-1,1] is deprecated. The expected value range "
                "for image tensor is [0,1] when passing as MindSpore tensor or numpy Array. You passed `image` with "
                f"value range [{_reducible(image).min()},{_reducible(image).max()}]",
                FutureWarning,
            )
            do_normalize = False
        if do_normalize:
            image = self.normalize(image)

        if self.config.do_binarize:
            image = self.binarize(image)

        return image

    def postprocess(
        self,
        image: ms.Tensor,
        output_type: str = "pil",
        do_denormalize: Optional[List[bool]] = None,
    ) -> Union[List[PIL.Image.Image], np.ndarray, ms.Tensor]:
        """
        Postprocess the image output from tensor to `output_type`.

        Args:
            image (`ms.Tensor`):
                The image input, should be a MindSpore tensor with shape `B x C x H x W`.
            output_type (`str`, *optional*, defaults to `pil`):
                The output type of the image, can be one of `pil`, `np`, `ms`, `latent` (`pt`, upstream's tensor
                output, is read as `ms`).
            do_denormalize (`List[bool]`, *optional*, defaults to `None`):
                Whether to denormalize the image to [0,1]. If `None`, will use the value of `do_normalize` in the
                `VaeImageProcessor` config.

        Returns:
            `List[PIL.Image.Image]`, `np.ndarray` or `ms.Tensor`:
                The postprocessed image.
        """
        if not isinstance(image, ms.Tensor):
            raise ValueError(
                f"Input for postprocessing is in incorrect format: {type(image)}. We only support MindSpore tensor"
            )
        if output_type == "pt":
            output_type = "ms"
        if output_type not in ["latent", "ms", "np", "pil"]:
            warnings.warn(
                f"the output_type {output_type} is outdated and has been set to `np`. Please make sure to set it to one "
                "of these instead: `pil`, `np`, `ms`, `latent`",
                FutureWarning,
            )
            output_type = "np"

        if output_type == "latent":
            return image

        image = self._denormalize_conditionally(image, do_denormalize)

        if output_type == "ms":
            return image

        if image.ndim != 4:  # upstream's `permute(0, 2, 3, 1)` fails with a RuntimeError
            raise _ImageSizeError(
                f"`postprocess` to {output_type!r} takes a batch of images of shape (batch, channels, height, width), "
                f"got shape {tuple(image.shape)}."
            )
        image = self.ms_to_numpy(image)

        if output_type == "np":
            return image

        if output_type == "pil":
            return self.numpy_to_pil(image)

    def apply_overlay(
        self,
        mask: PIL.Image.Image,
        init_image: PIL.Image.Image,
        image: PIL.Image.Image,
        crop_coords: Optional[Tuple[int, int, int, int]] = None,
    ) -> PIL.Image.Image:
        r"""
        Applies an overlay of the mask and the inpainted image on the original image.

        Args:
            mask (`PIL.Image.Image`):
                The mask image that highlights regions to overlay.
            init_image (`PIL.Image.Image`):
                The original image to which the overlay is applied.
            image (`PIL.Image.Image`):
                The image to overlay onto the original.
            crop_coords (`Tuple[int, int, int, int]`, *optional*):
                Coordinates to crop the image. If provided, the image will be cropped accordingly.

        Returns:
            `PIL.Image.Image`:
                The final image with the overlay applied.
        """
        width, height = init_image.width, init_image.height

        init_image_masked = PIL.Image.new("RGBa", (width, height))
        init_image_masked.paste(init_image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))

        init_image_masked = init_image_masked.convert("RGBA")

        if crop_coords is not None:
            x, y, x2, y2 = crop_coords
            w = x2 - x
            h = y2 - y
            base_image = PIL.Image.new("RGBA", (width, height))
            image = self.resize(image, height=h, width=w, resize_mode="crop")
            base_image.paste(image, (x, y))
            image = base_image.convert("RGB")

        image = image.convert("RGBA")
        image.alpha_composite(init_image_masked)
        image = image.convert("RGB")

        return image
