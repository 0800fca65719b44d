"""What every part of the store shares: where a store and its caches are, people's names as stored, vectors as
bytes, and SQLite's failures as the user reads them."""
from __future__ import annotations

import os
import sqlite3
import time
import unicodedata
from pathlib import Path

import numpy as np

from ...errors import AvidError, DiskFullError, StoreError

MODALITIES = ("face", "voice")
SPACES = ("face", "voice", "z", "z_face", "z_voice")
DB_ENV = "AVID_DB"
DB_FILENAME = "gallery.db"

MAX_NAME_LENGTH = 200
CACHES = ("index", "thumbnails")   # folders beside a store that the library fills and can always rebuild


def companion(db: Path, kind: str) -> Path:
    """A cache folder beside the store: ``<store file name>-<kind>/`` (the whole name, so that ``lib.db`` and
    ``lib.sqlite`` in one folder never share one)."""
    return Path(db).with_name(f"{Path(db).name}-{kind}")


def clean_name(name: str) -> str:
    """A person's name as stored: Unicode NFC, spaces collapsed; StoreError for an empty or overlong name or one
    holding control characters (a line break in a name would forge rows of listings and subtitle cues)."""
    name = unicodedata.normalize("NFC", str(name)).strip()
    if not name:
        raise StoreError("a person's name cannot be empty")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise StoreError(f"a person's name cannot hold control characters or line breaks: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"a person's name is at most {MAX_NAME_LENGTH} characters (got {len(name)})")
    return " ".join(name.split())


def name_key(name: str) -> str:
    """What makes two names the same person's: NFC and case folded."""
    return unicodedata.normalize("NFC", " ".join(str(name).split())).casefold()


def default_path() -> Path:
    """The gallery file: $AVID_DB if set, else ``gallery.db`` in the user's data directory for avid."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("avid")) / DB_FILENAME


def now() -> str:
    """The time as stored: UTC, ISO 8601, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.size != dim:
        raise StoreError(f"stored vector has {vector.size} values, expected {dim} (database damaged?)")
    return vector.astype(np.float32)


DAMAGED = "the database is damaged ({}); avid will neither read nor write it: restore it from a backup"


def store_error(exc: sqlite3.Error, path: Path) -> AvidError:
    """What a SQLite failure means to the user, as one line: a full disk, a damaged file, or not a store at all.
    SQLITE_FULL is also looked for behind the error it caused (a ROLLBACK after SQLite rolled back itself)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, sqlite3.Error) and (getattr(cause, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                                 or "database or disk is full" in str(cause)):
            return DiskFullError("disk full: the change was not stored, nothing before it is lost (free space and "
                                 "run again)", path)
        cause = cause.__context__
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_CORRUPT or "malformed" in str(exc):
        return StoreError(DAMAGED.format(exc), path)
    if code == sqlite3.SQLITE_NOTADB or "not a database" in str(exc):
        return StoreError(f"not an avid gallery database ({exc})", path)
    return StoreError(f"database error ({exc})", path)


def check_health(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged store before anything reads or writes it (SQLite's quick_check of every page)."""
    try:
        verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise StoreError(DAMAGED.format(" ".join(verdict.replace("*** in database main ***", "").split())), path)


def existing_store(path: Path, what: str = "no such library (process files into it first: avid process DIR "
                                           "--db ...)") -> Path:
    """``path`` when a store is there; StoreError saying ``what`` otherwise: reading never creates a store."""
    if not Path(path).exists():
        raise StoreError(what, path)
    return Path(path)


def remove_store(path: Path) -> None:
    """Remove a store file with SQLite's companions (its write-ahead log and shared-memory index)."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        path.with_name(name).unlink(missing_ok=True)
