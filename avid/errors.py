"""Errors that avid reports to users as one line: what went wrong and, where there is one, which file."""
from __future__ import annotations

import errno
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)     # what a full disk (or a spent quota) says


class AvidError(Exception):
    """Base class: a problem the user can act on. The CLI prints ``str(err)`` and exits non-zero, no traceback."""

    exit_code = 1

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(AvidError):
    exit_code = 2


class UsageError(AvidError, ValueError):
    """Options or arguments that are out of range or do not go together, found after parsing (e.g. --db given before
    the command and --out after); from Python, a ValueError too."""

    exit_code = 2


class MediaError(AvidError):
    """A file that cannot be read as the media it claims to be (missing, empty, corrupt, unsupported)."""

    exit_code = 3


class NoContentError(AvidError):
    """Readable media without what was asked of it: no face, no speech."""

    exit_code = 4


class ModelError(AvidError):
    """Missing or incompatible model weights or checkpoints."""

    exit_code = 5


class StoreError(AvidError):
    """Problems with the gallery/library database."""

    exit_code = 6


class DiskFullError(AvidError):
    """No space left to write the store or an output file; nothing half-written is left (free space, run again)."""

    exit_code = 7
