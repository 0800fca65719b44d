"""The library: many recordings processed once into the gallery store, then searched by face, voice or name.

``process_collection`` ingests folders of videos, audio files and images into the same SQLite file as the gallery
(avid.gallery): every face track and every speaker turn becomes an unnamed observation with its source file and
time range. Files are identified by the SHA-256 of their content, so a rerun skips finished work; each file's
observations are written in ONE transaction together with its ``done`` status, so a run killed at any moment
leaves either all of a file or none of it, and the file is simply redone on the next run.

Work runs in parallel worker processes (a spawn process pool, each worker loading its models once) or in a pool of
Ray actors, here or on a cluster (avid.ray_engine), while the parent process is the single writer of the store. A lock file next to the store keeps a second
``process`` run off the same store; a per-file failure (corrupt file, file gone, crashed worker) is recorded with its
error and the run goes on; a full disk stops the run cleanly with nothing half-written.

``search`` answers "where does this person appear or speak?" from a photo, a voice clip, a video or a gallery name;
``unknown_clusters`` groups the unnamed observations into people and ``name_cluster`` names one group at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
import traceback
from collections import defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
from tqdm import tqdm

from .children import end_with_parent, raise_if_interrupted
from .config import Config, load_config
from .errors import AvidError, DiskFullError, MediaError, NoContentError, StoreError
from .gallery import Gallery, check_health, companion, existing_store, from_blob, remove_store
from .index import FaissIndex, Index, build_index
from .ingest import Models, process_file
from .inputs import expand_inputs
from .media import content_hash
from .private import private_output, write_private_text
from .types import FaceTrack, IngestResult, JsonResult, Person
from .vectors import unit_mean

log = logging.getLogger("avid")

# Tables the library adds to the gallery file. ``library_faces`` keeps where a face track is best seen (for
# thumbnails); ``library_clusters`` keeps the last clustering of unnamed observations, so that ``name_cluster``
# names exactly what ``unknown_clusters`` listed; ``library_words`` keeps the words said in each speaker turn
# (``--transcribe``: JSON [start, end, word]) and ``library_text`` their text for full-text search (SQLite FTS5),
# removed with the region (deleting a person deletes what they said).
_LIBRARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS library_faces (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    time REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS library_clusters (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    cluster_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS library_clusters_id ON library_clusters(cluster_id);
CREATE TABLE IF NOT EXISTS library_words (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    words TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS library_text USING fts5(text, observation_id UNINDEXED, tokenize = 'unicode61');
CREATE TRIGGER IF NOT EXISTS library_words_gone AFTER DELETE ON library_words BEGIN
    DELETE FROM library_text WHERE observation_id = old.observation_id;
END;
"""


# ================================================================================================ records


@dataclass
class ObservationRecord:
    """One face track or speaker turn of a file, ready to store."""

    modality: str                      # "face" | "voice"
    start: float
    end: float
    embedding: np.ndarray
    backend: str
    track_id: Optional[int] = None     # face track id within the file
    best: Optional[tuple] = None       # face: (time, x1, y1, x2, y2) of its best detection
    paired_track: Optional[int] = None  # voice: the one face track on screen while it speaks
    words: list[tuple[float, float, str]] = field(default_factory=list)   # voice: what was said in it


@dataclass
class FileOutcome:
    """What a worker sends back for one file: its observations, or why there are none."""

    path: str
    content_hash: str
    observations: list[ObservationRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: Optional[str] = None        # set when the file failed
    exit_code: int = 1                 # and then the exit code of its error (README's table: 3 unreadable...)
    worker: Optional[str] = None       # the Ray worker that did it, "pid@node" (not stored)


@dataclass
class Summary(JsonResult):
    """What one ``process_collection`` run did."""

    total: int = 0
    processed: list[str] = field(default_factory=list)       # stored in this run
    skipped: list[str] = field(default_factory=list)         # already done in the store (same content)
    duplicates: list[str] = field(default_factory=list)      # same content as another input of this run
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path, error)
    exit_codes: dict[str, int] = field(default_factory=dict)      # path of a failed file -> its error's exit code
    n_face: int = 0
    n_voice: int = 0
    seconds: float = 0.0
    learned: dict[str, int] = field(default_factory=dict)    # person -> observations learned from the library

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        failed = [{"path": path, "error": error, "exit_code": self.exit_codes.get(path, 1)}
                  for path, error in self.failed]
        return {"total": self.total, "processed": self.processed, "skipped": self.skipped,
                "duplicates": self.duplicates, "failed": failed, "face_observations": self.n_face,
                "voice_observations": self.n_voice, "seconds": self.seconds, "learned": self.learned}

    def lines(self) -> list[str]:
        return [f"{path}: {error}" for path, error in self.failed] + [
            f"{self.total} files: {len(self.processed)} processed ({self.n_face} face tracks, {self.n_voice} speaker "
            f"turns), {len(self.skipped)} already in the library, {len(self.duplicates)} duplicates, "
            f"{len(self.failed)} failed, in {self.seconds:.1f} s"] + (
            ["learned from the library: " + ", ".join(f"{n} observations of {name}"
                                                        for name, n in sorted(self.learned.items()))]
            if self.learned else [])


@dataclass
class Hit(JsonResult):
    """Where the searched person appears (face) or speaks (voice) in one file."""

    file: str
    modality: str
    score: float                                     # best cosine similarity in this file
    ranges: list[tuple[float, float]]                # time ranges (seconds) of the matching observations
    content_hash: Optional[str] = None
    person: Optional[str] = None                     # the name, when these observations are already named

    def to_dict(self) -> dict:
        return {"file": self.file, "modality": self.modality, "score": round(self.score, 4),
                "ranges": [[round(a, 2), round(b, 2)] for a, b in self.ranges], "person": self.person}


@dataclass
class UnknownCluster(JsonResult):
    """A group of unnamed observations that look (face) or sound (voice) like one person."""

    id: int
    n_face: int
    n_voice: int
    files: list[str]
    thumbnail: Optional[str] = None

    def to_dict(self) -> dict:
        return {"cluster": self.id, "faces": self.n_face, "voices": self.n_voice, "files": self.files,
                "thumbnail": self.thumbnail}


# ================================================================================================ store helpers


def ensure_library_tables(gallery: Gallery) -> None:
    """Add the library's own tables to a gallery file (idempotent)."""
    with gallery.transaction() as db:
        statement = ""
        for line in _LIBRARY_SCHEMA.splitlines(keepends=True):   # whole statements (a trigger holds ';' inside)
            statement += line
            if sqlite3.complete_statement(statement):
                db.execute(statement)
                statement = ""


@contextlib.contextmanager
def _read_connection(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection beside the gallery's own: reads never take the write lock (WAL)."""
    conn = sqlite3.connect(f"file:{existing_store(db_path)}?mode=ro", uri=True, timeout=30)
    try:
        check_health(conn, db_path)
        yield conn
    finally:
        conn.close()


def _lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


@contextlib.contextmanager
def writer_lock(db_path: Path, timeout: float = 0.0) -> Iterator[None]:
    """Hold ``<db>.lock`` for the length of a run: a second ``process`` on the same store waits, then refuses."""
    lock_path = _lock_path(db_path)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(f"another `avid process` run is writing to this library (lock {lock_path}); "
                                     f"wait for it to finish", db_path) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)    # closing releases the lock


class _ProgressBar(tqdm):
    """The run's progress bar, which also keeps its count in the lock file (JSON: pid, started, total, finished,
    running) for `avid serve` to show. The bar is told of every input exactly once (stored, failed, skipped), even
    when it is not drawn (quiet, no terminal)."""

    def __init__(self, *args, lock_path: Path, **kwargs):
        self._lock_path, self._finished = lock_path, 0
        self._started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())   # as the files table's processed_at
        super().__init__(*args, **kwargs)
        self._save(running=True)

    def update(self, n=1):
        self._finished += n
        self._save(running=True)
        return super().update(n)

    def close(self):
        if getattr(self, "_lock_path", None) is not None:   # once: tqdm closes again when collected, maybe after
            self._save(running=False)                       # another run has taken the lock file
            self._lock_path = None
        super().close()

    def _save(self, running: bool) -> None:
        state = json.dumps({"pid": os.getpid(), "started": self._started, "total": self.total,
                            "finished": self._finished, "running": running}).encode()
        if self._lock_path is None:
            return
        try:    # the file writer_lock holds (flock is on its own descriptor, untouched by this one)
            fd = os.open(self._lock_path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return       # progress is a courtesy to `avid serve`; the run never fails for it
        try:
            os.pwrite(fd, state, 0)
            os.ftruncate(fd, len(state))
        except OSError:
            pass
        finally:
            os.close(fd)


def _done_hashes(db_path: Path) -> set[str]:
    with _read_connection(db_path) as conn:
        return {row[0] for row in conn.execute("SELECT content_hash FROM files WHERE status = 'done'")}


# ================================================================================================ worker side

_worker_models: Optional[Models] = None


def _init_worker(cfg: Config, threads: int, parent: Optional[int] = None) -> None:
    """Runs once in each worker process: limit its threads (workers x threads <= cores), make its models (which
    load on first use). The thread variables are read when torch, OpenCV and BLAS load, after this. A pool
    worker's life is its ``parent``'s: Ctrl-C is the parent's to handle (it stops the workers itself), and when
    the parent dies, however it dies, the worker ends too (it holds about 1 GB)."""
    global _worker_models
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})   # held while it started; a worker still
        end_with_parent(parent)                                       # ends on SIGTERM
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ[var] = str(threads)
    _worker_models = Models(cfg, background=False)     # a worker per core already: it embeds in itself


def analyse_file(path: str, digest: str, cfg: Config, models: Optional[Models] = None) -> FileOutcome:
    """Process one file into observation records. Never raises for a bad file: the error is in the outcome."""
    outcome = FileOutcome(path=path, content_hash=digest)
    try:
        result = process_file(path, cfg, models or _worker_models, transcribe=bool(cfg.library.transcribe))
    except NoContentError as err:
        outcome.warnings.append(err.problem)         # readable, nothing in it: done, with no observations
        return outcome
    except AvidError as err:
        outcome.error, outcome.exit_code = err.problem, err.exit_code
        return outcome
    except Exception as exc:                          # a bug or a decoder crash must not stop the other files
        log.debug("unexpected error on %s:\n%s", path, traceback.format_exc())
        outcome.error = f"unexpected error ({exc.__class__.__name__}: {exc})"
        return outcome
    outcome.warnings = list(result.warnings)
    outcome.observations = observation_records(result, cfg)
    return outcome


def observation_records(result: IngestResult, cfg: Config) -> list[ObservationRecord]:
    """Face tracks and speaker turns that have embeddings, each voice paired with the face seen saying it."""
    records = []
    for track in result.face_tracks:
        if track.embedding is None or not track.detections:
            continue
        best = max(track.detections, key=lambda d: (d.quality, d.probability))
        records.append(ObservationRecord("face", track.start, track.end, np.asarray(track.embedding, np.float32),
                                         result.face_backend, track_id=track.id,
                                         best=(best.time, *map(float, best.box))))
    tracks = [t for t in result.face_tracks if t.embedding is not None and t.detections]
    segments = _speaker_segments(result, cfg)
    if result.words:
        from .transcribe import attach_words

        attach_words(result.words, segments, float(cfg.transcribe.word_gap_seconds))
    said: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for word in result.words:
        if word.speaker is not None:
            said[int(word.speaker)].append((round(word.start, 3), round(word.end, 3), word.text))
    for index, segment in enumerate(segments):
        records.append(ObservationRecord("voice", segment.start, segment.end, segment.embedding,
                                         result.voice_backend, paired_track=_speaking_face(segment, tracks, result, cfg),
                                         words=said.get(index, [])))
    return records


@dataclass
class _Segment:
    """One speaker's stretch of speech, as the library stores it: a voice observation."""

    start: float
    end: float
    embedding: np.ndarray
    speaker: str = ""        # its index, as a string (what transcribe.attach_words reads and sets on words)
    name: Optional[str] = None


def _speaker_segments(result: IngestResult, cfg: Config) -> list[_Segment]:
    """The voice observations of a file: its speech cut where the speaker changes (diarization turns), each
    embedded from its speaker's local-speaker windows overlapping it, so that one observation is one person.
    Speech regions as they are where there is no diarization (too little speech to tell speakers apart)."""
    from .voice.diarize import diarize
    from .voice.speech import WindowIndex

    min_seconds = float(cfg.voice.embed.min_region_seconds)
    turns, voices = [], {}
    if result.segmentation is not None and result.voice_windows:
        diarization = diarize(result.segmentation, result.voice_windows, cfg)
        turns, voices = diarization.turns, diarization.voices(result.voice_windows)
    segments: list[_Segment] = []
    if not turns:
        segments = [_Segment(r.start, r.end, np.asarray(r.embedding, np.float32))
                    for r in result.speech_regions if r.embedding is not None]
    indexes = {speaker: WindowIndex(windows) for speaker, windows in voices.items()}
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        index = indexes.get(turn.speaker)
        if turn.end - turn.start < min_seconds or index is None:
            continue
        embedding = index.embedding(turn.start, turn.end)
        if embedding is None:        # no window of theirs inside the turn: the speaker's voice
            embedding = unit_mean([w.embedding for w in index.windows])
        segments.append(_Segment(turn.start, turn.end, embedding))
    for index, segment in enumerate(segments):
        segment.speaker = str(index)
    return segments


def _speaking_face(region, tracks: list[FaceTrack], result: IngestResult, cfg: Config) -> Optional[int]:
    """The face track that says ``region``: of the tracks on screen for ``library.pair_min_overlap`` of it, the
    one seen talking (talking_face.choose_face), or the only one unless its mouth is seen still; else None (a
    wrong pair would teach the library someone else's voice)."""
    from .talking_face import choose_face

    duration = max(region.end - region.start, 1e-6)
    share = float(cfg.library.pair_min_overlap)
    visible = [t for t in tracks if (min(region.end, t.end) - max(region.start, t.start)) / duration >= share]
    if not visible:
        return None
    choice = choose_face(visible, [region], result.energy, cfg)
    if choice.chosen is None or choice.silent_face or choice.reason not in ("only face", "talking"):
        return None
    return choice.chosen.tracks[0].id


# ================================================================================================ engines

Job = tuple[str, str]     # (path, content hash)
WORKER_DIED = "worker process died while processing this file (killed, out of memory, or crashed in native code)"


def _cores() -> int:
    """CPU cores this process may use (its affinity, which a container or taskset may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _worker_count(requested: int, max_auto: int, on_this_machine: bool = True) -> int:
    """``requested`` workers (0: one per core, at most ``max_auto``); on this machine never more than its cores,
    with a warning: each worker holds its own models (about 1 GB), and more than the cores only wait on each other."""
    if requested < 0:
        raise AvidError(f"--workers must be 0 (automatic) or more, got {requested}")
    cores = _cores()
    if not requested:
        return max(1, min(cores, max_auto))
    if on_this_machine and requested > cores:
        log.warning("--workers %d is more than the %d CPU cores here; using %d", requested, cores, cores)
        return cores
    return requested


def _threads_per_worker(workers: int) -> int:
    return max(1, _cores() // workers)


def _models_for(cfg: Config) -> Models:
    """This process's models for ``cfg``, made once and kept (the serial engine and searches reuse them)."""
    global _worker_models
    if _worker_models is None or _worker_models.cfg != cfg:
        _worker_models = Models(cfg)
    return _worker_models


def _run_serial(jobs: Iterable[Job], cfg: Config) -> Iterator[FileOutcome]:
    """In this process, one file after another (one worker: no pool to start)."""
    models = _models_for(cfg)
    for path, digest in jobs:
        yield analyse_file(path, digest, cfg, models)


def _run_pool(jobs: Iterable[Job], cfg: Config, workers: int, task=analyse_file) -> Iterator[FileOutcome]:
    """A spawn process pool with at most ``workers`` files in flight. When a worker dies, the files that were in
    flight are retried one at a time in a fresh pool, so that only the file that kills a worker fails.
    ``task(path, digest, cfg) -> FileOutcome`` runs in the workers (a module-level function)."""
    jobs = iter(jobs)
    suspects: deque[Job] = deque()
    context = multiprocessing.get_context("spawn")
    threads = _threads_per_worker(workers)
    while True:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(cfg, threads, os.getpid()))
        try:
            broken = yield from _drain_pool(pool, jobs, suspects, workers, cfg, task)
        finally:
            _stop_pool(pool)
        if not broken:
            return


def _drain_pool(pool: ProcessPoolExecutor, jobs: Iterator[Job], suspects: deque, workers: int, cfg: Config,
                task) -> Iterator[FileOutcome]:
    """Yield outcomes until the jobs run out (returns False) or a worker dies (returns True)."""
    in_flight: dict[Future, Job] = {}
    while True:
        raise_if_interrupted()
        try:
            if suspects:      # each suspect runs alone: if the pool breaks then, that file is the one that broke it
                if not in_flight:
                    job = suspects.popleft()
                    with _interrupts_held():
                        in_flight[pool.submit(task, job[0], job[1], cfg)] = job
            else:
                while len(in_flight) < workers and (job := next(jobs, None)) is not None:
                    with _interrupts_held():
                        in_flight[pool.submit(task, job[0], job[1], cfg)] = job
        except BrokenProcessPool:     # a worker died before this submit: who killed it is not known, so the files
            suspects.extend([*in_flight.values(), job])       # in flight and this one are each retried alone
            return True
        if not in_flight:
            return False
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            job = in_flight.pop(future)
            try:
                yield future.result()
            except BrokenProcessPool:
                lost = [job] + list(in_flight.values())
                if len(lost) == 1:
                    yield FileOutcome(path=job[0], content_hash=job[1], error=WORKER_DIED)
                else:
                    log.warning("a worker process died; retrying its %d files one at a time", len(lost))
                    suspects.extend(lost)
                return True


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM while a submit may start a worker: the worker is born with them blocked (a
    terminal's Ctrl-C reaches the whole process group, and a worker still importing would die with a fatal error),
    the parent is not stopped halfway through handing a new worker its start-up data (the worker then died with a
    traceback: EOFError in multiprocessing's spawn), and the parent takes a signal that came meanwhile as soon as
    it is released."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: cancel queued files and end the workers (an interrupted run must not wait for them)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):   # 3.11 has no public terminate
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True)


# ================================================================================================ the writer


def _store_outcome(gallery: Gallery, outcome: FileOutcome) -> bool:
    """Write one file's observations and its ``done`` status in one transaction, or its failure.

    Returns False when another run stored the same content first (nothing is written then).
    """
    with gallery.transaction() as db:
        row = db.execute("SELECT status FROM files WHERE content_hash = ?", (outcome.content_hash,)).fetchone()
        if row is not None and row[0] == "done":
            return False
        if outcome.error is not None:
            gallery.set_file_status(outcome.path, outcome.content_hash, "failed", outcome.error)
            return True
        face_ids: dict[int, int] = {}
        for rec in outcome.observations:
            paired = face_ids.get(rec.paired_track) if rec.modality == "voice" else None
            obs_id = gallery.add_observation(None, rec.modality, rec.embedding, rec.backend, outcome.path,
                                             content_hash=outcome.content_hash, start=float(rec.start),
                                             end=float(rec.end), track_id=rec.track_id, paired_with=paired)
            if rec.modality == "face":
                face_ids[rec.track_id] = obs_id
                db.execute("INSERT INTO library_faces VALUES (?, ?, ?, ?, ?, ?)", (obs_id, *rec.best))
            elif rec.words:
                db.execute("INSERT INTO library_words VALUES (?, ?)", (obs_id, json.dumps(rec.words)))
                db.execute("INSERT INTO library_text (text, observation_id) VALUES (?, ?)",
                           ("".join(w[2] for w in rec.words).strip(), obs_id))
        note = "; ".join(outcome.warnings) or None
        gallery.set_file_status(outcome.path, outcome.content_hash, "done", note)
    return True


def process_collection(inputs: Iterable[str | Path], db_path: str | Path, cfg: Config, workers: int = 0,
                       engine: str = "local", address: Optional[str] = None, quiet: bool = False,
                       ship_media: bool = False) -> Summary:
    """Process files, folders and globs into the library store at ``db_path``; see the module docstring.

    ``workers`` 0 takes ``library.workers`` from the config (0 there: one per core, at most max_auto_workers; on
    a Ray cluster, one per CPU the cluster offers). ``engine`` "ray" with ``address`` (HOST:PORT, auto; else
    RAY_ADDRESS) joins a Ray cluster, without it runs a private Ray here (avid.ray_engine); ``ship_media`` sends
    every file's bytes to the Ray workers (by default only files up to ``library.ray.ship_media_max_bytes`` on a
    cluster are).
    Raises StoreError when the store cannot be written (locked by another run, disk full); everything stored
    before that point stays stored and a rerun continues from there.
    """
    started = time.monotonic()
    lcfg = cfg.library
    db_path = Path(db_path).expanduser()
    paths = [str(p) for p in expand_inputs([str(i) for i in inputs])]
    if engine not in ("local", "ray"):
        raise AvidError(f"--engine must be local or ray, not {engine!r}")
    if engine == "ray":
        from . import ray_engine

        ray_engine.import_ray()    # a missing package is reported before any work starts
        address = ray_engine.cluster_address(address)
    workers = workers or lcfg.workers
    if not (engine == "ray" and address and not workers):    # a cluster's workers are its CPUs, counted there
        workers = _worker_count(workers, lcfg.max_auto_workers, on_this_machine=address is None)
    summary = Summary(total=len(paths))
    new_store = not db_path.exists()
    gallery = Gallery(db_path)
    try:
        with writer_lock(db_path, lcfg.lock_timeout_seconds):
            try:
                ensure_library_tables(gallery)
                done = _done_hashes(db_path)
                bar = _ProgressBar(total=len(paths), unit="file", desc="avid process", lock_path=_lock_path(db_path),
                                   disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True)
                with bar:
                    digests: dict[str, str] = {}
                    jobs = _jobs(paths, done, summary, bar, lcfg.hash_block_bytes, digests)
                    if engine == "ray":
                        outcomes = ray_engine.run(jobs, cfg, workers, address, ship_media)
                    elif workers == 1:
                        outcomes = _run_serial(jobs, cfg)
                    else:
                        outcomes = _run_pool(jobs, cfg, workers)
                    _write_all(gallery, outcomes, summary, bar)
                _settle_duplicates(summary, digests)
                if summary.processed and gallery.people():
                    from .learning import learn_from_library

                    summary.learned = learn_from_library(gallery, cfg).learned
            finally:
                if new_store and not summary.processed:     # nothing stored: no empty store is left behind
                    gallery.close()
                    remove_store(db_path)
                    db_path.with_name(db_path.name + ".lock").unlink(missing_ok=True)
    finally:
        gallery.close()
    summary.seconds = time.monotonic() - started
    lines = summary.lines()
    for line in lines if not quiet else lines[:len(summary.failed)]:     # quiet: the failures still
        print(f"avid: {line}", file=sys.stderr)
    return summary


def _jobs(paths: list[str], done: set[str], summary: Summary, bar: tqdm, block: int,
          digests: dict[str, str]) -> Iterator[Job]:
    """Hash each file as the engines ask for work (into ``digests``, by path); skip what the store or this run
    already has."""
    seen: set[str] = set()
    for path in paths:
        try:
            digest = content_hash(path, block)
        except OSError as exc:
            summary.failed.append((path, f"cannot read ({exc.strerror or exc})"))
            summary.exit_codes[path] = MediaError.exit_code
            bar.update(1)
            continue
        digests[path] = digest
        if digest in done:
            summary.skipped.append(path)
            bar.update(1)
        elif digest in seen:
            summary.duplicates.append(path)
            bar.update(1)
        else:
            seen.add(digest)
            yield path, digest


def _settle_duplicates(summary: Summary, digests: dict[str, str]) -> None:
    """A copy of a file that failed (two empty files, two text files) fails with it: a duplicate is a copy of
    media that was stored."""
    failed = {digests[path]: (error, summary.exit_codes.get(path, 1))
              for path, error in summary.failed if path in digests}
    for path in list(summary.duplicates):
        if digests[path] in failed:
            error, summary.exit_codes[path] = failed[digests[path]]
            summary.duplicates.remove(path)
            summary.failed.append((path, error))


def _write_all(gallery: Gallery, outcomes: Iterator[FileOutcome], summary: Summary, bar: tqdm) -> None:
    """The single writer: store each outcome as it arrives. A full disk stops the run (the engines are closed)."""
    with contextlib.closing(outcomes):
        for outcome in outcomes:
            try:
                stored = _store_outcome(gallery, outcome)
            except DiskFullError:
                raise DiskFullError(f"disk full while storing {outcome.path}; that file was not stored and "
                                    f"everything before it is; free space and run again", gallery.path) from None
            except StoreError as err:      # e.g. embeddings from another encoder than the store holds
                outcome.error, outcome.exit_code, outcome.observations = err.problem, err.exit_code, []
                with contextlib.suppress(StoreError):
                    _store_outcome(gallery, outcome)
            if outcome.error is not None:
                summary.failed.append((outcome.path, outcome.error))
                summary.exit_codes[outcome.path] = outcome.exit_code
                if not bar.disable:     # said now beside the bar; the summary lists every failure at the end
                    bar.write(f"avid: error: {outcome.path}: {outcome.error}", file=sys.stderr)
            elif not stored:
                summary.skipped.append(outcome.path)
            else:
                summary.processed.append(outcome.path)
                summary.n_face += sum(r.modality == "face" for r in outcome.observations)
                summary.n_voice += sum(r.modality == "voice" for r in outcome.observations)
            bar.set_postfix(failed=len(summary.failed), refresh=False)
            bar.update(1)
            raise_if_interrupted()
    raise_if_interrupted()


def library_contents(db: str | Path) -> dict:
    """Everything the library stored, in a canonical order without row ids or times: two stores that processed the
    same files hold equal contents, however the work was split, interrupted or resumed."""
    with _read_connection(Path(db).expanduser()) as conn:
        files = sorted(conn.execute("SELECT content_hash, status, error FROM files").fetchall())
        observations = sorted(conn.execute(
            "SELECT o.content_hash, o.modality, o.track_id, round(o.start, 3), round(o.end, 3), o.embedding, "
            "o.backend, (SELECT p.track_id FROM observations p WHERE p.id = o.paired_with), "
            "(SELECT json_array(round(time, 3), round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)) "
            " FROM library_faces WHERE observation_id = o.id) "
            "FROM observations o WHERE o.content_hash IN (SELECT content_hash FROM files)").fetchall(),
            key=lambda r: tuple("" if v is None else str(v) for v in r[:5]))
    return {"files": files, "observations": observations}


def compare_contents(a: dict, b: dict, atol: float = 1e-4) -> list[str]:
    """Differences between two ``library_contents`` (empty when equal); embeddings may differ by ``atol``
    (different thread counts sum in a different order)."""
    problems = []
    if a["files"] != b["files"]:
        problems.append(f"files differ: {len(a['files'])} vs {len(b['files'])} rows")
    if len(a["observations"]) != len(b["observations"]):
        problems.append(f"{len(a['observations'])} vs {len(b['observations'])} observations")
    for x, y in zip(a["observations"], b["observations"]):
        same_embedding = len(x[5]) == len(y[5]) and np.allclose(np.frombuffer(x[5], "<f4"),
                                                                np.frombuffer(y[5], "<f4"), atol=atol)
        if x[:5] != y[:5] or x[6:] != y[6:] or not same_embedding:
            problems.append(f"observation differs: {x[0][:12]} {x[1]} track {x[2]} {x[3]}-{x[4]}")
    return problems


# ================================================================================================ search


@dataclass
class _LibraryObservations:
    """The library's observations of one modality, as a matrix with their file, times and names."""

    ids: np.ndarray
    vectors: np.ndarray
    sources: list[str]
    hashes: list[str]
    spans: np.ndarray             # (n, 2) start, end
    names: list[Optional[str]]


def _library_observations(conn: sqlite3.Connection, modality: str, unnamed_only: bool = False
                          ) -> _LibraryObservations:
    sql = ("SELECT o.id, o.embedding, o.dim, f.path, o.content_hash, o.start, o.end, p.name FROM observations o "
           "JOIN files f ON f.content_hash = o.content_hash AND f.status = 'done' "
           "LEFT JOIN people p ON p.id = o.person_id WHERE o.modality = ?")
    if unnamed_only:
        sql += " AND o.person_id IS NULL"
    rows = conn.execute(sql + " ORDER BY o.id", (modality,)).fetchall()
    if not rows:
        return _LibraryObservations(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), [], [],
                                    np.zeros((0, 2)), [])
    return _LibraryObservations(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        vectors=np.stack([from_blob(r[1], r[2]) for r in rows]),
        sources=[r[3] for r in rows], hashes=[r[4] for r in rows],
        spans=np.array([(r[5] or 0.0, r[6] or 0.0) for r in rows], dtype=np.float64),
        names=[r[7] for r in rows])


def query_vectors(cfg: Config, image: Optional[str] = None, audio: Optional[str] = None,
                  video: Optional[str] = None, person: Optional[str] = None, db_path: Optional[Path] = None,
                  models: Optional[Models] = None, track: Optional[int] = None) -> dict[str, np.ndarray]:
    """The face and voice vectors to search with, per modality (rows of a matrix).

    A file gives what ``avid query`` would take from it (``identify.evidence_from``): a photo its largest face,
    audio its speech, a video the face that is its person (``track``, or the one seen talking, or the one that
    dominates) and the speech heard with it. A person
    gives every face and voice embedding stored under their name.
    """
    from .identify import evidence_from   # here: it imports torch, which `avid process --db`'s parent never needs

    found: dict[str, list[np.ndarray]] = defaultdict(list)
    for kind, path in (("image", image), ("audio", audio), ("video", video)):
        if path is None:
            continue
        evidence = evidence_from(path, cfg, models or _models_for(cfg), track=track if kind == "video" else None,
                                 given_as=kind)
        for modality in ("face", "voice"):
            if getattr(evidence, modality) is not None:
                found[modality].append(getattr(evidence, modality))
    if person is not None:
        with contextlib.closing(Gallery(db_path)) as gallery:
            for obs in gallery.observations(person=person):
                found[obs.modality].append(obs.embedding)
    return {m: np.stack(v).astype(np.float32) for m, v in found.items()}


def search(db: str | Path, image: Optional[str] = None, audio: Optional[str] = None, video: Optional[str] = None,
           person: Optional[str] = None, top_k: Optional[int] = None, cfg: Optional[Config] = None,
           models: Optional[Models] = None, track: Optional[int] = None) -> list[Hit]:
    """Where the queried person appears or speaks in the library: one hit per file and modality, best first.

    Every library observation whose cosine similarity to a query vector passes ``library.search.min_face_score``
    (faces) or ``min_voice_score`` (voices) counts; a hit's score is the best one in its file, its ranges the
    matching observations' time ranges.
    """
    if sum(x is not None for x in (image, audio, video, person)) != 1:
        raise AvidError("search needs exactly one of --image, --audio, --video, --person")
    db = existing_store(Path(db).expanduser())
    cfg = cfg or load_config()
    scfg = cfg.library.search
    top_k = top_k or scfg.top_k
    queries = query_vectors(cfg, image, audio, video, person, db, models or _models_for(cfg), track)
    if not queries:
        what = image or audio or video or f"person {person!r}"
        raise NoContentError("no face and no speech to search with", what) if person is None else \
            StoreError(f"{what} has no face or voice observations to search with")
    min_score = {"face": scfg.min_face_score, "voice": scfg.min_voice_score}
    hits: list[Hit] = []
    with _read_connection(db) as conn:
        for modality, vectors in queries.items():
            index = library_index(db, conn, modality, cfg)
            if index is None:
                continue
            if index.dim != vectors.shape[1]:
                raise StoreError(f"the library's {modality} embeddings have {index.dim} values but the query's "
                                 f"have {vectors.shape[1]} (another encoder backend?)", db)
            scores, ids = index.search(vectors, min(scfg.per_query_candidates, len(index)))
            best: dict[int, float] = {}
            for row_scores, row_ids in zip(scores, ids):
                for score, obs_id in zip(row_scores, row_ids):
                    if obs_id >= 0 and score >= min_score[modality]:
                        best[int(obs_id)] = max(best.get(int(obs_id), -1.0), float(score))
            hits.extend(_group_by_file(conn, best, modality))
    hits.sort(key=lambda h: -h.score)
    return hits[:top_k]


@dataclass
class TextHit(JsonResult):
    """Where a phrase was said: in which file, when, by whom (a name, an unknown cluster, or unknown)."""

    file: str
    start: float
    end: float
    speaker: str
    snippet: str
    rank: float                                      # FTS5 bm25 rank: lower is better

    def to_dict(self) -> dict:
        return {"file": self.file, "start": round(self.start, 2), "end": round(self.end, 2),
                "speaker": self.speaker, "snippet": self.snippet}


def _fts_phrase(text: str) -> str:
    """The user's words as one FTS5 phrase (quotes doubled): searched as said, never as query syntax."""
    words = text.split()
    if not words:
        raise AvidError("--text needs at least one word")
    return '"' + " ".join(words).replace('"', '""') + '"'


def _phrase_spans(words: list, phrase: str) -> list[tuple[float, float]]:
    """The times of every occurrence of ``phrase`` (its words, case and punctuation ignored) in a segment's words
    [start, end, text]; the whole segment's words when it is not found word for word (FTS5 tokenizes otherwise)."""
    def clean(token: str) -> str:
        return "".join(ch for ch in token.lower() if ch.isalnum() or ch == "'")

    target = [clean(t) for t in phrase.split() if clean(t)]
    tokens = [clean(w[2]) for w in words]
    spans = [(words[i][0], words[i + len(target) - 1][1]) for i in range(len(tokens) - len(target) + 1)
             if target and tokens[i:i + len(target)] == target]
    return spans or [(words[0][0], words[-1][1])]


def search_text(db: str | Path, text: str, person: Optional[str] = None, top_k: Optional[int] = None,
                cfg: Optional[Config] = None) -> list[TextHit]:
    """Where ``text`` was said in the library (files processed with ``--transcribe``), best first: every time it
    was said, when and by whom (of up to ``top_k`` matching speaker turns); ``person`` keeps that person's only."""
    db = existing_store(Path(db).expanduser())
    cfg = cfg or load_config()
    top_k = top_k or cfg.library.search.top_k
    with _read_connection(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "library_text" not in tables:
            return []
        sql = ("SELECT o.source, w.words, p.name, c.cluster_id, snippet(library_text, 0, '[', ']', '...', 12), "
               "bm25(library_text) AS rank FROM library_text t JOIN observations o ON o.id = t.observation_id "
               "JOIN library_words w ON w.observation_id = o.id LEFT JOIN people p ON p.id = o.person_id "
               "LEFT JOIN library_clusters c ON c.observation_id = o.id WHERE library_text MATCH ?")
        params: list = [_fts_phrase(text)]
        if person is not None:
            if conn.execute("SELECT 1 FROM people WHERE name = ?", (person,)).fetchone() is None:
                raise StoreError(f"no person named {person!r} in the gallery (see `avid people list`)", db)
            sql += " AND p.name = ?"
            params.append(person)
        rows = conn.execute(sql + " ORDER BY rank LIMIT ?", params + [int(top_k)]).fetchall()
    hits = []
    for source, words, name, cluster, snippet, rank in rows:
        speaker = name or (f"unknown cluster {cluster}" if cluster is not None else "unknown")
        hits += [TextHit(source, start, end, speaker, snippet, float(rank))
                 for start, end in _phrase_spans(json.loads(words), text)]
    return hits


_LIBRARY_ROWS = ("FROM observations o JOIN files f ON f.content_hash = o.content_hash AND f.status = 'done' "
                 "WHERE o.modality = ?")


def library_index(db: Path, conn: sqlite3.Connection, modality: str, cfg: Config) -> Optional[Index]:
    """A nearest-neighbour index over the library's observations of one modality; its ids are observation ids.

    Small libraries are searched exactly. A large library's FAISS index is kept in ``<db>-index/`` (private) and
    rebuilt only when the set of observations changes, so a search does not rebuild it.
    """
    count, max_id, id_total = conn.execute(f"SELECT count(*), max(o.id), total(o.id) {_LIBRARY_ROWS}",
                                           (modality,)).fetchone()
    if not count:
        return None
    if count < cfg.index.faiss_min_size:
        return build_index(*_library_vectors(conn, modality), cfg=cfg, exact=True)
    folder = companion(db, "index")
    path, key_path = folder / f"{modality}.faiss", folder / f"{modality}.key"
    key = json.dumps({"count": count, "max_id": max_id, "id_total": id_total, "index": cfg.index.to_dict()},
                     sort_keys=True)
    if path.exists() and key_path.exists() and key_path.read_text() == key:
        return FaissIndex.load(path, cfg.index)
    index = build_index(*_library_vectors(conn, modality), cfg=cfg, exact=False)
    folder.mkdir(mode=0o700, exist_ok=True)
    index.save(path)
    write_private_text(key_path, key)
    return index


def _library_vectors(conn: sqlite3.Connection, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, observation ids) of the library's observations of one modality."""
    rows = conn.execute(f"SELECT o.id, o.embedding, o.dim {_LIBRARY_ROWS} ORDER BY o.id", (modality,)).fetchall()
    return (np.stack([from_blob(r[1], r[2]) for r in rows]), np.array([r[0] for r in rows], dtype=np.int64))


def _group_by_file(conn: sqlite3.Connection, best: dict[int, float], modality: str) -> list[Hit]:
    """One hit per file from the matching observations ({observation id: score})."""
    rows = []
    ids = list(best)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows += conn.execute("SELECT o.id, f.path, o.content_hash, o.start, o.end, p.name FROM observations o "
                             "JOIN files f ON f.content_hash = o.content_hash LEFT JOIN people p ON p.id = o.person_id "
                             f"WHERE o.id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    by_file: dict[str, list] = defaultdict(list)
    for row in rows:
        by_file[row[2]].append(row)
    hits = []
    for digest, group in by_file.items():
        names = {r[5] for r in group} - {None}
        hits.append(Hit(file=group[0][1], modality=modality, score=max(best[r[0]] for r in group),
                        ranges=_merge_ranges([(r[3] or 0.0, r[4] or 0.0) for r in group]), content_hash=digest,
                        person=", ".join(sorted(names)) or None))
    return hits


def _merge_ranges(ranges: list[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(float(a), float(b)) for a, b in merged]


# ================================================================================================ unknown people


def _cluster(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """Agglomerative clustering (average linkage, cosine): labels 0..n-1 of groups whose mean similarity
    passes ``threshold``."""
    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                    distance_threshold=1.0 - threshold)
    return model.fit_predict(vectors)


def unknown_clusters(db: str | Path, cfg: Config) -> list[UnknownCluster]:
    """Cluster the library's unnamed observations into people, largest first, and remember the clustering.

    Faces and voices are clustered separately (thresholds in ``library.unknown``); a voice cluster joins the face
    cluster it is heard with (speaker turns paired at ingest with the face seen saying them) when at least
    ``min_cooccurrence`` of its speech that was heard with a face was heard with that face cluster. Face clusters get a thumbnail JPEG in
    ``<db>-thumbnails/`` (private to the user; removed with any deleted person).
    """
    db = existing_store(Path(db).expanduser())
    ucfg = cfg.library.unknown
    with contextlib.closing(Gallery(db)) as gallery:
        ensure_library_tables(gallery)
        with _read_connection(db) as conn:
            faces = _library_observations(conn, "face", unnamed_only=True)
            voices = _library_observations(conn, "voice", unnamed_only=True)
            pairs = dict(conn.execute("SELECT id, paired_with FROM observations WHERE modality = 'voice' AND "
                                      "person_id IS NULL AND paired_with IS NOT NULL").fetchall())
            boxes = {r[0]: r[1:] for r in conn.execute("SELECT * FROM library_faces")}
        face_labels = _cluster(faces.vectors, ucfg.face_threshold)
        voice_labels = _cluster(voices.vectors, ucfg.voice_threshold)
        groups = _join_face_voice(faces, face_labels, voices, voice_labels, pairs, ucfg.min_cooccurrence)
        groups = [g for g in groups if len(g[0]) + len(g[1]) >= ucfg.min_cluster_size]
        groups.sort(key=lambda g: (-(len(g[0]) + len(g[1])), min(list(faces.ids[g[0]]) + list(voices.ids[g[1]]))))
        with gallery.transaction() as tx:
            tx.execute("DELETE FROM library_clusters")
            tx.executemany("INSERT INTO library_clusters VALUES (?, ?)",
                           [(int(obs), cid) for cid, (f, v) in enumerate(groups, 1)
                            for obs in list(faces.ids[f]) + list(voices.ids[v])])
    thumbs_dir = companion(db, "thumbnails")
    clusters = []
    for cid, (f_rows, v_rows) in enumerate(groups, 1):
        files = sorted({faces.sources[r] for r in f_rows} | {voices.sources[r] for r in v_rows})
        thumbnail = _thumbnail(faces, f_rows, boxes, thumbs_dir / f"cluster-{cid}.jpg", ucfg.thumbnail_size) \
            if f_rows else None
        clusters.append(UnknownCluster(id=cid, n_face=len(f_rows), n_voice=len(v_rows), files=files,
                                       thumbnail=thumbnail))
    return clusters


def _join_face_voice(faces: _LibraryObservations, face_labels: np.ndarray, voices: _LibraryObservations,
                     voice_labels: np.ndarray, pairs: dict[int, int], min_share: float
                     ) -> list[tuple[list[int], list[int]]]:
    """Groups of (face rows, voice rows): each face cluster, with the voice clusters mostly heard with it."""
    face_row = {int(obs): row for row, obs in enumerate(faces.ids)}
    face_groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(face_labels):
        face_groups[int(label)].append(row)
    voice_groups: dict[int, list[int]] = defaultdict(list)
    for row, label in enumerate(voice_labels):
        voice_groups[int(label)].append(row)
    joined: dict[int, list[int]] = defaultdict(list)     # face label -> voice rows
    alone: list[list[int]] = []
    for rows in voice_groups.values():
        seconds: dict[int, float] = defaultdict(float)   # face label -> seconds of this voice heard with it
        for r in rows:
            face_obs = pairs.get(int(voices.ids[r]))
            if face_obs in face_row:
                seconds[int(face_labels[face_row[face_obs]])] += max(voices.spans[r, 1] - voices.spans[r, 0], 1e-3)
        label, heard = max(seconds.items(), key=lambda kv: kv[1], default=(None, 0.0))
        if label is not None and heard / sum(seconds.values()) >= min_share:
            joined[label].extend(rows)
        else:
            alone.append(rows)
    return [(rows, joined.get(label, [])) for label, rows in face_groups.items()] + [([], rows) for rows in alone]


def _thumbnail(faces: _LibraryObservations, rows: list[int], boxes: dict, path: Path, size: int) -> Optional[str]:
    """A JPEG of the cluster's most typical face (closest to its mean), cut from its source; None if unreadable."""
    vectors = faces.vectors[rows]
    centre = vectors.mean(axis=0)
    order = np.argsort(-(vectors @ centre))
    for i in order[:3]:                  # the source may have moved: try the next most typical face
        row = rows[int(i)]
        box = boxes.get(int(faces.ids[row]))
        if box is None:
            continue
        try:
            image = _frame_at(faces.sources[row], box[0])
        except (AvidError, OSError):
            continue
        if image is not None:
            return str(_write_crop(image, box[1:], path, size))
    return None


def _frame_at(path: str, seconds: float) -> Optional[np.ndarray]:
    """The RGB frame of ``path`` at ``seconds``, full size (an image is its own frame); seeks, no full decode."""
    from . import media

    if media.media_kind(path) == "image":
        return media.load_image(path)
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            container.seek(int(max(0.0, seconds - 1.0) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= seconds - 0.02:
                    return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, IndexError):
        return None
    return None


def _write_crop(image: np.ndarray, box, path: Path, size: int) -> Path:
    from PIL import Image

    x1, y1, x2, y2 = box
    pad = 0.25 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    crop = image[max(0, int(y1 - pad)):min(h, int(y2 + pad)), max(0, int(x1 - pad)):min(w, int(x2 + pad))]
    picture = Image.fromarray(crop)
    picture.thumbnail((size, size))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with private_output(path) as tmp:
        picture.save(tmp, format="JPEG", quality=90)
    return path


def name_cluster(db: str | Path, cluster_id: int, name: str, cfg: Optional[Config] = None) -> tuple[Person, int]:
    """Give every observation of an unknown cluster (as last listed by ``unknown_clusters``) to the person
    ``name``, created if new, in one transaction, and learn what is heard or seen with them
    (``learning.learn_from_library``). Returns the person and how many observations were named."""
    from .identify import refresh_z_prototypes
    from .learning import learn_from_library

    db = existing_store(Path(db).expanduser())
    with contextlib.closing(Gallery(db)) as gallery:
        ensure_library_tables(gallery)
        with gallery.transaction() as tx:
            ids = [r[0] for r in tx.execute("SELECT c.observation_id FROM library_clusters c JOIN observations o "
                                            "ON o.id = c.observation_id WHERE c.cluster_id = ? AND "
                                            "o.person_id IS NULL", (int(cluster_id),))]
            if not ids:
                raise StoreError(f"no unknown cluster {cluster_id} (run `avid people unknown` to list them)", db)
            person = gallery.find_person(name) or gallery.add_person(name)
            count = gallery.assign(ids, person.id)
            tx.execute("DELETE FROM library_clusters WHERE cluster_id = ?", (int(cluster_id),))
            refresh_z_prototypes(gallery, [person.id])    # when a shared model is trained, its z prototype too
            learn_from_library(gallery, cfg or load_config())
        return gallery.person(person.name), count


def _cluster_members(tx: sqlite3.Connection, db: Path, cluster_id: int) -> list[int]:
    """The unnamed observations of an unknown cluster as last listed; StoreError when there are none."""
    ids = [r[0] for r in tx.execute("SELECT c.observation_id FROM library_clusters c JOIN observations o ON o.id = "
                                    "c.observation_id WHERE c.cluster_id = ? AND o.person_id IS NULL",
                                    (int(cluster_id),))]
    if not ids:
        raise StoreError(f"no unknown cluster {cluster_id} (run `avid people unknown` to list them)", db)
    return ids


def merge_clusters(db: str | Path, src: int, dst: int) -> int:
    """Join unknown cluster ``src`` into ``dst`` (as last listed by ``unknown_clusters``): the user says they are one
    person, so that naming ``dst`` names both. A new clustering starts from the embeddings again (and may part them).
    Returns how many observations moved."""
    db = existing_store(Path(db).expanduser())
    if int(src) == int(dst):
        raise StoreError("cannot merge a cluster into itself", db)
    with contextlib.closing(Gallery(db)) as gallery:
        ensure_library_tables(gallery)
        with gallery.transaction() as tx:
            _cluster_members(tx, db, dst)
            moved = _cluster_members(tx, db, src)
            tx.execute("UPDATE library_clusters SET cluster_id = ? WHERE cluster_id = ?", (int(dst), int(src)))
    companion(db, "thumbnails").joinpath(f"cluster-{int(src)}.jpg").unlink(missing_ok=True)
    return len(moved)


def dismiss_cluster(db: str | Path, cluster_id: int) -> int:
    """"Not a person": delete the unnamed observations of an unknown cluster (a face on a poster, music taken for a
    voice), with their boxes and words, so that they are neither listed nor found again. Returns how many."""
    db = existing_store(Path(db).expanduser())
    with contextlib.closing(Gallery(db)) as gallery:
        ensure_library_tables(gallery)
        with gallery.transaction() as tx:
            ids = _cluster_members(tx, db, cluster_id)
            tx.executemany("DELETE FROM observations WHERE id = ? AND person_id IS NULL", [(i,) for i in ids])
    companion(db, "thumbnails").joinpath(f"cluster-{int(cluster_id)}.jpg").unlink(missing_ok=True)
    return len(ids)
