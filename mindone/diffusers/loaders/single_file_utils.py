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
"""Original single-file checkpoints <-> diffusers state dicts for the Lumina2 transformer and the FLUX/LDM VAE.

Adapted from diffusers v0.42.1 `loaders/single_file_utils.py`; MindSpore changes: only the Lumina-Image-2.0 transformer
and the FLUX `ae.safetensors` (LDM) VAE layouts are kept; a conversion is a *key plan* (diffusers key -> original key plus
a row slice or a 1x1-conv reshape) applied lazily, so tensors are read from the file one at a time; the fused
qkv is split with sizes from the config (upstream hard-codes the 2B widths); configs are inferred from tensor shapes
instead of being downloaded from a reference repo; the reverse plans (diffusers -> original layout, for writing
ComfyUI-loadable files) are new; pickle files are never read.
"""

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import mindspore as ms

from ...safetensors.mindspore import SafetensorError, safe_open
from ..models.model_loading_utils import CheckpointError
from ..models.modeling_utils import _DEPRECATED_ATTENTION_NAMES
from ..utils import PICKLE_SUFFIXES, logging, resolve_file

logger = logging.get_logger(__name__)

COMFYUI_TRANSFORMER_PREFIX = "model.diffusion_model."
LDM_VAE_KEYS = ["first_stage_model.", "vae."]

# `transformer/config.json` of Alpha-VLLM/Lumina-Image-2.0 (the 2B release).
LUMINA2_2B_CONFIG = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": None,
    "hidden_size": 2304,
    "num_layers": 26,
    "num_refiner_layers": 2,
    "num_attention_heads": 24,
    "num_kv_heads": 8,
    "multiple_of": 256,
    "ffn_dim_multiplier": None,
    "norm_eps": 1e-5,
    "scaling_factor": 1.0,
    "axes_dim_rope": [32, 32, 32],
    "axes_lens": [300, 512, 512],
    "cap_feat_dim": 2304,
}

# `vae/config.json` of black-forest-labs/FLUX.1-dev (also the VAE of Alpha-VLLM/Lumina-Image-2.0).
FLUX_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "latents_mean": None,
    "latents_std": None,
    "force_upcast": True,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "mid_block_add_attention": True,
}

_PICKLE_HINT = (
    "Pickle checkpoints (.pth, .pt, .bin, .ckpt) are never read: unpickling can run arbitrary code and needs torch. "
    "Convert the file once with torch, e.g.\n"
    "    import torch, safetensors.torch\n"
    "    sd = torch.load(path, map_location='cpu', weights_only=True)\n"
    "    sd = sd.get('state_dict', sd)\n"
    "    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, 'model.safetensors')\n"
    "and pass the .safetensors file."
)


class SingleFileComponentError(CheckpointError):
    """A single-file checkpoint that does not hold the requested component, or cannot be read or converted."""


# ---------------------------------------------------------------------------------------------------------------------
# Reading: a safetensors file (streamed) or an in-memory dict, behind one small interface
# ---------------------------------------------------------------------------------------------------------------------


class CheckpointReader:
    """Keys, shapes and (on demand) arrays of a checkpoint, optionally seen through a key prefix.

    Built from a safetensors file (tensors are read one at a time) or from a dict of NumPy arrays /
    MindSpore tensors.
    """

    def __init__(
        self, source: str, shapes: Dict[str, Tuple[int, ...]], read, full_keys: Optional[Dict[str, str]] = None
    ):
        self.source = source
        self._shapes = shapes
        self._read = read
        self._full_keys = full_keys or {k: k for k in shapes}

    @classmethod
    def from_file(cls, path: str) -> "CheckpointReader":
        handle = safe_open(path)
        return cls(path, {k: handle.get_shape(k) for k in handle.keys()}, handle.get_numpy)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "the state dict") -> "CheckpointReader":
        for key, value in state.items():
            if not isinstance(key, str) or not isinstance(value, (np.ndarray, ms.Tensor)):
                from_torch = type(value).__module__.split(".")[0] == "torch"
                kind = f"torch.{type(value).__name__}" if from_torch else type(value).__name__
                hint = (
                    " (torch tensors: pass `{k: v.float().numpy() for k, v in state_dict.items()}`, or save the state"
                    " dict with safetensors and pass the file)"
                    if from_torch
                    else ""
                )
                raise TypeError(
                    f"A state dict passed to `from_single_file` must map str keys to numpy arrays or mindspore "
                    f"Tensors, got {type(key).__name__} -> {kind} for {key!r}{hint}."
                )

        def read(key):
            value = state[key]
            if isinstance(value, ms.Tensor):
                return value.astype(ms.float32).asnumpy() if value.dtype == ms.bfloat16 else value.asnumpy()
            return np.asarray(value)

        return cls(source, {k: tuple(v.shape) for k, v in state.items()}, read)

    def keys(self) -> List[str]:
        return list(self._shapes)

    def __contains__(self, key: str) -> bool:
        return key in self._shapes

    def get_shape(self, key: str) -> Tuple[int, ...]:
        return self._shapes[key]

    def get_numpy(self, key: str) -> np.ndarray:
        return self._read(self._full_keys[key])

    def with_prefix(self, prefix: str) -> "CheckpointReader":
        """A view on the keys that start with ``prefix``, with the prefix removed."""
        if not prefix:
            return self
        shapes = {k[len(prefix) :]: s for k, s in self._shapes.items() if k.startswith(prefix)}
        full = {k[len(prefix) :]: self._full_keys[k] for k in self._shapes if k.startswith(prefix)}
        return CheckpointReader(self.source, shapes, self._read, full)


def _looks_like_pickle(path: str) -> bool:
    """For files that failed to open as safetensors: torch.save's zip archive or a bare pickle (PROTO opcode)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    )


# a query or fragment (`?download=true` from the Hub's download button) is not part of the file name
_HF_URL_RE = re.compile(
    r"^(?:https?://)?(?:huggingface\.co|hf\.co)/([^/]+)/([^/]+)/(?:(?:blob|resolve)/([^/]+)/)?([^?#]+)(?:[?#].*)?$"
)


def load_single_file_checkpoint(pretrained_model_link_or_path, **hub_kwargs) -> CheckpointReader:
    """Open a single-file checkpoint: a local ``.safetensors`` path or a Hub URL
    (``https://huggingface.co/<repo_id>/blob/<revision>/<file>.safetensors``, ``blob/<revision>/`` optional, resolved
    through the Hugging Face cache).

    Pickle files are refused with instructions to convert them; truncated or corrupt files raise
    ``SingleFileComponentError``.
    """
    path = os.fspath(pretrained_model_link_or_path)
    if not os.path.isfile(path):
        match = _HF_URL_RE.match(path)
        if match is None:
            if os.path.isdir(path):
                raise SingleFileComponentError(
                    f"`from_single_file` expects a single checkpoint file, but {path} is a directory: load a diffusers "
                    "folder with `from_pretrained`."
                )
            raise SingleFileComponentError(
                f"No such checkpoint file: {path}. Pass a local .safetensors path or a Hub URL such as "
                "https://huggingface.co/<repo_id>/blob/main/<file>.safetensors."
            )
        repo_id, revision, filename = f"{match.group(1)}/{match.group(2)}", match.group(3), match.group(4)
        if filename.endswith(PICKLE_SUFFIXES):
            raise SingleFileComponentError(f"{path} is a pickle checkpoint. {_PICKLE_HINT}")
        hub_kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
        if revision is not None:  # `blob/<revision>/` is optional in the link, as upstream
            hub_kwargs.setdefault("revision", revision)
        path = resolve_file(repo_id, filename, **hub_kwargs)
    if path.endswith(PICKLE_SUFFIXES):
        raise SingleFileComponentError(f"{path} is a pickle checkpoint. {_PICKLE_HINT}")
    try:
        return CheckpointReader.from_file(path)
    except SafetensorError as e:
        if _looks_like_pickle(path):
            raise SingleFileComponentError(f"{path} is a pickle checkpoint, not safetensors. {_PICKLE_HINT}") from None
        raise SingleFileComponentError(str(e)) from None


# ---------------------------------------------------------------------------------------------------------------------
# Model families: what a file holds, for loading the right part and for clear errors
# ---------------------------------------------------------------------------------------------------------------------

# family -> (description, marker keys (any), prefixes the family is stored under)
CHECKPOINT_KEY_NAMES = {
    "z-image": ("a Z-Image transformer", ["layers.0.adaLN_modulation.0.weight"], ["", COMFYUI_TRANSFORMER_PREFIX]),
    "lumina2": (
        "a Lumina-Image-2.0 transformer (original layout)",
        # several markers: a file missing one tensor is still recognised (and its missing keys reported)
        [
            "cap_embedder.0.weight",
            "cap_embedder.1.weight",
            "context_refiner.0.attention.qkv.weight",
            "noise_refiner.0.attention.qkv.weight",
        ],
        ["", COMFYUI_TRANSFORMER_PREFIX],
    ),
    "lumina2-diffusers": (
        "a Lumina2 transformer (diffusers layout)",
        [
            "time_caption_embed.caption_embedder.0.weight",
            "time_caption_embed.caption_embedder.1.weight",
            "time_caption_embed.timestep_embedder.linear_1.weight",
        ],
        ["", COMFYUI_TRANSFORMER_PREFIX],
    ),
    "flux": (
        "a FLUX transformer",
        ["double_blocks.0.img_attn.norm.key_norm.scale", "double_blocks.0.img_attn.qkv.weight"],
        ["", COMFYUI_TRANSFORMER_PREFIX],
    ),
    "flux-diffusers": (
        "a FLUX transformer (diffusers layout)",
        ["transformer_blocks.0.attn.norm_added_k.weight"],
        [""],
    ),
    "sd3": (
        "a Stable Diffusion 3 transformer",
        ["joint_blocks.0.context_block.attn.qkv.weight"],
        ["", COMFYUI_TRANSFORMER_PREFIX],
    ),
    "ldm-unet": ("a Stable Diffusion UNet", ["input_blocks.0.0.weight"], ["", COMFYUI_TRANSFORMER_PREFIX]),
    "unet-diffusers": (
        "a UNet2DConditionModel (diffusers layout)",
        ["conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"],
        [""],
    ),
    "ldm-vae": (
        "a VAE (FLUX `ae.safetensors` / LDM layout)",
        ["encoder.down.0.block.0.norm1.weight", "decoder.up.0.block.0.norm1.weight"],
        [""] + LDM_VAE_KEYS,
    ),
    "vae-diffusers": (
        "an AutoencoderKL (diffusers layout)",
        ["encoder.down_blocks.0.resnets.0.norm1.weight"],
        [""] + LDM_VAE_KEYS,
    ),
    "gemma2": (
        "a Gemma2 text encoder",
        ["model.layers.0.self_attn.q_proj.weight", "layers.0.self_attn.q_proj.weight"],
        ["", "text_encoders.gemma2_2b.", "text_encoders.gemma2_2b.transformer."],
    ),
}


def detect_checkpoint_components(keys: Iterable[str]) -> List[Tuple[str, str]]:
    """The (family, prefix) pairs found in a checkpoint's keys, e.g. ``[("lumina2", "model.diffusion_model."),
    ("ldm-vae", "first_stage_model.")]`` for a ComfyUI all-in-one file."""
    keys = set(keys)
    found = []
    for family, (_, markers, prefixes) in CHECKPOINT_KEY_NAMES.items():
        for prefix in prefixes:
            if any(prefix + m in keys for m in markers):
                if family == "lumina2" and any((prefix, "z-image") == (p, f) for f, p in found):
                    continue  # Z-Image keeps Lumina2's `cap_embedder` names
                if family == "unet-diffusers" and not all(prefix + m in keys for m in markers):
                    continue
                found.append((family, prefix))
    return found


def infer_diffusers_model_type(checkpoint: Iterable[str]) -> Optional[str]:
    """The model family of a checkpoint (keys or dict) in this module's names (``"lumina2"``, ``"ldm-vae"``, ...: the
    keys of ``CHECKPOINT_KEY_NAMES``); ``None`` if unknown. Upstream's function of the same name returns its own model
    types (``"v1"`` for an LDM VAE or an unknown file)."""
    found = detect_checkpoint_components(checkpoint)
    return found[0][0] if found else None


def describe_components(found: Sequence[Tuple[str, str]], keys: Sequence[str]) -> str:
    if not found:
        if not keys:
            return "no tensors at all"
        shown = ", ".join(sorted(keys)[:5])
        return f"no known model family (first keys: {shown}{', ...' if len(keys) > 5 else ''})"
    return "; ".join(f"{CHECKPOINT_KEY_NAMES[f][0]}" + (f" under the prefix `{p}`" if p else "") for f, p in found)


# ---------------------------------------------------------------------------------------------------------------------
# Key plans
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSource:
    """How one diffusers tensor is read from an original checkpoint: ``key``, optionally rows ``start:stop`` of it,
    optionally a 1x1 convolution weight ``[out, in, 1, 1]`` read as a linear weight ``[out, in]``."""

    key: str
    rows: Optional[Tuple[int, int]] = None
    to_linear: bool = False

    def shape(self, source_shape: Sequence[int]) -> Tuple[int, ...]:
        shape = tuple(source_shape)
        if self.rows is not None:
            shape = (self.rows[1] - self.rows[0],) + shape[1:]
        if self._squeezes(shape):
            shape = shape[:2]
        return shape

    def _squeezes(self, shape: Sequence[int]) -> bool:
        # only a 1x1 kernel is read as linear: another keeps its shape, which the shape check reports with the key
        # (upstream takes [:, :, 0, 0] of any kernel)
        return self.to_linear and len(shape) > 2 and all(d == 1 for d in shape[2:])

    def apply(self, array):
        if self.rows is not None:
            array = array[self.rows[0] : self.rows[1]]
        if self._squeezes(array.shape):
            array = array.reshape(tuple(array.shape[:2]))
        return array


@dataclass(frozen=True)
class TensorTarget:
    """How one original tensor is written from diffusers tensors: the rows of ``keys`` concatenated (one key: a plain
    copy), optionally a linear weight written as a 1x1 convolution weight ``[out, in, 1, 1]``."""

    keys: Tuple[str, ...]
    to_conv: bool = False

    def shape(self, shapes: Sequence[Sequence[int]]) -> Tuple[int, ...]:
        shape = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
        if self.to_conv and len(shape) == 2:
            shape = shape + (1, 1)
        return shape


class LazyTensor:
    """A converted tensor that is read from the checkpoint only when NumPy asks for it (``np.asarray``)."""

    def __init__(self, reader: CheckpointReader, source: TensorSource):
        self.reader = reader
        self.source = source
        self.shape = source.shape(reader.get_shape(source.key))

    def __array__(self, dtype=None, copy=None):
        array = np.ascontiguousarray(self.source.apply(self.reader.get_numpy(self.source.key)))
        return array if dtype is None else array.astype(dtype)


def apply_key_plan(checkpoint: Mapping[str, Any], plan: Mapping[str, TensorSource]) -> Dict[str, Any]:
    """Convert an in-memory state dict (NumPy arrays or MindSpore tensors) with a forward plan."""
    return {target: source.apply(checkpoint[source.key]) for target, source in plan.items()}


def _concat_rows(tensors: Sequence[Any]):
    if all(isinstance(t, np.ndarray) for t in tensors):
        return np.concatenate(tensors, axis=0)
    dtype = tensors[0].dtype
    arrays = [t.astype(ms.float32).asnumpy() if t.dtype == ms.bfloat16 else t.asnumpy() for t in tensors]
    out = np.concatenate(arrays, axis=0)
    # NumPy has no bfloat16: concatenate the exact float32 widening, then narrow back (exact)
    return ms.Tensor(out).astype(dtype) if dtype == ms.bfloat16 else out


def apply_reverse_plan(state_dict: Mapping[str, Any], plan: Mapping[str, TensorTarget]) -> Dict[str, Any]:
    """Convert a diffusers state dict (NumPy arrays or MindSpore tensors) to the original layout with a reverse plan.
    Plain renames keep the given objects (no copy)."""
    out = {}
    for target, spec in plan.items():
        parts = [state_dict[k] for k in spec.keys]
        value = parts[0] if len(parts) == 1 else _concat_rows(parts)
        if spec.to_conv and len(value.shape) == 2:
            value = value.reshape(tuple(value.shape) + (1, 1))
        out[target] = value
    return out


def _unknown_keys_error(component: str, source: str, unknown: Sequence[str]) -> SingleFileComponentError:
    shown = ", ".join(sorted(unknown)[:12]) + (f", ... ({len(unknown) - 12} more)" if len(unknown) > 12 else "")
    hint = f"The file is not a (plain) {component} checkpoint."
    if any("lora_" in k or ".base_layer." in k for k in unknown):
        hint = "LoRA adapters are not part of the original layout: fuse and unload them first (`fuse_lora`, `unload_lora`)."
    return SingleFileComponentError(
        f"{source}: {len(unknown)} keys are not part of the {component} layout: {shown}. {hint}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Lumina2 transformer: original Lumina-Image-2.0 (NextDiT) <-> diffusers `Lumina2Transformer2DModel`
# ---------------------------------------------------------------------------------------------------------------------

_LUMINA2_TOP_LEVEL_KEYS = {
    "x_embedder.weight": "x_embedder.weight",
    "x_embedder.bias": "x_embedder.bias",
    "cap_embedder.0.weight": "time_caption_embed.caption_embedder.0.weight",
    "cap_embedder.1.weight": "time_caption_embed.caption_embedder.1.weight",
    "cap_embedder.1.bias": "time_caption_embed.caption_embedder.1.bias",
    "t_embedder.mlp.0.weight": "time_caption_embed.timestep_embedder.linear_1.weight",
    "t_embedder.mlp.0.bias": "time_caption_embed.timestep_embedder.linear_1.bias",
    "t_embedder.mlp.2.weight": "time_caption_embed.timestep_embedder.linear_2.weight",
    "t_embedder.mlp.2.bias": "time_caption_embed.timestep_embedder.linear_2.bias",
    "final_layer.adaLN_modulation.1.weight": "norm_out.linear_1.weight",
    "final_layer.adaLN_modulation.1.bias": "norm_out.linear_1.bias",
    "final_layer.linear.weight": "norm_out.linear_2.weight",
    "final_layer.linear.bias": "norm_out.linear_2.bias",
}
# Keys inside `layers.N.`, `noise_refiner.N.` and `context_refiner.N.`, for every N (upstream bug fixed: diffusers
# 0.42.1 maps `context_refiner.N` for N >= 2 to wrong names).
_LUMINA2_BLOCK_KEYS = {
    "attention.out.weight": "attn.to_out.0.weight",
    "attention.q_norm.weight": "attn.norm_q.weight",
    "attention.k_norm.weight": "attn.norm_k.weight",
    "feed_forward.w1.weight": "feed_forward.linear_1.weight",
    "feed_forward.w2.weight": "feed_forward.linear_2.weight",
    "feed_forward.w3.weight": "feed_forward.linear_3.weight",
    "attention_norm2.weight": "norm2.weight",
    "ffn_norm1.weight": "ffn_norm1.weight",
    "ffn_norm2.weight": "ffn_norm2.weight",
}
# `layers` and `noise_refiner` are modulated (LuminaRMSNormZero), `context_refiner` is not (plain RMSNorm).
_LUMINA2_MODULATED_BLOCK_KEYS = {
    "attention_norm1.weight": "norm1.norm.weight",
    "adaLN_modulation.1.weight": "norm1.linear.weight",
    "adaLN_modulation.1.bias": "norm1.linear.bias",
}
_LUMINA2_PLAIN_BLOCK_KEYS = {"attention_norm1.weight": "norm1.weight"}
_LUMINA2_QKV = ("attention.qkv.weight", ("attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight"))
# The original NextDiT keeps an RMSNorm `norm_final` that its forward never uses; diffusers has no such layer.
_LUMINA2_UNUSED_KEYS = ("norm_final.weight",)
_LUMINA2_BLOCK_RE = re.compile(r"^(layers|noise_refiner|context_refiner)\.(\d+)\.(.+)$")


def _lumina2_block_map(group: str) -> Dict[str, str]:
    extra = _LUMINA2_PLAIN_BLOCK_KEYS if group == "context_refiner" else _LUMINA2_MODULATED_BLOCK_KEYS
    return {**_LUMINA2_BLOCK_KEYS, **extra}


def lumina2_qkv_sizes(config: Mapping[str, Any]) -> Tuple[int, int, int]:
    """Rows of q, k and v in the fused ``attention.qkv.weight``: ``heads * head_dim`` and twice ``kv_heads * head_dim``
    with ``head_dim = hidden_size // num_attention_heads`` (2304 / 768 / 768 for the 2B model)."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    kv_heads = config.get("num_kv_heads") or heads
    head_dim = hidden // heads
    return heads * head_dim, int(kv_heads) * head_dim, int(kv_heads) * head_dim


def convert_lumina2_key_plan(
    shapes: Mapping[str, Sequence[int]], config: Mapping[str, Any], source: str = "checkpoint"
) -> Dict[str, TensorSource]:
    """Forward plan for an original Lumina-Image-2.0 state dict (prefix already removed): diffusers key -> source.

    ``shapes`` maps the original keys to their shapes; the fused qkv is split with sizes from ``config``. Raises
    ``SingleFileComponentError`` for keys outside the layout and for a qkv that does not fit the config.
    """
    q, k, v = lumina2_qkv_sizes(config)
    plan, unknown = {}, []
    for key in shapes:
        if key in _LUMINA2_UNUSED_KEYS:
            continue
        if key in _LUMINA2_TOP_LEVEL_KEYS:
            plan[_LUMINA2_TOP_LEVEL_KEYS[key]] = TensorSource(key)
            continue
        match = _LUMINA2_BLOCK_RE.match(key)
        if match is None:
            unknown.append(key)
            continue
        group, index, rest = match.groups()
        block = f"{group}.{index}."
        if rest == _LUMINA2_QKV[0]:
            rows = shapes[key][0]
            if rows != q + k + v:
                # a config inferred from one block cannot fit a file whose blocks disagree: say so, not "pass config="
                all_rows = sorted({shape[0] for name, shape in shapes.items() if name.endswith(_LUMINA2_QKV[0])})
                hint = (
                    f"The file's fused qkv weights do not all have the same rows ({all_rows}): the file is damaged or "
                    "was edited."
                    if len(all_rows) > 1
                    else "Pass the `config=` of this checkpoint."
                )
                raise SingleFileComponentError(
                    f"{source}: `{key}` has {rows} rows but the config (hidden_size={config['hidden_size']}, "
                    f"num_attention_heads={config['num_attention_heads']}, num_kv_heads={config.get('num_kv_heads')}) "
                    f"expects q/k/v of {q}/{k}/{v} rows = {q + k + v}. {hint}"
                )
            bounds = ((0, q), (q, q + k), (q + k, q + k + v))
            for target, rows_range in zip(_LUMINA2_QKV[1], bounds):
                plan[block + target] = TensorSource(key, rows=rows_range)
            continue
        mapping = _lumina2_block_map(group)
        if rest not in mapping:
            unknown.append(key)
            continue
        plan[block + mapping[rest]] = TensorSource(key)
    if unknown:
        raise _unknown_keys_error("Lumina-Image-2.0 transformer", source, unknown)
    return plan


def convert_lumina2_to_diffusers(checkpoint: Mapping[str, Any], config: Optional[Mapping[str, Any]] = None, **kwargs):
    """Original Lumina-Image-2.0 state dict (optionally with ComfyUI's ``model.diffusion_model.`` prefix) -> diffusers
    ``Lumina2Transformer2DModel`` state dict. Values are NumPy arrays or MindSpore tensors; the fused qkv is split with
    the sizes of ``config`` (default: the 2B release). The input dict is not modified."""
    # upstream bug fixed: diffusers 0.42.1 fails with a KeyError on the ComfyUI prefix
    if any(k.startswith(COMFYUI_TRANSFORMER_PREFIX) for k in checkpoint):
        checkpoint = {
            k[len(COMFYUI_TRANSFORMER_PREFIX) :]: v
            for k, v in checkpoint.items()
            if k.startswith(COMFYUI_TRANSFORMER_PREFIX)
        }
    plan = convert_lumina2_key_plan({k: tuple(v.shape) for k, v in checkpoint.items()}, config or LUMINA2_2B_CONFIG)
    return apply_key_plan(checkpoint, plan)


def convert_lumina2_diffusers_to_original_plan(
    keys: Iterable[str], source: str = "state dict"
) -> Dict[str, TensorTarget]:
    """Reverse plan, the exact inverse of ``convert_lumina2_key_plan``: original key -> diffusers keys (``source``
    names the keys' origin in errors)."""
    top = {v: k for k, v in _LUMINA2_TOP_LEVEL_KEYS.items()}
    plan, unknown, qkv_blocks = {}, [], {}
    for key in keys:
        if key in top:
            plan[top[key]] = TensorTarget((key,))
            continue
        match = _LUMINA2_BLOCK_RE.match(key)
        if match is None:
            unknown.append(key)
            continue
        group, index, rest = match.groups()
        block = f"{group}.{index}."
        if rest in _LUMINA2_QKV[1]:
            qkv_blocks.setdefault(block, set()).add(rest)
            continue
        inverse = {v: k for k, v in _lumina2_block_map(group).items()}
        if rest not in inverse:
            unknown.append(key)
            continue
        plan[block + inverse[rest]] = TensorTarget((key,))
    if unknown:
        raise _unknown_keys_error("diffusers Lumina2Transformer2DModel", source, unknown)
    for block, parts in qkv_blocks.items():
        if len(parts) != 3:
            raise SingleFileComponentError(f"`{block}attn` lacks some of to_q/to_k/to_v: cannot fuse its qkv.")
        plan[block + _LUMINA2_QKV[0]] = TensorTarget(tuple(block + p for p in _LUMINA2_QKV[1]))
    return plan


def convert_lumina2_diffusers_to_original(state_dict: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """diffusers ``Lumina2Transformer2DModel`` state dict -> original Lumina-Image-2.0 layout (fused qkv, plus the unused
    ``norm_final.weight`` as ones so the key set equals the original release). ``prefix="model.diffusion_model."`` gives
    ComfyUI's layout."""
    out = apply_reverse_plan(state_dict, convert_lumina2_diffusers_to_original_plan(state_dict))
    ref = state_dict["x_embedder.weight"]
    if isinstance(ref, np.ndarray):
        out["norm_final.weight"] = np.ones((ref.shape[0],), dtype=ref.dtype)
    else:
        out["norm_final.weight"] = ms.Tensor(np.ones((ref.shape[0],), dtype=np.float32)).astype(ref.dtype)
    return {prefix + k: v for k, v in out.items()}


def _count_blocks(keys: Iterable[str], group: str) -> int:
    pattern = re.compile(rf"^{re.escape(group)}\.(\d+)\.")
    indices = {int(m.group(1)) for m in map(pattern.match, keys) if m}
    if indices and indices != set(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - indices)
        raise SingleFileComponentError(
            f"The checkpoint has `{group}` blocks {sorted(indices)}: blocks {missing} are missing."
        )
    return len(indices)


def _require(shapes: Mapping[str, Sequence[int]], key: str, source: str, what: str) -> Tuple[int, ...]:
    if key not in shapes:
        raise SingleFileComponentError(
            f"{source} lacks `{key}`, needed to infer the {what} from the weights: the file is incomplete. Pass "
            "`config=` if it is a partial checkpoint on purpose."
        )
    return tuple(shapes[key])


def _ffn_config(inner: int, hidden: int) -> Tuple[int, Optional[float]]:
    """(multiple_of, ffn_dim_multiplier) that give a feed-forward width ``inner`` with diffusers' rule
    ``multiple_of * ceil(int(ffn_dim_multiplier * 4 * hidden) / multiple_of)``."""

    def width(multiple_of, multiplier):
        base = 4 * hidden if multiplier is None else int(multiplier * 4 * hidden)
        return multiple_of * ((base + multiple_of - 1) // multiple_of)

    if width(256, None) == inner:
        return 256, None
    multiple_of = next(m for m in (256, 128, 64, 32, 16, 8, 4, 2, 1) if inner % m == 0)
    if width(multiple_of, None) == inner:
        return multiple_of, None
    for multiplier in (inner / (4 * hidden), (inner + 0.5) / (4 * hidden)):
        if width(multiple_of, multiplier) == inner:
            return multiple_of, multiplier
    raise SingleFileComponentError(f"Cannot express a feed-forward width of {inner} for hidden size {hidden}.")


def create_lumina2_diffusers_config_from_checkpoint(
    shapes: Mapping[str, Sequence[int]], source: str = "checkpoint", overrides: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """Infer a ``Lumina2Transformer2DModel`` config from the shapes of an original-layout state dict (prefix removed).

    Read from the weights: ``hidden_size`` (``x_embedder``), ``num_layers`` / ``num_refiner_layers`` (block counts),
    ``cap_feat_dim`` (``cap_embedder.0``), ``in_channels`` / ``out_channels`` (``x_embedder`` / ``final_layer.linear``
    with the released patch size 2), the feed-forward width, and the heads: ``head_dim`` is the length of the q_norm
    weight (an RMSNorm over one head), so ``num_attention_heads = hidden_size / head_dim`` and the qkv rows give
    ``num_kv_heads``. Not stored in any weight, taken from the 2B release: ``patch_size`` 2, ``axes_lens``,
    ``norm_eps``, ``sample_size``, ``scaling_factor``; ``axes_dim_rope`` (how RoPE splits a head over t/h/w) is
    (32, 32, 32) only when ``head_dim`` is 96 as in the release, otherwise it cannot be known. ``overrides`` (config
    entries given by the caller, e.g. ``from_single_file(..., axes_dim_rope=[...])``) supply what cannot be known and
    take precedence; without them, ``config=`` is required.
    """
    overrides = dict(overrides or {})
    what = "Lumina2 config"
    hidden, in_feats = _require(shapes, "x_embedder.weight", source, what)
    out_feats = _require(shapes, "final_layer.linear.weight", source, what)[0]
    cap_feat_dim = _require(shapes, "cap_embedder.0.weight", source, what)[0]
    head_dim = _require(shapes, "layers.0.attention.q_norm.weight", source, what)[0]
    qkv_rows = _require(shapes, "layers.0.attention.qkv.weight", source, what)[0]
    inner = _require(shapes, "layers.0.feed_forward.w1.weight", source, what)[0]
    patch_size = int(overrides.get("patch_size", LUMINA2_2B_CONFIG["patch_size"]))
    if in_feats % (patch_size * patch_size) or out_feats % (patch_size * patch_size):
        raise SingleFileComponentError(
            f"{source}: `x_embedder.weight` takes {in_feats} features and `final_layer.linear` gives {out_feats}, which "
            f"do not fit the patch size {patch_size}: pass this checkpoint's `patch_size=` (or `config=`)."
        )
    if hidden % head_dim or qkv_rows % head_dim:
        raise SingleFileComponentError(
            f"{source}: hidden size {hidden} and qkv rows {qkv_rows} are not multiples of the head size {head_dim} "
            "(from `attention.q_norm.weight`): the weights are inconsistent."
        )
    heads = hidden // head_dim
    kv_twice = qkv_rows // head_dim - heads
    if kv_twice <= 0 or kv_twice % 2 or heads % (kv_twice // 2):
        raise SingleFileComponentError(
            f"{source}: qkv rows {qkv_rows} with {heads} heads of {head_dim} leave no valid key/value head count."
        )
    keys = list(shapes)
    num_refiner = _count_blocks(keys, "noise_refiner")
    num_context = _count_blocks(keys, "context_refiner")
    if num_refiner != num_context:
        raise SingleFileComponentError(
            f"{source} has {num_refiner} noise_refiner and {num_context} context_refiner blocks; Lumina2 uses the same "
            "number of both (`num_refiner_layers`)."
        )
    if "axes_dim_rope" in overrides:
        axes_dim_rope = list(overrides["axes_dim_rope"])
    elif head_dim == 96:
        axes_dim_rope = list(LUMINA2_2B_CONFIG["axes_dim_rope"])
    else:
        raise SingleFileComponentError(
            f"{source} has attention heads of {head_dim} channels; how RoPE splits them over (t, h, w) "
            "(`axes_dim_rope`) is not stored in the weights and only the released head size 96 -> (32, 32, 32) is "
            "known. Pass `axes_dim_rope=` (three even sizes that sum to the head size), or `config=` (a dict, a "
            "config.json, or a diffusers model folder / repo id)."
        )
    multiple_of, ffn_dim_multiplier = _ffn_config(inner, hidden)
    in_channels = in_feats // (patch_size * patch_size)
    out_channels = out_feats // (patch_size * patch_size)
    config = {
        **LUMINA2_2B_CONFIG,
        "patch_size": patch_size,
        "in_channels": in_channels,
        "out_channels": None if out_channels == in_channels else out_channels,
        "hidden_size": hidden,
        "num_layers": _count_blocks(keys, "layers"),
        "num_refiner_layers": num_refiner,
        "num_attention_heads": heads,
        "num_kv_heads": kv_twice // 2,
        "multiple_of": multiple_of,
        "ffn_dim_multiplier": ffn_dim_multiplier,
        "axes_dim_rope": axes_dim_rope,
        "cap_feat_dim": cap_feat_dim,
        **overrides,
    }
    # another model than the release: say which entries no weight stores were taken from it (as the VAE's guesses)
    stored = ("in_channels", "out_channels", "hidden_size", "num_layers", "num_refiner_layers", "num_attention_heads")
    if any(config[k] != LUMINA2_2B_CONFIG[k] for k in stored + ("num_kv_heads", "cap_feat_dim")):
        guessed = [k for k in ("patch_size", "norm_eps", "axes_lens") if k not in overrides]
        if guessed:
            logger.warning(
                f"{source} is not Lumina-Image-2.0's 2B transformer and no `config=` was given: "
                f"{', '.join(f'`{k}` {LUMINA2_2B_CONFIG[k]}' for k in guessed)} (not stored in the weights) are taken "
                "from the release. Pass this checkpoint's values (e.g. `patch_size=`) or `config=` if they differ."
            )
    return config


# ---------------------------------------------------------------------------------------------------------------------
# VAE: FLUX `ae.safetensors` / LDM layout <-> diffusers `AutoencoderKL`
# ---------------------------------------------------------------------------------------------------------------------

_VAE_RESNET_PARTS = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}
_VAE_ATTN_PARTS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_VAE_KEY_RES = [
    ("plain", re.compile(r"^((?:encoder|decoder)\.(?:conv_in|conv_out)|quant_conv|post_quant_conv)\.(weight|bias)$")),
    ("norm_out", re.compile(r"^(encoder|decoder)\.norm_out\.(weight|bias)$")),
    ("down", re.compile(r"^encoder\.down\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)$")),
    ("downsample", re.compile(r"^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$")),
    ("up", re.compile(r"^decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)$")),
    ("upsample", re.compile(r"^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$")),
    ("mid", re.compile(r"^(encoder|decoder)\.mid\.block_([12])\.(\w+)\.(weight|bias)$")),
    ("attn", re.compile(r"^(encoder|decoder)\.mid\.attn_1\.(\w+)\.(weight|bias)$")),
]

# the same keys on the diffusers side, for the reverse plan
_VAE_DIFFUSERS_KEY_RES = [
    (
        "plain",
        re.compile(r"^((?:encoder|decoder)\.(?:conv_in|conv_out)|quant_conv|post_quant_conv)\.(weight|bias)$"),
    ),
    ("norm_out", re.compile(r"^(encoder|decoder)\.conv_norm_out\.(weight|bias)$")),
    ("down", re.compile(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(weight|bias)$")),
    ("downsample", re.compile(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)$")),
    ("up", re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(weight|bias)$")),
    ("upsample", re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)$")),
    ("mid", re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.([01])\.(\w+)\.(weight|bias)$")),
    (
        "attn",
        re.compile(
            r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$"
        ),
    ),
]


def _vae_ldm_to_diffusers_key(key: str, num_up_blocks: int) -> Optional[Tuple[str, bool]]:
    """Diffusers key for one LDM VAE key and whether it is a 1x1 conv to read as linear; ``None`` when unknown."""
    for kind, pattern in _VAE_KEY_RES:
        m = pattern.match(key)
        if m is None:
            continue
        g = m.groups()
        if kind == "plain":
            return key, False
        if kind == "norm_out":
            return f"{g[0]}.conv_norm_out.{g[1]}", False
        if kind in ("down", "up") and g[2] not in _VAE_RESNET_PARTS:
            return None
        if kind == "down":
            return f"encoder.down_blocks.{g[0]}.resnets.{g[1]}.{_VAE_RESNET_PARTS[g[2]]}.{g[3]}", False
        if kind == "downsample":
            return f"encoder.down_blocks.{g[0]}.downsamplers.0.conv.{g[1]}", False
        if kind in ("up", "upsample") and int(g[0]) >= num_up_blocks:
            return None  # more up blocks than the config: an unknown key (not a negative block index)
        if kind == "up":
            return (
                f"decoder.up_blocks.{num_up_blocks - 1 - int(g[0])}.resnets.{g[1]}.{_VAE_RESNET_PARTS[g[2]]}.{g[3]}",
                False,
            )
        if kind == "upsample":
            return f"decoder.up_blocks.{num_up_blocks - 1 - int(g[0])}.upsamplers.0.conv.{g[1]}", False
        if kind == "mid":
            if g[2] not in _VAE_RESNET_PARTS:
                return None
            return f"{g[0]}.mid_block.resnets.{int(g[1]) - 1}.{_VAE_RESNET_PARTS[g[2]]}.{g[3]}", False
        if kind == "attn":
            if g[1] not in _VAE_ATTN_PARTS:
                return None
            return f"{g[0]}.mid_block.attentions.0.{_VAE_ATTN_PARTS[g[1]]}.{g[2]}", g[1] != "norm" and g[2] == "weight"
    return None


_VAE_TRAINING_PREFIXES = ("loss.", "model_ema.")


def _num_up_blocks(config: Mapping[str, Any]) -> int:
    return len(config.get("up_block_types") or config["block_out_channels"])


def convert_ldm_vae_key_plan(
    shapes: Mapping[str, Sequence[int]], config: Mapping[str, Any], source: str = "checkpoint"
) -> Dict[str, TensorSource]:
    """Forward plan for an LDM / FLUX ``ae.safetensors`` VAE state dict (prefix removed): diffusers key -> source.
    The mid-block attention q/k/v/proj_out 1x1 convolutions become linear weights; decoder ``up.i`` is diffusers'
    ``up_blocks.(n-1-i)``."""
    n = _num_up_blocks(config)
    plan, unknown = {}, []
    # the training loss's weights (LPIPS, discriminator) and the EMA's bookkeeping (`model_ema.decay`,
    # `model_ema.num_updates`) of LDM autoencoder checkpoints: upstream ignores them
    training_keys = [key for key in shapes if key.startswith(_VAE_TRAINING_PREFIXES)]
    if training_keys:
        logger.info(f"{source}: ignoring {len(training_keys)} training keys (`loss.*`, `model_ema.*`).")
    for key in shapes:
        if key.startswith(_VAE_TRAINING_PREFIXES):
            continue
        mapped = _vae_ldm_to_diffusers_key(key, n)
        if mapped is None:
            unknown.append(key)
            continue
        target, to_linear = mapped
        plan[target] = TensorSource(key, to_linear=to_linear)
    # keys that map with any number of up blocks (the file cannot hold more than it has keys): blocks beyond the config
    beyond = [key for key in unknown if _vae_ldm_to_diffusers_key(key, len(shapes)) is not None]
    if beyond:
        shown = ", ".join(sorted(beyond)[:6]) + (", ..." if len(beyond) > 6 else "")
        raise SingleFileComponentError(
            f"{source} holds a VAE with more decoder blocks than the {n} of the config (`block_out_channels`, or the "
            f"encoder's `down.N` keys when no config is given): {shown}. Pass the config of this file, or none to "
            "infer it."
        )
    if unknown:
        raise _unknown_keys_error("VAE (FLUX `ae.safetensors` / LDM)", source, unknown)
    return plan


def convert_ldm_vae_checkpoint(checkpoint: Mapping[str, Any], config: Mapping[str, Any]) -> Dict[str, Any]:
    """LDM / FLUX VAE state dict (optionally under ``first_stage_model.`` or ``vae.``) -> diffusers ``AutoencoderKL``
    state dict, as upstream's function of the same name. The input dict is not modified."""
    for prefix in LDM_VAE_KEYS:
        if any(k.startswith(prefix) for k in checkpoint):
            checkpoint = {k[len(prefix) :]: v for k, v in checkpoint.items() if k.startswith(prefix)}
            break
    plan = convert_ldm_vae_key_plan({k: tuple(v.shape) for k, v in checkpoint.items()}, config)
    return apply_key_plan(checkpoint, plan)


def convert_vae_diffusers_to_ldm_plan(
    keys: Iterable[str], config: Mapping[str, Any], source: str = "state dict"
) -> Dict[str, TensorTarget]:
    """Reverse plan, the exact inverse of ``convert_ldm_vae_key_plan``: original key -> diffusers key (``source`` names
    the keys' origin in errors). Attention linear weights are written as 1x1 convolutions, as in FLUX's
    ``ae.safetensors``."""
    n = _num_up_blocks(config)
    resnet = {v: k for k, v in _VAE_RESNET_PARTS.items()}
    attn = {v: k for k, v in _VAE_ATTN_PARTS.items()}
    plan, unknown = {}, []
    for key in keys:
        target, to_conv = None, False
        for kind, pattern in _VAE_DIFFUSERS_KEY_RES:
            m = pattern.match(key)
            if m is None:
                continue
            g = m.groups()
            if kind == "plain":
                target = key
            elif kind == "norm_out":
                target = f"{g[0]}.norm_out.{g[1]}"
            elif kind == "down" and g[2] in resnet:
                target = f"encoder.down.{g[0]}.block.{g[1]}.{resnet[g[2]]}.{g[3]}"
            elif kind == "downsample":
                target = f"encoder.down.{g[0]}.downsample.conv.{g[1]}"
            elif kind == "up" and g[2] in resnet:
                target = f"decoder.up.{n - 1 - int(g[0])}.block.{g[1]}.{resnet[g[2]]}.{g[3]}"
            elif kind == "upsample":
                target = f"decoder.up.{n - 1 - int(g[0])}.upsample.conv.{g[1]}"
            elif kind == "mid" and g[2] in resnet:
                target = f"{g[0]}.mid.block_{int(g[1]) + 1}.{resnet[g[2]]}.{g[3]}"
            elif kind == "attn":
                target = f"{g[0]}.mid.attn_1.{attn[g[1]]}.{g[2]}"
                to_conv = g[1] != "group_norm" and g[2] == "weight"
            break
        if target is None:
            unknown.append(key)
        else:
            plan[target] = TensorTarget((key,), to_conv=to_conv)
    if unknown:
        raise _unknown_keys_error("diffusers AutoencoderKL", source, unknown)
    return plan


def convert_vae_diffusers_to_ldm(state_dict: Mapping[str, Any], config: Mapping[str, Any], prefix: str = ""):
    """diffusers ``AutoencoderKL`` state dict -> FLUX ``ae.safetensors`` / LDM layout (``prefix="first_stage_model."``
    gives the layout inside an all-in-one checkpoint)."""
    out = apply_reverse_plan(state_dict, convert_vae_diffusers_to_ldm_plan(state_dict, config))
    return {prefix + k: v for k, v in out.items()}


# diffusers before 0.14 named the VAE's mid-block attention layers query / key / value / proj_attn; its `from_pretrained`
# still reads them (`_from_deprecated_attn_block`), so a single file of such a folder's weights loads too
_DEPRECATED_VAE_ATTENTION_RE = re.compile(
    r"^((?:encoder|decoder)\.mid_block\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$"
)


def vae_diffusers_keys(keys: Iterable[str], source: str = "checkpoint") -> Dict[str, str]:
    """diffusers key -> file key of a diffusers-layout VAE file: keys as they are, pre-0.14 attention names renamed."""
    renames = dict(_DEPRECATED_ATTENTION_NAMES)
    mapping = {}
    for key in keys:
        m = _DEPRECATED_VAE_ATTENTION_RE.match(key)
        target = f"{m.group(1)}.{renames[m.group(2)]}.{m.group(3)}" if m else key
        if target in mapping:
            raise SingleFileComponentError(
                f"{source} holds the VAE's attention weight `{target}` twice, as `{mapping[target]}` and `{key}` "
                "(the names before diffusers 0.14): keep one of them."
            )
        mapping[target] = key
    return mapping


def create_vae_diffusers_config_from_checkpoint(
    shapes: Mapping[str, Sequence[int]], source: str = "checkpoint", overrides: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """Infer an ``AutoencoderKL`` config from an LDM / FLUX VAE state dict's shapes (prefix removed).

    Read from the weights: block widths and count, ``layers_per_block``, ``latent_channels`` (``encoder.conv_out``
    holds mean and log-variance), in/out channels, quant convs and the mid-block attention. Not stored in the weights,
    taken from the FLUX VAE: ``norm_num_groups`` 32, ``scaling_factor`` 0.3611 and ``shift_factor`` 0.1159 — used only
    for a FLUX-like file (16 latent channels, no quant convs); for any other latent space they must be given:
    ``overrides`` (config entries given by the caller, e.g. ``from_single_file(..., scaling_factor=0.18215)``; a
    ``shift_factor`` not given is then upstream's default, none) take precedence, or ``config=`` is required.
    """
    overrides = dict(overrides or {})
    what = "VAE config"
    keys = list(shapes)
    num_blocks = _count_blocks(keys, "encoder.down")
    if num_blocks == 0:
        _require(shapes, "encoder.down.0.block.0.conv1.weight", source, what)
    widths = [_require(shapes, f"encoder.down.{i}.block.0.conv1.weight", source, what)[0] for i in range(num_blocks)]
    layers_per_block = _count_blocks(keys, "encoder.down.0.block")
    latent_channels = _require(shapes, "encoder.conv_out.weight", source, what)[0] // 2
    use_quant_conv = "quant_conv.weight" in shapes
    use_post_quant_conv = "post_quant_conv.weight" in shapes
    flux_like = latent_channels == FLUX_VAE_CONFIG["latent_channels"] and not (use_quant_conv or use_post_quant_conv)
    latent_space = {}  # the latent scaling: the FLUX VAE's for a FLUX-like file, else given by the caller
    if "scaling_factor" in overrides:
        latent_space = {"scaling_factor": overrides["scaling_factor"], "shift_factor": overrides.get("shift_factor")}
    elif not flux_like:
        raise SingleFileComponentError(
            f"{source} is a VAE with {latent_channels} latent channels"
            + (" and quant convs" if use_quant_conv or use_post_quant_conv else "")
            + ": its `scaling_factor` / `shift_factor` are not stored in the weights and only the FLUX VAE's "
            "(16 channels, no quant convs: 0.3611 / 0.1159) are known. Pass `scaling_factor=` (and `shift_factor=` "
            "if it has one), or `config=` (a dict, a config.json, or a diffusers VAE folder / repo id)."
        )
    groups = int(overrides.get("norm_num_groups", FLUX_VAE_CONFIG["norm_num_groups"]))
    if any(w % groups for w in widths):
        raise SingleFileComponentError(
            f"{source} has block widths {widths}, not all multiples of {groups} GroupNorm groups: pass this VAE's "
            "`norm_num_groups=` (or `config=`)."
        )
    guessed = []
    if not latent_space:
        guessed.append("`scaling_factor` / `shift_factor` 0.3611 / 0.1159")
    if "norm_num_groups" not in overrides:
        guessed.append(f"{groups} GroupNorm groups")
    if guessed:
        logger.warning(
            f"{source}: no `config=` given, so what the weights do not store is taken from the FLUX VAE, the VAE of "
            f"Lumina-Image-2.0: {' and '.join(guessed)}. Another VAE with 16 latent channels (SD3's: 1.5305 / "
            "0.0609) or other group counts needs these config entries (e.g. `scaling_factor=`) or `config=`."
        )
    # one config entry adds the mid-block attention to both halves, so a file with it in one half only is incomplete
    mid_attention = {part: f"{part}.mid.attn_1.q.weight" in shapes for part in ("encoder", "decoder")}
    if "mid_block_add_attention" not in overrides and len(set(mid_attention.values())) > 1:
        has, lacks = ("encoder", "decoder") if mid_attention["encoder"] else ("decoder", "encoder")
        raise SingleFileComponentError(
            f"{source} holds a mid-block attention in the {has} (`{has}.mid.attn_1.*`) but none in the {lacks}: an "
            "AutoencoderKL has it in both or in neither (`mid_block_add_attention`), so the file is incomplete."
        )
    return {
        **FLUX_VAE_CONFIG,
        **latent_space,
        "norm_num_groups": groups,
        "in_channels": _require(shapes, "encoder.conv_in.weight", source, what)[1],
        "out_channels": _require(shapes, "decoder.conv_out.weight", source, what)[0],
        "down_block_types": ["DownEncoderBlock2D"] * num_blocks,
        "up_block_types": ["UpDecoderBlock2D"] * num_blocks,
        "block_out_channels": widths,
        "layers_per_block": layers_per_block,
        "latent_channels": latent_channels,
        "mid_block_add_attention": mid_attention["encoder"],
        "use_quant_conv": use_quant_conv,
        "use_post_quant_conv": use_post_quant_conv,
        **overrides,
    }


def original_shapes_from_diffusers(shapes: Mapping[str, Sequence[int]], reverse_plan: Mapping[str, TensorTarget]):
    """Shapes an original-layout file would have, from diffusers shapes and a reverse plan (to infer configs of
    diffusers-layout single files with the same rules)."""
    return {k: spec.shape([shapes[s] for s in spec.keys]) for k, spec in reverse_plan.items()}


def read_config_file(path: str) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EnvironmentError(f"The config file {path} is not valid JSON ({e}).") from None
    if not isinstance(config, dict):
        raise EnvironmentError(f"The config file {path} does not hold a JSON object.")
    return config
