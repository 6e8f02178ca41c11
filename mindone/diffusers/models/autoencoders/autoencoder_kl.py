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
"""The KL autoencoder (the FLUX / Stable Diffusion VAE).

Adapted from diffusers v0.42.1 `models/autoencoders/autoencoder_kl.py`; MindSpore changes: `return_dict=False` by
default; `generator` is a `numpy.random.Generator`; convolutions are `cpu_layers.Conv2d` (torch's parameter names, fast
CPU path); tile blending is vectorised (one weighted sum per overlap instead of a Python loop of in-place row
writes, same numbers); `encode` / `decode` / the forward pass run on the host and call the `encoder`, `decoder` and
quant-conv cells, which GRAPH_MODE compiles (once per input shape), so tiling, slicing, the posterior object and numpy
generators work in both modes when called from Python (`ms.jit` of `construct` compiles the forward pass without
posterior sampling; `encode` inside a compiled function raises: the posterior is a host object);
gradient checkpointing by `mindspore.recompute` (reentrant, see `vae.Encoder`); no QKV fusion.
"""

import warnings
from typing import Optional, Tuple, Union

import numpy as np

import mindspore as ms
from mindspore import mint

from ...configuration_utils import ConfigMixin, register_to_config
from ...loaders.peft import PeftAdapterMixin
from ...loaders.single_file_model import FromOriginalModelMixin
from ...utils.unsupported import VAE_METHODS, add_unsupported_methods
from ..attention import AttentionMixin
from ..attention_processor import AttnProcessor
from ..cpu_layers import Conv2d, _in_graph, check_batch_inputs, check_cpu_compute_dtype, check_input_dtype
from ..modeling_outputs import AutoencoderKLOutput
from ..modeling_utils import ModelMixin
from .vae import AutoencoderMixin, Decoder, DecoderOutput, DiagonalGaussianDistribution, Encoder


def _posterior_in_a_graph():
    # the posterior is a host object (NumPy generators, Python attributes): built inside a compiled function
    # (`ms.jit`, or `ms.grad` in GRAPH_MODE) it went through MindSpore's JIT fallback, which has no gradient (the
    # gradients came out as zeros) and no static shapes (a convolution after it failed)
    raise RuntimeError(
        "AutoencoderKL.encode (and sample_posterior=True) cannot run inside a compiled function (ms.jit, or ms.grad "
        "in GRAPH_MODE): its posterior is a host object, which a graph neither builds with static shapes nor "
        "differentiates. Call it from Python (PyNative), or in the compiled function split the encoder's moments "
        "yourself: mean, logvar = mint.chunk(vae._encode(x), 2, dim=1)."
    )


def _blend_weights(blend_extent: int) -> Tuple[ms.Tensor, ms.Tensor]:
    # upstream multiplies by the Python floats `1 - y / blend_extent` and `y / blend_extent` (rounded to float32 by the
    # kernel); the same float32 values here give the same products
    ramp = np.arange(blend_extent, dtype=np.float64) / blend_extent
    return ms.Tensor((1 - ramp).astype(np.float32)), ms.Tensor(ramp.astype(np.float32))


def _check_nchw(model, x: ms.Tensor, name: str, config_name: str, channels: int) -> None:
    if not _in_graph():
        check_batch_inputs(model, **{name: x})
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(
            f"`{name}` must be (batch_size, {config_name}={channels}, height, width) for this model's config, got "
            f"shape {x.shape}."
        )
    if not _in_graph():  # host checks (the forward pass may be compiled as a whole by `ms.jit`)
        dtype = model.dtype
        check_cpu_compute_dtype(model, dtype)
        _check_conv_dtype(model, dtype)
        check_input_dtype(model, dtype, **{name: x})


def _check_conv_dtype(model, dtype: ms.Type) -> None:
    if dtype == ms.float64:  # diffusers runs float64; MindSpore's Conv2D fails with its own message
        raise TypeError(
            f"{type(model).__name__} holds float64 parameters, but MindSpore's convolutions have no float64 kernel: "
            "use float32 (`.to(ms.float32)`)."
        )


class AutoencoderKL(
    ModelMixin, AttentionMixin, AutoencoderMixin, ConfigMixin, FromOriginalModelMixin, PeftAdapterMixin
):
    r"""
    A VAE model with KL loss for encoding images into latents and decoding latent representations into images.

    This model inherits from [`ModelMixin`]. Check the superclass documentation for it's generic methods implemented
    for all models (such as downloading or saving).

    Parameters:
        in_channels (int, *optional*, defaults to 3): Number of channels in the input image.
        out_channels (int,  *optional*, defaults to 3): Number of channels in the output.
        down_block_types (`Tuple[str]`, *optional*, defaults to `("DownEncoderBlock2D",)`):
            Tuple of downsample block types.
        up_block_types (`Tuple[str]`, *optional*, defaults to `("UpDecoderBlock2D",)`):
            Tuple of upsample block types.
        block_out_channels (`Tuple[int]`, *optional*, defaults to `(64,)`):
            Tuple of block output channels.
        act_fn (`str`, *optional*, defaults to `"silu"`): The activation function to use.
        latent_channels (`int`, *optional*, defaults to 4): Number of channels in the latent space.
        sample_size (`int`, *optional*, defaults to `32`): Sample input size.
        scaling_factor (`float`, *optional*, defaults to 0.18215):
            The component-wise standard deviation of the trained latent space computed using the first batch of the
            training set. This is used to scale the latent space to have unit variance when training the diffusion
            model. The latents are scaled with the formula `z = z * scaling_factor` before being passed to the
            diffusion model. When decoding, the latents are scaled back to the original scale with the formula: `z = 1
            / scaling_factor * z`. For more details, refer to sections 4.3.2 and D.1 of the [High-Resolution Image
            Synthesis with Latent Diffusion Models](https://huggingface.co/papers/2112.10752) paper.
        shift_factor (`float`, *optional*): Shift of the latent space (FLUX: 0.1159), applied by pipelines as
            `z = (z - shift_factor) * scaling_factor`.
        force_upcast (`bool`, *optional*, default to `True`):
            If enabled it will force the VAE to run in float32 for high image resolution pipelines, such as SD-XL. VAE
            can be fine-tuned / trained to a lower range without losing too much precision in which case `force_upcast`
            can be set to `False` - see: https://huggingface.co/madebyollin/sdxl-vae-fp16-fix
        use_quant_conv (`bool`, *optional*, defaults to `True`): Apply a 1x1 convolution to the encoder output.
        use_post_quant_conv (`bool`, *optional*, defaults to `True`): Apply a 1x1 convolution to the decoder input.
        mid_block_add_attention (`bool`, *optional*, default to `True`):
            If enabled, the mid_block of the Encoder and Decoder will have attention blocks. If set to false, the
            mid_block will only have resnet blocks
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["BasicTransformerBlock", "ResnetBlock2D"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Tuple[str] = ("DownEncoderBlock2D",),
        up_block_types: Tuple[str] = ("UpDecoderBlock2D",),
        block_out_channels: Tuple[int] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: Optional[float] = None,
        latents_mean: Optional[Tuple[float]] = None,
        latents_std: Optional[Tuple[float]] = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
    ):
        super().__init__()

        # pass init params to Encoder
        self.encoder = Encoder(
            in_channels=in_channels,
            out_channels=latent_channels,
            down_block_types=down_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
            double_z=True,
            mid_block_add_attention=mid_block_add_attention,
        )

        # pass init params to Decoder
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=out_channels,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn=act_fn,
            mid_block_add_attention=mid_block_add_attention,
        )

        self.quant_conv = Conv2d(2 * latent_channels, 2 * latent_channels, 1) if use_quant_conv else None
        self.post_quant_conv = Conv2d(latent_channels, latent_channels, 1) if use_post_quant_conv else None

        self.use_slicing = False
        self.use_tiling = False

        # only relevant if vae tiling is enabled
        self.tile_sample_min_size = self.config.sample_size
        sample_size = (
            self.config.sample_size[0]
            if isinstance(self.config.sample_size, (list, tuple))
            else self.config.sample_size
        )
        self.tile_latent_min_size = int(sample_size / (2 ** (len(self.config.block_out_channels) - 1)))
        self.tile_overlap_factor = 0.25

    # options `construct` reads: changing one (`enable_tiling`, a new `tile_sample_min_size`, ...) recompiles
    _GRAPH_OPTIONS = (
        "use_slicing",
        "use_tiling",
        "tile_sample_min_size",
        "tile_latent_min_size",
        "tile_overlap_factor",
    )

    def set_default_attn_processor(self):
        """
        Disables custom attention processors and sets the default attention implementation.
        """
        processors = self.attn_processors.values()
        # upstream picks `AttnProcessor` when every processor is one of its cross-attention processors (their exact
        # classes, not subclasses); here the default processor is the only one
        if not all(type(proc) is AttnProcessor for proc in processors):
            raise ValueError(
                "Cannot call `set_default_attn_processor` when attention processors are of type "
                f"{next(iter(processors))}"
            )
        self.set_attn_processor(AttnProcessor())

    def __call__(self, *args, **kwargs):
        # the input checks of `construct` on the host first: a `construct` compiled with `ms.jit` skips them
        sample = kwargs["sample"] if "sample" in kwargs else args[0] if args else None
        if sample is not None:
            self._check_encoder_input(sample)
        # The forward pass orchestrates on the host (tiling loops, the posterior object, numpy generators): in
        # GRAPH_MODE it is not compiled as a whole, its encoder / decoder / quant-conv cells are.
        if ms.get_context("mode") == ms.GRAPH_MODE:
            return self.construct(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def _encode(self, x: ms.Tensor) -> ms.Tensor:
        batch_size, num_channels, height, width = x.shape

        if self.use_tiling and (width > self.tile_sample_min_size or height > self.tile_sample_min_size):
            return self._tiled_encode(x)

        enc = self.encoder(x)
        if self.quant_conv is not None:
            enc = self.quant_conv(enc)

        return enc

    def encode(
        self, x: ms.Tensor, return_dict: bool = False
    ) -> Union[AutoencoderKLOutput, Tuple[DiagonalGaussianDistribution]]:
        """
        Encode a batch of images into latents.

        Args:
            x (`ms.Tensor`): Input batch of images.
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether to return a [`~models.autoencoder_kl.AutoencoderKLOutput`] instead of a plain tuple.

        Returns:
                The latent distribution of the encoded images. If `return_dict` is True, a
                [`~models.autoencoder_kl.AutoencoderKLOutput`] is returned, otherwise a plain `tuple` is returned.
        """
        if _in_graph():
            _posterior_in_a_graph()
        posterior = DiagonalGaussianDistribution(self._encode_moments(x))

        if not return_dict:
            return (posterior,)

        return AutoencoderKLOutput(latent_dist=posterior)

    def _encode_moments(self, x: ms.Tensor) -> ms.Tensor:
        """The encoder's output (mean and log-variance along channels), sliced per image when slicing is on."""
        self._check_encoder_input(x)
        if self.use_slicing and x.shape[0] > 1:
            return mint.cat([self._encode(x_slice) for x_slice in mint.split(x, 1)])
        return self._encode(x)

    def _check_encoder_input(self, x: ms.Tensor) -> None:
        _check_nchw(self, x, "x", "in_channels", self.config.in_channels)
        if not _in_graph():
            self._check_encoder_input_size(x.shape[2], x.shape[3])

    def _check_encoder_input_size(self, height: int, width: int) -> None:
        # MindSpore addition: each stride-2 downsampler needs 2 rows and columns (torch's convolution fails inside)
        steps = sum(block.downsamplers is not None for block in self.encoder.down_blocks)
        tiled = self.use_tiling and (width > self.tile_sample_min_size or height > self.tile_sample_min_size)
        if tiled:  # the smallest tile is the last one of each axis
            step = int(self.tile_sample_min_size * (1 - self.tile_overlap_factor))
            if step < 1:  # upstream: "range() arg 3 must not be zero" or an empty concatenation
                raise ValueError(
                    f"`tile_overlap_factor` {self.tile_overlap_factor} leaves no stride between tiles of "
                    f"{self.tile_sample_min_size} pixels: use a factor below 1 (the default is 0.25)."
                )
            height, width = (
                min(self.tile_sample_min_size, size - (size - 1) // step * step) for size in (height, width)
            )
        if min(height, width) < 2**steps:
            what = (
                f"the last tile of the tiled encode is {height}x{width} pixels"
                if tiled
                else f"`x` is {height}x{width}"
            )
            advice = "pad the image, or change `tile_sample_min_size` / encode without tiling" if tiled else "pad it"
            raise ValueError(
                f"Image too small for the encoder: {what}, but its {steps} downsamplers need a height and width of at "
                f"least {2**steps}: {advice}."
            )

    def _decode(self, z: ms.Tensor, return_dict: bool = False) -> Union[DecoderOutput, Tuple[ms.Tensor]]:
        if self.use_tiling and (z.shape[-1] > self.tile_latent_min_size or z.shape[-2] > self.tile_latent_min_size):
            return self.tiled_decode(z, return_dict=return_dict)

        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)

        dec = self.decoder(z)

        if not return_dict:
            return (dec,)

        return DecoderOutput(sample=dec)

    def decode(
        self, z: ms.Tensor, return_dict: bool = False, generator=None
    ) -> Union[DecoderOutput, Tuple[ms.Tensor]]:
        """
        Decode a batch of images.

        Args:
            z (`ms.Tensor`): Input batch of latent vectors.
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether to return a [`~models.vae.DecoderOutput`] instead of a plain tuple.
            generator: Unused (kept for upstream's signature).

        Returns:
            [`~models.vae.DecoderOutput`] or `tuple`:
                If return_dict is True, a [`~models.vae.DecoderOutput`] is returned, otherwise a plain `tuple` is
                returned.

        """
        _check_nchw(self, z, "z", "latent_channels", self.config.latent_channels)
        if self.use_slicing and z.shape[0] > 1:
            decoded_slices = [self._decode(z_slice)[0] for z_slice in mint.split(z, 1)]
            decoded = mint.cat(decoded_slices)
        else:
            decoded = self._decode(z)[0]

        if not return_dict:
            return (decoded,)

        return DecoderOutput(sample=decoded)

    def blend_v(self, a: ms.Tensor, b: ms.Tensor, blend_extent: int) -> ms.Tensor:
        r"""Blend the bottom rows of `a` into the top rows of `b` with a linear ramp; returns the blended `b`."""
        blend_extent = min(a.shape[2], b.shape[2], blend_extent)
        if blend_extent <= 0:
            return b
        w_a, w_b = _blend_weights(blend_extent)
        top = a[:, :, -blend_extent:, :] * w_a[:, None] + b[:, :, :blend_extent, :] * w_b[:, None]
        top = top.astype(b.dtype)
        if blend_extent == b.shape[2]:
            return top
        return mint.cat([top, b[:, :, blend_extent:, :]], dim=2)

    def blend_h(self, a: ms.Tensor, b: ms.Tensor, blend_extent: int) -> ms.Tensor:
        r"""Blend the right columns of `a` into the left columns of `b` with a linear ramp; returns the blended `b`."""
        blend_extent = min(a.shape[3], b.shape[3], blend_extent)
        if blend_extent <= 0:
            return b
        w_a, w_b = _blend_weights(blend_extent)
        left = a[:, :, :, -blend_extent:] * w_a + b[:, :, :, :blend_extent] * w_b
        left = left.astype(b.dtype)
        if blend_extent == b.shape[3]:
            return left
        return mint.cat([left, b[:, :, :, blend_extent:]], dim=3)

    def _blend_tiles(self, rows, blend_extent: int, row_limit: int) -> ms.Tensor:
        # Upstream blends in place, so a tile blended into its lower / right neighbour is the already-blended one. The
        # blended tiles go into lists of their own: a graph compiled by `ms.jit` treats lists as values, and writing
        # them back into `rows` (read again for the next row) was not seen there (4e-2 off)
        blended, result_rows = [], []
        for i, row in enumerate(rows):
            blended_row, result_row = [], []
            for j in range(len(row)):
                tile = row[j]
                # blend the above tile and the left tile
                # to the current tile and add the current tile to the result row
                if i > 0:
                    tile = self.blend_v(blended[i - 1][j], tile, blend_extent)
                if j > 0:
                    tile = self.blend_h(blended_row[j - 1], tile, blend_extent)
                blended_row.append(tile)
                result_row.append(tile[:, :, :row_limit, :row_limit])
            blended.append(blended_row)
            result_rows.append(mint.cat(result_row, dim=3))
        return mint.cat(result_rows, dim=2)

    def _tiled_encode(self, x: ms.Tensor) -> ms.Tensor:
        r"""Encode a batch of images using a tiled encoder.

        When this option is enabled, the VAE will split the input tensor into tiles to compute encoding in several
        steps. This is useful to keep memory use constant regardless of image size. The end result of tiled encoding is
        different from non-tiled encoding because each tile uses a different encoder. To avoid tiling artifacts, the
        tiles overlap and are blended together to form a smooth output. You may still see tile-sized changes in the
        output, but they should be much less noticeable.

        Args:
            x (`ms.Tensor`): Input batch of images.

        Returns:
            `ms.Tensor`:
                The latent representation (moments) of the encoded images.
        """

        overlap_size = int(self.tile_sample_min_size * (1 - self.tile_overlap_factor))
        blend_extent = int(self.tile_latent_min_size * self.tile_overlap_factor)
        row_limit = self.tile_latent_min_size - blend_extent

        # Split the image into 512x512 tiles and encode them separately.
        rows = []
        for i in range(0, x.shape[2], overlap_size):
            row = []
            for j in range(0, x.shape[3], overlap_size):
                tile = x[:, :, i : i + self.tile_sample_min_size, j : j + self.tile_sample_min_size]
                tile = self.encoder(tile)
                if self.quant_conv is not None:
                    tile = self.quant_conv(tile)
                row.append(tile)
            rows.append(row)
        return self._blend_tiles(rows, blend_extent, row_limit)

    def tiled_encode(
        self, x: ms.Tensor, return_dict: bool = False
    ) -> Union[AutoencoderKLOutput, Tuple[DiagonalGaussianDistribution]]:
        r"""Encode a batch of images using a tiled encoder.

        When this option is enabled, the VAE will split the input tensor into tiles to compute encoding in several
        steps. This is useful to keep memory use constant regardless of image size. The end result of tiled encoding is
        different from non-tiled encoding because each tile uses a different encoder. To avoid tiling artifacts, the
        tiles overlap and are blended together to form a smooth output. You may still see tile-sized changes in the
        output, but they should be much less noticeable.

        Args:
            x (`ms.Tensor`): Input batch of images.
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether or not to return a [`~models.autoencoder_kl.AutoencoderKLOutput`] instead of a plain tuple.

        Returns:
            [`~models.autoencoder_kl.AutoencoderKLOutput`] or `tuple`:
                If return_dict is True, a [`~models.autoencoder_kl.AutoencoderKLOutput`] is returned, otherwise a plain
                `tuple` is returned.
        """
        warnings.warn(
            "The tiled_encode implementation supporting the `return_dict` parameter is deprecated. In the future, the "
            "implementation of this method will be replaced with that of `_tiled_encode` and you will no longer be "
            "able to pass `return_dict`. You will also have to create a `DiagonalGaussianDistribution()` from the "
            "returned value.",
            FutureWarning,
        )
        if _in_graph():
            _posterior_in_a_graph()
        posterior = DiagonalGaussianDistribution(self._tiled_encode(x))

        if not return_dict:
            return (posterior,)

        return AutoencoderKLOutput(latent_dist=posterior)

    def tiled_decode(self, z: ms.Tensor, return_dict: bool = False) -> Union[DecoderOutput, Tuple[ms.Tensor]]:
        r"""
        Decode a batch of images using a tiled decoder.

        Args:
            z (`ms.Tensor`): Input batch of latent vectors.
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether or not to return a [`~models.vae.DecoderOutput`] instead of a plain tuple.

        Returns:
            [`~models.vae.DecoderOutput`] or `tuple`:
                If return_dict is True, a [`~models.vae.DecoderOutput`] is returned, otherwise a plain `tuple` is
                returned.
        """
        overlap_size = int(self.tile_latent_min_size * (1 - self.tile_overlap_factor))
        blend_extent = int(self.tile_sample_min_size * self.tile_overlap_factor)
        row_limit = self.tile_sample_min_size - blend_extent

        # Split z into overlapping 64x64 tiles and decode them separately.
        # The tiles have an overlap to avoid seams between tiles.
        rows = []
        for i in range(0, z.shape[2], overlap_size):
            row = []
            for j in range(0, z.shape[3], overlap_size):
                tile = z[:, :, i : i + self.tile_latent_min_size, j : j + self.tile_latent_min_size]
                if self.post_quant_conv is not None:
                    tile = self.post_quant_conv(tile)
                decoded = self.decoder(tile)
                row.append(decoded)
            rows.append(row)
        dec = self._blend_tiles(rows, blend_extent, row_limit)

        if not return_dict:
            return (dec,)

        return DecoderOutput(sample=dec)

    def construct(
        self,
        sample: ms.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = False,
        generator: Optional[np.random.Generator] = None,
    ) -> Union[DecoderOutput, Tuple[ms.Tensor]]:
        r"""
        Args:
            sample (`ms.Tensor`): Input sample.
            sample_posterior (`bool`, *optional*, defaults to `False`):
                Whether to sample from the posterior.
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether or not to return a [`DecoderOutput`] instead of a plain tuple.
            generator (`np.random.Generator`, *optional*):
                A NumPy generator to make sampling deterministic.

        Returns:
            [`~models.vae.DecoderOutput`] or `tuple`:
                If `return_dict` is True, a [`~models.vae.DecoderOutput`] is returned, otherwise a plain `tuple` is
                returned.
        """
        x = sample
        moments = self._encode_moments(x)
        if sample_posterior:
            if _in_graph():
                _posterior_in_a_graph()
            z = DiagonalGaussianDistribution(moments).sample(generator=generator)
        else:
            # the posterior's mode without building the host object, which has no static shapes when `construct` is
            # compiled (`ms.jit`) and breaks the shape arithmetic of the convolutions after it
            z = mint.chunk(moments, 2, dim=1)[0]
        dec = self.decode(z)[0]

        if not return_dict:
            return (dec,)

        return DecoderOutput(sample=dec)


add_unsupported_methods(AutoencoderKL, VAE_METHODS)
