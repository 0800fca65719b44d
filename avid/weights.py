"""Model weight files: found inside installed packages (or at a path the user gives), checked, loaded safely.

Every weight file avid reads from another package is checked against the SHA-256 in ``avid/configs/default.yaml``
before it is opened, so a different package version or a damaged download is refused with a ModelError that
says which file and what to do, never half-loaded. Checkpoints are read with ``torch.load(weights_only=True)``:
no pickled code runs. A user's own file (``weights: /path``) replaces a packaged one; its ``sha256`` may be set
to the file's digest, or to null to skip the check for that file.
"""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from .errors import ModelError

_BLOCK = 1 << 20


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """``relative`` inside the installed ``package`` (located without importing it), or ModelError."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the {package} package is not installed: {install_hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ModelError(f"model file missing from the {package} package ({install_hint})", path)
    return path


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file (cached per process while the file is unchanged)."""
    stat = Path(path).stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


def resolve(user_path: str | None, expected_sha256: str | None, package: str, relative: str,
            install_hint: str, what: str) -> Path:
    """The weight file to load: the user's ``user_path`` if set, else the packaged one; checked by SHA-256.

    ``expected_sha256`` null skips the check (for a user's own file); a mismatch is a ModelError.
    """
    if user_path:
        path = Path(user_path).expanduser()
        if not path.is_file():
            raise ModelError(f"{what} weights not found (set the path in the config, or null for the packaged "
                             f"model)", path)
    else:
        path = package_file(package, relative, install_hint)
    if expected_sha256:
        try:
            found = file_sha256(path)
        except OSError as exc:
            raise ModelError(f"cannot read {what} weights ({exc.__class__.__name__})", path) from None
        if found != expected_sha256.lower():
            fix = (f"reinstall {install_hint}" if not user_path
                   else "set its sha256 in the config to this file's digest, or null to trust it")
            raise ModelError(f"{what} weights fail their checksum (sha256 {found[:12]}..., expected "
                             f"{expected_sha256[:12]}...): a different version or a damaged file; {fix}", path)
    return path


def load_checkpoint(path: Path, what: str, safe_globals: list | None = None) -> dict:
    """A checkpoint dict read with ``weights_only=True`` (``safe_globals``: extra plain records it may hold)."""
    import torch

    try:
        with torch.serialization.safe_globals(safe_globals or []):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # any unpickling failure: a foreign, truncated or unsafe file
        raise ModelError(f"cannot load {what} weights ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})",
                         path) from None
    if not isinstance(payload, dict):
        raise ModelError(f"{what} weights are not a checkpoint dict", path)
    return payload
