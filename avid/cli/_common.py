"""Helpers shared by the command modules."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config, load_config
from ..errors import StoreError


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="DB", help="gallery database file (default: $AVID_DB, else gallery.db in "
                                                   "the user's avid data directory)")


def open_gallery(args: argparse.Namespace, must_exist: bool = True):
    """The gallery named by --db / $AVID_DB / the default; StoreError when it must exist and does not."""
    from ..gallery import Gallery, default_path

    path = Path(args.db).expanduser() if getattr(args, "db", None) else default_path()
    if must_exist and not path.exists():
        raise StoreError("no gallery database here yet: enrol someone first (avid enroll NAME ...)", path)
    return Gallery(path)
