# Copyright 2026 The HuggingFace Team. All rights reserved.
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
"""Adapted from diffusers v0.42.1 `loaders/lora_conversion_utils.py`; MindSpore changes: only the Lumina2 converter.
The fused `qkv` LoRA-B is split with sizes from the transformer config (or, without one, from the LoRA's own shapes),
so any width works (upstream hard-codes the 2B sizes 2304/768/768); blocks are converted by the indices present and
only the projections a block has (upstream requires every projection of blocks 0..n-1); values are `ms.Tensor` or
NumPy arrays (sliced, never copied through torch)."""

import re
from typing import Any, Dict, Mapping, Optional, Tuple

from ..utils import logging

logger = logging.get_logger(__name__)

_ORIGINAL_PREFIX = "diffusion_model."
# original (Lumina-Image-2.0 / ComfyUI) module name -> diffusers module name, inside one block
_BLOCK_MODULES = {
    "attention.out": "attn.to_out.0",
    "feed_forward.w1": "feed_forward.linear_1",
    "feed_forward.w2": "feed_forward.linear_2",
    "feed_forward.w3": "feed_forward.linear_3",
    "adaLN_modulation.1": "norm1.linear",
}
# block lists and whether their blocks have an adaLN modulation (the context refiner has none)
_BLOCK_LISTS = {"noise_refiner": True, "context_refiner": False, "layers": True}


def _config_value(config, name: str):
    if config is None:
        return None
    if isinstance(config, Mapping):
        return config.get(name)
    return getattr(config, name, None)


def lumina2_qkv_split_sizes(transformer_config) -> Tuple[int, int, int]:
    """Output sizes of `to_q`, `to_k`, `to_v` of a Lumina2 transformer block (the rows of the fused `qkv`): `heads *
    head_dim` and `kv_heads * head_dim` with `head_dim = hidden_size // num_attention_heads`, as the model builds its
    `Attention`. `transformer_config` is the transformer's config (or any mapping with those three keys)."""
    hidden_size = _config_value(transformer_config, "hidden_size")
    heads = _config_value(transformer_config, "num_attention_heads")
    kv_heads = _config_value(transformer_config, "num_kv_heads") or heads
    if not all(isinstance(v, int) and v > 0 for v in (hidden_size, heads, kv_heads)):
        raise ValueError(
            "`transformer_config` must give positive integers `hidden_size`, `num_attention_heads` and `num_kv_heads`"
            f", got hidden_size={hidden_size!r}, num_attention_heads={heads!r}, num_kv_heads={kv_heads!r}."
        )
    head_dim = hidden_size // heads
    return heads * head_dim, kv_heads * head_dim, kv_heads * head_dim


def _split_sizes_from_shapes(key: str, lora_down, lora_up) -> Tuple[int, int, int]:
    """Without a config: `to_q` maps the hidden size to itself (the input width of LoRA-A), and `to_k` / `to_v` share
    the rest equally. At the 2B widths this is upstream's 2304/768/768."""
    q_size = int(lora_down.shape[1])
    rest = int(lora_up.shape[0]) - q_size
    if rest <= 0 or rest % 2:
        raise ValueError(
            f"Cannot split the fused qkv LoRA `{key}` of {int(lora_up.shape[0])} rows into q ({q_size} rows, the input "
            "width) and two equal k / v parts. Pass the transformer config (`transformer_config=`) or load the LoRA "
            "with `pipe.load_lora_weights`, which uses the pipeline's transformer config."
        )
    return q_size, rest // 2, rest // 2


def _convert_non_diffusers_lumina2_lora_to_diffusers(
    state_dict: Dict[str, Any], transformer_config: Optional[Any] = None
) -> Dict[str, Any]:
    """Convert an original-format Lumina-Image-2.0 LoRA (`diffusion_model.` prefix, fused `attention.qkv`,
    `attention.out`, `feed_forward.w1/w2/w3`, `adaLN_modulation.1`) to diffusers keys (`transformer.` prefix, `to_q` /
    `to_k` / `to_v` sharing the qkv LoRA-A, `to_out.0`, `linear_1/2/3`, `norm1.linear`).

    Args:
        state_dict (`dict`): The original-format LoRA (keys with `lora_A` / `lora_B`); not modified.
        transformer_config (*optional*): The transformer's config (or a mapping with `hidden_size`,
            `num_attention_heads`, `num_kv_heads`); gives the q / k / v split of the fused qkv LoRA-B. Without it the
            split is derived from the LoRA's shapes (the input width for q, the rest halved for k and v).

    Raises:
        `ValueError`: keys that are not part of this layout, or a fused qkv that does not split into the sizes.
    """
    # Remove "diffusion_model." prefix from keys; keys without it are not part of the layout (a bare twin of a
    # prefixed key would overwrite it) and are reported below
    foreign = [k for k in state_dict if not k.startswith(_ORIGINAL_PREFIX)]
    state_dict = {k[len(_ORIGINAL_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_ORIGINAL_PREFIX)}
    split_sizes = lumina2_qkv_split_sizes(transformer_config) if transformer_config is not None else None
    converted_state_dict = {}

    def process_block(prefix, index, convert_norm):
        block = f"{prefix}.{index}"
        # Process attention qkv: the shared lora_A, lora_B split by rows.
        qkv_down_key, qkv_up_key = f"{block}.attention.qkv.lora_A.weight", f"{block}.attention.qkv.lora_B.weight"
        if qkv_down_key in state_dict or qkv_up_key in state_dict:
            if qkv_down_key not in state_dict or qkv_up_key not in state_dict:
                missing = qkv_down_key if qkv_down_key not in state_dict else qkv_up_key
                raise ValueError(f"The original-format Lumina2 LoRA lacks `{_ORIGINAL_PREFIX}{missing}`.")
            lora_down = state_dict.pop(qkv_down_key)
            lora_up = state_dict.pop(qkv_up_key)
            sizes = split_sizes or _split_sizes_from_shapes(qkv_up_key, lora_down, lora_up)
            if sum(sizes) != int(lora_up.shape[0]):
                raise ValueError(
                    f"The fused qkv LoRA `{_ORIGINAL_PREFIX}{qkv_up_key}` has {int(lora_up.shape[0])} rows, but the "
                    f"transformer config gives q/k/v sizes {list(sizes)} (sum {sum(sizes)}): the LoRA was made for "
                    "another model width."
                )
            start = 0
            for attn_key, size in zip(["to_q", "to_k", "to_v"], sizes):
                converted_state_dict[f"{block}.attn.{attn_key}.lora_A.weight"] = lora_down
                converted_state_dict[f"{block}.attn.{attn_key}.lora_B.weight"] = lora_up[start : start + size]
                start += size

        # Process attention out, feed-forward w1/w2/w3 and (noise refiner, layers) the adaLN modulation.
        for original, diffusers_name in _BLOCK_MODULES.items():
            if original.startswith("adaLN") and not convert_norm:
                continue
            for part in ("lora_A", "lora_B"):
                key = f"{block}.{original}.{part}.weight"
                if key in state_dict:
                    converted_state_dict[f"{block}.{diffusers_name}.{part}.weight"] = state_dict.pop(key)

    for prefix, convert_norm in _BLOCK_LISTS.items():
        pattern = re.compile(rf"^{prefix}\.(\d+)\.")
        indices = sorted({int(m.group(1)) for m in map(pattern.match, state_dict) if m})
        for index in indices:
            process_block(prefix, index, convert_norm)

    if len(state_dict) > 0 or foreign:
        left = [_ORIGINAL_PREFIX + k for k in state_dict] + foreign
        # upstream's message, then why: the keys are outside the layout this converter knows
        blocks = " / ".join(f"`{name}`" for name in _BLOCK_LISTS)
        modules = ", ".join(f"`{name}`" for name in ("attention.qkv", *_BLOCK_MODULES))
        raise ValueError(
            f"`state_dict` should be empty at this point but has {left}: these keys are not part of the original "
            f"Lumina-Image-2.0 LoRA layout that is converted (`{_ORIGINAL_PREFIX}` + {blocks} `.<i>.` + one of "
            f"{modules} + `.lora_A.weight` / `.lora_B.weight`). As in diffusers, `lora_down` / `lora_up` names, `.alpha` "
            "scales, keys without the `diffusion_model.` prefix and other modules (embedders, `final_layer`) are not "
            "converted: remove them from the state dict or convert the LoRA to diffusers keys. Nothing was loaded."
        )

    return {f"transformer.{key}": value for key, value in converted_state_dict.items()}
