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
"""Encoder, decoder and posterior of the KL autoencoder.

Adapted from diffusers v0.42.1 `models/autoencoders/vae.py`; MindSpore changes: only `Encoder`, `Decoder` (group
norm; no spatial norm / `latent_embeds`), `DecoderOutput`, `DiagonalGaussianDistribution` (noise from a
`numpy.random.Generator` via `randn_tensor`) and `AutoencoderMixin`; convolutions and group norms are
`cpu_layers.Conv2d` / `cpu_layers.GroupNorm` (torch's parameter names; fast CPU paths, as `mint.nn.Conv2d` has no CPU
kernel in MindSpore 2.10); in PyNative on CPU, large inputs run the encoder / decoder as one compiled graph.
"""

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

import mindspore as ms
from mindspore import mint, nn, ops

from ...utils import BaseOutput, logging, randn_tensor
from ...utils.mindspore_utils import exp, is_ascend
from ..cpu_layers import CompiledWhenLarge, Conv2d, GroupNorm, _on_cpu
from ..unets.unet_2d_blocks import UNetMidBlock2D, get_down_block, get_up_block

logger = logging.get_logger(__name__)


@dataclass
class DecoderOutput(BaseOutput):
    r"""
    Output of decoding method.

    Args:
        sample (`ms.Tensor` of shape `(batch_size, num_channels, height, width)`):
            The decoded output sample from the last layer of the model.
    """

    sample: ms.Tensor
    commit_loss: Optional[ms.Tensor] = None


class Encoder(CompiledWhenLarge, nn.Cell):
    r"""
    The `Encoder` layer of a variational autoencoder that encodes its input into a latent representation.

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            The number of input channels.
        out_channels (`int`, *optional*, defaults to 3):
            The number of output channels.
        down_block_types (`Tuple[str, ...]`, *optional*, defaults to `("DownEncoderBlock2D",)`):
            The types of down blocks to use. See `~diffusers.models.unet_2d_blocks.get_down_block` for available
            options.
        block_out_channels (`Tuple[int, ...]`, *optional*, defaults to `(64,)`):
            The number of output channels for each block.
        layers_per_block (`int`, *optional*, defaults to 2):
            The number of layers per block.
        norm_num_groups (`int`, *optional*, defaults to 32):
            The number of groups for normalization.
        act_fn (`str`, *optional*, defaults to `"silu"`):
            The activation function to use. See `~diffusers.models.activations.get_activation` for available options.
        double_z (`bool`, *optional*, defaults to `True`):
            Whether to double the number of output channels for the last block.
        mid_block_add_attention (`bool`, *optional*, defaults to `True`):
            Whether the mid block has an attention layer.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Tuple[str, ...] = ("DownEncoderBlock2D",),
        block_out_channels: Tuple[int, ...] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        double_z: bool = True,
        mid_block_add_attention=True,
    ):
        super().__init__()
        self.layers_per_block = layers_per_block
        # PyNative on CPU: large images run as one compiled graph (`cpu_layers.CompiledWhenLarge`)
        self.compile_on_cpu = _on_cpu()
        self.activation_scale = block_out_channels[0] / in_channels

        self.conv_in = Conv2d(in_channels, block_out_channels[0], kernel_size=3, stride=1, padding=1)

        down_blocks = []

        # down
        output_channel = block_out_channels[0]
        for i, down_block_type in enumerate(down_block_types):
            input_channel = output_channel
            output_channel = block_out_channels[i]
            is_final_block = i == len(block_out_channels) - 1

            down_block = get_down_block(
                down_block_type,
                num_layers=self.layers_per_block,
                in_channels=input_channel,
                out_channels=output_channel,
                add_downsample=not is_final_block,
                resnet_eps=1e-6,
                downsample_padding=0,
                resnet_act_fn=act_fn,
                resnet_groups=norm_num_groups,
                attention_head_dim=output_channel,
                temb_channels=None,
            )
            down_blocks.append(down_block)
        self.down_blocks = nn.CellList(down_blocks)

        # mid
        self.mid_block = UNetMidBlock2D(
            in_channels=block_out_channels[-1],
            resnet_eps=1e-6,
            resnet_act_fn=act_fn,
            output_scale_factor=1,
            resnet_time_scale_shift="default",
            attention_head_dim=block_out_channels[-1],
            resnet_groups=norm_num_groups,
            temb_channels=None,
            add_attention=mid_block_add_attention,
        )

        # out
        self.conv_norm_out = GroupNorm(num_channels=block_out_channels[-1], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = mint.nn.SiLU()

        conv_out_channels = 2 * out_channels if double_z else out_channels
        self.conv_out = Conv2d(block_out_channels[-1], conv_out_channels, 3, padding=1)

        self.gradient_checkpointing = False

    def construct(self, sample: ms.Tensor) -> ms.Tensor:
        r"""The forward method of the `Encoder` class."""

        sample = self.conv_in(sample)

        if self.gradient_checkpointing and self.training:
            # upstream's `use_reentrant=False` fails in MindSpore 2.10 PyNative on the encoder's last down block (early
            # stop of the recomputation: "Stack input_args_info_stack_ is empty"); the reentrant form gives the same
            # gradients
            for down_block in self.down_blocks:
                sample = ms.recompute(down_block, sample, use_reentrant=True)
            sample = ms.recompute(self.mid_block, sample, use_reentrant=True)
        else:
            # down
            for down_block in self.down_blocks:
                sample = down_block(sample)

            # middle
            sample = self.mid_block(sample)

        # post-process
        sample = self.conv_norm_out(sample)
        sample = self.conv_act(sample)
        sample = self.conv_out(sample)

        return sample


class Decoder(CompiledWhenLarge, nn.Cell):
    r"""
    The `Decoder` layer of a variational autoencoder that decodes its latent representation into an output sample.

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            The number of input channels.
        out_channels (`int`, *optional*, defaults to 3):
            The number of output channels.
        up_block_types (`Tuple[str, ...]`, *optional*, defaults to `("UpDecoderBlock2D",)`):
            The types of up blocks to use. See `~diffusers.models.unet_2d_blocks.get_up_block` for available options.
        block_out_channels (`Tuple[int, ...]`, *optional*, defaults to `(64,)`):
            The number of output channels for each block.
        layers_per_block (`int`, *optional*, defaults to 2):
            The number of layers per block.
        norm_num_groups (`int`, *optional*, defaults to 32):
            The number of groups for normalization.
        act_fn (`str`, *optional*, defaults to `"silu"`):
            The activation function to use. See `~diffusers.models.activations.get_activation` for available options.
        norm_type (`str`, *optional*, defaults to `"group"`):
            The normalization type to use. Only `"group"` is supported by this port (`"spatial"` is not).
        mid_block_add_attention (`bool`, *optional*, defaults to `True`):
            Whether the mid block has an attention layer.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        up_block_types: Tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: Tuple[int, ...] = (64,),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        act_fn: str = "silu",
        norm_type: str = "group",  # group, spatial
        mid_block_add_attention=True,
    ):
        super().__init__()
        if norm_type != "group":
            raise ValueError(
                f"`norm_type` must be 'group' in this port of `Decoder` (no SpatialNorm), got {norm_type!r}."
            )
        self.layers_per_block = layers_per_block
        # PyNative on CPU: large latents run as one compiled graph (`cpu_layers.CompiledWhenLarge`)
        upsamplers = sum(i != len(block_out_channels) - 1 for i in range(len(up_block_types)))
        self.compile_on_cpu = _on_cpu()
        self.activation_scale = block_out_channels[0] * 4**upsamplers / in_channels

        self.conv_in = Conv2d(in_channels, block_out_channels[-1], kernel_size=3, stride=1, padding=1)

        temb_channels = None

        # up
        up_blocks = []
        reversed_block_out_channels = list(reversed(block_out_channels))
        output_channel = reversed_block_out_channels[0]
        for i, up_block_type in enumerate(up_block_types):
            prev_output_channel = output_channel
            output_channel = reversed_block_out_channels[i]

            is_final_block = i == len(block_out_channels) - 1

            up_block = get_up_block(
                up_block_type,
                num_layers=self.layers_per_block + 1,
                in_channels=prev_output_channel,
                out_channels=output_channel,
                prev_output_channel=prev_output_channel,
                add_upsample=not is_final_block,
                resnet_eps=1e-6,
                resnet_act_fn=act_fn,
                resnet_groups=norm_num_groups,
                attention_head_dim=output_channel,
                temb_channels=temb_channels,
                resnet_time_scale_shift=norm_type,
            )
            up_blocks.append(up_block)
            prev_output_channel = output_channel
        self.up_blocks = nn.CellList(up_blocks)

        # mid (registered after the up blocks, as upstream: checkpoints list its keys after theirs)
        self.mid_block = UNetMidBlock2D(
            in_channels=block_out_channels[-1],
            resnet_eps=1e-6,
            resnet_act_fn=act_fn,
            output_scale_factor=1,
            resnet_time_scale_shift="default",
            attention_head_dim=block_out_channels[-1],
            resnet_groups=norm_num_groups,
            temb_channels=temb_channels,
            add_attention=mid_block_add_attention,
        )

        # out
        self.conv_norm_out = GroupNorm(num_channels=block_out_channels[0], num_groups=norm_num_groups, eps=1e-6)
        self.conv_act = mint.nn.SiLU()
        self.conv_out = Conv2d(block_out_channels[0], out_channels, 3, padding=1)

        self.gradient_checkpointing = False

    def __call__(self, sample: ms.Tensor, latent_embeds: Optional[ms.Tensor] = None) -> ms.Tensor:
        # upstream's `latent_embeds` conditions SpatialNorm ("spatial" norm_type, not in this port); with group norm
        # only `None` runs there too
        if latent_embeds is not None:
            raise ValueError(
                "`latent_embeds` needs `norm_type='spatial'`, which this port of `Decoder` does not have."
            )
        return super().__call__(sample)

    def construct(self, sample: ms.Tensor) -> ms.Tensor:
        r"""The forward method of the `Decoder` class."""

        sample = self.conv_in(sample)

        if self.gradient_checkpointing and self.training:
            sample = ms.recompute(self.mid_block, sample, use_reentrant=True)
            for up_block in self.up_blocks:
                sample = ms.recompute(up_block, sample, use_reentrant=True)
        else:
            # middle
            sample = self.mid_block(sample)

            # up
            for up_block in self.up_blocks:
                sample = up_block(sample)

        # post-process
        sample = self.conv_norm_out(sample)
        sample = self.conv_act(sample)
        sample = self.conv_out(sample)

        return sample


class DiagonalGaussianDistribution(object):
    r"""
    The posterior of the KL autoencoder: a diagonal Gaussian whose mean and log-variance are the two halves (along the
    channel axis) of `parameters`. A plain host object (it is built from the encoder's output outside compiled graphs).

    Args:
        parameters (`ms.Tensor` of shape `(batch_size, 2 * latent_channels, height, width)`): mean and log-variance.
        deterministic (`bool`, *optional*, defaults to `False`): zero variance (`sample()` returns the mean).
    """

    def __init__(self, parameters: ms.Tensor, deterministic: bool = False):
        self.parameters = parameters
        self.mean, self.logvar = mint.chunk(parameters, 2, dim=1)
        self.logvar = mint.clamp(self.logvar, -30.0, 20.0)
        self.deterministic = deterministic
        in_float64 = not is_ascend()
        self.std = exp(0.5 * self.logvar, in_float64)
        self.var = exp(self.logvar, in_float64)
        if self.deterministic:
            # ops.zeros_like: mint.zeros_like has no CPU kernel in MindSpore 2.10
            self.var = self.std = ops.zeros_like(self.mean)

    def sample(self, generator: Optional[np.random.Generator] = None) -> ms.Tensor:
        r"""Draw `mean + std * noise`, the standard-normal noise coming from `generator` (a `numpy.random.Generator`
        or a list of them, one per batch element), as `randn_tensor` draws it."""
        sample = randn_tensor(self.mean.shape, generator=generator, dtype=self.parameters.dtype)
        x = self.mean + self.std * sample
        return x

    def kl(self, other: "DiagonalGaussianDistribution" = None) -> ms.Tensor:
        if self.deterministic:
            return ms.Tensor([0.0])
        else:
            if other is None:
                return 0.5 * mint.sum(
                    mint.pow(self.mean, 2) + self.var - 1.0 - self.logvar,
                    dim=[1, 2, 3],
                )
            else:
                return 0.5 * mint.sum(
                    mint.pow(self.mean - other.mean, 2) / other.var
                    + self.var / other.var
                    - 1.0
                    - self.logvar
                    + other.logvar,
                    dim=[1, 2, 3],
                )

    def nll(self, sample: ms.Tensor, dims: List[int] = [1, 2, 3]) -> ms.Tensor:
        if self.deterministic:
            return ms.Tensor([0.0])
        logtwopi = float(np.log(2.0 * np.pi))
        return 0.5 * mint.sum(
            logtwopi + self.logvar + mint.pow(sample - self.mean, 2) / self.var,
            dim=list(dims),
        )

    def mode(self) -> ms.Tensor:
        return self.mean


class AutoencoderMixin:
    def enable_tiling(self):
        r"""
        Enable tiled VAE decoding. When this option is enabled, the VAE will split the input tensor into tiles to
        compute decoding and encoding in several steps. This is useful for saving a large amount of memory and to allow
        processing larger images.
        """
        if not hasattr(self, "use_tiling"):
            raise NotImplementedError(f"Tiling doesn't seem to be implemented for {self.__class__.__name__}.")
        self.use_tiling = True

    def disable_tiling(self):
        r"""
        Disable tiled VAE decoding. If `enable_tiling` was previously enabled, this method will go back to computing
        decoding in one step.
        """
        self.use_tiling = False

    def enable_slicing(self):
        r"""
        Enable sliced VAE decoding. When this option is enabled, the VAE will split the input tensor in slices to
        compute decoding in several steps. This is useful to save some memory and allow larger batch sizes.
        """
        if not hasattr(self, "use_slicing"):
            raise NotImplementedError(f"Slicing doesn't seem to be implemented for {self.__class__.__name__}.")
        self.use_slicing = True

    def disable_slicing(self):
        r"""
        Disable sliced VAE decoding. If `enable_slicing` was previously enabled, this method will go back to computing
        decoding in one step.
        """
        self.use_slicing = False
