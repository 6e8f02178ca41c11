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
"""Adapted from peft v0.21 `src/peft/tuners/lora/config.py`; MindSpore changes: plain LoRA on Linear and Conv2d layers
only. The config still accepts every key PEFT 0.21 writes (so `adapter_config.json` files and the
`lora_adapter_metadata` diffusers stores load as they are), but a PEFT-only feature that is switched on (DoRA,
`modules_to_save`, LoftQ, ...) raises a `ValueError` instead of being silently ignored; keys newer than PEFT 0.21 raise
in the constructor and are ignored with a warning by `from_dict` / `from_pretrained`, as PEFT does for forward
compatibility."""

from dataclasses import dataclass, field
from typing import Optional, Union

from ...config import PeftConfig
from ...utils.constants import PEFT_VERSION
from ...utils.peft_types import PeftType, TaskType

# PEFT 0.21 LoraConfig options that this port does not implement: accepted only with their "off" value (falsy)
_UNSUPPORTED_OPTIONS = (
    "modules_to_save",
    "use_dora",
    "megatron_config",
    "trainable_token_indices",
    "loftq_config",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "velora_config",
    "alora_invocation_tokens",
    "use_qalora",
    "monteclora_config",
    "layer_replication",
    "target_parameters",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
)
# PEFT 0.21 LoraConfig options that only matter together with an unsupported one (or at train time): kept as given
_INERT_OPTIONS = {"megatron_core": "megatron.core", "qalora_group_size": 16, "ensure_weight_tying": False}
_PEFT_ONLY_DEFAULTS = {name: None for name in _UNSUPPORTED_OPTIONS}
_PEFT_ONLY_DEFAULTS.update({"use_dora": False, "use_qalora": False, "loftq_config": {}}, **_INERT_OPTIONS)

_SUPPORTED_INIT = (True, False, "gaussian")


@dataclass(init=False)
class LoraConfig(PeftConfig):
    """Configuration of a LoRA adapter (PEFT's `LoraConfig`, LoRA on Linear and Conv2d layers).

    Args:
        r (`int`, defaults to 8): Lora attention dimension (the "rank").
        target_modules (`list[str]` or `str`, *optional*): Names of the modules to apply the adapter to. A list
            matches a module whose name equals an entry or ends with `"." + entry`; a string is a regex that must
            match the whole module name; `"all-linear"` selects every Linear layer.
        exclude_modules (`list[str]` or `str`, *optional*): Modules not to adapt, matched like `target_modules`.
        lora_alpha (`int`, defaults to 8): The alpha parameter for LoRA scaling (`lora_alpha / r`).
        lora_dropout (`float`, defaults to 0.0): Dropout on the LoRA input (identity outside training).
        fan_in_fan_out (`bool`, defaults to `False`): Must stay `False` for Linear layers (PEFT resets it too).
        bias (`str`, defaults to `"none"`): `"none"`, `"all"` or `"lora_only"`: which biases are trainable and saved.
        use_rslora (`bool`, defaults to `False`): Rank-stabilized scaling `lora_alpha / sqrt(r)`.
        init_lora_weights (`bool` or `"gaussian"`, defaults to `True`): `True`: kaiming-uniform A and zero B (the
            adapter starts as a no-op); `"gaussian"`: normal A with std `1 / r` and zero B; `False`: random A and B.
        layers_to_transform (`int` or `list[int]`, *optional*): Only adapt these layer indices.
        layers_pattern (`str` or `list[str]`, *optional*): Name of the layer list for `layers_to_transform`.
        rank_pattern (`dict`, *optional*): Module name (regex, matched on a suffix) -> rank, overriding `r`.
        alpha_pattern (`dict`, *optional*): Module name (regex, matched on a suffix) -> alpha, overriding `lora_alpha`.
        lora_bias (`bool`, defaults to `False`): Give LoRA B a bias.
    """

    r: int = 8
    target_modules: Optional[Union[list, set, str]] = None
    exclude_modules: Optional[Union[list, set, str]] = None
    lora_alpha: Union[int, float] = 8
    lora_dropout: float = 0.0
    fan_in_fan_out: bool = False
    bias: str = "none"
    use_rslora: bool = False
    init_lora_weights: Union[bool, str] = True
    layers_to_transform: Optional[Union[list, int]] = None
    layers_pattern: Optional[Union[list, str]] = None
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    lora_bias: bool = False

    def __init__(
        self,
        r: int = 8,
        target_modules: Optional[Union[list, set, str]] = None,
        exclude_modules: Optional[Union[list, set, str]] = None,
        lora_alpha: Union[int, float] = 8,
        lora_dropout: float = 0.0,
        fan_in_fan_out: bool = False,
        bias: str = "none",
        use_rslora: bool = False,
        init_lora_weights: Union[bool, str] = True,
        layers_to_transform: Optional[Union[list, int]] = None,
        layers_pattern: Optional[Union[list, str]] = None,
        rank_pattern: Optional[dict] = None,
        alpha_pattern: Optional[dict] = None,
        lora_bias: bool = False,
        task_type: Optional[str] = None,
        peft_type: Optional[str] = None,
        auto_mapping: Optional[dict] = None,
        peft_version: Optional[str] = None,
        base_model_name_or_path: Optional[str] = None,
        revision: Optional[str] = None,
        inference_mode: bool = False,
        **kwargs,
    ):
        self.task_type = task_type
        self.auto_mapping = auto_mapping
        # as PEFT: stamped with the version whose behaviour this follows, unless the config (a loaded file) has one
        self.peft_version = peft_version if peft_version is not None else PEFT_VERSION
        self.base_model_name_or_path = base_model_name_or_path
        self.revision = revision
        self.inference_mode = inference_mode
        self.r = r
        self.target_modules = target_modules
        self.exclude_modules = exclude_modules
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.fan_in_fan_out = fan_in_fan_out
        self.bias = bias
        self.use_rslora = use_rslora
        self.init_lora_weights = init_lora_weights
        self.layers_to_transform = layers_to_transform
        self.layers_pattern = layers_pattern
        self.rank_pattern = {} if rank_pattern is None else dict(rank_pattern)
        self.alpha_pattern = {} if alpha_pattern is None else dict(alpha_pattern)
        self.lora_bias = lora_bias
        self.peft_type = PeftType.LORA.value  # whatever is given, as PEFT's `__post_init__`
        self._peft_only = dict(_PEFT_ONLY_DEFAULTS)
        self._take_peft_only_kwargs(kwargs)
        self.__post_init__()

    @classmethod
    def _config_keys(cls) -> set:
        return super()._config_keys() | set(_PEFT_ONLY_DEFAULTS) | {"runtime_config"}

    def _take_peft_only_kwargs(self, kwargs: dict) -> None:
        kwargs.pop("runtime_config", None)  # runtime only, never saved (PEFT drops it in to_dict too)
        unknown = sorted(k for k in kwargs if k not in _PEFT_ONLY_DEFAULTS)
        if unknown:  # as PEFT's constructor; `from_dict` / `from_pretrained` drop them with a warning
            raise TypeError(
                f"LoraConfig got unexpected keyword arguments {unknown}. A configuration saved by a newer PEFT loads "
                "with `LoraConfig.from_dict` or `LoraConfig.from_pretrained`, which ignore unknown keys."
            )
        for name in _UNSUPPORTED_OPTIONS:
            value = kwargs.get(name)
            if value:
                raise ValueError(
                    f"`{name}={value!r}` is not supported by mindone.peft, which implements plain LoRA on Linear "
                    f"and Conv2d layers; pass `{name}={_PEFT_ONLY_DEFAULTS[name]!r}`."
                )
        for name in _PEFT_ONLY_DEFAULTS:
            if name in kwargs and name not in _UNSUPPORTED_OPTIONS:
                self._peft_only[name] = kwargs[name]

    def __post_init__(self):
        if self.task_type is not None and self.task_type not in list(TaskType):
            raise ValueError(
                f"Invalid task type: '{self.task_type}'. Must be one of the following task types: "
                f"{', '.join(TaskType)}."
            )
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {self.r!r}")
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, (int, float)):
            raise TypeError(f"`lora_alpha` must be a number, got {self.lora_alpha!r}.")
        if not isinstance(self.lora_dropout, (int, float)) or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"`lora_dropout` must be a float in [0, 1), got {self.lora_dropout!r}.")
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"`bias` must be one of 'none', 'all', 'lora_only', got {self.bias!r}.")
        init = self.init_lora_weights
        if not (init is True or init is False or (isinstance(init, str) and init.lower() == "gaussian")):
            raise ValueError(
                f"`init_lora_weights` must be one of {_SUPPORTED_INIT} in mindone.peft (PEFT's other "
                f"initializations, such as 'pissa', 'olora', 'orthogonal' or 'eva', are not ported), got {init!r}."
            )
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                value = set(value)
                setattr(self, name, value)
            if value is not None and not isinstance(value, (set, str)):
                raise TypeError(f"`{name}` must be a list of module names or a regex string, got {value!r}.")
        for name in ("rank_pattern", "alpha_pattern"):
            for key, value in getattr(self, name).items():
                if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"`{name}` must map module names to numbers, got {key!r}: {value!r}.")
                if name == "rank_pattern" and (not isinstance(value, int) or value <= 0):
                    raise ValueError(f"`rank_pattern` values must be positive integers, got {key!r}: {value!r}.")
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError("`layers_to_transform` cannot be used when `target_modules` is a str.")
        if isinstance(self.target_modules, str) and self.layers_pattern is not None:
            raise ValueError("`layers_pattern` cannot be used when `target_modules` is a str.")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("When `layers_pattern` is specified, `layers_to_transform` must also be specified. ")
        if self.lora_bias and self.init_lora_weights not in (True, False):
            raise ValueError(
                f"The argument lora_bias=True is only supported with init_lora_weights=True or False, got "
                f"init_lora_weights={self.init_lora_weights} instead."
            )

    # read-only views of the PEFT-only options, so code written against PEFT can test them
    @property
    def use_dora(self) -> bool:
        return False

    @property
    def modules_to_save(self):
        return None

    @property
    def target_parameters(self):
        return None

    def to_dict(self) -> dict:
        """The configuration with every key PEFT 0.21's `LoraConfig.to_dict()` has (sets as sorted lists), so
        `peft.LoraConfig(**config.to_dict())` and diffusers' `lora_adapter_metadata` accept it."""
        out = super().to_dict()
        for name, value in self._peft_only.items():
            out[name] = dict(value) if isinstance(value, dict) else value
        return out

    def __eq__(self, other):
        if not isinstance(other, LoraConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()
