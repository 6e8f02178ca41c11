from dataclasses import dataclass

import mindspore as ms

from ..utils import BaseOutput


@dataclass
class Transformer2DModelOutput(BaseOutput):
    """
    The output of a transformer model.

    Args:
        sample (`ms.Tensor` of shape `(batch_size, num_channels, height, width)`):
            The hidden states output conditioned on the `encoder_hidden_states` input.
    """

    sample: ms.Tensor


@dataclass
class AutoencoderKLOutput(BaseOutput):
    """
    Output of AutoencoderKL encoding method.

    Args:
        latent_dist (`DiagonalGaussianDistribution`):
            Encoded outputs of `Encoder` represented as the mean and logvar of `DiagonalGaussianDistribution`.
    """

    latent_dist: "DiagonalGaussianDistribution"  # noqa: F821
