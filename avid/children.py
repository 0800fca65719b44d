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
from typing import Iterator

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
_holds = 0                      # interrupts_held blocks open (in the main thread, which runs the handler)


def on_interrupt(signum, frame) -> None:
    """The commands' handler for SIGINT and SIGTERM: remember it, then raise KeyboardInterrupt, unless an
    ``interrupts_held`` block is open (it raises when it ends). Python drops an exception raised while a finaliser
    runs (``__del__``, a weakref callback: "Exception ignored in ..."), so a Ctrl-C landing there would be lost and
    the batch would run on; the batch loops call ``raise_if_interrupted`` to honour it anyway."""
    _interrupted.set()
    if not _holds:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM while a block starts a worker process, and raise KeyboardInterrupt when it ends
    if one came meanwhile. The worker is born with both blocked (a terminal's Ctrl-C reaches the whole process
    group, and a worker still importing would die with a fatal error), and the parent is not stopped halfway
    through handing it its start-up data (the worker then died with a traceback: EOFError in multiprocessing's
    spawn). Blocking the signals is not enough for the second: another thread (tqdm's monitor) may take one, and
    Python then runs the handler in the main thread all the same, so ``on_interrupt`` also waits for the block
    (a block in another thread, `avid serve`'s, only blocks: the main thread's Ctrl-C must stop the server)."""
    global _holds
    in_main = threading.current_thread() is threading.main_thread()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    _holds += in_main
    try:
        yield
    finally:
        _holds -= in_main
        signal.pthread_sigmask(signal.SIG_SETMASK, held)      # one blocked meanwhile is handled here
    if in_main:
        raise_if_interrupted()


def clear_interrupt() -> None:
    _interrupted.clear()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if ``on_interrupt`` ran since ``clear_interrupt``, whether or not its exception got out."""
    if _interrupted.is_set():
        raise KeyboardInterrupt
