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
"""UNet 2D blocks used by the VAE encoder and decoder.

Adapted from diffusers v0.42.1 `models/unets/unet_2d_blocks.py`; MindSpore changes: only the VAE's blocks
(`DownEncoderBlock2D`, `AttnDownEncoderBlock2D`, `UpDecoderBlock2D`, `AttnUpDecoderBlock2D`, with `get_down_block` /
`get_up_block`, and `UNetMidBlock2D`); `spatial` time scale shift (`ResnetBlockCondNorm2D`) is not ported; without
attention the mid-block keeps an empty `attentions` list instead of a list of `None`s (a `nn.CellList` cannot hold
`None`; neither holds parameters).
"""

from typing import Optional

import mindspore as ms
from mindspore import nn

from ...utils import logging
from ..attention_processor import Attention
from ..downsampling import Downsample2D
from ..resnet import ResnetBlock2D
from ..upsampling import Upsample2D

logger = logging.get_logger(__name__)


def get_down_block(
    down_block_type: str,
    num_layers: int,
    in_channels: int,
    out_channels: int,
    temb_channels: int,
    add_downsample: bool,
    resnet_eps: float,
    resnet_act_fn: str,
    transformer_layers_per_block: int = 1,
    num_attention_heads: Optional[int] = None,
    resnet_groups: Optional[int] = None,
    cross_attention_dim: Optional[int] = None,
    downsample_padding: Optional[int] = None,
    dual_cross_attention: bool = False,
    use_linear_projection: bool = False,
    only_cross_attention: bool = False,
    upcast_attention: bool = False,
    resnet_time_scale_shift: str = "default",
    attention_type: str = "default",
    resnet_skip_time_act: bool = False,
    resnet_out_scale_factor: float = 1.0,
    cross_attention_norm: Optional[str] = None,
    attention_head_dim: Optional[int] = None,
    downsample_type: Optional[str] = None,
    dropout: float = 0.0,
):
    # If attn head dim is not defined, we default it to the number of heads
    if attention_head_dim is None:
        logger.warning(
            f"It is recommended to provide `attention_head_dim` when calling `get_down_block`. Defaulting `attention_head_dim` to {num_attention_heads}."
        )
        attention_head_dim = num_attention_heads

    down_block_type = down_block_type[7:] if down_block_type.startswith("UNetRes") else down_block_type
    if down_block_type == "DownEncoderBlock2D":
        return DownEncoderBlock2D(
            num_layers=num_layers,
            in_channels=in_channels,
            out_channels=out_channels,
            dropout=dropout,
            add_downsample=add_downsample,
            resnet_eps=resnet_eps,
            resnet_act_fn=resnet_act_fn,
            resnet_groups=resnet_groups,
            downsample_padding=downsample_padding,
            resnet_time_scale_shift=resnet_time_scale_shift,
        )
    if down_block_type == "AttnDownEncoderBlock2D":
        return AttnDownEncoderBlock2D(
            num_layers=num_layers,
            in_channels=in_channels,
            out_channels=out_channels,
            dropout=dropout,
            add_downsample=add_downsample,
            resnet_eps=resnet_eps,
            resnet_act_fn=resnet_act_fn,
            resnet_groups=resnet_groups,
            downsample_padding=downsample_padding,
            attention_head_dim=attention_head_dim,
            resnet_time_scale_shift=resnet_time_scale_shift,
        )
    raise ValueError(
        f"{down_block_type} does not exist in this port (supported: 'DownEncoderBlock2D', 'AttnDownEncoderBlock2D')."
    )


def get_up_block(
    up_block_type: str,
    num_layers: int,
    in_channels: int,
    out_channels: int,
    prev_output_channel: int,
    temb_channels: int,
    add_upsample: bool,
    resnet_eps: float,
    resnet_act_fn: str,
    resolution_idx: Optional[int] = None,
    transformer_layers_per_block: int = 1,
    num_attention_heads: Optional[int] = None,
    resnet_groups: Optional[int] = None,
    cross_attention_dim: Optional[int] = None,
    dual_cross_attention: bool = False,
    use_linear_projection: bool = False,
    only_cross_attention: bool = False,
    upcast_attention: bool = False,
    resnet_time_scale_shift: str = "default",
    attention_type: str = "default",
    resnet_skip_time_act: bool = False,
    resnet_out_scale_factor: float = 1.0,
    cross_attention_norm: Optional[str] = None,
    attention_head_dim: Optional[int] = None,
    upsample_type: Optional[str] = None,
    dropout: float = 0.0,
) -> nn.Cell:
    # If attn head dim is not defined, we default it to the number of heads
    if attention_head_dim is None:
        logger.warning(
            f"It is recommended to provide `attention_head_dim` when calling `get_up_block`. Defaulting `attention_head_dim` to {num_attention_heads}."
        )
        attention_head_dim = num_attention_heads

    up_block_type = up_block_type[7:] if up_block_type.startswith("UNetRes") else up_block_type
    if up_block_type == "UpDecoderBlock2D":
        return UpDecoderBlock2D(
            num_layers=num_layers,
            in_channels=in_channels,
            out_channels=out_channels,
            resolution_idx=resolution_idx,
            dropout=dropout,
            add_upsample=add_upsample,
            resnet_eps=resnet_eps,
            resnet_act_fn=resnet_act_fn,
            resnet_groups=resnet_groups,
            resnet_time_scale_shift=resnet_time_scale_shift,
            temb_channels=temb_channels,
        )
    if up_block_type == "AttnUpDecoderBlock2D":
        return AttnUpDecoderBlock2D(
            num_layers=num_layers,
            in_channels=in_channels,
            out_channels=out_channels,
            resolution_idx=resolution_idx,
            dropout=dropout,
            add_upsample=add_upsample,
            resnet_eps=resnet_eps,
            resnet_act_fn=resnet_act_fn,
            resnet_groups=resnet_groups,
            attention_head_dim=attention_head_dim,
            resnet_time_scale_shift=resnet_time_scale_shift,
            temb_channels=temb_channels,
        )
    raise ValueError(
        f"{up_block_type} does not exist in this port (supported: 'UpDecoderBlock2D', 'AttnUpDecoderBlock2D')."
    )


def _check_time_scale_shift(resnet_time_scale_shift: str, block: str):
    if resnet_time_scale_shift == "spatial":
        raise ValueError(
            f"`resnet_time_scale_shift='spatial'` (ResnetBlockCondNorm2D) is not supported by this port of `{block}`."
        )


def _vae_attention(channels, attention_head_dim, eps, groups, output_scale_factor) -> Attention:
    """The single-head-per-`attention_head_dim` self-attention of the VAE blocks (group norm, residual)."""
    return Attention(
        channels,
        heads=channels // attention_head_dim,
        dim_head=attention_head_dim,
        rescale_output_factor=output_scale_factor,
        eps=eps,
        norm_num_groups=groups,
        residual_connection=True,
        bias=True,
        upcast_softmax=True,
        _from_deprecated_attn_block=True,
    )


def _resnets(in_channels, out_channels, num_layers, temb_channels, eps, groups, dropout, time_scale_shift, act_fn,
             output_scale_factor, pre_norm) -> nn.CellList:  # fmt: skip
    return nn.CellList(
        [
            ResnetBlock2D(
                in_channels=in_channels if i == 0 else out_channels,
                out_channels=out_channels,
                temb_channels=temb_channels,
                eps=eps,
                groups=groups,
                dropout=dropout,
                time_embedding_norm=time_scale_shift,
                non_linearity=act_fn,
                output_scale_factor=output_scale_factor,
                pre_norm=pre_norm,
            )
            for i in range(num_layers)
        ]
    )


def _optional_attentions(num_layers, channels, attention_head_dim, eps, groups, output_scale_factor):
    """One `_vae_attention` per layer of an `Attn*` encoder / decoder block; `None` for the plain block
    (`attention_head_dim` None)."""
    if attention_head_dim is None:
        return None
    return nn.CellList(
        [_vae_attention(channels, attention_head_dim, eps, groups, output_scale_factor) for _ in range(num_layers)]
    )


def _default_head_dim(attention_head_dim, channels):
    if attention_head_dim is None:
        logger.warning(
            f"It is not recommend to pass `attention_head_dim=None`. Defaulting `attention_head_dim` to `out_channels`: {channels}."
        )
        return channels
    return attention_head_dim


class UNetMidBlock2D(nn.Cell):
    """
    A 2D UNet mid-block [`UNetMidBlock2D`] with multiple residual blocks and optional attention blocks.

    Args:
        in_channels (`int`): The number of input channels.
        temb_channels (`int`): The number of temporal embedding channels.
        dropout (`float`, *optional*, defaults to 0.0): The dropout rate.
        num_layers (`int`, *optional*, defaults to 1): The number of residual blocks.
        resnet_eps (`float`, *optional*, 1e-6 ): The epsilon value for the resnet blocks.
        resnet_time_scale_shift (`str`, *optional*, defaults to `default`):
            The type of normalization to apply to the time embeddings (`default` or `scale_shift`; `spatial` is not
            ported).
        resnet_act_fn (`str`, *optional*, defaults to `swish`): The activation function for the resnet blocks.
        resnet_groups (`int`, *optional*, defaults to 32):
            The number of groups to use in the group normalization layers of the resnet blocks.
        attn_groups (`Optional[int]`, *optional*, defaults to None): The number of groups for the attention blocks.
        resnet_pre_norm (`bool`, *optional*, defaults to `True`):
            Whether to use pre-normalization for the resnet blocks.
        add_attention (`bool`, *optional*, defaults to `True`): Whether to add attention blocks.
        attention_head_dim (`int`, *optional*, defaults to 1):
            Dimension of a single attention head. The number of attention heads is determined based on this value and
            the number of input channels.
        output_scale_factor (`float`, *optional*, defaults to 1.0): The output scale factor.

    Returns:
        `ms.Tensor`: The output of the last residual block, which is a tensor of shape `(batch_size, in_channels,
        height, width)`.

    """

    def __init__(
        self,
        in_channels: int,
        temb_channels: Optional[int],
        dropout: float = 0.0,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_time_scale_shift: str = "default",  # default, spatial
        resnet_act_fn: str = "swish",
        resnet_groups: Optional[int] = 32,
        attn_groups: Optional[int] = None,
        resnet_pre_norm: bool = True,
        add_attention: bool = True,
        attention_head_dim: Optional[int] = 1,
        output_scale_factor: float = 1.0,
    ):
        super().__init__()
        _check_time_scale_shift(resnet_time_scale_shift, "UNetMidBlock2D")
        resnet_groups = resnet_groups if resnet_groups is not None else min(in_channels // 4, 32)
        self.add_attention = add_attention
        self.num_layers = num_layers

        if attn_groups is None:
            attn_groups = resnet_groups if resnet_time_scale_shift == "default" else None

        # there is always at least one resnet
        resnets = [
            ResnetBlock2D(
                in_channels=in_channels,
                out_channels=in_channels,
                temb_channels=temb_channels,
                eps=resnet_eps,
                groups=resnet_groups,
                dropout=dropout,
                time_embedding_norm=resnet_time_scale_shift,
                non_linearity=resnet_act_fn,
                output_scale_factor=output_scale_factor,
                pre_norm=resnet_pre_norm,
            )
        ]
        attentions = []

        if attention_head_dim is None:
            logger.warning(
                f"It is not recommend to pass `attention_head_dim=None`. Defaulting `attention_head_dim` to `in_channels`: {in_channels}."
            )
            attention_head_dim = in_channels

        for _ in range(num_layers):
            if self.add_attention:
                attentions.append(
                    _vae_attention(in_channels, attention_head_dim, resnet_eps, attn_groups, output_scale_factor)
                )

            resnets.append(
                ResnetBlock2D(
                    in_channels=in_channels,
                    out_channels=in_channels,
                    temb_channels=temb_channels,
                    eps=resnet_eps,
                    groups=resnet_groups,
                    dropout=dropout,
                    time_embedding_norm=resnet_time_scale_shift,
                    non_linearity=resnet_act_fn,
                    output_scale_factor=output_scale_factor,
                    pre_norm=resnet_pre_norm,
                )
            )

        self.attentions = nn.CellList(attentions)
        self.resnets = nn.CellList(resnets)

        self.gradient_checkpointing = False

    def construct(self, hidden_states: ms.Tensor, temb: Optional[ms.Tensor] = None) -> ms.Tensor:
        hidden_states = self.resnets[0](hidden_states, temb)
        for i in range(self.num_layers):
            if self.add_attention:
                hidden_states = self.attentions[i](hidden_states)
            if self.gradient_checkpointing and self.training:
                # as upstream, the resnets after the first are recomputed (reentrant: see `Encoder.construct`)
                resnet_args = (hidden_states,) if temb is None else (hidden_states, temb)
                hidden_states = ms.recompute(self.resnets[i + 1], *resnet_args, use_reentrant=True)
            else:
                hidden_states = self.resnets[i + 1](hidden_states, temb)

        return hidden_states


class DownEncoderBlock2D(nn.Cell):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout: float = 0.0,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_time_scale_shift: str = "default",
        resnet_act_fn: str = "swish",
        resnet_groups: int = 32,
        resnet_pre_norm: bool = True,
        output_scale_factor: float = 1.0,
        add_downsample: bool = True,
        downsample_padding: int = 1,
    ):
        super().__init__()
        self._build(
            in_channels, out_channels, dropout, num_layers, resnet_eps, resnet_time_scale_shift, resnet_act_fn,
            resnet_groups, resnet_pre_norm, output_scale_factor, add_downsample, downsample_padding, None,
        )  # fmt: skip

    def _build(self, in_channels, out_channels, dropout, num_layers, resnet_eps, resnet_time_scale_shift,
               resnet_act_fn, resnet_groups, resnet_pre_norm, output_scale_factor, add_downsample, downsample_padding,
               attention_head_dim):  # fmt: skip
        """The block's cells; with `attention_head_dim`, a self-attention after each resnet (`AttnDownEncoderBlock2D`,
        whose attentions upstream registers before the resnets: the checkpoints' key order)."""
        _check_time_scale_shift(resnet_time_scale_shift, type(self).__name__)
        self.attentions = _optional_attentions(
            num_layers, out_channels, attention_head_dim, resnet_eps, resnet_groups, output_scale_factor
        )
        self.resnets = _resnets(
            in_channels, out_channels, num_layers, None, resnet_eps, resnet_groups, dropout, resnet_time_scale_shift,
            resnet_act_fn, output_scale_factor, resnet_pre_norm,
        )  # fmt: skip
        if add_downsample:
            self.downsamplers = nn.CellList(
                [
                    Downsample2D(
                        out_channels, use_conv=True, out_channels=out_channels, padding=downsample_padding, name="op"
                    )
                ]
            )
        else:
            self.downsamplers = None

    def construct(self, hidden_states: ms.Tensor) -> ms.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, None)
            if self.attentions is not None:
                hidden_states = self.attentions[i](hidden_states)

        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)

        return hidden_states


class AttnDownEncoderBlock2D(DownEncoderBlock2D):
    """`DownEncoderBlock2D` with a self-attention after each resnet."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dropout: float = 0.0,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_time_scale_shift: str = "default",
        resnet_act_fn: str = "swish",
        resnet_groups: int = 32,
        resnet_pre_norm: bool = True,
        attention_head_dim: int = 1,
        output_scale_factor: float = 1.0,
        add_downsample: bool = True,
        downsample_padding: int = 1,
    ):
        nn.Cell.__init__(self)
        self._build(
            in_channels, out_channels, dropout, num_layers, resnet_eps, resnet_time_scale_shift, resnet_act_fn,
            resnet_groups, resnet_pre_norm, output_scale_factor, add_downsample, downsample_padding,
            _default_head_dim(attention_head_dim, out_channels),
        )  # fmt: skip


class UpDecoderBlock2D(nn.Cell):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resolution_idx: Optional[int] = None,
        dropout: float = 0.0,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_time_scale_shift: str = "default",  # default, spatial
        resnet_act_fn: str = "swish",
        resnet_groups: int = 32,
        resnet_pre_norm: bool = True,
        output_scale_factor: float = 1.0,
        add_upsample: bool = True,
        temb_channels: Optional[int] = None,
    ):
        super().__init__()
        self._build(
            in_channels, out_channels, resolution_idx, dropout, num_layers, resnet_eps, resnet_time_scale_shift,
            resnet_act_fn, resnet_groups, resnet_pre_norm, output_scale_factor, add_upsample, temb_channels, None,
        )  # fmt: skip

    def _build(self, in_channels, out_channels, resolution_idx, dropout, num_layers, resnet_eps,
               resnet_time_scale_shift, resnet_act_fn, resnet_groups, resnet_pre_norm, output_scale_factor,
               add_upsample, temb_channels, attention_head_dim):  # fmt: skip
        """The block's cells; with `attention_head_dim`, a self-attention after each resnet (`AttnUpDecoderBlock2D`,
        attentions registered before the resnets as upstream)."""
        _check_time_scale_shift(resnet_time_scale_shift, type(self).__name__)
        self.attentions = _optional_attentions(
            num_layers, out_channels, attention_head_dim, resnet_eps, resnet_groups, output_scale_factor
        )
        self.resnets = _resnets(
            in_channels, out_channels, num_layers, temb_channels, resnet_eps, resnet_groups, dropout,
            resnet_time_scale_shift, resnet_act_fn, output_scale_factor, resnet_pre_norm,
        )  # fmt: skip
        if add_upsample:
            self.upsamplers = nn.CellList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)])
        else:
            self.upsamplers = None

        self.resolution_idx = resolution_idx

    def construct(self, hidden_states: ms.Tensor, temb: Optional[ms.Tensor] = None) -> ms.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, temb)
            if self.attentions is not None:
                hidden_states = self.attentions[i](hidden_states)

        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states)

        return hidden_states


class AttnUpDecoderBlock2D(UpDecoderBlock2D):
    """`UpDecoderBlock2D` with a self-attention after each resnet."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resolution_idx: Optional[int] = None,
        dropout: float = 0.0,
        num_layers: int = 1,
        resnet_eps: float = 1e-6,
        resnet_time_scale_shift: str = "default",
        resnet_act_fn: str = "swish",
        resnet_groups: int = 32,
        resnet_pre_norm: bool = True,
        attention_head_dim: int = 1,
        output_scale_factor: float = 1.0,
        add_upsample: bool = True,
        temb_channels: Optional[int] = None,
    ):
        nn.Cell.__init__(self)
        self._build(
            in_channels, out_channels, resolution_idx, dropout, num_layers, resnet_eps, resnet_time_scale_shift,
            resnet_act_fn, resnet_groups, resnet_pre_norm, output_scale_factor, add_upsample, temb_channels,
            _default_head_dim(attention_head_dim, out_channels),
        )  # fmt: skip
