"""The batch library: resumable ingest into the gallery store, fault isolation, search, unknown people.

A small collection is generated once per module (two photos of one person and one of another, three speech clips
from two synthetic voices, a short video of the first person speaking, and a corrupt file in the middle) and
processed once into a reference store; the other tests compare against it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
from pathlib import Path

import pytest

from avid.config import load_config
from avid.errors import DiskFullError, StoreError
from avid.identity.store import Gallery
from avid.library import collection as library
from avid.library.collection import (
    WORKER_DIED,
    FileOutcome,
    compare_contents,
    library_contents,
    process_collection,
    writer_lock,
)
from avid.library.search import query_vectors, search
from avid.library.unknown import name_cluster, unknown_clusters
from tests import media as synthetic

pytest.importorskip("skimage")
pytest.importorskip("espeakng_loader")

MALE, FEMALE = synthetic.MALE_VOICE, synthetic.FEMALE_VOICE
GOOD_FILES = 7


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """The collection (folder ``lib``) and query files kept outside it."""
    root = tmp_path_factory.mktemp("media")
    lib, queries = root / "lib", root / "queries"
    lib.mkdir()
    queries.mkdir()
    astronaut = synthetic.astronaut_face()
    files = {
        "astronaut_a": synthetic.write_image(lib / "a1 astronaut.jpg", astronaut),
        "astronaut_b": synthetic.write_image(lib / "a2 astronaut small.png", astronaut[::2, ::2].copy()),
        "hopper": synthetic.write_image(lib / "b1 hopper.jpg", synthetic.grace_hopper_face()),
        "corrupt": synthetic.write_corrupt(lib / "c0 broken.mp4"),
        "male_1": synthetic.write_wav(lib / "d1 male.wav", synthetic.speak(
            "The quick brown fox jumps over the lazy dog near the riverbank every morning.", MALE)),
        "male_2": synthetic.write_wav(lib / "d2 male.wav", synthetic.speak(
            "Several old sailors gathered at the harbour to repair their fishing nets.", MALE)),
        "female_1": synthetic.write_wav(lib / "e1 female.wav", synthetic.speak(
            "Bright lanterns were hung along the narrow streets before the festival began.", FEMALE)),
    }
    portrait = synthetic.astronaut()
    synthetic.write_talking_video(lib / "f1 talk.mp4", [synthetic.Segment(synthetic.speak(
        "Welcome aboard. Today we will look at the stars and the planets together.", portrait.voice))],
        [portrait], size=(640, 360), threads=1)
    files["talk"] = lib / "f1 talk.mp4"
    files["query_face"] = synthetic.write_image(queries / "astronaut query.jpg", astronaut[20:480, 30:500].copy(),
                                                quality=80)
    files["query_voice"] = synthetic.write_wav(queries / "male query.wav", synthetic.speak(
        "A gentle breeze carried the smell of fresh bread across the market square.", MALE))
    files["lib"] = lib
    return files


@pytest.fixture(scope="module")
def reference(media, cfg, tmp_path_factory):
    """One clean run over the collection: (db path, summary, contents)."""
    db = tmp_path_factory.mktemp("reference") / "library.db"
    summary = process_collection([media["lib"]], db, cfg, workers=1, quiet=True)
    return db, summary, library_contents(db)


def copy_store(db: Path, to: Path) -> Path:
    target = to / db.name
    shutil.copy(db, target)
    return target


def test_clean_run_stores_every_good_file_and_isolates_the_corrupt_one(reference, media):
    db, summary, contents = reference
    assert summary.total == GOOD_FILES + 1
    assert len(summary.processed) == GOOD_FILES
    assert [path for path, _ in summary.failed] == [str(media["corrupt"])]
    assert "readable media" in summary.failed[0][1]
    statuses = sorted(status for _, status, _ in contents["files"])
    assert statuses == ["done"] * GOOD_FILES + ["failed"]
    modalities = [row[1] for row in contents["observations"]]
    assert modalities.count("face") >= 4 and modalities.count("voice") >= 4
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_rerun_skips_finished_files(reference, media, cfg, tmp_path, monkeypatch):
    db = copy_store(reference[0], tmp_path)
    calls = []
    real = library.process_file
    monkeypatch.setattr(library, "process_file", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    summary = process_collection([media["lib"]], db, cfg, workers=1, quiet=True)
    assert calls == [str(media["corrupt"])]          # only the failed file is tried again
    assert len(summary.skipped) == GOOD_FILES and not summary.processed
    assert compare_contents(library_contents(db), reference[2]) == []


def test_crash_halfway_then_rerun_gives_the_same_store_as_one_clean_run(reference, media, cfg, tmp_path,
                                                                        monkeypatch):
    db = tmp_path / "library.db"
    real, calls = library.process_file, []

    def crash_on_fourth(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(library, "process_file", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        process_collection([media["lib"]], db, cfg, workers=1, quiet=True)
    partial = library_contents(db)
    assert 0 < len(partial["files"]) < GOOD_FILES + 1
    stored = {row[0] for row in partial["files"] if row[1] == "done"}
    assert {row[0] for row in partial["observations"]} <= stored     # nothing of an unfinished file
    monkeypatch.setattr(library, "process_file", real)
    process_collection([media["lib"]], db, cfg, workers=1, quiet=True)
    assert compare_contents(library_contents(db), reference[2]) == []


def test_file_that_disappears_during_the_run_is_reported(media, cfg, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    keep = Path(shutil.copy(media["astronaut_a"], folder))
    vanish = Path(shutil.copy(media["male_1"], folder))
    real = library.process_file

    def delete_first(path, *args, **kwargs):
        if Path(path) == vanish:
            vanish.unlink()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(library, "process_file", delete_first)
    summary = process_collection([folder], tmp_path / "library.db", cfg, workers=1, quiet=True)
    assert summary.processed == [str(keep)]
    assert summary.failed == [(str(vanish), "file not found")]


def test_second_run_on_the_same_store_refuses_clearly(media, cfg, tmp_path):
    db = tmp_path / "library.db"
    with writer_lock(db):
        with pytest.raises(StoreError, match="another `avid process` run"):
            process_collection([media["hopper"]], db, cfg, workers=1, quiet=True)


def test_full_disk_stops_cleanly_and_a_rerun_completes(reference, media, cfg, tmp_path, monkeypatch):
    db = tmp_path / "library.db"
    process_collection([media["astronaut_a"]], db, cfg, workers=1, quiet=True)   # tables exist from here on

    class SmallDisk(Gallery):     # SQLite's page limit gives the same SQLITE_FULL error as a full disk
        def __init__(self, path, *args, **kwargs):
            super().__init__(path, *args, **kwargs)
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {pages + 1}")

    monkeypatch.setattr(library, "Gallery", SmallDisk)
    with pytest.raises(DiskFullError, match="disk full"):
        process_collection([media["lib"]], db, cfg, workers=1, quiet=True)
    partial = library_contents(db)
    stored = {row[0] for row in partial["files"] if row[1] == "done"}
    assert {row[0] for row in partial["observations"]} <= stored
    reference_rows = [r for r in reference[2]["observations"] if r[0] in stored]
    assert len(partial["observations"]) == len(reference_rows)       # every stored file is whole
    monkeypatch.setattr(library, "Gallery", Gallery)
    process_collection([media["lib"]], db, cfg, workers=1, quiet=True)
    assert compare_contents(library_contents(db), reference[2]) == []


def _task_that_dies_on(path: str, digest: str, cfg) -> FileOutcome:
    """Stands in for analyse_file in pool workers: a file named 'kill...' kills its worker."""
    if Path(path).name.startswith("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    return FileOutcome(path=path, content_hash=digest)


def test_killed_worker_fails_only_its_file_and_the_run_goes_on(cfg):
    jobs = [(name, f"hash-{name}") for name in ("a", "b", "kill-me", "c", "d")]
    outcomes = list(library._run_pool(iter(jobs), cfg, workers=2, task=_task_that_dies_on))
    by_path = {o.path: o for o in outcomes}
    assert sorted(by_path) == sorted(name for name, _ in jobs) and len(outcomes) == len(jobs)
    assert by_path["kill-me"].error == WORKER_DIED
    assert all(o.error is None for name, o in by_path.items() if name != "kill-me")


def test_a_worker_dying_between_two_submits_sends_their_files_to_be_retried_alone(cfg):
    """The pool can break while the parent submits (a worker killed from outside): found by the fault injection."""
    from collections import deque
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class BreakingPool:
        def __init__(self):
            self.submitted = 0

        def submit(self, task, path, digest, cfg):
            self.submitted += 1
            if self.submitted == 2:
                raise BrokenProcessPool("a child process terminated abruptly")
            return Future()                   # in flight, never done

    suspects: deque = deque()
    jobs = iter([("a", "hash-a"), ("b", "hash-b"), ("c", "hash-c")])
    drained = library._drain_pool(BreakingPool(), jobs, suspects, 2, cfg, _task_that_dies_on)
    with pytest.raises(StopIteration) as stop:
        next(drained)
    assert stop.value.value is True                              # broken: a fresh pool takes over
    assert sorted(suspects) == [("a", "hash-a"), ("b", "hash-b")] and next(jobs) == ("c", "hash-c")


@pytest.mark.slow
def test_process_pool_gives_the_same_store_as_one_worker(reference, media, cfg, tmp_path):
    db = tmp_path / "library.db"
    summary = process_collection([media["lib"]], db, cfg, workers=2, quiet=True)
    assert len(summary.processed) == GOOD_FILES
    assert compare_contents(library_contents(db), reference[2]) == []


@pytest.mark.slow
def test_ray_engine_gives_the_same_store_as_local(reference, media, cfg, tmp_path):
    pytest.importorskip("ray")
    db = tmp_path / "library.db"
    summary = process_collection([media["lib"]], db, cfg, workers=2, engine="ray", quiet=True)
    assert len(summary.processed) == GOOD_FILES
    assert compare_contents(library_contents(db), reference[2]) == []


def test_search_by_photo_finds_the_files_where_the_face_appears(reference, media, cfg):
    hits = search(reference[0], image=str(media["query_face"]), cfg=cfg)
    faces = [h for h in hits if h.modality == "face"]
    expected = {str(media["astronaut_a"]), str(media["astronaut_b"]), str(media["talk"])}
    assert {h.file for h in faces} == expected                      # and not Grace Hopper's photo
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    video_hit = next(h for h in faces if h.file == str(media["talk"]))
    assert video_hit.ranges and video_hit.ranges[0][1] > video_hit.ranges[0][0]   # a time range in the video


def test_search_by_voice_ranks_the_same_voice_first(reference, media, cfg):
    hits = search(reference[0], audio=str(media["query_voice"]), cfg=cfg)
    assert hits and all(h.modality == "voice" for h in hits)
    assert {h.file for h in hits[:2]} == {str(media["male_1"]), str(media["male_2"])}
    assert all(h.ranges for h in hits)


def test_search_takes_the_same_vectors_from_a_file_as_query(media, cfg):
    from avid.pipeline.identify import evidence_from
    from avid.pipeline.models import Models

    models = Models(cfg)
    vectors = query_vectors(cfg, video=str(media["talk"]), models=models)
    evidence = evidence_from(media["talk"], cfg, models)
    assert set(vectors) == {"face", "voice"}
    assert (vectors["face"] == evidence.face).all() and (vectors["voice"] == evidence.voice).all()


def test_unknown_clusters_join_face_and_voice_and_naming_them_feeds_search(reference, media, cfg, tmp_path):
    db = copy_store(reference[0], tmp_path)
    clusters = unknown_clusters(db, cfg)
    astronaut = next(c for c in clusters if str(media["astronaut_a"]) in c.files)
    assert astronaut.n_face == 3 and str(media["talk"]) in astronaut.files
    assert astronaut.n_voice >= 1                  # the video's speech, heard with her face, joins her cluster
    hopper = next(c for c in clusters if str(media["hopper"]) in c.files)
    assert hopper.id != astronaut.id and (hopper.n_face, hopper.n_voice) == (1, 0)
    male = next(c for c in clusters if str(media["male_1"]) in c.files)
    assert str(media["male_2"]) in male.files and male.n_face == 0
    thumbnail = Path(astronaut.thumbnail)
    assert thumbnail.is_file() and stat.S_IMODE(thumbnail.stat().st_mode) == 0o600
    assert stat.S_IMODE(thumbnail.parent.stat().st_mode) == 0o700

    person, n = name_cluster(db, astronaut.id, "Eileen Collins")
    assert n == astronaut.n_face + astronaut.n_voice and person.n_face == 3
    assert all(str(media["astronaut_a"]) not in c.files for c in unknown_clusters(db, cfg))
    hits = search(db, person="Eileen Collins", cfg=cfg)
    assert {h.file for h in hits if h.modality == "face"} >= {str(media["astronaut_a"]), str(media["talk"])}
    assert all(h.person == "Eileen Collins" for h in hits if h.file == str(media["astronaut_b"]))
    with pytest.raises(StoreError, match="no unknown cluster 999"):
        name_cluster(db, 999, "Someone Else")


def test_cli_search_prints_json(reference, media, capsys):
    from avid.cli import main

    assert main(["search", "--audio", str(media["query_voice"]), "--db", str(reference[0]), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["file"] in {str(media["male_1"]), str(media["male_2"])} and hits[0]["modality"] == "voice"



def test_cli_people_unknown_then_name_then_search_by_name(reference, tmp_path, capsys):
    from avid.cli import main

    db = str(copy_store(reference[0], tmp_path))
    assert main(["people", "unknown", "--db", db, "--json"]) == 0
    clusters = json.loads(capsys.readouterr().out)
    biggest = clusters[0]
    assert biggest["cluster"] == 1 and biggest["faces"] + biggest["voices"] >= 2
    assert main(["people", "name", "1", "Person One", "--db", db]) == 0
    capsys.readouterr()
    assert main(["search", "--person", "Person One", "--db", db, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {h["file"] for h in hits} >= set(biggest["files"])
    assert all(h["person"] == "Person One" for h in hits if h["file"] in biggest["files"])


def test_large_library_search_uses_a_cached_faiss_index(reference, media, tmp_path):
    pytest.importorskip("faiss")
    db = copy_store(reference[0], tmp_path)
    exact_hits = search(db, audio=str(media["query_voice"]), cfg=load_config())
    faiss_cfg = load_config(overrides={"index": {"faiss_min_size": 1}})
    hits = search(db, audio=str(media["query_voice"]), cfg=faiss_cfg)
    assert [(h.file, round(h.score, 4), h.ranges) for h in hits] == \
        [(h.file, round(h.score, 4), h.ranges) for h in exact_hits]
    cache = tmp_path / f"{db.name}-index" / "voice.faiss"
    assert cache.is_file() and stat.S_IMODE(cache.stat().st_mode) == 0o600
    built = cache.stat().st_mtime_ns
    assert search(db, audio=str(media["query_voice"]), cfg=faiss_cfg) == hits
    assert cache.stat().st_mtime_ns == built                 # the second search loaded it, did not rebuild


def test_delete_removes_the_caches_and_stores_of_one_stem_do_not_share_one(reference, media, tmp_path, cfg):
    """Issue 13, items 1 and 5: after `people delete` no FAISS cache or thumbnail of the library is left; and
    lib.db and lib.sqlite side by side keep their own caches."""
    pytest.importorskip("faiss")
    db = copy_store(reference[0], tmp_path)
    other = tmp_path / f"{db.stem}.sqlite"
    shutil.copy(db, other)
    faiss_cfg = load_config(overrides={"index": {"faiss_min_size": 1}})
    search(db, audio=str(media["query_voice"]), cfg=faiss_cfg)
    search(other, audio=str(media["query_voice"]), cfg=faiss_cfg)
    assert (tmp_path / f"{db.name}-index").is_dir() and (tmp_path / f"{other.name}-index").is_dir()
    clusters = unknown_clusters(db, cfg)
    assert any(c.thumbnail for c in clusters)
    name_cluster(db, next(c.id for c in clusters if c.thumbnail), "Person One", cfg)
    with Gallery(db) as gallery:
        gallery.delete("Person One")
    assert not (tmp_path / f"{db.name}-index").exists() and not (tmp_path / f"{db.name}-thumbnails").exists()
    assert (tmp_path / f"{other.name}-index").is_dir()       # the other store's cache is its own
