"""Library logging, as ``diffusers.utils.logging``: one ``mindone.diffusers`` root logger, verbosity helpers."""

import logging
import os
import sys
import threading

_lock = threading.Lock()
_handler = None
_ROOT = "mindone"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR


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
