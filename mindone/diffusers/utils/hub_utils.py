"""Resolve files from a local folder or a Hugging Face repo id (through the huggingface_hub cache)."""

import os
import re
from pathlib import Path
from typing import Optional

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


def extract_commit_hash(resolved_file: Optional[str]) -> Optional[str]:
    """The commit of a file resolved into a huggingface_hub cache snapshot (`.../snapshots/<sha>/...`), else None."""
    if resolved_file is None:
        return None
    found = re.search(r"snapshots/([^/]+)/", Path(resolved_file).as_posix())
    return found.group(1) if found and _COMMIT_HASH.match(found.group(1)) else None


def _fspath(pretrained_model_name_or_path) -> str:
    if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
        raise TypeError(
            "`pretrained_model_name_or_path` must be a local path or a Hugging Face repo id (a str or os.PathLike), "
            f"got {type(pretrained_model_name_or_path).__name__}."
        )
    return os.fspath(pretrained_model_name_or_path)


def local_subfolder(path, subfolder: Optional[str], filename: str) -> Optional[str]:
    """`subfolder`, or `None` when a local folder's subfolder does not hold `filename` (absent or without it) but the
    folder itself does: upstream then reads the folder's own files (diffusers' `load_config` and `_get_model_file`)."""
    path = _fspath(path)
    if (
        subfolder
        and os.path.isdir(path)
        and not os.path.isfile(os.path.join(path, subfolder, filename))
        and os.path.isfile(os.path.join(path, filename))
    ):
        return None
    return subfolder


def not_a_path_or_repo_id(path: str) -> EnvironmentError:
    return EnvironmentError(
        f"{path} is neither an existing local file or folder nor a valid Hugging Face repo id "
        "('repo_name' or 'namespace/repo_name'): check the path."
    )


def resolve_file(
    pretrained_model_name_or_path,
    filename: str,
    subfolder: Optional[str] = None,
    cache_dir=None,
    local_files_only: bool = False,
    revision: Optional[str] = None,
    token=None,
    force_download: bool = False,
    proxies=None,
    required: bool = True,
) -> Optional[str]:
    """Path of ``filename`` (under ``subfolder``) in a local folder or a Hub repo. Returns ``None`` when the file is
    absent and ``required`` is false; otherwise raises ``EnvironmentError`` naming what is missing."""
    path = _fspath(pretrained_model_name_or_path)
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        candidate = os.path.join(path, subfolder or "", filename)
        if os.path.isfile(candidate):
            return candidate
        if not required:
            return None
        raise EnvironmentError(
            f"Error no file named {filename} found in directory {os.path.join(path, subfolder) if subfolder else path}."
        )
    try:
        return hf_hub_download(
            path,
            filename,
            subfolder=subfolder or None,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            revision=revision,
            token=token,
            force_download=force_download,
            proxies=proxies,
        )
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError in recent huggingface_hub
        if not required:
            return None
        raise EnvironmentError(
            f"{path} is not a local folder and {filename} (subfolder={subfolder!r}) is not in the Hugging Face cache, "
            "and it could not be downloaded (offline or `local_files_only=True`). Pass a local path or download the "
            "repository first."
        ) from None
    except EntryNotFoundError:
        if not required:
            return None
        raise EnvironmentError(f"{path} does not appear to have a file named {filename} (subfolder={subfolder!r}).")
    except HFValidationError:  # e.g. an absolute path that does not exist
        raise not_a_path_or_repo_id(path) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise EnvironmentError(
            f"{path} is not a local folder and not a valid repository id on the Hugging Face Hub ({e})."
        ) from None
    except Exception as e:  # validation errors of odd strings, network failures
        if not required and "not found" in str(e).lower():
            return None
        raise EnvironmentError(f"Could not resolve {filename} in {path} (subfolder={subfolder!r}): {e}") from None
