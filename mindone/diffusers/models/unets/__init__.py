from .unet_2d_blocks import DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D, get_down_block, get_up_block

__all__ = ["DownEncoderBlock2D", "UNetMidBlock2D", "UpDecoderBlock2D", "get_down_block", "get_up_block"]
