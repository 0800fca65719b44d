"""Turn the paths, folders and globs a user types into a list of media files."""
from __future__ import annotations

import glob
from pathlib import Path

from ..errors import MediaError
from .media import SUPPORTED_EXTENSIONS


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given (checked later, so a bad one is reported by name), folders searched recursively for supported
    media, globs expanded. A folder or glob that matches nothing is an error naming it."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                           and not p.name.startswith("."))
            if not files:
                raise MediaError("folder holds no supported media files", path)
            found.extend(files)
        elif not path.exists() and glob.has_magic(item):
            files = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not files:
                raise MediaError("pattern matches no files", item)
            found.extend(files)
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)
