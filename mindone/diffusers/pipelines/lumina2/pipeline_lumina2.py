# Copyright 2025 Alpha-VLLM and The HuggingFace Team. All rights reserved.
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
"""Lumina-Image-2.0 text-to-image pipeline.

Adapted from diffusers v0.42.1 `pipelines/lumina2/pipeline_lumina2.py`; MindSpore changes: numpy generators,
`return_dict=False` by default, `output_type="ms"` instead of `"pt"`, no device arguments, a dtype guard (bfloat16 has
no CPU matmul kernel; float16 is not safe for Lumina2). Fixed upstream bugs (each noted where it is fixed): the
dynamic-shift `mu` is computed from the number of image tokens (diffusers issue 12913), the attention masks of
`num_images_per_prompt` copies follow their embeddings, and passed `negative_prompt_embeds` are duplicated like the
positive ones. Opt-in extras (defaults unchanged): the guidance of the original Lumina-Image-2.0 code
(`guidance_mode="original"`) and its system-prompt presets (`system_prompt="align"` etc., see `SYSTEM_PROMPTS`).
"""

import inspect
import numbers
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from transformers import GemmaTokenizer

import mindspore as ms
from mindspore import ops

from ....transformers.models.gemma2.modeling_gemma2 import Gemma2PreTrainedModel
from ...image_processor import VaeImageProcessor
from ...loaders.lora_pipeline import Lumina2LoraLoaderMixin
from ...models.autoencoders.autoencoder_kl import AutoencoderKL
from ...models.transformers.transformer_lumina2 import Lumina2Transformer2DModel
from ...schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from ...utils import logging, randn_tensor
from ...utils.mindspore_utils import _is_device, is_number, type_name
from ..pipeline_utils import DiffusionPipeline, ImagePipelineOutput

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import mindspore as ms
        >>> from mindone.diffusers import Lumina2Pipeline

        >>> pipe = Lumina2Pipeline.from_pretrained("Alpha-VLLM/Lumina-Image-2.0", mindspore_dtype=ms.bfloat16)  # Ascend
        >>> # on CPU: mindspore_dtype=ms.float32

        >>> prompt = "Upper body of a young woman in a Victorian-era outfit with brass goggles and leather straps. Background shows an industrial revolution cityscape with smoky skies and tall, metal structures"
        >>> image = pipe(prompt)[0][0]
        ```
"""

_PROMPT_START = " <Prompt Start> "
# System prompts of the original Lumina-Image-2.0 code (`sample.py`, `--system_type`), by name. The value is the whole
# prefix put before the prompt; "real" is diffusers' default system prompt, "empty" puts nothing before the prompt.
SYSTEM_PROMPTS = {
    "align": "You are an assistant designed to generate high-quality images with the highest degree of image-text "
    "alignment based on textual prompts." + _PROMPT_START,
    "base": "You are an assistant designed to generate high-quality images based on user prompts." + _PROMPT_START,
    "aesthetics": "You are an assistant designed to generate high-quality images with highest degree of aesthetics "
    "based on user prompts." + _PROMPT_START,
    "real": "You are an assistant designed to generate superior images with the superior degree of image-text "
    "alignment based on textual prompts or user prompts." + _PROMPT_START,
    "4grid": "You are an assistant designed to generate four high-quality images with highest degree of aesthetics "
    "arranged in 2x2 grids based on user prompts." + _PROMPT_START,
    "empty": "",
}
GUIDANCE_MODES = ("diffusers", "original")


# Copied from diffusers.pipelines.flux.pipeline_flux.calculate_shift
def calculate_shift(
    image_seq_len,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
):
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    mu = image_seq_len * m + b
    return mu


# Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.retrieve_timesteps (no device)
def retrieve_timesteps(
    scheduler,
    num_inference_steps: Optional[int] = None,
    timesteps: Optional[List[int]] = None,
    sigmas: Optional[List[float]] = None,
    **kwargs,
):
    r"""
    Calls the scheduler's `set_timesteps` method and retrieves timesteps from the scheduler after the call. Handles
    custom timesteps. Any kwargs will be supplied to `scheduler.set_timesteps`.

    Args:
        scheduler (`SchedulerMixin`):
            The scheduler to get timesteps from.
        num_inference_steps (`int`):
            The number of diffusion steps used when generating samples with a pre-trained model. If used, `timesteps`
            must be `None`.
        timesteps (`List[int]`, *optional*):
            Custom timesteps used to override the timestep spacing strategy of the scheduler. If `timesteps` is passed,
            `num_inference_steps` and `sigmas` must be `None`.
        sigmas (`List[float]`, *optional*):
            Custom sigmas used to override the timestep spacing strategy of the scheduler. If `sigmas` is passed,
            `num_inference_steps` and `timesteps` must be `None`.

    Returns:
        `Tuple[ms.Tensor, int]`: A tuple where the first element is the timestep schedule from the scheduler and the
        second element is the number of inference steps.
    """
    if timesteps is not None and sigmas is not None:
        raise ValueError("Only one of `timesteps` or `sigmas` can be passed. Please choose one to set custom values")
    if timesteps is not None:
        accepts_timesteps = "timesteps" in set(inspect.signature(scheduler.set_timesteps).parameters.keys())
        if not accepts_timesteps:
            raise ValueError(
                f"The current scheduler class {scheduler.__class__}'s `set_timesteps` does not support custom"
                f" timestep schedules. Please check whether you are using the correct scheduler."
            )
        scheduler.set_timesteps(timesteps=timesteps, **kwargs)
        timesteps = scheduler.timesteps
        num_inference_steps = len(timesteps)
    elif sigmas is not None:
        accept_sigmas = "sigmas" in set(inspect.signature(scheduler.set_timesteps).parameters.keys())
        if not accept_sigmas:
            raise ValueError(
                f"The current scheduler class {scheduler.__class__}'s `set_timesteps` does not support custom"
                f" sigmas schedules. Please check whether you are using the correct scheduler."
            )
        scheduler.set_timesteps(sigmas=sigmas, **kwargs)
        timesteps = scheduler.timesteps
        num_inference_steps = len(timesteps)
    else:
        scheduler.set_timesteps(num_inference_steps, **kwargs)
        timesteps = scheduler.timesteps
    return timesteps, num_inference_steps


def _describe(value) -> str:
    """A short description of an argument for error messages (tensors by shape, not by content)."""
    if isinstance(value, (ms.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    return repr(value)


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _check_compute_dtype(dtype, what: str = "`mindspore_dtype`"):
    """bfloat16 needs Ascend (MindSpore's CPU backend has no bf16 MatMul/BatchMatMul); float16 is not safe for
    Lumina2 (diffusers gives black/NaN images in float16)."""
    if dtype == ms.bfloat16 and ms.get_context("device_target") == "CPU":
        raise ValueError(
            f"{what} is bfloat16, but MindSpore's CPU backend has no bfloat16 MatMul kernel: on CPU the Lumina2 "
            "pipeline needs float32 (`mindspore_dtype=ms.float32`). bfloat16 is for Ascend."
        )
    if dtype == ms.float16:
        logger.warning(
            f"{what} is float16, but Lumina2 is not fp16-safe (activations overflow and images come out black or "
            "NaN). Use float32 on CPU or bfloat16 on Ascend."
        )


class Lumina2Pipeline(DiffusionPipeline, Lumina2LoraLoaderMixin):
    r"""
    Pipeline for text-to-image generation using Lumina-T2I.

    This model inherits from [`DiffusionPipeline`]. Check the superclass documentation for the generic methods the
    library implements for all the pipelines (such as downloading or saving, casting to a dtype, etc.)

    Args:
        vae ([`AutoencoderKL`]):
            Variational Auto-Encoder (VAE) Model to encode and decode images to and from latent representations.
        text_encoder ([`~mindone.transformers.Gemma2Model`]):
            Frozen Gemma2 text-encoder.
        tokenizer (`GemmaTokenizer` or `GemmaTokenizerFast`):
            Gemma tokenizer (from `transformers`).
        transformer ([`Lumina2Transformer2DModel`]):
            A text conditioned `Transformer2DModel` to denoise the encoded image latents.
        scheduler ([`SchedulerMixin`]):
            A scheduler to be used in combination with `transformer` to denoise the encoded image latents.
    """

    _optional_components = []
    _callback_tensor_inputs = ["latents", "prompt_embeds"]
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    SYSTEM_PROMPTS = SYSTEM_PROMPTS

    def __init__(
        self,
        transformer: Lumina2Transformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKL,
        text_encoder: Gemma2PreTrainedModel,
        tokenizer: GemmaTokenizer,
    ):
        super().__init__()

        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            scheduler=scheduler,
        )
        self.vae_scale_factor = 8
        self.default_sample_size = (
            self.transformer.config.sample_size
            if hasattr(self, "transformer") and self.transformer is not None
            else 128
        )
        self.default_image_size = self.default_sample_size * self.vae_scale_factor
        self.system_prompt = "You are an assistant designed to generate superior images with the superior degree of image-text alignment based on textual prompts or user prompts."

        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor * 2)

        if getattr(self, "tokenizer", None) is not None:
            self.tokenizer.padding_side = "right"

    @classmethod
    def _validate_mindspore_dtype(cls, dtype):
        if dtype is not None:
            _check_compute_dtype(dtype)

    def _get_gemma_prompt_embeds(
        self,
        prompt: Union[str, List[str]],
        max_sequence_length: int = 256,
    ) -> Tuple[ms.Tensor, ms.Tensor]:
        missing = [name for name in ("tokenizer", "text_encoder") if getattr(self, name, None) is None]
        if missing:  # upstream fails on calling None
            raise ValueError(
                f"Encoding a prompt needs the pipeline's {' and '.join(missing)}, which is None: load the pipeline "
                "with it, or pass `prompt_embeds` / `prompt_attention_mask` (and the negative ones) instead of prompts."
            )
        prompt = [prompt] if isinstance(prompt, str) else prompt
        text_inputs = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            return_tensors="np",
        )

        text_input_ids = text_inputs.input_ids
        untruncated_ids = self.tokenizer(prompt, padding="longest", return_tensors="np").input_ids

        if untruncated_ids.shape[-1] >= text_input_ids.shape[-1] and not np.array_equal(
            text_input_ids, untruncated_ids
        ):
            removed_text = self.tokenizer.batch_decode(untruncated_ids[:, max_sequence_length - 1 : -1])
            logger.warning(
                "The following part of your input was truncated because Gemma can only handle sequences up to"
                f" {max_sequence_length} tokens: {removed_text}"
            )

        if self.text_encoder.dtype == ms.bfloat16:  # e.g. loaded with `mindspore_dtype="auto"` from a bf16 checkpoint
            _check_compute_dtype(ms.bfloat16, "The text encoder's dtype")
        prompt_attention_mask = ms.Tensor(text_inputs.attention_mask.astype(np.int64))
        prompt_embeds = self.text_encoder(
            ms.Tensor(text_input_ids.astype(np.int64)),
            attention_mask=prompt_attention_mask,
            output_hidden_states=True,
            return_dict=True,
        )
        prompt_embeds = prompt_embeds.hidden_states[-2]

        if self.text_encoder is not None:
            dtype = self.text_encoder.dtype
        elif self.transformer is not None:
            dtype = self.transformer.dtype
        else:
            dtype = None

        if dtype is not None:
            prompt_embeds = prompt_embeds.astype(dtype)

        return prompt_embeds, prompt_attention_mask

    def _system_prompt_prefix(self, system_prompt: Optional[str]) -> str:
        """The text put before each prompt: a preset of `SYSTEM_PROMPTS` by name, else `system_prompt + " <Prompt
        Start> "` as upstream (`None` -> the pipeline's default system prompt)."""
        if system_prompt is None:
            system_prompt = self.system_prompt
        if not isinstance(system_prompt, str):
            raise TypeError(f"`system_prompt` must be a string or None, got {type(system_prompt).__name__}.")
        if system_prompt in SYSTEM_PROMPTS:
            return SYSTEM_PROMPTS[system_prompt]
        return system_prompt + _PROMPT_START

    @staticmethod
    def _repeat_per_prompt(embeds: ms.Tensor, mask: ms.Tensor, num_images_per_prompt: int):
        # duplicate text embeddings and attention mask for each generation per prompt.
        # Fix: upstream repeats the mask with `mask.repeat(num_images_per_prompt, 1)` (copies of the whole batch, p0 p1
        # p0 p1) while the embeddings are repeated per prompt (p0 p0 p1 p1), so with several prompts of different
        # lengths and num_images_per_prompt > 1 an image got another prompt's mask. Both are repeated per prompt here.
        if num_images_per_prompt == 1:
            return embeds, mask
        batch_size, seq_len, _ = embeds.shape
        embeds = embeds.tile((1, num_images_per_prompt, 1)).view(batch_size * num_images_per_prompt, seq_len, -1)
        mask = mask.tile((1, num_images_per_prompt)).view(batch_size * num_images_per_prompt, -1)
        return embeds, mask

    # Adapted from diffusers.pipelines.deepfloyd_if.pipeline_if.encode_prompt
    def encode_prompt(
        self,
        prompt: Union[str, List[str]],
        do_classifier_free_guidance: bool = True,
        negative_prompt: Union[str, List[str]] = None,
        num_images_per_prompt: int = 1,
        prompt_embeds: Optional[ms.Tensor] = None,
        negative_prompt_embeds: Optional[ms.Tensor] = None,
        prompt_attention_mask: Optional[ms.Tensor] = None,
        negative_prompt_attention_mask: Optional[ms.Tensor] = None,
        system_prompt: Optional[str] = None,
        max_sequence_length: int = 256,
        **kwargs,
    ) -> Tuple[ms.Tensor, ms.Tensor, ms.Tensor, ms.Tensor]:
        r"""
        Encodes the prompt into text encoder hidden states.

        Args:
            prompt (`str` or `List[str]`, *optional*):
                prompt to be encoded
            negative_prompt (`str` or `List[str]`, *optional*):
                The prompt not to guide the image generation. If not defined, one has to pass `negative_prompt_embeds`
                instead. Ignored when not using guidance (i.e., ignored if `guidance_scale` is less than `1`). For
                Lumina-T2I, this should be "".
            do_classifier_free_guidance (`bool`, *optional*, defaults to `True`):
                whether to use classifier free guidance or not
            num_images_per_prompt (`int`, *optional*, defaults to 1):
                number of images that should be generated per prompt
            prompt_embeds (`ms.Tensor`, *optional*):
                Pre-generated text embeddings. Can be used to easily tweak text inputs, *e.g.* prompt weighting. If not
                provided, text embeddings will be generated from `prompt` input argument.
            negative_prompt_embeds (`ms.Tensor`, *optional*):
                Pre-generated negative text embeddings. For Lumina-T2I, it's should be the embeddings of the "" string.
            prompt_attention_mask (`ms.Tensor`, *optional*):
                The attention mask of `prompt_embeds` (1 for tokens, 0 for padding).
            negative_prompt_attention_mask (`ms.Tensor`, *optional*):
                The attention mask of `negative_prompt_embeds`.
            system_prompt (`str`, *optional*):
                The system prompt put before each prompt (followed by `" <Prompt Start> "`), or the name of one of the
                original Lumina-Image-2.0 presets in `SYSTEM_PROMPTS` ("align", "base", "aesthetics", "real", "4grid",
                "empty"). Defaults to `self.system_prompt`.
            max_sequence_length (`int`, defaults to `256`):
                Maximum sequence length to use for the prompt.
        """
        if "device" in kwargs or _is_device(prompt_embeds):
            # upstream's fifth positional parameter is `device`: here that argument lands in `prompt_embeds`
            raise TypeError(
                "`encode_prompt` takes no `device` (MindSpore places tensors through `ms.set_context`): remove it, and "
                "pass the arguments after `num_images_per_prompt` by keyword."
            )
        if kwargs:
            raise TypeError(f"`encode_prompt` got unexpected keyword arguments {sorted(kwargs)}.")
        # NumPy embeddings and masks are taken as tensors (as NumPy `latents` are)
        prompt_embeds, negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask = (
            ms.Tensor(value) if isinstance(value, np.ndarray) else value
            for value in (prompt_embeds, negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask)
        )
        prompt = [prompt] if isinstance(prompt, str) else prompt
        if prompt is not None:
            batch_size = len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]

        if prompt is not None:
            prefix = self._system_prompt_prefix(system_prompt)
            prompt = [prefix + p for p in prompt]

        if prompt_embeds is not None and prompt_attention_mask is None:
            raise ValueError("Must provide `prompt_attention_mask` when specifying `prompt_embeds`.")
        if (
            do_classifier_free_guidance
            and negative_prompt_embeds is not None
            and negative_prompt_attention_mask is None
        ):
            raise ValueError("Must provide `negative_prompt_attention_mask` when specifying `negative_prompt_embeds`.")
        if prompt_embeds is None:
            prompt_embeds, prompt_attention_mask = self._get_gemma_prompt_embeds(
                prompt=prompt,
                max_sequence_length=max_sequence_length,
            )

        prompt_embeds, prompt_attention_mask = self._repeat_per_prompt(
            prompt_embeds, prompt_attention_mask, num_images_per_prompt
        )

        # Get negative embeddings for classifier free guidance
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negative_prompt = negative_prompt if negative_prompt is not None else ""

            # Normalize str to list
            negative_prompt = batch_size * [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt

            if prompt is not None and type(prompt) is not type(negative_prompt):
                raise TypeError(
                    f"`negative_prompt` should be the same type to `prompt`, but got {type(negative_prompt)} !="
                    f" {type(prompt)}."
                )
            elif isinstance(negative_prompt, str):
                negative_prompt = [negative_prompt]
            elif batch_size != len(negative_prompt):
                raise ValueError(
                    f"`negative_prompt`: {negative_prompt} has batch size {len(negative_prompt)}, but `prompt`:"
                    f" {prompt} has batch size {batch_size}. Please make sure that passed `negative_prompt` matches"
                    " the batch size of `prompt`."
                )
            negative_prompt_embeds, negative_prompt_attention_mask = self._get_gemma_prompt_embeds(
                prompt=negative_prompt,
                max_sequence_length=max_sequence_length,
            )
            negative_prompt_embeds, negative_prompt_attention_mask = self._repeat_per_prompt(
                negative_prompt_embeds, negative_prompt_attention_mask, num_images_per_prompt
            )
        elif do_classifier_free_guidance:
            # Fix: upstream leaves passed negative embeddings at the prompt batch size, which fails with
            # num_images_per_prompt > 1; they are duplicated like the positive ones.
            negative_prompt_embeds, negative_prompt_attention_mask = self._repeat_per_prompt(
                negative_prompt_embeds, negative_prompt_attention_mask, num_images_per_prompt
            )

        return prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask

    def check_inputs(
        self,
        prompt,
        height,
        width,
        negative_prompt,
        prompt_embeds=None,
        negative_prompt_embeds=None,
        prompt_attention_mask=None,
        negative_prompt_attention_mask=None,
        callback_on_step_end_tensor_inputs=None,
        max_sequence_length=None,
        guidance_mode="diffusers",
        cfg_renorm_factor=1.0,
        num_images_per_prompt=1,
        num_inference_steps=1,
        sigmas=None,
        guidance_scale=1.0,
        cfg_trunc_ratio=1.0,
        latents=None,
    ):
        # MindSpore addition: numbers where upstream compares or formats them (a string fails there without naming it)
        for name, value in (
            ("height", height),
            ("width", width),
            ("guidance_scale", guidance_scale),
            ("cfg_trunc_ratio", cfg_trunc_ratio),
        ):
            if not is_number(value):
                raise TypeError(f"`{name}` must be a number, got {value!r:.80}.")
        if height % (self.vae_scale_factor * 2) != 0 or width % (self.vae_scale_factor * 2) != 0:
            raise ValueError(
                f"`height` and `width` have to be divisible by {self.vae_scale_factor * 2} but are {height} and {width}."
            )
        if height <= 0 or width <= 0:  # upstream fails when it allocates the latents
            raise ValueError(f"`height` and `width` must be positive but are {height} and {width}.")

        if callback_on_step_end_tensor_inputs is not None and not all(
            k in self._callback_tensor_inputs for k in callback_on_step_end_tensor_inputs
        ):
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}, but found {[k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]}"
            )

        if prompt is not None and prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `prompt`: {prompt} and `prompt_embeds`: {_describe(prompt_embeds)}. Please make"
                " sure to only forward one of the two."
            )
        elif prompt is None and prompt_embeds is None:
            raise ValueError(
                "Provide either `prompt` or `prompt_embeds`. Cannot leave both `prompt` and `prompt_embeds` undefined."
            )
        elif prompt is not None and (not isinstance(prompt, str) and not isinstance(prompt, list)):
            raise ValueError(f"`prompt` has to be of type `str` or `list` but is {type(prompt)}")
        elif isinstance(prompt, list) and not all(isinstance(p, str) for p in prompt):
            # upstream fails on `str + int`
            kinds = sorted({type(p).__name__ for p in prompt})
            raise ValueError(
                f"`prompt` has to be a `str` or a `list` of `str`, but is a list with items of type {kinds}"
            )
        elif isinstance(prompt, list) and not prompt:  # upstream fails in the tokenizer
            raise ValueError("`prompt` is an empty list: give at least one prompt.")

        if prompt is not None and negative_prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `prompt`: {prompt} and `negative_prompt_embeds`:"
                f" {_describe(negative_prompt_embeds)}. Please make sure to only forward one of the two."
            )

        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError(
                f"Cannot forward both `negative_prompt`: {negative_prompt} and `negative_prompt_embeds`:"
                f" {_describe(negative_prompt_embeds)}. Please make sure to only forward one of the two."
            )

        if prompt_embeds is not None and prompt_attention_mask is None:
            raise ValueError("Must provide `prompt_attention_mask` when specifying `prompt_embeds`.")

        if negative_prompt_embeds is not None and negative_prompt_attention_mask is None:
            raise ValueError("Must provide `negative_prompt_attention_mask` when specifying `negative_prompt_embeds`.")

        if prompt_embeds is not None and negative_prompt_embeds is not None:
            if prompt_embeds.shape != negative_prompt_embeds.shape:
                raise ValueError(
                    "`prompt_embeds` and `negative_prompt_embeds` must have the same shape when passed directly, but"
                    f" got: `prompt_embeds` {tuple(prompt_embeds.shape)} != `negative_prompt_embeds`"
                    f" {tuple(negative_prompt_embeds.shape)}."
                )
            if prompt_attention_mask.shape != negative_prompt_attention_mask.shape:
                raise ValueError(
                    "`prompt_attention_mask` and `negative_prompt_attention_mask` must have the same shape when passed directly, but"
                    f" got: `prompt_attention_mask` {tuple(prompt_attention_mask.shape)} != `negative_prompt_attention_mask`"
                    f" {tuple(negative_prompt_attention_mask.shape)}."
                )

        # MindSpore additions: the shapes of passed embeddings and masks, and the options upstream does not have
        if prompt_embeds is not None:
            if prompt_embeds.ndim != 3:
                raise ValueError(
                    "`prompt_embeds` must have shape (batch_size, sequence_length, hidden_size), got shape"
                    f" {tuple(prompt_embeds.shape)}."
                )
            if tuple(prompt_attention_mask.shape) != tuple(prompt_embeds.shape[:2]):
                raise ValueError(
                    f"`prompt_attention_mask` must have shape {tuple(prompt_embeds.shape[:2])} (the first two dims of"
                    f" `prompt_embeds`), got {tuple(prompt_attention_mask.shape)}."
                )
            cap_feat_dim = self.transformer.config.cap_feat_dim if self.transformer is not None else None
            if cap_feat_dim is not None and prompt_embeds.shape[2] != cap_feat_dim:
                raise ValueError(
                    f"`prompt_embeds` must have the transformer's `cap_feat_dim` ({cap_feat_dim}) as last dim (the text "
                    f"encoder's hidden size), got shape {tuple(prompt_embeds.shape)}."
                )
        if negative_prompt_embeds is not None and prompt_embeds is None:
            if tuple(negative_prompt_attention_mask.shape) != tuple(negative_prompt_embeds.shape[:2]):
                raise ValueError(
                    f"`negative_prompt_attention_mask` must have shape {tuple(negative_prompt_embeds.shape[:2])}, got"
                    f" {tuple(negative_prompt_attention_mask.shape)}."
                )

        if max_sequence_length is not None and max_sequence_length > 512:
            raise ValueError(f"`max_sequence_length` cannot be greater than 512 but is {max_sequence_length}")
        if max_sequence_length is not None and max_sequence_length < 1:
            raise ValueError(f"`max_sequence_length` must be at least 1 but is {max_sequence_length}")
        if max_sequence_length is not None and not _is_positive_int(max_sequence_length):
            raise ValueError(f"`max_sequence_length` must be an int but is {max_sequence_length!r}")

        if guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"`guidance_mode` must be one of {GUIDANCE_MODES} but is {guidance_mode!r}.")
        if not isinstance(cfg_renorm_factor, numbers.Real) or not cfg_renorm_factor > 0:
            raise ValueError(f"`cfg_renorm_factor` must be a number > 0 but is {cfg_renorm_factor!r}.")
        if not _is_positive_int(num_images_per_prompt):
            raise ValueError(f"`num_images_per_prompt` must be an int >= 1 but is {num_images_per_prompt!r}.")
        if sigmas is None and not _is_positive_int(num_inference_steps):
            # upstream divides by it (`np.linspace(1.0, 1 / num_inference_steps, ...)`)
            raise ValueError(
                f"`num_inference_steps` must be an int >= 1 when `sigmas` is not given, but is {num_inference_steps!r}."
            )
        if latents is not None and self.transformer is not None:
            # checked before the text encoder runs; the batch size and channels are checked in `prepare_latents`
            if not isinstance(latents, (ms.Tensor, np.ndarray)):
                raise TypeError(f"`latents` must be a mindspore.Tensor or a NumPy array, got {type_name(latents)}.")
            p = self.transformer.config.patch_size
            if latents.ndim == 4 and (latents.shape[2] % p or latents.shape[3] % p):
                raise ValueError(
                    f"`latents` height and width ({latents.shape[2]} and {latents.shape[3]}) have to be divisible by "
                    f"the transformer's `patch_size` ({p})."
                )

    def prepare_extra_step_kwargs(self, generator, eta):
        # keyword arguments for `scheduler.step` that this scheduler accepts (as upstream's helper): `eta` is only
        # DDIM's, `generator` draws the noise of a stochastic step
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra_step_kwargs = {}
        if "eta" in accepted:
            extra_step_kwargs["eta"] = eta
        if "generator" in accepted:
            extra_step_kwargs["generator"] = generator
        return extra_step_kwargs

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, generator, latents=None):
        # VAE applies 8x compression on images but we must also account for packing which requires
        # latent height and width to be divisible by 2.
        height = 2 * (int(height) // (self.vae_scale_factor * 2))
        width = 2 * (int(width) // (self.vae_scale_factor * 2))

        shape = (batch_size, num_channels_latents, height, width)

        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"You have passed a list of generators of length {len(generator)}, but requested an effective batch"
                f" size of {batch_size}. Make sure the batch size matches the length of the generators."
            )

        if latents is None:
            latents = randn_tensor(shape, generator=generator, dtype=dtype)
        else:
            if isinstance(latents, np.ndarray):
                latents = ms.Tensor(latents)
            if latents.ndim != 4 or tuple(latents.shape[:2]) != shape[:2]:
                raise ValueError(
                    f"`latents` must have shape {shape} (batch_size * num_images_per_prompt, in_channels, height // 8,"
                    f" width // 8), got {tuple(latents.shape)}."
                )
            if tuple(latents.shape[2:]) != shape[2:]:
                # upstream takes the latents as given: their size, not `height` / `width`, sets the image's
                logger.warning(
                    f"`latents` of spatial size {tuple(latents.shape[2:])} give an image of "
                    f"{latents.shape[2] * self.vae_scale_factor}x{latents.shape[3] * self.vae_scale_factor} pixels; "
                    f"`height` and `width` ({height * self.vae_scale_factor}x{width * self.vae_scale_factor}, or the "
                    "default size when not given) are ignored, as in diffusers. Pass the latents' size to silence this."
                )
            # upstream moves them to the device only, and a dtype other than the transformer's then fails in its first
            # matmul; as diffusers' other pipelines (FLUX, SD3) do, they are cast, here to the transformer's dtype
            latents = latents.astype(dtype)
        return latents

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def attention_kwargs(self):
        return self._attention_kwargs

    # here `guidance_scale` is defined analog to the guidance weight `w` of equation (2)
    # of the Imagen paper: https://huggingface.co/papers/2205.11487 . `guidance_scale = 1`
    # corresponds to doing no classifier free guidance.
    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1

    @property
    def num_timesteps(self):
        return self._num_timesteps

    def _transformer(self, latents, timestep, embeds, mask):
        kwargs = {} if self.attention_kwargs is None else {"attention_kwargs": self.attention_kwargs}
        return self.transformer(
            hidden_states=latents,
            timestep=timestep,
            encoder_hidden_states=embeds,
            encoder_attention_mask=mask,
            return_dict=False,
            **kwargs,
        )[0]

    def __call__(
        self,
        prompt: Union[str, List[str]] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 4.0,
        negative_prompt: Union[str, List[str]] = None,
        sigmas: List[float] = None,
        num_images_per_prompt: Optional[int] = 1,
        generator: Optional[Union[np.random.Generator, List[np.random.Generator]]] = None,
        latents: Optional[ms.Tensor] = None,
        prompt_embeds: Optional[ms.Tensor] = None,
        negative_prompt_embeds: Optional[ms.Tensor] = None,
        prompt_attention_mask: Optional[ms.Tensor] = None,
        negative_prompt_attention_mask: Optional[ms.Tensor] = None,
        output_type: Optional[str] = "pil",
        return_dict: bool = False,
        attention_kwargs: Optional[Dict[str, Any]] = None,
        callback_on_step_end: Optional[Callable[[int, int, Dict], None]] = None,
        callback_on_step_end_tensor_inputs: List[str] = ["latents"],
        system_prompt: Optional[str] = None,
        cfg_trunc_ratio: float = 1.0,
        cfg_normalization: bool = True,
        max_sequence_length: int = 256,
        guidance_mode: str = "diffusers",
        cfg_renorm_factor: float = 1.0,
    ) -> Union[ImagePipelineOutput, Tuple]:
        """
        Function invoked when calling the pipeline for generation.

        Args:
            prompt (`str` or `List[str]`, *optional*):
                The prompt or prompts to guide the image generation. If not defined, one has to pass `prompt_embeds`.
                instead.
            negative_prompt (`str` or `List[str]`, *optional*):
                The prompt or prompts not to guide the image generation. If not defined, one has to pass
                `negative_prompt_embeds` instead. Ignored when not using guidance (i.e., ignored if `guidance_scale` is
                less than `1`).
            num_inference_steps (`int`, *optional*, defaults to 30):
                The number of denoising steps. More denoising steps usually lead to a higher quality image at the
                expense of slower inference.
            sigmas (`List[float]`, *optional*):
                Custom sigmas to use for the denoising process with schedulers which support a `sigmas` argument in
                their `set_timesteps` method. If not defined, the default behavior when `num_inference_steps` is passed
                will be used.
            guidance_scale (`float`, *optional*, defaults to 4.0):
                Guidance scale as defined in [Classifier-Free Diffusion
                Guidance](https://huggingface.co/papers/2207.12598). `guidance_scale` is defined as `w` of equation 2.
                of [Imagen Paper](https://huggingface.co/papers/2205.11487). Guidance scale is enabled by setting
                `guidance_scale > 1`. Higher guidance scale encourages to generate images that are closely linked to
                the text `prompt`, usually at the expense of lower image quality.
            num_images_per_prompt (`int`, *optional*, defaults to 1):
                The number of images to generate per prompt.
            height (`int`, *optional*, defaults to `transformer.config.sample_size * 8`):
                The height in pixels of the generated image (a multiple of 16).
            width (`int`, *optional*, defaults to `transformer.config.sample_size * 8`):
                The width in pixels of the generated image (a multiple of 16).
            generator (`np.random.Generator` or `List[np.random.Generator]`, *optional*):
                One or a list of NumPy generators (`np.random.default_rng(seed)`) to make generation deterministic:
                they draw the initial latents and, with a `stochastic_sampling` scheduler, the noise of each step.
            latents (`ms.Tensor`, *optional*):
                Pre-generated noisy latents, sampled from a Gaussian distribution, to be used as inputs for image
                generation. Can be used to tweak the same generation with different prompts. If not provided, a latents
                tensor will be generated by sampling using the supplied random `generator`.
            prompt_embeds (`ms.Tensor`, *optional*):
                Pre-generated text embeddings. Can be used to easily tweak text inputs, *e.g.* prompt weighting. If not
                provided, text embeddings will be generated from `prompt` input argument.
            prompt_attention_mask (`ms.Tensor`, *optional*): Pre-generated attention mask for text embeddings.
            negative_prompt_embeds (`ms.Tensor`, *optional*):
                Pre-generated negative text embeddings. For Lumina-T2I this negative prompt should be "". If not
                provided, negative_prompt_embeds will be generated from `negative_prompt` input argument.
            negative_prompt_attention_mask (`ms.Tensor`, *optional*):
                Pre-generated attention mask for negative text embeddings.
            output_type (`str`, *optional*, defaults to `"pil"`):
                The output format of the generated image: `"pil"` (`PIL.Image.Image`), `"np"` (`np.ndarray`), `"ms"`
                (`ms.Tensor`) or `"latent"` (the latents, not decoded).
            return_dict (`bool`, *optional*, defaults to `False`):
                Whether or not to return a [`~pipelines.ImagePipelineOutput`] instead of a plain tuple.
            attention_kwargs:
                A kwargs dictionary that if specified is passed along to the transformer (e.g. `{"scale": 0.5}` for
                LoRA layers).
            callback_on_step_end (`Callable`, *optional*):
                A function that calls at the end of each denoising steps during the inference. The function is called
                with the following arguments: `callback_on_step_end(self: DiffusionPipeline, step: int, timestep: int,
                callback_kwargs: Dict)`. `callback_kwargs` will include a list of all tensors as specified by
                `callback_on_step_end_tensor_inputs`.
            callback_on_step_end_tensor_inputs (`List`, *optional*):
                The list of tensor inputs for the `callback_on_step_end` function. The tensors specified in the list
                will be passed as `callback_kwargs` argument. You will only be able to include variables listed in the
                `._callback_tensor_inputs` attribute of your pipeline class.
            system_prompt (`str`, *optional*):
                The system prompt to use for the image generation, or the name of a preset of the original
                Lumina-Image-2.0 code (`"align"`, `"base"`, `"aesthetics"`, `"real"`, `"4grid"`, `"empty"`; see
                `Lumina2Pipeline.SYSTEM_PROMPTS`).
            cfg_trunc_ratio (`float`, *optional*, defaults to `1.0`):
                The ratio of the timestep interval to apply normalization-based guidance scale. With
                `guidance_mode="diffusers"`, guidance stops after the first `cfg_trunc_ratio` fraction of the steps;
                with `"original"`, it applies while the (shifted) time `1 - sigma` is below `cfg_trunc_ratio`.
            cfg_normalization (`bool`, *optional*, defaults to `True`):
                Whether to apply normalization-based guidance scale.
            max_sequence_length (`int`, defaults to `256`):
                Maximum sequence length to use with the `prompt`.
            guidance_mode (`str`, *optional*, defaults to `"diffusers"`):
                `"diffusers"`: guidance as diffusers 0.42.1 (truncation by step index; the normalization rescales the
                guided prediction to the norm of the conditional one along the last (width) axis). `"original"`: as
                the original Lumina-Image-2.0 code (truncation on the shifted time; the norm of the guided prediction,
                measured over the whole latent of each sample, is clamped to `cfg_renorm_factor` times the
                conditional one).
            cfg_renorm_factor (`float`, *optional*, defaults to `1.0`):
                The clamp factor of `guidance_mode="original"` (the original code's `renorm_cfg`); must be > 0.

        Examples:

        Returns:
            [`~pipelines.ImagePipelineOutput`] or `tuple`:
                If `return_dict` is `True`, [`~pipelines.ImagePipelineOutput`] is returned, otherwise a `tuple` is
                returned where the first element is a list with the generated images
        """
        height = height or self.default_sample_size * self.vae_scale_factor
        width = width or self.default_sample_size * self.vae_scale_factor
        output_type = "ms" if output_type == "pt" else output_type  # upstream's tensor output, as VaeImageProcessor
        # NumPy scalars (e.g. from `np.linspace`) as Python numbers: a NumPy float times a tensor gives an array
        guidance_scale, num_images_per_prompt = (
            value.item() if isinstance(value, np.generic) else value
            for value in (guidance_scale, num_images_per_prompt)
        )
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs

        # 1. Check inputs. Raise error if not correct
        self.check_inputs(
            prompt,
            height,
            width,
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            prompt_attention_mask=prompt_attention_mask,
            negative_prompt_attention_mask=negative_prompt_attention_mask,
            max_sequence_length=max_sequence_length,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            guidance_mode=guidance_mode,
            cfg_renorm_factor=cfg_renorm_factor,
            num_images_per_prompt=num_images_per_prompt,
            num_inference_steps=num_inference_steps,
            sigmas=sigmas,
            guidance_scale=guidance_scale,
            cfg_trunc_ratio=cfg_trunc_ratio,
            latents=latents,
        )
        _check_compute_dtype(self.transformer.dtype, "The transformer's dtype")

        # 2. Define call parameters
        if prompt is not None and isinstance(prompt, str):
            batch_size = 1
        elif prompt is not None and isinstance(prompt, list):
            batch_size = len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]

        # 3. Encode input prompt
        (
            prompt_embeds,
            prompt_attention_mask,
            negative_prompt_embeds,
            negative_prompt_attention_mask,
        ) = self.encode_prompt(
            prompt,
            self.do_classifier_free_guidance,
            negative_prompt=negative_prompt,
            num_images_per_prompt=num_images_per_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            prompt_attention_mask=prompt_attention_mask,
            negative_prompt_attention_mask=negative_prompt_attention_mask,
            max_sequence_length=max_sequence_length,
            system_prompt=system_prompt,
        )

        # 4. Prepare latents.
        latent_channels = self.transformer.config.in_channels
        latents = self.prepare_latents(
            batch_size * num_images_per_prompt,
            latent_channels,
            height,
            width,
            # upstream: the prompt embeddings' dtype, which fails in the transformer when a text encoder in another
            # dtype made them (its caption embedder takes them in any float dtype, the latents it does not)
            self.transformer.dtype,
            generator,
            latents,
        )

        # 5. Prepare timesteps
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps) if sigmas is None else sigmas
        # Fix (diffusers issue 12913): upstream passes `latents.shape[1]` (the latent channel count) as the image
        # sequence length; the image token count is (latent height / patch size) * (latent width / patch size). This
        # only changes results when the scheduler uses dynamic shifting (Lumina-Image-2.0's uses a static shift of 6).
        patch_size = self.transformer.config.patch_size
        image_seq_len = (latents.shape[2] // patch_size) * (latents.shape[3] // patch_size)
        mu = calculate_shift(
            image_seq_len,
            self.scheduler.config.get("base_image_seq_len", 256),
            self.scheduler.config.get("max_image_seq_len", 4096),
            self.scheduler.config.get("base_shift", 0.5),
            self.scheduler.config.get("max_shift", 1.15),
        )
        timesteps, num_inference_steps = retrieve_timesteps(
            self.scheduler,
            num_inference_steps,
            sigmas=sigmas,
            mu=mu,
        )
        num_warmup_steps = max(len(timesteps) - num_inference_steps * self.scheduler.order, 0)
        self._num_timesteps = len(timesteps)
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        host_timesteps = timesteps.asnumpy().astype(np.float32)

        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta=0.0)

        # 6. Denoising loop
        # We set the index here to remove DtoH sync, helpful especially during compilation.
        # Check out more details here: https://github.com/huggingface/diffusers/pull/11696
        self.scheduler.set_begin_index(0)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                # reverse the timestep since Lumina uses t=0 as the noise and t=1 as the image (float32, as upstream)
                host_time = np.float32(1) - host_timesteps[i] / np.float32(num_train_timesteps)
                # compute whether apply classifier-free truncation on this timestep
                if guidance_mode == "original":
                    do_classifier_free_truncation = not host_time < cfg_trunc_ratio
                else:
                    do_classifier_free_truncation = (i + 1) / num_inference_steps > cfg_trunc_ratio
                # broadcast to batch dimension
                current_timestep = ms.Tensor(np.full((latents.shape[0],), host_time, dtype=np.float32))

                noise_pred_cond = self._transformer(latents, current_timestep, prompt_embeds, prompt_attention_mask)

                # perform normalization-based guidance scale on a truncated timestep interval
                if self.do_classifier_free_guidance and not do_classifier_free_truncation:
                    if negative_prompt_embeds is None:  # upstream: AttributeError on `None.dtype`
                        raise ValueError(
                            "`callback_on_step_end` set `_guidance_scale` above 1 in a run without guidance, which has "
                            "no negative embeddings: call the pipeline with `guidance_scale > 1` (a callback may lower "
                            "it to 1 to turn guidance off)."
                        )
                    noise_pred_uncond = self._transformer(
                        latents, current_timestep, negative_prompt_embeds, negative_prompt_attention_mask
                    )
                    noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_cond - noise_pred_uncond)
                    # apply normalization after classifier-free guidance
                    if cfg_normalization and guidance_mode == "original":
                        noise_pred = self._renorm_clamp(noise_pred, noise_pred_cond, cfg_renorm_factor)
                    elif cfg_normalization:
                        cond_norm = ops.norm(noise_pred_cond, dim=-1, keepdim=True)
                        noise_norm = ops.norm(noise_pred, dim=-1, keepdim=True)
                        noise_pred = noise_pred * (cond_norm / noise_norm)
                else:
                    noise_pred = noise_pred_cond

                # compute the previous noisy sample x_t -> x_t-1
                noise_pred = -noise_pred
                # the pipeline's generator also draws the noise of a `stochastic_sampling` scheduler (upstream's step
                # takes it from torch's global generator), so that a seeded generator repeats the image
                latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

                if callback_on_step_end is not None:
                    step_tensors = {"latents": latents, "prompt_embeds": prompt_embeds}
                    callback_kwargs = {k: step_tensors[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    if not isinstance(callback_outputs, dict):  # upstream: AttributeError on `.pop`
                        raise TypeError(
                            "`callback_on_step_end` must return a dict (the tensors of `callback_kwargs` it changes, or "
                            f"`callback_kwargs` itself), got {type(callback_outputs).__name__}."
                        )

                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)

                # call the callback, if provided
                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()

        if not output_type == "latent":
            latents = (latents / self.vae.config.scaling_factor) + self.vae.config.shift_factor
            # cast for a VAE in another dtype than the transformer (upstream fails in its first convolution)
            image = self.vae.decode(latents.astype(self.vae.dtype), return_dict=False)[0]
            image = self.image_processor.postprocess(image, output_type=output_type)
        else:
            image = latents

        if not return_dict:
            return (image,)

        return ImagePipelineOutput(images=image)

    @staticmethod
    def _renorm_clamp(noise_pred: ms.Tensor, noise_pred_cond: ms.Tensor, factor: float) -> ms.Tensor:
        """The original Lumina-Image-2.0 `renorm_cfg`: where the norm of the guided prediction (over all but the batch
        axis) reaches `factor` times the conditional one, scale it down to that bound. The original compares one
        scalar for the whole batch (an error for batch > 1); here each sample is clamped on its own."""
        # ops.norm takes at most 2 dims: flatten each sample
        norm_shape = (noise_pred.shape[0],) + (1,) * (noise_pred.ndim - 1)
        max_new_norm = ops.norm(noise_pred_cond.reshape(norm_shape[0], -1), dim=1).reshape(norm_shape) * factor
        new_norm = ops.norm(noise_pred.reshape(norm_shape[0], -1), dim=1).reshape(norm_shape)
        return ops.where(new_norm >= max_new_norm, noise_pred * (max_new_norm / new_norm), noise_pred)
