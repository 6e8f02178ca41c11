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
"""Checkpoint files -> model parameters, shared by mindone.diffusers and mindone.transformers.

Adapted from diffusers v0.42.1 `models/model_loading_utils.py`; MindSpore changes: safetensors only (pickle formats are
refused with a hint), every file and key is validated before the first parameter is written (so a failed load leaves the
model untouched), and tensors are read from the files one at a time (no second full copy of the weights).
"""

import json
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import mindspore as ms
from mindspore import nn

from ...peft.tuners.tuners_utils import check_tensor_dict, invalidate_compiled_graphs, set_parameter_data, to_tensor
from ...safetensors.mindspore import SafetensorError, safe_open, save_file
from ..utils import PICKLE_SUFFIXES, logging, resolve_file

logger = logging.get_logger(__name__)

_FLOAT_DTYPES = (ms.float16, ms.float32, ms.bfloat16, ms.float64)


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint that does not fit the model (missing/unexpected keys, shapes, unreadable files). Both a
    `ValueError` and a `RuntimeError`: torch's `load_state_dict` raises the latter for mismatched shapes."""


def add_variant(weights_name: str, variant: Optional[str] = None) -> str:
    if variant is not None:
        splits = weights_name.split(".")
        weights_name = ".".join(splits[:-1] + [variant] + splits[-1:])
    return weights_name


# mindone.peft's LoRA layers keep each adapter's run-time scale in a one-element float32 Parameter under this name (a
# compiled graph reads parameters at run time); PEFT keeps it a Python float: not a checkpoint entry, never cast
RUNTIME_SCALING = "lora_runtime_scaling"


def is_runtime_scaling(name: str) -> bool:
    return RUNTIME_SCALING in name.split(".")


def named_parameters(model: nn.Cell) -> Dict[str, ms.Parameter]:
    """Structural parameter names (``blocks.0.attn.to_q.weight``) -> Parameter, the keys of checkpoints (upstream's
    `state_dict`: LoRA run-time scales left out)."""
    return {name: param for name, param in model.parameters_and_names() if not is_runtime_scaling(name)}


def state_dict(model: nn.Cell) -> Dict[str, ms.Parameter]:
    return named_parameters(model)


def parse_size(size: Union[int, float, str]) -> int:
    """ "10GB" / "500MB" / a number -> bytes, as huggingface_hub reads `max_shard_size` (decimal units); also "1KiB"
    (binary units), "100B" and "100", which huggingface_hub refuses."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    if isinstance(size, float) and math.isfinite(size):
        return math.floor(size)  # byte counts compare with it as upstream's with the float
    text = str(size).strip().upper()
    units = {
        "KIB": 2**10,
        "MIB": 2**20,
        "GIB": 2**30,
        "TIB": 2**40,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "TB": 10**12,
    }
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    if text.endswith("B") and text[:-1].isdigit():
        return int(text[:-1])
    if text.isdigit():
        return int(text)
    raise ValueError(f"`max_shard_size` must be a number of bytes or a size like '10GB', got {size!r}.")


def _nbytes(param) -> int:
    return int(np.prod(param.shape, dtype=np.int64)) * param.itemsize


def check_save_directory(save_directory, max_shard_size: Optional[Union[int, float, str]] = None) -> None:
    """Before a saver writes anything: the `ValueError` of upstream's savers when the target folder is an existing
    file, and a `max_shard_size` that cannot be read (upstream finds it after writing the config)."""
    if os.path.isfile(save_directory):
        raise ValueError(f"Provided path ({save_directory}) should be a directory, not a file")
    if max_shard_size is not None:
        parse_size(max_shard_size)


def warn_if_pickle_requested(safe_serialization: bool, what: str) -> None:
    """`safe_serialization=False` asks upstream for pickle files; this port writes safetensors anyway (which diffusers
    and transformers load as well), and says so."""
    if not safe_serialization:
        logger.warning(
            f"`safe_serialization=False` asks for pickle files, which this port never writes: {what} is saved as "
            "safetensors (diffusers and transformers load those too)."
        )


def save_state_dict_sharded(
    tensors: Dict[str, ms.Tensor],
    save_directory: str,
    weights_name: str,
    index_name: str,
    max_shard_size: Union[int, str] = "10GB",
    metadata: Optional[Dict[str, str]] = None,
    index_metadata: Optional[Dict[str, int]] = None,
) -> List[str]:
    """Write ``tensors`` as one safetensors file or as shards plus an index, with the file names and index layout of
    huggingface_hub's ``split_torch_state_dict_into_shards`` (``name-00001-of-00002.safetensors``). ``index_metadata``
    adds entries to the index's ``metadata`` (transformers records ``total_parameters``)."""
    limit = parse_size(max_shard_size)
    # huggingface_hub's split, so that shards hold the keys diffusers' would: a tensor larger than the limit gets a
    # shard of its own (listed before the one being filled), the others fill shards in order
    shards: List[List[str]] = []
    current: List[str] = []
    current_size = 0
    for name, tensor in tensors.items():
        size = _nbytes(tensor)
        if size > limit:
            shards.append([name])
            continue
        if current_size + size > limit:
            shards.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += size
    if current or not shards:
        shards.append(current)
    pattern = weights_name.replace(".safetensors", "{suffix}.safetensors")
    stem = weights_name.replace(".safetensors", "")
    # remove shards of a previous save with the same naming scheme
    for filename in os.listdir(save_directory):
        if filename.startswith(stem + "-") and "-of-" in filename and filename.endswith(".safetensors"):
            os.remove(os.path.join(save_directory, filename))
    index_path = os.path.join(save_directory, index_name)
    if len(shards) == 1:
        if os.path.isfile(index_path):
            os.remove(index_path)
        save_file({k: tensors[k] for k in shards[0]}, os.path.join(save_directory, weights_name), metadata=metadata)
        return [weights_name]
    single = os.path.join(save_directory, weights_name)
    if os.path.isfile(single):
        os.remove(single)
    weight_map, files = {}, []
    for i, names in enumerate(shards):
        filename = pattern.format(suffix=f"-{i + 1:05d}-of-{len(shards):05d}")
        save_file({k: tensors[k] for k in names}, os.path.join(save_directory, filename), metadata=metadata)
        files.append(filename)
        weight_map.update({k: filename for k in names})
    index_metadata = {**(index_metadata or {}), "total_size": sum(_nbytes(t) for t in tensors.values())}
    index = {"metadata": index_metadata, "weight_map": weight_map}
    with open(index_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return files


def resolve_weight_files(
    pretrained_model_name_or_path,
    weights_name: str,
    index_name: str,
    subfolder: Optional[str] = None,
    variant: Optional[str] = None,
    prefer_single_file: bool = False,
    **hub_kwargs,
) -> List[str]:
    """The safetensors file(s) of a checkpoint: the (variant) index and its shards, else the single file (diffusers'
    order); the single file first with `prefer_single_file` (transformers' order, for a folder holding both).

    Raises ``EnvironmentError`` naming what was looked for, with a hint when only pickle weights exist."""
    path = os.fspath(pretrained_model_name_or_path)
    if os.path.isfile(path):
        if path.endswith(".safetensors"):
            return [path]
        if not path.endswith(".index.json"):
            raise EnvironmentError(
                f"{path} is a file, not a safetensors checkpoint nor its shard index: pass the folder that holds the "
                "model's config and weights (`from_single_file` reads one original-format checkpoint file)."
            )

    def single_file():
        return resolve_file(
            path, add_variant(weights_name, variant), subfolder=subfolder, required=False, **hub_kwargs
        )

    single = single_file() if prefer_single_file else None
    if single is not None:
        return [single]
    index_file = resolve_file(
        path, add_variant(index_name, variant), subfolder=subfolder, required=False, **hub_kwargs
    )
    if index_file is not None:
        try:
            with open(index_file, "r", encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise EnvironmentError(f"The shard index {index_file} is not a valid safetensors index ({e!r}).") from None
        if (
            not isinstance(weight_map, dict)
            or not weight_map
            or not all(isinstance(v, str) for v in weight_map.values())
        ):
            raise EnvironmentError(
                f"The shard index {index_file} is not a valid safetensors index: its `weight_map` must be a non-empty "
                "mapping of parameter names to shard file names."
            )
        shard_names = sorted(set(weight_map.values()))
        files = []
        for shard in shard_names:
            if os.path.basename(shard) != shard or shard in (".", ".."):
                # as diffusers: shards live next to their index (no path separators, no parent references)
                raise EnvironmentError(
                    f"The shard index {index_file} names the shard {shard!r}, which contains a path separator or a "
                    "parent-directory reference: shards must be file names next to the index."
                )
            if os.path.isdir(path):
                shard_path = os.path.join(os.path.dirname(index_file), shard)
                if not os.path.isfile(shard_path):
                    raise FileNotFoundError(f"The shard {shard} listed in {index_file} is missing.")
            else:
                shard_path = resolve_file(path, shard, subfolder=subfolder, **hub_kwargs)
            files.append(shard_path)
        return files
    if not prefer_single_file:  # (else already looked for)
        single = single_file()
    if single is not None:
        return [single]
    where = os.path.join(path, subfolder) if subfolder else path
    hint = f" Nor its shard index {add_variant(index_name, variant)}."
    if os.path.isdir(where):
        files = sorted(os.listdir(where))
        pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
        stem = weights_name.split(".")[0] + "."
        others = [f for f in files if f.startswith(stem) and f.endswith(".safetensors")]
        if pickles:
            hint += (
                f" Found pickle weights {pickles}: pickle formats are not read. Convert them to safetensors with "
                "torch, e.g. `safetensors.torch.save_file(torch.load(path), 'model.safetensors')`, or save with "
                "`save_pretrained(..., safe_serialization=True)`."
            )
        elif others:
            hint += f" Found {others}: pass the `variant=` these files carry (or none, for plain weights)."
    # upstream's sentence first (its tests match it), then what else was looked for and found
    raise EnvironmentError(
        f"Error no file named {add_variant(weights_name, variant)} found in directory {where}.{hint}"
    )


def _open_checkpoint(files: Sequence[str]) -> Tuple[Dict[str, "safe_open"], Dict[str, str]]:
    handles, key_to_file = {}, {}
    for file in files:
        if str(file).endswith(PICKLE_SUFFIXES):
            raise CheckpointError(
                f"{file} is a pickle checkpoint: pickle formats are not read. Convert it to safetensors first."
            )
        try:
            handles[file] = safe_open(file)
        except SafetensorError as e:
            raise CheckpointError(str(e)) from None
        for key in handles[file].keys():
            if key in key_to_file:  # upstream: the later shard silently wins
                raise CheckpointError(
                    f"{key!r} is stored in two shards, {key_to_file[key]} and {file}: the checkpoint is inconsistent. "
                    "Save it again (or remove the stale shard)."
                )
            key_to_file[key] = file
    return handles, key_to_file


def _format_keys(keys: Sequence[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict_compatible(
    params: Dict[str, ms.Parameter],
    shapes: Dict[str, Tuple[int, ...]],
    source: str,
    model_name: str,
    ignore_unexpected: Sequence[str] = (),
    ignore_missing: Sequence[str] = (),
) -> List[str]:
    """Raise one ``CheckpointError`` listing missing keys, unexpected keys and shape mismatches; returns the
    unexpected keys that were ignored."""
    import re

    missing = [k for k in params if k not in shapes and not any(re.search(p, k) for p in ignore_missing)]
    unexpected = [k for k in shapes if k not in params]
    ignored = [k for k in unexpected if any(re.search(p, k) for p in ignore_unexpected)]
    unexpected = [k for k in unexpected if k not in ignored]
    mismatched = [
        f"{k}: checkpoint {list(shapes[k])} vs model {list(params[k].shape)}"
        for k in shapes
        if k in params and tuple(shapes[k]) != tuple(params[k].shape)
    ]
    problems = []
    if missing and len(missing) == len(params) and not (set(shapes) & set(params)):
        raise CheckpointError(
            f"{source} does not hold a {model_name} checkpoint: none of its {len(shapes)} tensors "
            f"({_format_keys(list(shapes), 5)}) match the model's {len(params)} parameters "
            f"({_format_keys(list(params), 5)}). Is it the checkpoint of another model?"
        )
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_format_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_format_keys(unexpected)}")
    if mismatched:
        problems.append(
            f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:12])}"
            + (f"; ... ({len(mismatched) - 12} more)" if len(mismatched) > 12 else "")
            + ". Check that the config matches the checkpoint"
        )
    if problems:
        raise CheckpointError(
            f"Cannot load {source} into {model_name}: "
            + "; ".join(problems)
            + ". Nothing was loaded (no parameter was written)."
        )
    return ignored


def _target_dtype(param: ms.Parameter, dtype: Optional[ms.Type], keep_fp32: bool):
    if param.dtype not in _FLOAT_DTYPES:
        return param.dtype
    if keep_fp32:
        return ms.float32
    return dtype if dtype is not None else param.dtype


def keeps_fp32(name: str, keep_in_fp32_modules) -> bool:
    """Whether parameter ``name`` stays float32: it lies under one of the module names (diffusers' rule: whole
    dotted parts), or ``keep_in_fp32_modules`` is a predicate of the name (mindone.transformers: transformers' rule)."""
    if callable(keep_in_fp32_modules):
        return keep_in_fp32_modules(name)
    if isinstance(keep_in_fp32_modules, str):  # as upstream: one module name given as a string
        keep_in_fp32_modules = [keep_in_fp32_modules]
    return any(m in name.split(".") for m in keep_in_fp32_modules)


def load_checkpoint_into_model(
    model: nn.Cell,
    files: Sequence[str],
    dtype: Optional[ms.Type] = None,
    keep_in_fp32_modules: Union[Sequence[str], Callable[[str], bool]] = (),
    ignore_unexpected: Sequence[str] = (),
    ignore_missing: Sequence[str] = (),
    key_mapping=None,
) -> None:
    """Validate every file and key, then copy tensors into ``model`` one at a time.

    ``dtype`` casts floating parameters (those under ``keep_in_fp32_modules`` stay float32); without it each parameter
    keeps the dtype it was created with, so a bf16 checkpoint loads into a float32 model as an exact widening.
    ``key_mapping`` (checkpoint key -> model key) serves checkpoints that store extra prefixes.
    """
    handles, key_to_file = _open_checkpoint(files)
    if key_mapping is not None:
        key_to_file = {key_mapping(k): f for k, f in key_to_file.items() if key_mapping(k) is not None}
        file_key = {key_mapping(k): k for h in handles.values() for k in h.keys() if key_mapping(k) is not None}
    else:
        file_key = {k: k for k in key_to_file}
    params = named_parameters(model)
    shapes = {k: handles[f].get_shape(file_key[k]) for k, f in key_to_file.items()}
    source = files[0] if len(files) == 1 else f"{len(files)} shards of {os.path.dirname(files[0]) or '.'}"
    ignored = check_state_dict_compatible(
        params, shapes, source, type(model).__name__, ignore_unexpected, ignore_missing
    )
    if ignored:
        logger.info(f"Ignored {len(ignored)} checkpoint keys the model does not use: {_format_keys(ignored)}")
    replaced = False
    for name, param in params.items():
        if name not in key_to_file:
            continue
        target = _target_dtype(param, dtype, keeps_fp32(name, keep_in_fp32_modules))
        tensor = ms.Tensor(handles[key_to_file[name]].get_numpy(file_key[name]))
        if tensor.dtype != target:
            tensor = tensor.astype(target)
        replaced |= set_parameter_data(param, tensor)
    # parameters the checkpoint leaves out on purpose (ignore_missing) get their initial values
    for name, param in params.items():
        if name not in key_to_file and param.has_init:
            param.init_data()
        elif name not in key_to_file and dtype is not None:
            target = _target_dtype(param, dtype, keeps_fp32(name, keep_in_fp32_modules))
            if param.dtype != target:
                param.set_dtype(target)
                replaced = True
    if replaced:
        invalidate_compiled_graphs(model)


def load_state_dict_into_model(
    model: nn.Cell, state: Dict[str, Union[ms.Tensor, np.ndarray]], strict: bool = True, source: str = "state dict"
) -> Tuple[List[str], List[str]]:
    """Copy a dict of tensors into ``model`` (shapes checked first, dtypes kept). With ``strict`` every parameter
    must be present and no extra key allowed. Returns (missing, unexpected)."""
    check_tensor_dict(state, source)
    params = named_parameters(model)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    if strict:
        check_state_dict_compatible(params, shapes, source, type(model).__name__)
    else:
        check_state_dict_compatible(
            {k: v for k, v in params.items() if k in state},
            {k: v for k, v in shapes.items() if k in params},
            source,
            type(model).__name__,
        )
    # every value converted before the first write: a value that cannot be read leaves the model unchanged
    tensors = {name: to_tensor(value, params[name].dtype) for name, value in state.items() if name in params}
    replaced = False
    for name, tensor in tensors.items():
        replaced |= set_parameter_data(params[name], tensor)
    if replaced:
        invalidate_compiled_graphs(model)
    return missing, unexpected
