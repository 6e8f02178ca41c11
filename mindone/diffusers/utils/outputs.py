"""``BaseOutput``: the dataclass-and-dict output of models and pipelines, as ``diffusers.utils.outputs``."""

from collections import OrderedDict
from dataclasses import fields, is_dataclass
from typing import Any, Tuple


class BaseOutput(OrderedDict):
    """Base class for model outputs as dataclass. Has a ``__getitem__`` that allows indexing by integer or slice (like
    a tuple) or strings (like a dictionary) that will ignore the ``None`` attributes.

    Subclasses are declared with ``@dataclass``.
    """

    def __post_init__(self) -> None:
        class_fields = fields(self)
        if not class_fields:
            raise ValueError(f"{self.__class__.__name__} has no fields.")
        first = getattr(self, class_fields[0].name)
        if isinstance(first, dict) and all(getattr(self, f.name) is None for f in class_fields[1:]):
            # built from a dict (`ImagePipelineOutput({"images": ...})`, as accelerate does): its items are the fields
            for key, value in first.items():
                self[key] = value
            return
        for field in class_fields:
            value = getattr(self, field.name)
            if value is not None:
                self[field.name] = value

    def __delitem__(self, *args, **kwargs):
        raise Exception(f"You cannot use ``__delitem__`` on a {self.__class__.__name__} instance.")

    def setdefault(self, *args, **kwargs):
        raise Exception(f"You cannot use ``setdefault`` on a {self.__class__.__name__} instance.")

    def pop(self, *args, **kwargs):
        raise Exception(f"You cannot use ``pop`` on a {self.__class__.__name__} instance.")

    def update(self, *args, **kwargs):
        raise Exception(f"You cannot use ``update`` on a {self.__class__.__name__} instance.")

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, str):
            return dict(self.items())[k]
        return self.to_tuple()[k]

    def __setattr__(self, name: Any, value: Any) -> None:
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __reduce__(self):
        if not is_dataclass(self):
            return super().__reduce__()
        callable, _args, *remaining = super().__reduce__()
        args = tuple(getattr(self, field.name) for field in fields(self))
        return callable, args, *remaining

    def to_tuple(self) -> Tuple[Any, ...]:
        """Convert self to a tuple containing all the attributes/keys that are not ``None``."""
        return tuple(self[k] for k in self.keys())
