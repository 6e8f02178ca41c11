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
"""Adapted from peft v0.21 `src/peft/utils/other.py`; MindSpore changes: only the name-matching helpers of the LoRA
closure; sub-cells are looked up through `getattr` and replaced with `_set_submodule` (CellList/CellDict aware)."""

import re
from typing import Optional, Sequence, Tuple

from mindspore import nn


def type_name(value) -> str:
    """The qualified type of `value` for error messages: `torch.Tensor` and `mindspore.Tensor` are both `Tensor`."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def match_target_against_key(target_pattern: str, key: str) -> Optional[re.Match]:
    """Backing function for a `target_modules` / `exclude_modules` regex: the whole module name must match."""
    return re.fullmatch(target_pattern, key)


def get_pattern_key(pattern_keys: Sequence[str], key_to_match: str) -> str:
    """The first key of `rank_pattern` / `alpha_pattern` that matches a suffix (whole dotted parts) of
    `key_to_match`, as regex; `key_to_match` itself when none matches."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def get_submodule(model: nn.Cell, key: str) -> nn.Cell:
    cell = model
    for part in key.split(".") if key else []:
        cell = getattr(cell, part)
    return cell


def _get_submodules(model: nn.Cell, key: str) -> Tuple[nn.Cell, nn.Cell, str]:
    """(parent, target, target_name) of the sub-cell `key` (a name from `model.cells_and_names()`)."""
    parent_key, _, target_name = key.rpartition(".")
    parent = get_submodule(model, parent_key)
    return parent, getattr(parent, target_name), target_name


def _set_submodule(parent: nn.Cell, name: str, cell: nn.Cell) -> None:
    """Replace the child `name` of `parent` (the key in `parent._cells`, an index for CellList / SequentialCell).

    CellList / SequentialCell item assignment is bypassed: it re-derives parameter-name prefixes by parsing the
    current names and fails on wrapped cells; the engine renames parameters structurally afterwards anyway."""
    if isinstance(parent, (nn.CellList, nn.SequentialCell)):
        if name not in parent._cells:
            raise KeyError(f"{type(parent).__name__} has no item {name!r}")
        parent._cells[name] = cell
        if isinstance(parent, nn.SequentialCell):
            parent.cell_list = list(parent._cells.values())
    elif isinstance(parent, nn.CellDict):
        parent[name] = cell
    else:
        setattr(parent, name, cell)
