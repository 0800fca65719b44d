"""The `avid` command line: a thin layer that parses arguments and calls the library API.

Each command group lives in its own module in this package and exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func`` on them. Errors a user can act on (AvidError) print as one line, no traceback, and
exit with the error's code; Ctrl-C or SIGTERM stops the run (what is stored stays stored) and exits with 130.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sqlite3
import sys
import threading
import warnings

from ..children import clear_interrupt, on_interrupt
from ..config import load_config
from ..errors import DISK_FULL, AvidError, DiskFullError
from ..identity.store import store_error
from ._common import gallery_path

# Third-party packages we depend on (webrtcvad, face_recognition_models, resemblyzer) import deprecated APIs; their
# warnings say nothing a user of avid can act on.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", module="resemblyzer")
warnings.filterwarnings("ignore", message="'uem' was approximated", category=UserWarning)

EXIT_PARTIAL = 10    # a multi-file run where some files failed and the rest succeeded
EXIT_ALL_FAILED = 11  # a multi-file run (or process --db) where every file failed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avid", description="Audio-visual person recognition: who is in a video, "
                                     "and who is speaking when.")
    add_global_options(parser, defaults=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    # The global options are accepted after the command too (`avid label x.wav --quiet`). Each command's copy has
    # no default (SUPPRESS), so a value given before the command is kept unless the command repeats the option.
    for command in _commands(parser):
        add_global_options(command, defaults=False)
    return parser


def add_global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--config, --quiet and --verbose (and, on the top parser, --db; each command that uses a store declares its
    own --db with add_db_argument). With ``defaults`` False, an option that is absent leaves the namespace alone."""
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding avid/configs/default.yaml",
                        **(keep or {"default": None}))
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages", **keep)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging", **keep)
    if defaults:
        parser.add_argument("--db", metavar="DB", help="gallery or library database file, for the commands that use "
                            "one (default: $AVID_DB, else gallery.db in the user's avid data directory)")


def _commands(parser: argparse.ArgumentParser):
    """The parsers that run something: every sub-command, and every action of a command group (people list...)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for command in group.choices.values():
            yield from _commands(command)


def main(argv: list[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()   # the one that may take signals
    clear_interrupt()
    # SIGTERM (a service stopping, a job killed) ends a run as Ctrl-C does
    previous = ({sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
                if in_main_thread else {})
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("avid: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
                        format="avid: %(message)s")
    try:
        if args.config:
            load_config(args.config)      # a bad --config is said first, whatever the command reads of it
        return int(args.func(args) or 0)
    except AvidError as err:
        print(f"avid: error: {err}", file=sys.stderr)
        return err.exit_code
    except sqlite3.Error as exc:      # a store problem met outside avid.identity.store's own checks
        err = store_error(exc, gallery_path(getattr(args, "db", None)))
        print(f"avid: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"avid: error: {exc.filename or ''}{': ' if exc.filename else ''}disk full ({exc.strerror})",
              file=sys.stderr)
        return DiskFullError.exit_code


if __name__ == "__main__":
    sys.exit(main())
