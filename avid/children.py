"""Child processes (pool workers, the face-descriptor process) that end with their parent, however it ends; and
the parent's Ctrl-C and SIGTERM, which stop a batch of them."""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1            # linux/prctl.h
PARENT_POLL_SECONDS = 1.0


def end_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, even by SIGKILL (no handler of its own runs then): on Linux the
    kernel sends SIGKILL (PR_SET_PDEATHSIG); everywhere a daemon thread also watches for the process being
    re-parented, which also covers a parent that died before the kernel was asked."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="avid-parent-watch", daemon=True).start()


_interrupted = threading.Event()


def on_interrupt(signum, frame) -> None:
    """The commands' handler for SIGINT and SIGTERM: remember it, then raise KeyboardInterrupt. Python drops an
    exception raised while a finaliser runs (``__del__``, a weakref callback: "Exception ignored in ..."), so a
    Ctrl-C landing there would be lost and the batch would run on; the batch loops call ``raise_if_interrupted``
    to honour it anyway."""
    _interrupted.set()
    raise KeyboardInterrupt


def clear_interrupt() -> None:
    _interrupted.clear()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if ``on_interrupt`` ran since ``clear_interrupt``, whether or not its exception got out."""
    if _interrupted.is_set():
        raise KeyboardInterrupt
