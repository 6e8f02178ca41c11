from .unet_2d_blocks import (
    AttnDownEncoderBlock2D,
    AttnUpDecoderBlock2D,
    DownEncoderBlock2D,
    UNetMidBlock2D,
    UpDecoderBlock2D,
    get_down_block,
    get_up_block,
)

__all__ = [
    "AttnDownEncoderBlock2D",
    "AttnUpDecoderBlock2D",
    "DownEncoderBlock2D",
    "UNetMidBlock2D",
    "UpDecoderBlock2D",
    "get_down_block",
    "get_up_block",
]
