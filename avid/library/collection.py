"""The library: many recordings processed once into the gallery store, then searched by face, voice or name.

``process_collection`` ingests folders of videos, audio files and images into the same SQLite file as the gallery
(avid.identity.store): every face track and every speaker turn becomes an unnamed observation with its source file and
time range. Files are identified by the SHA-256 of their content, so a rerun skips finished work; each file's
observations are written in ONE transaction together with its ``done`` status, so a run killed at any moment
leaves either all of a file or none of it, and the file is simply redone on the next run.

Work runs in parallel worker processes (a spawn process pool, each worker loading its models once) or in a pool of
Ray actors, here or on a cluster (avid.library.ray_engine), while the parent process is the single writer of the store. A lock file next to the store keeps a second
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

from ..children import end_with_parent, interrupts_held, raise_if_interrupted
from ..config import Config
from ..errors import AvidError, DiskFullError, MediaError, NoContentError, StoreError
from ..identity.store import Gallery, StoreReader, remove_store
from ..io.inputs import expand_inputs
from ..io.media import content_hash
from ..pipeline.ingest import process_file
from ..pipeline.models import Models
from ..types import FaceTrack, IngestResult, JsonResult
from ..vectors import unit_mean

log = logging.getLogger("avid")

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


# ================================================================================================ store helpers


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
    with StoreReader(db_path) as store:
        return store.done_hashes()


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
        from ..text.transcribe import attach_words

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
    from ..voice.diarize import diarize
    from ..voice.speech import WindowIndex

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
    from ..pipeline.talking_face import choose_face

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
                    with interrupts_held():
                        in_flight[pool.submit(task, job[0], job[1], cfg)] = job
            else:
                while len(in_flight) < workers and (job := next(jobs, None)) is not None:
                    with interrupts_held():
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
    with gallery.transaction():
        if gallery.file_status(outcome.content_hash) == "done":
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
                gallery.add_face_box(obs_id, rec.best)
            elif rec.words:
                gallery.add_words(obs_id, rec.words)
        note = "; ".join(outcome.warnings) or None
        gallery.set_file_status(outcome.path, outcome.content_hash, "done", note)
    return True


def process_collection(inputs: Iterable[str | Path], db_path: str | Path, cfg: Config, workers: int = 0,
                       engine: str = "local", address: Optional[str] = None, quiet: bool = False,
                       ship_media: bool = False) -> Summary:
    """Process files, folders and globs into the library store at ``db_path``; see the module docstring.

    ``workers`` 0 takes ``library.workers`` from the config (0 there: one per core, at most max_auto_workers; on
    a Ray cluster, one per CPU the cluster offers). ``engine`` "ray" with ``address`` (HOST:PORT, auto; else
    RAY_ADDRESS) joins a Ray cluster, without it runs a private Ray here (avid.library.ray_engine); ``ship_media`` sends
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
                    from ..identity.learning import learn_from_library

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
    with StoreReader(Path(db).expanduser()) as store:
        return store.library_contents()


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
