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
"""2D upsampling layer of the VAE decoder blocks.

Adapted from diffusers v0.42.1 `models/upsampling.py`; MindSpore changes: only `Upsample2D` with nearest interpolation
and an optional convolution (no transposed convolution, no norm layers); the convolution is `cpu_layers.Conv2d`
(torch's parameter names, fast CPU path), and on CPU upsampling + 3x3 convolution run fused
(`cpu_layers.upsample_conv_cpu`).
"""

from typing import Optional, Tuple

import mindspore as ms
from mindspore import mint, nn

from .cpu_layers import Conv2d, _on_cpu, native_conv_is_fast, upsample_conv_cpu


class Upsample2D(nn.Cell):
    """A 2D upsampling layer with an optional convolution.

    Parameters:
        channels (`int`):
            number of channels in the inputs and outputs.
        use_conv (`bool`, default `False`):
            option to use a convolution.
        use_conv_transpose (`bool`, default `False`):
            option to use a convolution transpose (not supported by this port).
        out_channels (`int`, optional):
            number of output channels. Defaults to `channels`.
        name (`str`, default `conv`):
            name of the upsampling 2D layer.
        kernel_size (`int`, optional):
            kernel size of the convolution. Defaults to 3.
        padding (`int`, default `1`):
            padding of the convolution.
        norm_type (`str`, optional):
            normalization before upsampling (not supported by this port: must be `None`).
        bias (`bool`, default `True`):
            whether the convolution has a bias.
        interpolate (`bool`, default `True`):
            whether to upsample with nearest interpolation before the convolution.
    """

    def __init__(
        self,
        channels: int,
        use_conv: bool = False,
        use_conv_transpose: bool = False,
        out_channels: Optional[int] = None,
        name: str = "conv",
        kernel_size: Optional[int] = None,
        padding=1,
        norm_type=None,
        eps=None,
        elementwise_affine=None,
        bias=True,
        interpolate=True,
    ):
        super().__init__()
        if use_conv_transpose:
            raise ValueError("`use_conv_transpose=True` is not supported by this port of `Upsample2D`.")
        if norm_type is not None:
            raise ValueError(f"`norm_type` must be None in this port of `Upsample2D`, got {norm_type!r}.")
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.use_conv_transpose = use_conv_transpose
        self.name = name
        self.interpolate = interpolate
        self.norm = None

        conv = None
        if use_conv:
            if kernel_size is None:
                kernel_size = 3
            conv = Conv2d(
                self.channels,
                self.out_channels,
                kernel_size=kernel_size,
                padding=padding,
                bias=bias,
            )

        if name == "conv":
            self.conv = conv
        else:
            self.Conv2d_0 = conv

        # on CPU (with the im2col convolution), nearest 2x upsampling + 3x3 convolution runs as one phase-decomposed
        # convolution (`cpu_layers`)
        self.fused_cpu = (
            _on_cpu() and not native_conv_is_fast() and use_conv and interpolate and kernel_size == 3 and padding == 1
        )

    def construct(self, hidden_states: ms.Tensor, output_size: Optional[Tuple[int, int]] = None) -> ms.Tensor:
        conv = self.conv if self.name == "conv" else self.Conv2d_0
        # not for a convolution wrapped by a LoRA layer, which runs after the upsampling below
        if self.fused_cpu and output_size is None and isinstance(conv, Conv2d):
            return upsample_conv_cpu(hidden_states, conv)

        # if `output_size` is passed we force the interpolation output size and do not make use of `scale_factor=2`
        if self.interpolate:
            if output_size is None:
                hidden_states = mint.nn.functional.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
            else:
                hidden_states = mint.nn.functional.interpolate(hidden_states, size=output_size, mode="nearest")

        if self.use_conv:
            hidden_states = conv(hidden_states)

        return hidden_states
