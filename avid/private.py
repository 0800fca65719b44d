"""Files that hold faces, voices, names or embeddings are written one way: private, atomic, never through a link.

``private_output(path)`` gives a fresh temporary file beside ``path``: an unpredictable name created by us (O_EXCL,
mode 0600), so a symlink planted in a shared folder is never followed. When the block finishes it is renamed
over ``path`` (a link already at ``path`` is replaced, not followed); when it fails or is interrupted (Ctrl-C) it
is removed, so no half-written file is left under the final name; a full disk is a DiskFullError naming ``path``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DISK_FULL, DiskFullError


@contextlib.contextmanager
def private_output(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; see the module docstring."""
    path = Path(path)
    with _disk_full_said(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _disk_full_said(path: Path) -> Iterator[None]:
    """A full disk while writing ``path`` is one line naming it (DiskFullError), not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise DiskFullError("disk full: not written (nothing half-written is left; free space and run again)",
                            path) from None


@contextlib.contextmanager
def private_temp_file(prefix: str = "avid-", suffix: str = "") -> Iterator[Path]:
    """A fresh temporary file only its owner can read (mkstemp: O_EXCL, 0600), removed when the block ends, however
    it ends (a Ray worker's copy of a shipped input)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_private_text(path: str | Path, text: str) -> Path:
    with private_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
