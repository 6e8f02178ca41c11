"""Library logging, as ``diffusers.utils.logging``: one ``mindone`` root logger, the level names, verbosity, handler,
propagation and format helpers, and `tqdm` with its switch (no torch-distributed rank filter)."""

import logging
import os
import sys
import threading
from logging import CRITICAL, DEBUG, ERROR, FATAL, INFO, NOTSET, WARN, WARNING  # noqa: F401

from tqdm import auto as tqdm_lib

_lock = threading.Lock()
_handler = None
_ROOT = "mindone"
log_levels = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_LEVELS = log_levels
_tqdm_active = True


def _configure_root():
    global _handler
    with _lock:
        if _handler is not None:
            return
        _handler = logging.StreamHandler(sys.stderr)
        root = logging.getLogger(_ROOT)
        root.addHandler(_handler)
        env = os.getenv("MINDONE_VERBOSITY", os.getenv("DIFFUSERS_VERBOSITY", "warning")).lower()
        root.setLevel(_LEVELS.get(env, logging.WARNING))
        root.propagate = False


def get_logger(name: str = None) -> logging.Logger:
    _configure_root()
    return logging.getLogger(name or _ROOT)


def set_verbosity(level: int) -> None:
    _configure_root()
    logging.getLogger(_ROOT).setLevel(level)


def get_verbosity() -> int:
    _configure_root()
    return logging.getLogger(_ROOT).getEffectiveLevel()


def set_verbosity_info():
    set_verbosity(INFO)


def set_verbosity_warning():
    set_verbosity(WARNING)


def set_verbosity_error():
    set_verbosity(ERROR)


def set_verbosity_debug():
    set_verbosity(DEBUG)


def get_log_levels_dict() -> dict:
    return log_levels


def _root_logger() -> logging.Logger:
    _configure_root()
    return logging.getLogger(_ROOT)


def disable_default_handler() -> None:
    """Disable the default handler of the library's root logger."""
    _root_logger().removeHandler(_handler)


def enable_default_handler() -> None:
    """Enable the default handler of the library's root logger."""
    _root_logger().addHandler(_handler)


def add_handler(handler: logging.Handler) -> None:
    """Add a handler to the library's root logger."""
    if handler is None:
        raise ValueError("`handler` must be a logging.Handler, got None.")
    _root_logger().addHandler(handler)


def remove_handler(handler: logging.Handler) -> None:
    """Remove a handler from the library's root logger."""
    if handler is None or handler not in _root_logger().handlers:
        raise ValueError(f"{handler!r} is not a handler of the library's root logger.")
    _root_logger().removeHandler(handler)


def disable_propagation() -> None:
    """Disable propagation of the library log outputs (the default)."""
    _root_logger().propagate = False


def enable_propagation() -> None:
    """Enable propagation of the library log outputs (disable the default handler to avoid double logging)."""
    _root_logger().propagate = True


def enable_explicit_format() -> None:
    """`[LEVELNAME|FILENAME:LINE] TIME >> MESSAGE` for every handler of the library's root logger."""
    for handler in _root_logger().handlers:
        handler.setFormatter(logging.Formatter("[%(levelname)s|%(filename)s:%(lineno)s] %(asctime)s >> %(message)s"))


def reset_format() -> None:
    """Reset the format of every handler of the library's root logger."""
    for handler in _root_logger().handlers:
        handler.setFormatter(None)


def warning_advice(self, *args, **kwargs) -> None:
    """`logger.warning()`, silenced by the environment variable `DIFFUSERS_NO_ADVISORY_WARNINGS=1`."""
    if os.getenv("DIFFUSERS_NO_ADVISORY_WARNINGS", False):
        return
    self.warning(*args, **kwargs)


logging.Logger.warning_advice = warning_advice


class EmptyTqdm:
    """A tqdm stand-in that does nothing (progress bars disabled)."""

    def __init__(self, *args, **kwargs):
        self._iterator = args[0] if args else None

    def __iter__(self):
        return iter(self._iterator)

    def __getattr__(self, _):
        return lambda *args, **kwargs: None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return


class _tqdm_cls:
    def __call__(self, *args, **kwargs):
        return tqdm_lib.tqdm(*args, **kwargs) if _tqdm_active else EmptyTqdm(*args, **kwargs)

    def set_lock(self, *args, **kwargs):
        if _tqdm_active:
            return tqdm_lib.tqdm.set_lock(*args, **kwargs)

    def get_lock(self):
        if _tqdm_active:
            return tqdm_lib.tqdm.get_lock()


tqdm = _tqdm_cls()


def is_progress_bar_enabled() -> bool:
    """Whether `logging.tqdm` bars are shown (as upstream, the denoising bar of a pipeline follows its
    `set_progress_bar_config` instead)."""
    return bool(_tqdm_active)


def enable_progress_bar() -> None:
    """Show `logging.tqdm` bars."""
    global _tqdm_active
    _tqdm_active = True


def disable_progress_bar() -> None:
    """Hide `logging.tqdm` bars."""
    global _tqdm_active
    _tqdm_active = False
