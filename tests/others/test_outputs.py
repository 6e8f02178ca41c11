"""`BaseOutput` as diffusers' (upstream's tests/others/test_outputs.py): built from fields or from a dict, pickled."""

import pickle
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import pytest
from diffusers.utils.outputs import BaseOutput as TorchBaseOutput

import mindspore as ms

from mindone.diffusers.models.modeling_outputs import Transformer2DModelOutput
from mindone.diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from mindone.diffusers.utils.outputs import BaseOutput
from mindone.transformers.modeling_outputs import BaseModelOutputWithPast


@dataclass
class CustomOutput(BaseOutput):
    images: List[np.ndarray]
    extra: Optional[np.ndarray] = None


@dataclass
class TorchCustomOutput(TorchBaseOutput):
    images: List[np.ndarray]
    extra: Optional[np.ndarray] = None


class NotADataclass(BaseOutput):  # upstream's `__reduce__` falls back to OrderedDict's
    pass


def test_built_from_a_dict_as_upstream():
    images = np.zeros((1, 2, 2, 3))
    for cls, ref_cls in ((CustomOutput, TorchCustomOutput),):
        ours, ref = cls({"images": images}), ref_cls({"images": images})
        assert list(ours.keys()) == list(ref.keys()) == ["images"]
        assert ours.images is images and ours["images"] is images and ours[0] is images
        assert ref.images is images
        # with a second field set, a dict first field is a value like any other
        both, ref_both = cls({"images": images}, extra=images), ref_cls({"images": images}, extra=images)
        assert isinstance(both.images, dict) and isinstance(ref_both.images, dict)
        assert list(both.keys()) == list(ref_both.keys()) == ["images", "extra"]
    assert ImagePipelineOutput({"images": images}).images is images
    sample = ms.Tensor(np.ones((1, 4), np.float32))
    assert Transformer2DModelOutput({"sample": sample}).sample is sample
    assert BaseModelOutputWithPast({"last_hidden_state": sample}).last_hidden_state is sample


def test_fields_and_pickling_as_upstream():
    images = [np.ones((2, 2, 3))]
    ours, ref = CustomOutput(images=images), TorchCustomOutput(images=images)
    assert ours.to_tuple()[0] is images and list(ours.keys()) == list(ref.keys()) == ["images"]
    loaded = pickle.loads(pickle.dumps(ours))
    assert type(loaded) is CustomOutput and np.array_equal(loaded.images[0], images[0]) and loaded.extra is None

    @dataclass
    class NoFields(BaseOutput):
        pass

    @dataclass
    class TorchNoFields(TorchBaseOutput):
        pass

    for cls in (NoFields, TorchNoFields):
        with pytest.raises(ValueError, match="has no fields"):
            cls()

    restored = pickle.loads(pickle.dumps(NotADataclass(a=1)))
    assert isinstance(restored, NotADataclass) and dict(restored) == {"a": 1}
