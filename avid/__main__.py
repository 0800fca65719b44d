"""The `avid` command and `python -m avid`: the command line, then an exit that skips the interpreter's teardown.

Freeing torch and the ~2000 modules a run imports, one by one, took 0.4-0.6 s after every command, with nothing
of avid's left to do: its stores, files and temporary files are closed by their ``with`` blocks, and its child
processes and every exit handler (stage times, logging, multiprocessing) have finished before the handler
registered here runs, as it was registered first and exit handlers run in reverse.
"""
import atexit
import contextlib
import os
import signal
import sys

_exit_code: int | None = None


def _exit_without_teardown() -> None:
    if _exit_code is not None:            # the command returned; after an uncaught error Python exits as usual
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):      # a closed pipe: nothing more can reach it anyway
                stream.flush()
        os._exit(_exit_code)


atexit.register(_exit_without_teardown)


def run() -> None:
    global _exit_code
    try:
        from .cli import main
    except KeyboardInterrupt:            # Ctrl-C while starting up: no traceback either (avid.cli.EXIT_INTERRUPTED)
        sys.exit(130)
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the run is over: a late Ctrl-C must not break the exit
    _exit_code = code
    sys.exit(code)


if __name__ == "__main__":
    run()
