"""Lazy public names of a package, as diffusers' and transformers' `_LazyModule`: a name is imported from its module
on first access, so importing a package loads none of its models."""

import importlib
import importlib.util
import sys
from typing import Callable, Dict, List, Tuple


def lazy_exports(package: str, import_structure: Dict[str, List[str]]) -> Tuple[Callable, Callable, List[str]]:
    """`(__getattr__, __dir__, __all__)` for the package `package` (its `__name__`): `import_structure` maps each
    module (relative to the package) to the public names it defines. Submodules are importable as attributes too."""
    name_to_module = {name: module for module, names in import_structure.items() for name in names}

    def __getattr__(name):
        namespace = vars(sys.modules[package])
        if name in name_to_module:
            value = getattr(importlib.import_module(f".{name_to_module[name]}", package), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(name_to_module))

    return __getattr__, __dir__, sorted(name_to_module)
