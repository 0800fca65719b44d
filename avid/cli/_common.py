"""Helpers shared by the command modules."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..config import Config, load_config
from ..errors import StoreError


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def at_least(minimum: int):
    """An argparse type: a whole number no smaller than ``minimum`` (anything else is a usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a finite duration of zero or more seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, 0 or more, got {text}")
    return value


def add_db_argument(parser: argparse.ArgumentParser, help: str = "gallery database file (default: $AVID_DB, else "
                    "gallery.db in the user's avid data directory)") -> None:
    """--db after the command. No default (SUPPRESS): `avid --db FILE COMMAND` sets it before the command."""
    parser.add_argument("--db", metavar="DB", default=argparse.SUPPRESS, help=help)


def gallery_path(db: str | None) -> Path:
    """The gallery file named by --db, else $AVID_DB or the default one."""
    from ..identity.store import default_path

    return Path(db).expanduser() if db else default_path()


def open_gallery(args: argparse.Namespace, must_exist: bool = True):
    """The gallery named by --db / $AVID_DB / the default; StoreError when it must exist and does not."""
    from ..identity.store import Gallery

    path = gallery_path(getattr(args, "db", None))
    if must_exist and not path.exists():
        raise StoreError("no gallery database here yet: enrol someone first (avid enroll NAME ...)", path)
    return Gallery(path)
