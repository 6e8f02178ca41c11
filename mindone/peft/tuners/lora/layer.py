# Copyright 2023-present the HuggingFace Inc. team.
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
"""Adapted from peft v0.21 `src/peft/tuners/lora/layer.py`; MindSpore changes: only `LoraLayer`, the `Linear` wrapper
of `mint.nn.Linear` and the `Conv2d` wrapper of `nn.Conv2d` (groups and dilation 1; no variants, no embeddings).

`construct` compiles: it loops over the tuple of adapter names fixed at injection and multiplies each adapter's
output by a one-element float32 Parameter `lora_runtime_scaling.<adapter>` (`requires_grad=False`, not part of PEFT's
state dict). A Parameter, because GRAPH_MODE folds Python attributes and buffers into the graph as constants (a scale
of 1 or 0 then even disappears), whereas parameters are read at run time. The Python state (`scaling`, active /
disabled / merged adapters) is the source of truth, as in PEFT; every change of it is written into those parameters
in place, so PyNative and compiled graphs use the current values without recompiling. An adapter that is not active,
or any adapter while the layer is disabled or merged, gets 0 there (computed, then dropped with a select, so even a
broken adapter with NaN/inf weights adds nothing, as when PEFT skips it).

Merging keeps a host copy of the base weight from before the first merge, so `unmerge` restores it bit for bit (PEFT
subtracts the delta again, which leaves rounding errors)."""

import math
import warnings
from typing import List, Optional

import numpy as np

import mindspore as ms
from mindspore import mint, nn
from mindspore.common.initializer import HeUniform, Normal, initializer

from ...utils.warning import PeftWarning
from ..tuners_utils import BaseTunerLayer, check_adapters_to_merge, set_parameter_data


class _ScalingDict(dict):
    """`adapter name -> scaling` that republishes the layer's run-time scaling when written (so PEFT-style code such
    as `layer.scaling[name] *= s` stays correct in compiled graphs)."""

    def __init__(self, on_change):
        super().__init__()
        self._on_change = on_change

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._on_change()

    def __delitem__(self, key):
        super().__delitem__(key)
        self._on_change()

    def update(self, *args, **kwargs):
        super().update(*args, **kwargs)
        self._on_change()

    def pop(self, key, *default):
        value = super().pop(key, *default)
        self._on_change()
        return value


def _to_host(tensor) -> np.ndarray:
    """Exact host copy (bfloat16, which NumPy lacks, is widened to float32 exactly)."""
    if tensor.dtype == ms.bfloat16:
        tensor = tensor.astype(ms.float32)
    return tensor.asnumpy().copy()


def _rounded(tensor: ms.Tensor, dtype: ms.Type) -> ms.Tensor:
    """A float32 `tensor` rounded to `dtype` (kept in float32)."""
    return tensor if dtype == ms.float32 else tensor.astype(dtype).astype(ms.float32)


def _all_finite(tensor) -> bool:
    return bool(mint.isfinite(tensor).all())


class LoraLayer(BaseTunerLayer):
    # all names of layers that may contain (trainable) adapter weights
    adapter_layer_names = ("lora_A", "lora_B")
    # all names of other per-adapter state
    other_param_names = ("r", "lora_alpha", "scaling", "lora_dropout", "use_rslora", "lora_bias")

    def __init__(self, base_layer: nn.Cell, **kwargs) -> None:
        self.base_layer = base_layer
        self.r = {}
        self.lora_alpha = {}
        self.scaling = _ScalingDict(self._adapter_state_changed)
        self.lora_dropout = nn.CellDict()
        self.lora_A = nn.CellDict()
        self.lora_B = nn.CellDict()
        self._disable_adapters = False
        self.merged_adapters = []
        self.use_rslora = {}
        self.lora_bias = {}
        self.kwargs = kwargs
        # adapter names read by `construct` (set when adapters are added or deleted) and their run-time scales
        self._lora_slots = ()
        self.lora_runtime_scaling = nn.Cell()
        self._published_scaling = {}
        self._merge_snapshot = None  # host copies of the base weight / bias from before the first merge

        base_layer = self.get_base_layer()
        self.in_features = int(base_layer.weight.shape[1])
        self.out_features = int(base_layer.weight.shape[0])

    def update_layer(self, adapter_name: str, r: int, lora_alpha, config, **kwargs) -> None:
        """Add the adapter `adapter_name` with rank `r` and `lora_alpha` (PEFT's `update_layer`)."""
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        if adapter_name in self.lora_A:
            raise ValueError(f"Adapter with name {adapter_name} already exists. Please use a different name.")
        lora_bias = bool(config.lora_bias)
        base_layer = self.get_base_layer()
        if lora_bias and getattr(base_layer, "bias", None) is None:
            warnings.warn(
                f"`lora_bias=True` was passed but the targeted layer of type {type(base_layer).__name__} has no bias. "
                "This means that merging LoRA weights won't be possible.",
                PeftWarning,
            )
        # PEFT makes the adapter in the base weight's dtype; under diffusers' layerwise casting that is the storage
        # dtype, in which torch then computes the adapter (bfloat16 on CPU). MindSpore's CPU backend has no bfloat16
        # matmul: the adapter takes the layer's compute dtype instead
        dtype = getattr(base_layer, "layerwise_compute_dtype", None) or base_layer.weight.dtype
        init = config.init_lora_weights
        if init is True:  # kaiming-uniform A (torch's default for nn.Linear / nn.Conv2d), zero B
            a_init, b_init = HeUniform(negative_slope=math.sqrt(5)), "zeros"
        elif init is False:  # both random: PEFT leaves nn.Linear's default initialization
            a_init, b_init = None, None
        else:  # "gaussian"
            a_init, b_init = Normal(sigma=1.0 / r), "zeros"

        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        self.lora_dropout[adapter_name] = (
            # `nn.Dropout`: `mint.nn.Dropout` (DropoutExt) has no CPU kernel in MindSpore 2.10
            nn.Dropout(p=config.lora_dropout) if config.lora_dropout > 0.0 else mint.nn.Identity()
        )
        self.lora_A[adapter_name] = self._new_lora_A(r, dtype, a_init)
        self.lora_B[adapter_name] = self._new_lora_B(
            r, lora_bias, dtype, b_init, "zeros" if (lora_bias and init is not False) else None
        )
        self.lora_bias[adapter_name] = lora_bias
        self.use_rslora[adapter_name] = bool(config.use_rslora)
        self.scaling[adapter_name] = self._initial_scaling(adapter_name)
        self._rebuild_slots()
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)
        # new cells start in inference mode (MindSpore's default; torch's is training): they take the mode of the
        # layer they adapt, so the dropout of an adapter added to a model in training applies
        self.set_train(base_layer.training)

    def _initial_scaling(self, adapter: str) -> float:
        if self.use_rslora.get(adapter, False):
            return self.lora_alpha[adapter] / math.sqrt(self.r[adapter])
        return self.lora_alpha[adapter] / self.r[adapter]

    # ---- run-time scaling published to `construct` ----

    def _rebuild_slots(self) -> None:
        """Give every adapter without one a run-time scaling parameter and list them for `construct`."""
        holder = self.lora_runtime_scaling
        for name in self.lora_A.keys():
            if name not in holder._params:
                setattr(holder, name, ms.Parameter(ms.Tensor([0.0], ms.float32), name=name, requires_grad=False))
        self._lora_slots = tuple(self.lora_A.keys())
        self._adapter_state_changed()

    def _runtime_scaling(self, name: str) -> float:
        if self._disable_adapters or self.merged_adapters or name not in self.active_adapters:
            return 0.0
        return float(self.scaling.get(name, 0.0))

    def _publish(self, name: str, value: float) -> None:
        if self._published_scaling.get(name) != value:
            param = getattr(self.lora_runtime_scaling, name)
            # in place: compiled graphs read the new value at their next run
            param.copy_(ms.Tensor([value], ms.float32).astype(param.dtype))
            self._published_scaling[name] = value

    def _adapter_state_changed(self) -> None:
        if "_lora_slots" not in self.__dict__:
            return  # still in __init__
        for name in self._lora_slots:
            self._publish(name, self._runtime_scaling(name))

    def _drop_slot(self, adapter_name: str) -> None:
        if adapter_name in self._lora_slots:
            # zeroed first: a graph compiled before the deletion still holds this parameter and now adds nothing
            self._publish(adapter_name, 0.0)
            delattr(self.lora_runtime_scaling, adapter_name)
            self._published_scaling.pop(adapter_name, None)
        self._lora_slots = tuple(name for name in self._lora_slots if name != adapter_name)

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self._drop_slot(adapter_name)

    def _release(self) -> None:
        """Called when the layer is unwrapped: zero every scale, so a graph compiled with it adds nothing."""
        for name in self._lora_slots:
            self._drop_slot(name)

    # ---- scales ----

    def set_scale(self, adapter: str, scale: float) -> None:
        """Set the scale of `adapter` to `scale * lora_alpha / r` (or `/ sqrt(r)` with rslora); unknown adapters are
        ignored (diffusers' `set_adapters` sets a weight per adapter on every layer)."""
        if adapter not in self.scaling:
            return
        self.scaling[adapter] = scale * self._initial_scaling(adapter)

    def scale_layer(self, scale: float) -> None:
        """Multiply the current scale of all active adapters by `scale`."""
        if scale == 1:
            return
        for active_adapter in self.active_adapters:
            if active_adapter not in self.lora_A:
                continue
            self.scaling[active_adapter] *= scale

    def unscale_layer(self, scale: Optional[float] = None) -> None:
        """Divide the current scale of all active adapters by `scale`; `None` resets it to `lora_alpha / r`."""
        for active_adapter in self.active_adapters:
            if active_adapter not in self.lora_A:
                continue
            if scale is None:
                self.scaling[active_adapter] = self._initial_scaling(active_adapter)
            else:
                self.scaling[active_adapter] = self.scaling[active_adapter] / scale


class _LoraModule(nn.Cell, LoraLayer):
    """LoRA around a base layer: `base_layer(x) + sum_a lora_B[a](lora_A[a](dropout[a](x))) * scaling[a]` over the
    active adapters. Parameter names are PEFT's: `base_layer.weight`, `lora_A.<adapter>.weight`,
    `lora_B.<adapter>.weight` (and `lora_B.<adapter>.bias` with `lora_bias`). Subclasses make the adapter's layers
    (`_new_lora_A`, `_new_lora_B`) and compute their product as a change of the base weight (`_delta`)."""

    def __init__(self, base_layer: nn.Cell, adapter_name: str, config, r: int = 0, lora_alpha=1, **kwargs) -> None:
        nn.Cell.__init__(self)
        LoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = [adapter_name]
        self.update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)

    def _new_lora_A(self, r: int, dtype: ms.Type, weight_init=None) -> nn.Cell:
        raise NotImplementedError

    def _new_lora_B(self, r: int, bias: bool, dtype: ms.Type, weight_init=None, bias_init=None) -> nn.Cell:
        raise NotImplementedError

    def _delta(self, weight_a: ms.Tensor, weight_b: ms.Tensor) -> ms.Tensor:
        raise NotImplementedError

    def get_delta_weight(self, adapter: str) -> ms.Tensor:
        """The change of the base weight by `adapter` (`lora_B @ lora_A * scaling`), computed in float32 and cast to
        the adapter's dtype."""
        weight_a = self.lora_A[adapter].weight
        weight_b = self.lora_B[adapter].weight
        # float32 product (PEFT casts fp16/bf16 to fp32 on CPU; bf16 matmul has no CPU kernel here)
        delta = self._delta(weight_a.astype(ms.float32), weight_b.astype(ms.float32)) * self.scaling[adapter]
        return delta.astype(weight_b.dtype)

    def _merged_values(self, adapter_names: List[str], safe_merge: bool):
        """The base weight and bias with `adapter_names` merged, not written; raises on NaN/inf (`safe_merge`) or a
        `lora_bias` adapter over a base layer without bias."""
        # in float32, rounded to the parameter's dtype after each addition as PEFT's in-place `+=` in that dtype:
        # MindSpore 2.10 has no bfloat16 Identity / Add / IsFinite CPU kernels
        base_layer = self.get_base_layer()
        dtype = base_layer.weight.dtype
        weight = base_layer.weight.astype(ms.float32)
        bias = None
        for name in adapter_names:
            if name not in self.lora_A:
                continue
            weight = _rounded(weight + self.get_delta_weight(name).astype(ms.float32), dtype)
            if safe_merge and not _all_finite(weight):
                raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken")
            if self.lora_bias[name]:
                if getattr(base_layer, "bias", None) is None:
                    raise RuntimeError(
                        "Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias."
                    )
                if bias is None:
                    bias = base_layer.bias.astype(ms.float32)
                lora_bias = self.lora_B[name].bias
                delta = _rounded(lora_bias.astype(ms.float32) * self.scaling[name], lora_bias.dtype)
                bias = _rounded(bias + delta, base_layer.bias.dtype)
                if safe_merge and not _all_finite(bias):
                    raise ValueError(f"NaNs detected in the merged weights. The adapter {name} seems to be broken")
        return weight, bias

    def _check_merge(self, safe_merge: bool = False, adapter_names: Optional[List[str]] = None) -> None:
        """Raise what `merge` would raise, without changing anything (used for atomic model-level merges)."""
        names = adapter_names if adapter_names is not None else self.active_adapters
        if isinstance(names, str):
            raise TypeError(f"adapter_names should be a list of strings, got {names!r}.")
        names = [name for name in names if name not in self.merged_adapters and name in self.lora_A]
        if not names:
            return
        base_layer = self.get_base_layer()
        if any(self.lora_bias[name] for name in names) and getattr(base_layer, "bias", None) is None:
            raise RuntimeError("Impossible to merge LoRA with `lora_bias=True` because the base layer has no bias.")
        if safe_merge:
            self._merged_values(names, safe_merge=True)

    def merge(self, safe_merge: bool = False, adapter_names: Optional[List[str]] = None) -> None:
        """Merge the adapters (default: the active ones) into the base weights.

        Args:
            safe_merge (`bool`, defaults to `False`): check the merged weights for NaN/inf first and raise a
                `ValueError` (weights unchanged) if any.
            adapter_names (`list[str]`, *optional*): adapters to merge; default the active adapters.
        """
        adapter_names = check_adapters_to_merge(self, adapter_names)
        adapter_names = [name for name in adapter_names if name in self.lora_A]
        if not adapter_names:
            return
        if self._disable_adapters:
            # PEFT merges, then unmerges at the next forward of the disabled layer: the same errors, no change here
            self._check_merge(safe_merge, adapter_names)
            return
        weight, bias = self._merged_values(adapter_names, safe_merge)
        base_layer = self.get_base_layer()
        if not self.merged_adapters:
            self._merge_snapshot = (
                _to_host(base_layer.weight),
                None if getattr(base_layer, "bias", None) is None else _to_host(base_layer.bias),
            )
        # in place: an `ms.jit` graph keeps the storage it was compiled with (`set_data` left the fused LoRA unseen)
        set_parameter_data(base_layer.weight, weight.astype(base_layer.weight.dtype))
        if bias is not None:
            set_parameter_data(base_layer.bias, bias.astype(base_layer.bias.dtype))
        self.merged_adapters.extend(adapter_names)
        self._adapter_state_changed()

    def unmerge(self) -> None:
        """Restore the base weights from before the first merge (exactly) and mark all adapters unmerged."""
        # upstream fix: PEFT subtracts each adapter's change at its *current* scale, which leaves part of it in the
        # weights when the scale changed after merging (diffusers' `set_adapters` / repeated `fuse_lora(lora_scale)`)
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.")
            return
        base_layer = self.get_base_layer()
        weight, bias = self._merge_snapshot
        set_parameter_data(base_layer.weight, ms.Tensor(weight).astype(base_layer.weight.dtype))
        if bias is not None:
            set_parameter_data(base_layer.bias, ms.Tensor(bias).astype(base_layer.bias.dtype))
        self._merge_snapshot = None
        self.merged_adapters = []
        self._adapter_state_changed()

    def construct(self, x):
        result = self.base_layer(x)
        for name in self._lora_slots:
            lora_A = self.lora_A[name]
            lora_B = self.lora_B[name]
            dropout = self.lora_dropout[name]
            out = lora_B(lora_A(dropout(x.astype(lora_A.weight.dtype))))
            # a copy (`+ 0.0`): the product must not hold the parameter itself, which `scaled_lora_layers` (a call's
            # `attention_kwargs={"scale": ...}`) rewrites in place on exit, before a PyNative backward reads it
            scaling = getattr(self.lora_runtime_scaling, name) + 0.0
            # a select, not just `* 0`: NaN/inf weights of an inactive adapter must not reach the output
            out = mint.where(scaling != 0, out * scaling, 0.0)
            result = result + out.astype(result.dtype)
        return result

    def __repr__(self) -> str:
        return "lora." + super().__repr__()


class Linear(_LoraModule):
    """LoRA around a `mint.nn.Linear` (PEFT's `lora.Linear`): `lora_A` and `lora_B` are `mint.nn.Linear` layers."""

    def __init__(self, base_layer: nn.Cell, adapter_name: str, config, r: int = 0, lora_alpha=1, **kwargs) -> None:
        super().__init__(base_layer, adapter_name, config, r=r, lora_alpha=lora_alpha, **kwargs)
        self.fan_in_fan_out = False

    def _new_lora_A(self, r: int, dtype: ms.Type, weight_init=None) -> nn.Cell:
        return mint.nn.Linear(self.in_features, r, bias=False, weight_init=weight_init, dtype=dtype)

    def _new_lora_B(self, r: int, bias: bool, dtype: ms.Type, weight_init=None, bias_init=None) -> nn.Cell:
        return mint.nn.Linear(
            r, self.out_features, bias=bias, weight_init=weight_init, bias_init=bias_init, dtype=dtype
        )

    def _delta(self, weight_a: ms.Tensor, weight_b: ms.Tensor) -> ms.Tensor:
        return mint.matmul(weight_b, weight_a)


def conv2d_lora_unsupported(base_layer: nn.Conv2d) -> Optional[str]:
    """Why LoRA cannot adapt the convolution `base_layer` here, or `None` if it can."""
    if base_layer.group != 1:
        # PEFT adapts grouped convolutions but cannot merge them
        return f"groups={base_layer.group} (only groups=1 is supported)"
    if tuple(base_layer.dilation) != (1, 1):
        # PEFT's `lora_A` ignores the base layer's dilation, so its adapter is not a change of the base weight
        return f"dilation={tuple(base_layer.dilation)} (only dilation 1 is supported)"
    if base_layer.data_format != "NCHW":
        return f"data_format={base_layer.data_format!r} (only 'NCHW' is supported)"
    return None


def _init_parameters(layer: nn.Cell, weight_init, bias_init) -> nn.Cell:
    if weight_init is not None:
        layer.weight.set_data(initializer(weight_init, layer.weight.shape, layer.weight.dtype).init_data())
    if bias_init is not None and layer.bias is not None:
        layer.bias.set_data(initializer(bias_init, layer.bias.shape, layer.bias.dtype).init_data())
    return layer


class Conv2d(_LoraModule):
    """LoRA around an `nn.Conv2d` (PEFT's `lora.Conv2d`; groups and dilation 1): `lora_A` is a convolution with the
    base layer's kernel, stride and padding into `r` channels, `lora_B` a 1x1 convolution out of them. They are of
    the base layer's class when it has torch's constructor (`torch_signature`: this port's `cpu_layers.Conv2d`, with
    its fast CPU path), as PEFT makes them; otherwise MindSpore `nn.Conv2d` layers with its padding mode."""

    def _new_conv(self, in_channels, out_channels, kernel_size, stride, padding, pad_mode, bias, dtype) -> nn.Cell:
        base_layer = self.get_base_layer()
        cls = type(base_layer)
        if getattr(cls, "torch_signature", False):
            layer = cls(in_channels, out_channels, kernel_size[0], stride[0], padding, bias=bias)
            for param in layer.get_parameters():
                if param.dtype != dtype:
                    param.set_data(param.astype(dtype))
            return layer
        return nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            pad_mode=pad_mode,
            padding=padding,
            has_bias=bias,
            dtype=dtype,
        )

    def _new_lora_A(self, r: int, dtype: ms.Type, weight_init=None) -> nn.Cell:
        base = self.get_base_layer()
        layer = self._new_conv(
            self.in_features, r, base.kernel_size, base.stride, base.padding, base.pad_mode, False, dtype
        )
        return _init_parameters(layer, weight_init, None)

    def _new_lora_B(self, r: int, bias: bool, dtype: ms.Type, weight_init=None, bias_init=None) -> nn.Cell:
        layer = self._new_conv(r, self.out_features, (1, 1), (1, 1), 0, "valid", bias, dtype)
        return _init_parameters(layer, weight_init, bias_init)

    def _delta(self, weight_a: ms.Tensor, weight_b: ms.Tensor) -> ms.Tensor:
        # PEFT: `conv2d(A^T, B)^T` (or a matmul for 1x1 kernels), the same sum over the rank as this product
        r = weight_a.shape[0]
        delta = mint.matmul(weight_b.reshape(weight_b.shape[0], r), weight_a.reshape(r, -1))
        return delta.reshape((weight_b.shape[0],) + tuple(weight_a.shape[1:]))
