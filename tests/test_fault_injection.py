"""`avid process --db --workers 2` killed at random moments, in every way a run can die (issue 13, item 7 and the
fault-injection campaign): SIGINT, SIGTERM and SIGKILL to the parent, to its whole process group, and to one
worker. After each kill no process of the run is left, nothing half-stored is in the store, and a rerun gives the
store of one clean run (compared by content: files, observations, embeddings; not file bytes).

Each run is started in a session of its own, so that every process it made (workers, the resource tracker, Ray's
daemons) is found by its session id in /proc, whatever it is called.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avid import children
from avid.cli import EXIT_INTERRUPTED, EXIT_PARTIAL
from avid.config import load_config
from avid.library.collection import compare_contents, library_contents, process_collection
from tests import media as synthetic

pytest.importorskip("skimage")
pytest.importorskip("espeakng_loader")
if not Path("/proc/self/stat").exists():
    pytest.skip("finding a run's processes needs /proc (Linux)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
KILLS = 54                       # >= 50 kills in every run of the suite
SIGNALS = [("parent", signal.SIGINT), ("parent", signal.SIGTERM), ("parent", signal.SIGKILL),
           ("group", signal.SIGINT), ("group", signal.SIGTERM), ("group", signal.SIGKILL),
           ("worker", signal.SIGKILL), ("worker", signal.SIGTERM), ("worker", signal.SIGINT)]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Four tiny good files (two faces, two voices) and a corrupt one: a run of a few seconds."""
    folder = tmp_path_factory.mktemp("fault") / "in"
    folder.mkdir()
    synthetic.write_image(folder / "a astronaut.jpg", synthetic.astronaut_face()[::2, ::2].copy())
    synthetic.write_image(folder / "b hopper.jpg", synthetic.grace_hopper_face()[::2, ::2].copy())
    synthetic.write_wav(folder / "c male.wav", synthetic.speak("The quick brown fox jumps over the lazy dog.",
                                                              synthetic.MALE_VOICE))
    synthetic.write_wav(folder / "d female.wav", synthetic.speak("Bright lanterns were hung along the streets.",
                                                                synthetic.FEMALE_VOICE))
    synthetic.write_corrupt(folder / "e broken.mp4")
    return folder


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def clean(collection, cfg, tmp_path_factory) -> dict:
    """The store of one clean, uninterrupted run."""
    db = tmp_path_factory.mktemp("clean") / "library.db"
    process_collection([collection], db, cfg, workers=1, quiet=True)
    return library_contents(db)


def start(collection: Path, db: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "avid", "--quiet", "process", str(collection), "--db", str(db),
                             "--workers", "2", *extra], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def session_processes(sid: int) -> dict[int, int]:
    """{pid: parent pid} of the live processes of a session (zombies are dead: only their parent must reap them)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue                        # ended while we looked
        state, ppid, session = fields[0], int(fields[1]), int(fields[3])
        if session == sid and state not in "ZX":
            found[int(entry.name)] = ppid
    return found


def workers_of(proc: subprocess.Popen) -> list[int]:
    return [pid for pid, ppid in session_processes(proc.pid).items()
            if ppid == proc.pid and "spawn_main" in _cmdline(pid) and "resource_tracker" not in _cmdline(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for_workers(proc: subprocess.Popen, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if workers := workers_of(proc):
            return workers
        time.sleep(0.05)
    return []


def assert_nothing_left(sid: int, timeout: float = 10.0) -> None:
    """Every process of the run's session is gone within ``timeout`` (the workers end with their parent)."""
    deadline = time.monotonic() + timeout
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {[(pid, _cmdline(pid)[:80]) for pid in left]}"


def _has_schema(db: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'files'").fetchall())


def assert_only_whole_files(db: Path, clean: dict) -> None:
    """What an interrupted run stored is a subset of the clean store, file by file whole."""
    if not db.exists() or not _has_schema(db):
        return          # killed before the store's schema was written: nothing stored (a rerun creates it)
    partial = library_contents(db)
    done = {row[0] for row in partial["files"] if row[1] == "done"}
    assert {row[0] for row in partial["observations"]} <= done
    wanted = {"files": [r for r in clean["files"] if r[0] in done],
              "observations": [r for r in clean["observations"] if r[0] in done]}
    got = {"files": [r for r in partial["files"] if r[0] in done], "observations": partial["observations"]}
    assert compare_contents(got, wanted) == []


# ------------------------------------------------------------------------------------------- item 7


def test_workers_end_with_their_parent_when_it_is_killed(collection, tmp_path):
    proc = start(collection, tmp_path / "library.db")
    try:
        assert wait_for_workers(proc), "the workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert_nothing_left(proc.pid, timeout=5.0)
    finally:
        _kill_session(proc.pid)


def test_sigterm_stops_the_run_like_ctrl_c(collection, clean, cfg, tmp_path):
    db = tmp_path / "library.db"
    proc = start(collection, db)
    try:
        assert wait_for_workers(proc), "the workers never started"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == EXIT_INTERRUPTED
        stderr = proc.stderr.read()
        assert b"interrupted" in stderr and b"Traceback" not in stderr
        assert_nothing_left(proc.pid)
    finally:
        _kill_session(proc.pid)
    assert_only_whole_files(db, clean)
    process_collection([collection], db, cfg, workers=1, quiet=True)
    assert compare_contents(library_contents(db), clean) == []


def test_ctrl_c_while_the_workers_start_is_the_parents_alone(collection, tmp_path):
    proc = start(collection, tmp_path / "library.db")
    try:
        assert wait_for_workers(proc), "the workers never started"
        os.killpg(proc.pid, signal.SIGINT)          # a terminal's Ctrl-C, while the workers are still importing
        assert proc.wait(timeout=60) == EXIT_INTERRUPTED
        assert b"Traceback" not in proc.stderr.read()
        assert_nothing_left(proc.pid)
    finally:
        _kill_session(proc.pid)


@pytest.mark.slow
def test_ray_engine_stops_cleanly_on_sigterm_and_a_rerun_completes(collection, clean, cfg, tmp_path):
    pytest.importorskip("ray")
    db = tmp_path / "library.db"
    proc = start(collection, db, "--engine", "ray")
    try:
        deadline = time.monotonic() + 120
        while not any(_cmdline(pid).startswith("ray::Worker.analyse") for pid in session_processes(proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, "no Ray task ever ran"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)   # while tasks run
        assert proc.wait(timeout=120) == EXIT_INTERRUPTED
        assert b"Traceback" not in proc.stderr.read()
        assert_nothing_left(proc.pid, timeout=30.0)
    finally:
        _kill_session(proc.pid)
    assert_only_whole_files(db, clean)
    process_collection([collection], db, cfg, workers=2, engine="ray", quiet=True)    # resumed as the local one
    assert compare_contents(library_contents(db), clean) == []


def _kill_session(sid: int) -> None:
    """Whatever a failed test left running goes (never another session's processes)."""
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------- the campaign


def test_random_kills_then_a_rerun_give_the_clean_store(collection, clean, cfg, tmp_path):
    """KILLS seeded runs, each killed after a random delay spread over a run's lifetime, by a signal and target
    taken in turn from SIGNALS; each is checked, rerun to completion and compared with the clean store."""
    started = time.monotonic()
    proc = start(collection, tmp_path / "timing.db")
    proc.wait(timeout=300)
    lifetime = time.monotonic() - started            # one whole run, start-up included
    mid_run = 0
    for seed in range(KILLS):
        rng = random.Random(seed)
        target, sig = SIGNALS[seed % len(SIGNALS)]
        db = tmp_path / f"run{seed}" / "library.db"
        db.parent.mkdir()
        proc = start(collection, db)
        try:
            if target == "worker":
                workers = wait_for_workers(proc)
                time.sleep(rng.uniform(0.0, 0.5 * lifetime))
                workers = workers_of(proc) or workers
            else:
                time.sleep(rng.uniform(0.0, lifetime))
            if proc.poll() is None:
                mid_run += 1
                if target == "parent":
                    os.kill(proc.pid, sig)
                elif target == "group":
                    os.killpg(proc.pid, sig)
                elif workers:
                    with contextlib.suppress(ProcessLookupError):     # it may have ended just now
                        os.kill(rng.choice(workers), sig)
            code = proc.wait(timeout=120)
            stderr = proc.stderr.read().decode(errors="replace")
            assert "Traceback" not in stderr, f"seed {seed} ({target} {sig.name}): {stderr}"
            assert code in (0, EXIT_PARTIAL, EXIT_INTERRUPTED, -signal.SIGKILL, -sig), \
                f"seed {seed} ({target} {sig.name}): exit {code}: {stderr}"
            assert_nothing_left(proc.pid)
        finally:
            _kill_session(proc.pid)
        assert_only_whole_files(db, clean)
        process_collection([collection], db, cfg, workers=1, quiet=True)
        assert compare_contents(library_contents(db), clean) == [], f"seed {seed} ({target} {sig.name})"
    print(f"\n{KILLS} kills, {mid_run} mid-run, in {time.monotonic() - started:.0f} s")
    assert mid_run >= KILLS // 2



def test_a_ctrl_c_dropped_by_a_finaliser_still_stops_the_batch():
    # Python drops an exception raised while a finaliser runs; a Ctrl-C that lands there must not be lost.
    class Finalised:
        def __del__(self):
            children.on_interrupt(signal.SIGINT, None)

    children.clear_interrupt()
    try:
        Finalised()                               # "Exception ignored in ... KeyboardInterrupt": nothing raised
        with pytest.raises(KeyboardInterrupt):
            children.raise_if_interrupted()       # what the batch loops call between files
    finally:
        children.clear_interrupt()
    children.raise_if_interrupted()               # cleared: nothing to raise


def test_an_interrupt_taken_by_another_thread_waits_for_a_worker_start():
    """A signal that another thread takes (tqdm's monitor has no blocked signals) still runs the handler in the main
    thread, in the middle of a held block: it must wait for the block to end, so that a worker being started is
    handed all of its start-up data (else it died with EOFError in multiprocessing's spawn)."""
    import threading

    previous = signal.signal(signal.SIGTERM, children.on_interrupt)
    children.clear_interrupt()
    go, body_done = threading.Event(), []

    def other_thread() -> None:                # started before the block: SIGTERM is not blocked here
        go.wait()
        os.kill(os.getpid(), signal.SIGTERM)   # blocked in the main thread: the kernel gives it to this one

    helper = threading.Thread(target=other_thread)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            with children.interrupts_held():
                go.set()
                helper.join()
                for _ in range(100_000):       # bytecode, where Python runs a pending handler
                    pass
                body_done.append(True)
        assert body_done == [True]
    finally:
        signal.signal(signal.SIGTERM, previous)
        children.clear_interrupt()
