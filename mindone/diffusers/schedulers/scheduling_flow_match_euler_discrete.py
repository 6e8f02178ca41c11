# Copyright 2025 Stability AI, Katherine Crowson and The HuggingFace Team. All rights reserved.
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
# Adapted from diffusers v0.42.1 `schedulers/scheduling_flow_match_euler_discrete.py`; MindSpore changes: the
# schedule is computed on the host in NumPy (same float32/float64 steps as upstream) and exposed as float32
# `ms.Tensor`s, `set_timesteps` has no `device`, `step` draws noise from a `numpy.random.Generator` and defaults to
# `return_dict=False`. Beta sigmas use `scipy.stats.beta.ppf` as upstream (scipy is a dependency of MindSpore itself).

import importlib.util
import math
import numbers
from dataclasses import dataclass
from typing import List, Literal, Optional, Tuple, Union

import numpy as np

import mindspore as ms

from ..configuration_utils import ConfigMixin, register_to_config
from ..utils import BaseOutput, logging, randn_tensor
from ..utils.mindspore_utils import _is_device, is_number, promote_types, type_name
from .scheduling_utils import SchedulerMixin

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name


def _compare_dtype(schedule_dtype: np.dtype, timestep: np.ndarray, python_number: bool) -> np.dtype:
    """The dtype torch compares `schedule_timesteps == timestep` in: a float timestep makes an integer schedule
    compare in floats (a Python number in float32, torch's default), and otherwise a timestep with dimensions widens
    the schedule's dtype within its kind, while a 0-dim tensor or a Python number takes the schedule's dtype."""
    schedule_float = np.issubdtype(schedule_dtype, np.floating)
    timestep_float = np.issubdtype(timestep.dtype, np.floating)
    if timestep_float and not schedule_float:
        return np.dtype(np.float32) if python_number else timestep.dtype
    if timestep.ndim > 0 and timestep_float == schedule_float:
        return np.promote_types(schedule_dtype, timestep.dtype)
    return schedule_dtype


def _to_numpy(x) -> np.ndarray:
    """Host copy of a tensor / array / scalar (bfloat16 tensors go through float32, which holds them exactly)."""
    if isinstance(x, ms.Tensor):
        if x.dtype == ms.bfloat16:
            x = x.astype(ms.float32)
        return x.asnumpy()
    return np.asarray(x)


def _check_tensors(method: str, **tensors) -> None:
    for name, value in tensors.items():
        if not isinstance(value, ms.Tensor):
            raise TypeError(f"`{name}` of `{method}` must be a mindspore.Tensor, got {type_name(value)}.")


@dataclass
class FlowMatchEulerDiscreteSchedulerOutput(BaseOutput):
    """
    Output class for the scheduler's `step` function output.

    Args:
        prev_sample (`ms.Tensor` of shape `(batch_size, num_channels, height, width)` for images):
            Computed sample `(x_{t-1})` of previous timestep. `prev_sample` should be used as next model input in the
            denoising loop.
    """

    prev_sample: ms.Tensor


class FlowMatchEulerDiscreteScheduler(SchedulerMixin, ConfigMixin):
    """
    Euler scheduler.

    This model inherits from [`SchedulerMixin`] and [`ConfigMixin`]. Check the superclass documentation for the generic
    methods the library implements for all schedulers such as loading and saving.

    Args:
        num_train_timesteps (`int`, defaults to 1000):
            The number of diffusion steps to train the model.
        shift (`float`, defaults to 1.0):
            The shift value for the timestep schedule.
        use_dynamic_shifting (`bool`, defaults to False):
            Whether to apply timestep shifting on-the-fly based on the image resolution.
        base_shift (`float`, defaults to 0.5):
            Value to stabilize image generation. Increasing `base_shift` reduces variation and image is more consistent
            with desired output.
        max_shift (`float`, defaults to 1.15):
            Value change allowed to latent vectors. Increasing `max_shift` encourages more variation and image may be
            more exaggerated or stylized.
        base_image_seq_len (`int`, defaults to 256):
            The base image sequence length.
        max_image_seq_len (`int`, defaults to 4096):
            The maximum image sequence length.
        invert_sigmas (`bool`, defaults to False):
            Whether to invert the sigmas.
        shift_terminal (`float`, defaults to None):
            The end value of the shifted timestep schedule.
        use_karras_sigmas (`bool`, defaults to False):
            Whether to use Karras sigmas for step sizes in the noise schedule during sampling.
        use_exponential_sigmas (`bool`, defaults to False):
            Whether to use exponential sigmas for step sizes in the noise schedule during sampling.
        use_beta_sigmas (`bool`, defaults to False):
            Whether to use beta sigmas for step sizes in the noise schedule during sampling.
        time_shift_type (`str`, defaults to "exponential"):
            The type of dynamic resolution-dependent timestep shifting to apply. Either "exponential" or "linear".
        stochastic_sampling (`bool`, defaults to False):
            Whether to use stochastic sampling.
    """

    _compatibles = []
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: Optional[float] = 0.5,
        max_shift: Optional[float] = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        invert_sigmas: bool = False,
        shift_terminal: Optional[float] = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        time_shift_type: Literal["exponential", "linear"] = "exponential",
        stochastic_sampling: bool = False,
    ):
        if self.config.use_beta_sigmas and importlib.util.find_spec("scipy") is None:
            raise ImportError("Make sure to install scipy if you want to use beta sigmas.")
        if sum([self.config.use_beta_sigmas, self.config.use_exponential_sigmas, self.config.use_karras_sigmas]) > 1:
            raise ValueError(
                "Only one of `config.use_beta_sigmas`, `config.use_exponential_sigmas`, `config.use_karras_sigmas` can be used."
            )
        if time_shift_type not in {"exponential", "linear"}:
            raise ValueError(
                f"`time_shift_type` must either be 'exponential' or 'linear', but is {time_shift_type!r}."
            )
        # MindSpore addition: a config value of the wrong type (say `"shift": "big"` in scheduler_config.json) fails
        # in NumPy upstream, without naming it
        for name, value, optional in (
            ("num_train_timesteps", num_train_timesteps, False),
            ("shift", shift, False),
            ("base_shift", base_shift, True),
            ("max_shift", max_shift, True),
            ("base_image_seq_len", base_image_seq_len, True),
            ("max_image_seq_len", max_image_seq_len, True),
            ("shift_terminal", shift_terminal, True),
        ):
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) or optional and value is None):
                raise TypeError(f"The scheduler config's `{name}` must be a number, got {value!r:.80}.")

        timesteps = np.linspace(1, num_train_timesteps, num_train_timesteps, dtype=np.float32)[::-1].copy()

        sigmas = timesteps / np.float32(num_train_timesteps)
        if not use_dynamic_shifting:
            # when use_dynamic_shifting is True, we apply the timestep shifting on the fly based on the image resolution
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        sigmas = sigmas.astype(np.float32)

        self.timesteps = ms.Tensor(sigmas * np.float32(num_train_timesteps), ms.float32)

        self._step_index = None
        self._begin_index = None

        self._shift = shift

        self.sigmas = ms.Tensor(sigmas, ms.float32)
        self.sigma_min = float(sigmas[-1])
        self.sigma_max = float(sigmas[0])

    @property
    def shift(self):
        """
        The value used for shifting.
        """
        return self._shift

    @property
    def step_index(self):
        """
        The index counter for current timestep. It will increase 1 after each scheduler step.
        """
        return self._step_index

    @property
    def begin_index(self):
        """
        The index for the first timestep. It should be set from pipeline with `set_begin_index` method.
        """
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0):
        """
        Sets the begin index for the scheduler. This function should be run from pipeline before the inference.

        Args:
            begin_index (`int`, defaults to `0`):
                The begin index for the scheduler.
        """
        self._begin_index = begin_index

    def set_shift(self, shift: float):
        """
        Sets the shift value for the scheduler.

        Args:
            shift (`float`):
                The shift value to be set.
        """
        self._shift = shift

    def scale_noise(
        self,
        sample: ms.Tensor,
        timestep: Union[float, ms.Tensor],
        noise: Optional[ms.Tensor] = None,
    ) -> ms.Tensor:
        """
        Forward process in flow-matching

        Args:
            sample (`ms.Tensor`):
                The input sample.
            timestep (`ms.Tensor`):
                The current timestep in the diffusion chain, one per sample of the batch.
            noise (`ms.Tensor`):
                The noise tensor.

        Returns:
            `ms.Tensor`:
                A scaled input sample.
        """
        if noise is None:
            raise ValueError("`scale_noise` needs `noise` (a tensor of the sample's shape) to mix into the sample.")
        _check_tensors("scale_noise", sample=sample, noise=noise)
        schedule_timesteps = _to_numpy(self.timesteps)
        if isinstance(timestep, (ms.Tensor, np.ndarray)):
            timestep = np.atleast_1d(_to_numpy(timestep))
        else:
            timestep = np.atleast_1d(np.asarray(timestep, dtype=np.float32))
        # upstream's `sigma` has shape (len(timestep), 1, ...): check here what would fail later in MindSpore
        try:
            np.broadcast_shapes((timestep.shape[0],) + (1,) * (sample.ndim - 1), sample.shape, noise.shape)
        except ValueError:
            raise ValueError(
                f"`scale_noise`: `timestep` ({timestep.shape[0]} values: one per sample, or one for all), `sample` "
                f"{tuple(sample.shape)} and `noise` {tuple(noise.shape)} do not broadcast together."
            ) from None

        # self.begin_index is None when scheduler is used for training, or pipeline does not implement set_begin_index
        if self.begin_index is None:
            step_indices = [self.index_for_timestep(np.asarray(t), schedule_timesteps) for t in timestep]
        elif self.step_index is not None:
            # add_noise is called after first denoising step (for inpainting)
            step_indices = [self.step_index] * timestep.shape[0]
        else:
            # add noise is called before first denoising step to create initial latent(img2img)
            step_indices = [self.begin_index] * timestep.shape[0]

        # picked on the host, then cast to the sample's dtype (upstream casts then picks: the same values)
        sigma = _to_numpy(self.sigmas)[step_indices].flatten()
        sigma = ms.Tensor(sigma.reshape(sigma.shape + (1,) * (sample.ndim - 1))).astype(sample.dtype)
        # `1.0 - sigma` on the host from the sigma in the sample's dtype, rounded back to it (upstream's tensor op):
        # MindSpore's scalar Sub has no bfloat16 CPU kernel
        one_minus_sigma = ms.Tensor(1.0 - _to_numpy(sigma)).astype(sample.dtype)

        sample = sigma * noise + one_minus_sigma * sample

        return sample

    def _sigma_to_t(self, sigma) -> float:
        return sigma * self.config.num_train_timesteps

    def time_shift(self, mu: float, sigma: float, t: np.ndarray) -> np.ndarray:
        """
        Apply time shifting to the sigmas.

        Args:
            mu (`float`):
                The mu parameter for the time shift.
            sigma (`float`):
                The sigma parameter for the time shift.
            t (`np.ndarray`):
                The input timesteps.

        Returns:
            `np.ndarray`:
                The time-shifted timesteps.
        """
        if self.config.time_shift_type == "exponential":
            return self._time_shift_exponential(mu, sigma, t)
        elif self.config.time_shift_type == "linear":
            return self._time_shift_linear(mu, sigma, t)

    def stretch_shift_to_terminal(self, t: np.ndarray) -> np.ndarray:
        r"""
        Stretches and shifts the timestep schedule to ensure it terminates at the configured `shift_terminal` config
        value.

        Reference:
        https://github.com/Lightricks/LTX-Video/blob/a01a171f8fe3d99dce2728d60a73fecf4d4238ae/ltx_video/schedulers/rf.py#L51

        Args:
            t (`np.ndarray`):
                A tensor of timesteps to be stretched and shifted.

        Returns:
            `np.ndarray`:
                A tensor of adjusted timesteps such that the final value equals `self.config.shift_terminal`.
        """
        one_minus_z = 1 - t
        scale_factor = one_minus_z[-1] / (1 - self.config.shift_terminal)
        stretched_t = 1 - (one_minus_z / scale_factor)
        return stretched_t

    def set_timesteps(
        self,
        num_inference_steps: Optional[int] = None,
        sigmas: Optional[List[float]] = None,
        mu: Optional[float] = None,
        timesteps: Optional[List[float]] = None,
        **kwargs,
    ):
        """
        Sets the discrete timesteps used for the diffusion chain (to be run before inference).

        Args:
            num_inference_steps (`int`, *optional*):
                The number of diffusion steps used when generating samples with a pre-trained model.
            sigmas (`List[float]`, *optional*):
                Custom values for sigmas to be used for each diffusion step. If `None`, the sigmas are computed
                automatically.
            mu (`float`, *optional*):
                Determines the amount of shifting applied to sigmas when performing resolution-dependent timestep
                shifting.
            timesteps (`List[float]`, *optional*):
                Custom values for timesteps to be used for each diffusion step. If `None`, the timesteps are computed
                automatically.
        """
        # upstream's second positional parameter is `device`; here there is none (mindone's convention)
        if "device" in kwargs or _is_device(sigmas):
            raise TypeError(
                "`set_timesteps` takes no `device` (MindSpore places tensors through `ms.set_context`): call "
                "`set_timesteps(num_inference_steps)` or pass `sigmas=` / `timesteps=` / `mu=` by keyword."
            )
        if kwargs:
            raise TypeError(f"`set_timesteps` got unexpected keyword arguments {sorted(kwargs)}.")
        for name, values in (("sigmas", sigmas), ("timesteps", timesteps)):
            if values is not None and (isinstance(values, (str, bytes)) or _to_numpy(values).ndim != 1):
                raise TypeError(f"`{name}` must be a 1-D list / array / tensor of floats, got {values!r:.80}.")
        if mu is not None and not is_number(mu):
            # e.g. upstream's `set_timesteps(n, None, sigmas)`: without a `device` parameter, sigmas land in `mu`
            raise TypeError(
                f"`mu` must be a number, but is a {type(mu).__name__}: pass `sigmas=` / `timesteps=` / `mu=` by "
                "keyword (this `set_timesteps` has no `device` parameter, upstream's second positional one)."
            )
        if self.config.use_dynamic_shifting and mu is None:
            raise ValueError("`mu` must be passed when `use_dynamic_shifting` is set to be `True`")
        if isinstance(mu, (ms.Tensor, np.ndarray)):
            # a one-element tensor is a number: the linear time shift adds it to a NumPy array, which a
            # MindSpore Tensor refuses (torch broadcasts it)
            mu = float(mu.item())

        if sigmas is not None and timesteps is not None:
            if len(sigmas) != len(timesteps):
                raise ValueError(
                    f"`sigmas` and `timesteps` should have the same length, but got {len(sigmas)} sigmas and "
                    f"{len(timesteps)} timesteps"
                )

        if num_inference_steps is not None:
            if (sigmas is not None and len(sigmas) != num_inference_steps) or (
                timesteps is not None and len(timesteps) != num_inference_steps
            ):
                raise ValueError(
                    "`sigmas` and `timesteps` should have the same length as num_inference_steps, if "
                    f"`num_inference_steps` is provided (got num_inference_steps={num_inference_steps})"
                )
        else:
            if sigmas is None and timesteps is None:
                raise ValueError("Pass `num_inference_steps`, `sigmas` or `timesteps` to `set_timesteps`.")
            num_inference_steps = len(sigmas) if sigmas is not None else len(timesteps)

        self.num_inference_steps = num_inference_steps

        # 1. Prepare default sigmas
        is_timesteps_provided = timesteps is not None
        if is_timesteps_provided and sigmas is None:
            logger.warning(
                "`timesteps` were passed without `sigmas`. The timesteps are used as given, while the sigmas derived "
                "from them go through the scheduler's shifting, so the two may not be consistent. Pass `sigmas` to "
                "get a shifted schedule, or pass both `sigmas` and `timesteps` to control them separately."
            )

        if is_timesteps_provided:
            timesteps = _to_numpy(timesteps).astype(np.float32)

        if sigmas is None:
            if timesteps is None:
                timesteps = np.linspace(
                    self._sigma_to_t(self.sigma_max),
                    self._sigma_to_t(self.sigma_min),
                    num_inference_steps,
                )
            sigmas = timesteps / self.config.num_train_timesteps
        else:
            sigmas = _to_numpy(sigmas).astype(np.float32)
            num_inference_steps = len(sigmas)

        # 2. Perform timestep shifting. Either no shifting is applied, or resolution-dependent shifting of
        #    "exponential" or "linear" type is applied
        if self.config.use_dynamic_shifting:
            sigmas = self.time_shift(mu, 1.0, sigmas)
        else:
            sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)

        # 3. If required, stretch the sigmas schedule to terminate at the configured `shift_terminal` value.
        # Upstream bug fixed (diffusers issue 14411): a schedule that ends at sigma 1 (one default step) has nothing
        # to stretch, and upstream's 0 / 0 made every sigma NaN; it is kept as it is.
        if self.config.shift_terminal and sigmas[-1] != 1:
            sigmas = self.stretch_shift_to_terminal(sigmas)

        # 4. If required, convert sigmas to one of karras, exponential, or beta sigma schedules
        if self.config.use_karras_sigmas:
            sigmas = self._convert_to_karras(in_sigmas=sigmas, num_inference_steps=num_inference_steps)
        elif self.config.use_exponential_sigmas:
            sigmas = self._convert_to_exponential(in_sigmas=sigmas, num_inference_steps=num_inference_steps)
        elif self.config.use_beta_sigmas:
            sigmas = self._convert_to_beta(in_sigmas=sigmas, num_inference_steps=num_inference_steps)

        # 5. Convert sigmas and timesteps to float32 (the host copies become tensors at the end)
        sigmas = np.asarray(sigmas).astype(np.float32)
        if is_timesteps_provided:
            timesteps = timesteps.astype(np.float32)
        else:
            timesteps = sigmas * np.float32(self.config.num_train_timesteps)

        # 6. Append the terminal sigma value.
        #    If a model requires inverted sigma schedule for denoising but timesteps without inversion, the
        #    `invert_sigmas` flag can be set to `True`. This case is only required in Mochi
        if self.config.invert_sigmas:
            sigmas = np.float32(1.0) - sigmas
            timesteps = sigmas * np.float32(self.config.num_train_timesteps)
            sigmas = np.concatenate([sigmas, np.ones(1, dtype=np.float32)])
        else:
            sigmas = np.concatenate([sigmas, np.zeros(1, dtype=np.float32)])

        self.timesteps = ms.Tensor(timesteps, ms.float32)
        self.sigmas = ms.Tensor(sigmas, ms.float32)
        self._step_index = None
        self._begin_index = None

    def index_for_timestep(
        self,
        timestep: Union[float, ms.Tensor],
        schedule_timesteps: Optional[Union[ms.Tensor, np.ndarray]] = None,
    ) -> int:
        """
        Get the index for the given timestep.

        Args:
            timestep (`float` or `ms.Tensor`):
                The timestep to find the index for.
            schedule_timesteps (`ms.Tensor`, *optional*):
                The schedule timesteps to validate against. If `None`, the scheduler's timesteps are used.

        Returns:
            `int`:
                The index of the timestep.
        """
        if schedule_timesteps is None:
            schedule_timesteps = self.timesteps
        schedule_timesteps = _to_numpy(schedule_timesteps)
        python_number = isinstance(timestep, (int, float))
        timestep = _to_numpy(timestep)
        if timestep.size != 1:
            # upstream fails too (`.item()` of several indices); broadcasting would pick a wrong index here
            raise ValueError(f"`timestep` must be a single value, but has shape {timestep.shape}.")
        dtype = _compare_dtype(schedule_timesteps.dtype, timestep, python_number)
        indices = np.nonzero(schedule_timesteps.astype(dtype) == timestep.reshape(()).astype(dtype))[0]
        if len(indices) == 0:
            raise IndexError(
                f"`timestep` {timestep.tolist()} is not one of the scheduler's timesteps {schedule_timesteps.tolist()}."
            )

        # The sigma index that is taken for the **very** first `step`
        # is always the second index (or the last index if there is only 1)
        # This way we can ensure we don't accidentally skip a sigma in
        # case we start in the middle of the denoising schedule (e.g. for image-to-image)
        pos = 1 if len(indices) > 1 else 0

        return int(indices[pos])

    def _init_step_index(self, timestep: Union[float, ms.Tensor]) -> None:
        if self.begin_index is None:
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    def step(
        self,
        model_output: ms.Tensor,
        timestep: Union[float, ms.Tensor],
        sample: ms.Tensor,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        generator: Optional[Union[np.random.Generator, List[np.random.Generator]]] = None,
        per_token_timesteps: Optional[ms.Tensor] = None,
        return_dict: bool = False,
    ) -> Union[FlowMatchEulerDiscreteSchedulerOutput, Tuple]:
        """
        Predict the sample from the previous timestep by reversing the SDE. This function propagates the diffusion
        process from the learned model outputs (most often the predicted noise).

        Args:
            model_output (`ms.Tensor`):
                The direct output from learned diffusion model.
            timestep (`float` or `ms.Tensor`):
                The current discrete timestep in the diffusion chain.
            sample (`ms.Tensor`):
                A current instance of a sample created by the diffusion process.
            s_churn (`float`):
            s_tmin  (`float`):
            s_tmax  (`float`):
            s_noise (`float`, defaults to 1.0):
                Scaling factor for noise added to the sample.
            generator (`np.random.Generator`, *optional*):
                A random number generator (or one per sample of the batch) for the noise of `stochastic_sampling`.
            per_token_timesteps (`ms.Tensor`, *optional*):
                The timesteps for each token in the sample.
            return_dict (`bool`, defaults to `False`):
                Whether or not to return a
                [`~schedulers.scheduling_flow_match_euler_discrete.FlowMatchEulerDiscreteSchedulerOutput`] or tuple.

        Returns:
            [`~schedulers.scheduling_flow_match_euler_discrete.FlowMatchEulerDiscreteSchedulerOutput`] or `tuple`:
                If return_dict is `True`,
                [`~schedulers.scheduling_flow_match_euler_discrete.FlowMatchEulerDiscreteSchedulerOutput`] is returned,
                otherwise a tuple is returned where the first element is the sample tensor.
        """
        # upstream's check: a Python int or an int32 / int64 tensor (other integer timesteps are looked up)
        if isinstance(timestep, int) or isinstance(timestep, ms.Tensor) and timestep.dtype in (ms.int32, ms.int64):
            raise ValueError(
                (
                    "Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to"
                    " `FlowMatchEulerDiscreteScheduler.step()` is not supported. Make sure to pass"
                    " one of the `scheduler.timesteps` as a timestep."
                ),
            )

        _check_tensors("step", model_output=model_output, sample=sample)
        try:  # MindSpore reports a failed broadcast asynchronously, at a later unrelated operation
            np.broadcast_shapes(model_output.shape, sample.shape)
        except ValueError:
            raise ValueError(
                f"`step`: the shapes of `model_output` {tuple(model_output.shape)}, `sample` {tuple(sample.shape)} do "
                "not broadcast together."
            ) from None
        if self.step_index is None:
            self._init_step_index(timestep)
        if per_token_timesteps is None and self.step_index + 1 >= len(self.sigmas):
            raise IndexError(
                f"`step` was called after the last of the {len(self.sigmas) - 1} steps of the schedule: call "
                "`set_timesteps` again to start a new denoising loop."
            )

        # Upcast to avoid precision issues when computing prev_sample
        sample = sample.astype(ms.float32)

        sigma_times_output = None  # `current_sigma * model_output` of the stochastic step
        if per_token_timesteps is not None:
            # Upstream's ops in torch's dtypes: each op of a 16-bit dtype is computed in float32 and rounded to it, as
            # torch's CPU kernels do (MindSpore's CPU has no bfloat16 Less / Sub), which gives the same values
            token_dtype = per_token_timesteps.dtype
            if token_dtype not in (ms.float16, ms.bfloat16, ms.float32, ms.float64):
                token_dtype = ms.float32  # an integer tensor divided by an int: true division, torch's default float
            compute = ms.float64 if token_dtype == ms.float64 else ms.float32

            def rounded(x):  # x computed in `compute`, rounded to the per-token dtype
                return x.astype(token_dtype).astype(compute)

            per_token_sigmas = rounded(per_token_timesteps.astype(compute) / self.config.num_train_timesteps)
            sigmas = self.sigmas[:, None, None]
            lower_mask = sigmas.astype(compute) < rounded(per_token_sigmas - 1e-6)[None]
            lower_sigmas = (lower_mask.astype(ms.float32) * sigmas).max(axis=0)

            current_sigma = per_token_sigmas[..., None]  # exact values of the per-token dtype, in `compute`
            next_sigma = lower_sigmas[..., None]
            dt = current_sigma - next_sigma.astype(compute)
            # float32 sigmas times a lower-precision model_output promote to float32 in torch: cast explicitly
            model_output_ = model_output.astype(dt.dtype)
            if self.config.stochastic_sampling:
                # `current_sigma * model_output` is in their promoted dtype (float16 * float16 rounds to float16)
                product_dtype = promote_types(token_dtype, model_output.dtype)
                wide = ms.float64 if product_dtype == ms.float64 else ms.float32
                sigma_times_output = (current_sigma.astype(wide) * model_output.astype(wide)).astype(product_dtype)
                sigma_times_output = sigma_times_output.astype(promote_types(product_dtype, sample.dtype))
        else:
            host_sigmas = _to_numpy(self.sigmas)
            sigma_idx = self.step_index
            sigma = host_sigmas[sigma_idx]
            sigma_next = host_sigmas[sigma_idx + 1]

            # Python floats of the float32 values: like upstream's 0-dim tensors on CPU, they keep model_output's dtype
            # (rounded to it first, as torch's CPU kernels do with a 0-dim float32 tensor)
            current_sigma = float(sigma)
            next_sigma = float(sigma_next)
            dt = float(sigma_next - sigma)
            model_output_ = model_output

        if self.config.stochastic_sampling:
            if sigma_times_output is None:
                sigma_times_output = current_sigma * model_output_
            x0 = sample - sigma_times_output
            noise = randn_tensor(sample.shape, generator=generator, dtype=sample.dtype)
            prev_sample = (1.0 - next_sigma) * x0 + next_sigma * noise
        else:
            prev_sample = sample + dt * model_output_

        # upon completion increase step index by one
        self._step_index += 1
        if per_token_timesteps is None:
            # Cast sample back to model compatible dtype
            prev_sample = prev_sample.astype(model_output.dtype)

        if not return_dict:
            return (prev_sample,)

        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=prev_sample)

    def _convert_to_karras(self, in_sigmas: np.ndarray, num_inference_steps: int) -> np.ndarray:
        """
        Construct the noise schedule as proposed in [Elucidating the Design Space of Diffusion-Based Generative
        Models](https://huggingface.co/papers/2206.00364).

        Args:
            in_sigmas (`np.ndarray`):
                The input sigma values to be converted.
            num_inference_steps (`int`):
                The number of inference steps to generate the noise schedule for.

        Returns:
            `np.ndarray`:
                The converted sigma values following the Karras noise schedule.
        """
        sigma_min, sigma_max = self._sigma_range(in_sigmas)

        rho = 7.0  # 7.0 is the value used in the paper
        ramp = np.linspace(0, 1, num_inference_steps)
        min_inv_rho = sigma_min ** (1 / rho)
        max_inv_rho = sigma_max ** (1 / rho)
        sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
        return sigmas

    def _convert_to_exponential(self, in_sigmas: np.ndarray, num_inference_steps: int) -> np.ndarray:
        """
        Construct an exponential noise schedule.

        Args:
            in_sigmas (`np.ndarray`):
                The input sigma values to be converted.
            num_inference_steps (`int`):
                The number of inference steps to generate the noise schedule for.

        Returns:
            `np.ndarray`:
                The converted sigma values following an exponential schedule.
        """
        sigma_min, sigma_max = self._sigma_range(in_sigmas)

        sigmas = np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), num_inference_steps))
        return sigmas

    def _convert_to_beta(
        self, in_sigmas: np.ndarray, num_inference_steps: int, alpha: float = 0.6, beta: float = 0.6
    ) -> np.ndarray:
        """
        Construct a beta noise schedule as proposed in [Beta Sampling is All You
        Need](https://huggingface.co/papers/2407.12173).

        Args:
            in_sigmas (`np.ndarray`):
                The input sigma values to be converted.
            num_inference_steps (`int`):
                The number of inference steps to generate the noise schedule for.
            alpha (`float`, *optional*, defaults to `0.6`):
                The alpha parameter for the beta distribution.
            beta (`float`, *optional*, defaults to `0.6`):
                The beta parameter for the beta distribution.

        Returns:
            `np.ndarray`:
                The converted sigma values following a beta distribution schedule.
        """
        import scipy.stats  # imported here: scipy.stats takes a while to load and only beta sigmas need it

        sigma_min, sigma_max = self._sigma_range(in_sigmas)

        sigmas = np.array(
            [
                sigma_min + (ppf * (sigma_max - sigma_min))
                for ppf in [
                    scipy.stats.beta.ppf(timestep, alpha, beta)
                    for timestep in 1 - np.linspace(0, 1, num_inference_steps)
                ]
            ]
        )
        return sigmas

    def _sigma_range(self, in_sigmas: np.ndarray) -> Tuple[float, float]:
        # `sigma_min` / `sigma_max` only exist in configs of other schedulers loaded into this one, as upstream
        sigma_min = getattr(self.config, "sigma_min", None)
        sigma_max = getattr(self.config, "sigma_max", None)
        sigma_min = sigma_min if sigma_min is not None else in_sigmas[-1].item()
        sigma_max = sigma_max if sigma_max is not None else in_sigmas[0].item()
        return sigma_min, sigma_max

    def _time_shift_exponential(self, mu: float, sigma: float, t: np.ndarray) -> np.ndarray:
        return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)

    def _time_shift_linear(self, mu: float, sigma: float, t: np.ndarray) -> np.ndarray:
        return mu / (mu + (1 / t - 1) ** sigma)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
