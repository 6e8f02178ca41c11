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
"""2D downsampling layer of the VAE encoder blocks.

Adapted from diffusers v0.42.1 `models/downsampling.py`; MindSpore changes: only `Downsample2D` (no norm layers); the
convolution is `cpu_layers.Conv2d` (torch's parameter names, fast CPU path); legacy `nn.AvgPool2d` stands in for
`mint.nn.AvgPool2d` (AvgPool2D has no CPU kernel in MindSpore 2.10); the asymmetric zero pad is `cpu_layers.pad_nchw`
(`mint.nn.functional.pad` has no CPU kernel); `name="conv"` with a convolution is refused because upstream registers
that convolution twice (`conv.*` and `Conv2d_0.*` in its checkpoints).
"""

from typing import Optional

import mindspore as ms
from mindspore import nn

from .cpu_layers import Conv2d, _on_cpu, pad_nchw


class Downsample2D(nn.Cell):
    """A 2D downsampling layer with an optional convolution.

    Parameters:
        channels (`int`):
            number of channels in the inputs and outputs.
        use_conv (`bool`, default `False`):
            option to use a convolution.
        out_channels (`int`, optional):
            number of output channels. Defaults to `channels`.
        padding (`int`, default `1`):
            padding for the convolution. `0` pads the right and bottom edges by one instead.
        name (`str`, default `conv`):
            name of the downsampling 2D layer.
        kernel_size (`int`, default `3`):
            kernel size of the convolution.
        norm_type (`str`, optional):
            normalization before downsampling (not supported by this port: must be `None`).
        bias (`bool`, default `True`):
            whether the convolution has a bias.
    """

    def __init__(
        self,
        channels: int,
        use_conv: bool = False,
        out_channels: Optional[int] = None,
        padding: int = 1,
        name: str = "conv",
        kernel_size=3,
        norm_type=None,
        eps=None,
        elementwise_affine=None,
        bias=True,
    ):
        super().__init__()
        if norm_type is not None:
            raise ValueError(f"`norm_type` must be None in this port of `Downsample2D`, got {norm_type!r}.")
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.padding = padding
        stride = 2
        self.name = name
        self.norm = None
        self.on_cpu = _on_cpu()

        if use_conv:
            if name == "conv":
                raise ValueError(
                    "`name='conv'` with `use_conv=True` is not supported by this port of `Downsample2D` (upstream"
                    " saves that convolution under both `conv` and `Conv2d_0`); use `name='op'` or `name='Conv2d_0'`."
                )
            conv = Conv2d(
                self.channels,
                self.out_channels,
                kernel_size=kernel_size,
                stride=stride,
                padding=padding,
                bias=bias,
            )
        else:
            if self.channels != self.out_channels:
                raise ValueError(
                    f"`out_channels` must equal `channels` without a convolution, got {self.out_channels} and"
                    f" {self.channels}."
                )
            conv = nn.AvgPool2d(kernel_size=stride, stride=stride)

        self.conv = conv

    def construct(self, hidden_states: ms.Tensor) -> ms.Tensor:
        if self.use_conv and self.padding == 0:
            hidden_states = pad_nchw(hidden_states, (0, 1, 0, 1), self.on_cpu)

        hidden_states = self.conv(hidden_states)

        return hidden_states
