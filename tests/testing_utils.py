"""Shared helpers of the parity tests: the error measure, torch <-> MindSpore weight copies, captured warnings."""

import logging
from contextlib import contextmanager

import numpy as np

import mindspore as ms


def to_numpy(x):
    if isinstance(x, ms.Tensor):
        return x.astype(ms.float32).asnumpy() if x.dtype == ms.bfloat16 else x.asnumpy()
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def rel_l2(actual, expected) -> float:
    """Relative L2 error ||a - e|| / ||e|| computed in float64."""
    a = to_numpy(actual).astype(np.float64)
    e = to_numpy(expected).astype(np.float64)
    assert a.shape == e.shape, f"shape mismatch: {a.shape} vs {e.shape}"
    denom = np.linalg.norm(e)
    return float(np.linalg.norm(a - e) / (denom if denom > 0 else 1.0))


def assert_close(actual, expected, tol=1e-5, what="output"):
    err = rel_l2(actual, expected)
    assert err <= tol, f"{what}: relative L2 error {err:.3e} > {tol:.0e}"
    return err


def torch_state_dict_to_ms(torch_module) -> dict:
    """torch module -> {name: float32 numpy array}, the keys diffusers writes to checkpoints."""
    return {k: v.detach().float().cpu().numpy() for k, v in torch_module.state_dict().items()}


def load_torch_weights(ms_model, torch_module, strict=True):
    """Copy a torch module's weights into its MindSpore twin through the checkpoint keys (no renames)."""
    from mindone.diffusers.models.model_loading_utils import load_state_dict_into_model

    state = torch_state_dict_to_ms(torch_module)
    params = dict(ms_model.parameters_and_names())
    state = {k: v for k, v in state.items() if k in params or strict}
    load_state_dict_into_model(ms_model, state, strict=strict, source=type(torch_module).__name__)
    return ms_model


@contextmanager
def captured_warnings():
    """Messages of the warnings the `mindone` loggers emit in the block (the library's root logger does not propagate
    to the root logger that pytest's caplog watches)."""
    records = []

    class _Handler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = _Handler(level=logging.WARNING)
    logger = logging.getLogger("mindone")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
