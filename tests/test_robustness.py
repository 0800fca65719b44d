"""Bad stores, full disks and misclassified failures (issue 13, items 8 and 10): each is one line naming the file and
the problem, with a documented exit code, and nothing already stored is lost or written into a damaged file."""
from __future__ import annotations

import errno
import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from avid.cli import EXIT_ALL_FAILED, EXIT_PARTIAL, main
from avid.config import load_config
from avid.errors import DiskFullError, MediaError, StoreError
from avid.identity import store as gallery_module
from avid.identity.store import Gallery
from avid.library import collection as library
from tests import media as synthetic


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str, *words: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err and all(w in err for w in words)


def filled_gallery(path: Path, people: int = 3, per_person: int = 20) -> Path:
    rng = np.random.default_rng(0)
    with Gallery(path) as g:
        for p in range(people):
            g.add_person(f"Person {p}")
            for i in range(per_person):
                g.add_observation(f"Person {p}", "face", rng.standard_normal(128).astype(np.float32), "dlib",
                                  f"/media/{p}-{i}.jpg")
        g._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def damage(path: Path) -> str:
    """Overwrite a page in the middle of the file (a bad sector, a torn copy); the file's digest after it."""
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) >= 6 * page
    middle = (len(data) // page // 2) * page
    data[middle:middle + page] = np.random.default_rng(1).integers(0, 256, page, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ damaged store


@pytest.mark.parametrize("argv", [["people", "list"], ["people", "show", "Person 1"],
                                  ["people", "delete", "Person 1", "--yes"], ["query", "--image", "IMG"],
                                  ["enroll", "Someone", "--image", "IMG"], ["search", "--person", "Person 1"],
                                  ["process", "IMG", "--db"]])
def test_a_damaged_store_is_refused_and_never_written(tmp_path, capsys, argv):
    db = filled_gallery(tmp_path / "g.db")
    digest = damage(db)
    image = synthetic.write_image(tmp_path / "face.jpg", synthetic.astronaut_face())
    argv = [str(image) if a == "IMG" else a for a in argv]
    argv += [str(db)] if argv[-1] == "--db" else ["--db", str(db)]
    code, _, err = run_cli(capsys, *argv)
    assert code == StoreError.exit_code
    assert one_line(err, str(db), "damaged")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


# ------------------------------------------------------------------------------------------------ full disk


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_process_out_is_one_line_and_leaves_no_temporary_file(speech_wav, tmp_path, capsys,
                                                                                monkeypatch):
    monkeypatch.setattr(np, "savez", enospc)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "process", str(speech_wav), "--out", str(out))
    assert code == DiskFullError.exit_code
    assert one_line(err, str(out / "speech.npz"), "disk full")
    assert list(out.iterdir()) == []


def disk_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    return error


class FullDisk:
    """A connection to a store on a full disk: every change fails the way SQLite fails then (SQLITE_FULL)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __getattr__(self, name):
        return getattr(self._db, name)

    def execute(self, sql: str, *args):
        self._refuse(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args):
        self._refuse(sql)
        return self._db.executemany(sql, *args)

    @staticmethod
    def _refuse(sql: str) -> None:
        if sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
            raise disk_full()


class FullGallery(Gallery):
    def _setup(self):
        super()._setup()
        self._db = FullDisk(self._db)


@pytest.mark.parametrize("argv", [["enroll", "Someone", "--image", "IMG", "--add"], ["train"]])
def test_full_disk_during_enroll_or_train_is_one_line_and_stores_nothing(tmp_path, capsys, monkeypatch, argv):
    db = filled_gallery(tmp_path / "g.db", people=2, per_person=2)
    with Gallery(db) as g:
        g.add_person("Someone")
        g._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = library_rows(db)
    image = synthetic.write_image(tmp_path / "face.jpg", synthetic.astronaut_face())
    monkeypatch.setattr(gallery_module, "Gallery", FullGallery)
    code, _, err = run_cli(capsys, *[str(image) if a == "IMG" else a for a in argv], "--db", str(db))
    assert code == DiskFullError.exit_code
    assert one_line(err, str(db), "disk full")
    assert library_rows(db) == before


def test_full_disk_during_delete_scrub_says_so(tmp_path, capsys, monkeypatch):
    db = filled_gallery(tmp_path / "g.db", people=2, per_person=2)

    def full_scrub(self):
        raise disk_full()

    monkeypatch.setattr(Gallery, "_scrub", full_scrub)
    code, _, err = run_cli(capsys, "people", "delete", "Person 1", "--yes", "--db", str(db))
    assert code == DiskFullError.exit_code
    assert one_line(err, str(db), "disk full", "Person 1")


def test_full_disk_while_creating_a_store_says_disk_full_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    class NoRoom(Gallery):
        def _setup(self):
            self._db.execute("PRAGMA max_page_count = 1")
            super()._setup()

    monkeypatch.setattr(gallery_module, "Gallery", NoRoom)
    db = tmp_path / "new.db"
    image = synthetic.write_image(tmp_path / "face.jpg", synthetic.astronaut_face())
    code, _, err = run_cli(capsys, "enroll", "Someone", "--image", str(image), "--db", str(db))
    assert code == DiskFullError.exit_code
    assert one_line(err, str(db), "disk full") and "not an avid gallery" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg"]


def library_rows(db: Path) -> list:
    with sqlite3.connect(db) as conn:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("people", "observations", "model")]


# ------------------------------------------------------------------------------------------------ what failed


def test_empty_and_text_files_are_failures_not_duplicates(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.wav"):
        synthetic.write_empty(folder / name)
    for name in ("d.jpg", "e.jpg"):
        synthetic.write_text_as(folder / name)
    synthetic.write_image(folder / "f.jpg", synthetic.astronaut_face())
    synthetic.write_image(folder / "g.jpg", synthetic.astronaut_face())           # a true duplicate of f
    summary = library.process_collection([folder], tmp_path / "lib.db", load_config(), workers=1,
                                         quiet=True)
    assert sorted(Path(p).name for p, _ in summary.failed) == ["a.mp4", "b.mp4", "c.wav", "d.jpg", "e.jpg"]
    assert [Path(p).name for p in summary.duplicates] == ["g.jpg"]
    assert all(error for _, error in summary.failed)


def test_text_renamed_flac_is_not_audio(tmp_path):
    path = synthetic.write_text_as(tmp_path / "notes.flac")
    summary = library.process_collection([path], tmp_path / "lib.db", load_config(), workers=1, quiet=True)
    assert summary.failed and not summary.processed
    assert "not audio" in summary.failed[0][1]


def test_audio_in_an_encoding_ffmpeg_cannot_decode_is_one_line(tmp_path, capsys):
    """A WAV whose format tag no decoder knows (as scipy's 36-bit test files): refused naming it, no traceback."""
    import struct

    fmt = struct.pack("<HHIIHH", 0x1234, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 3200) + bytes(3200)
    path = tmp_path / "odd.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    code, _, err = run_cli(capsys, "process", str(path), "--out", str(tmp_path / "out"))
    assert code == 3 and "odd.wav: unsupported audio encoding" in err and "Traceback" not in err


def test_process_db_where_every_input_fails_leaves_no_store(tmp_path, capsys):
    bad = [synthetic.write_empty(tmp_path / "a.mp4"), synthetic.write_text_as(tmp_path / "b.wav")]
    db = tmp_path / "lib.db"
    code, _, err = run_cli(capsys, "process", *map(str, bad), "--db", str(db))
    assert code == EXIT_ALL_FAILED
    assert all(str(p) in err for p in bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.wav"]


def test_process_out_exit_codes_partial_and_all_failed(speech_wav, tmp_path, capsys):
    bad = synthetic.write_empty(tmp_path / "a.mp4")
    assert run_cli(capsys, "process", str(bad), str(speech_wav), "--out", str(tmp_path / "o1"))[0] == EXIT_PARTIAL
    text = synthetic.write_text_as(tmp_path / "b.wav")
    assert run_cli(capsys, "process", str(bad), str(text), "--out", str(tmp_path / "o2"))[0] == EXIT_ALL_FAILED
    assert run_cli(capsys, "process", str(bad), "--out", str(tmp_path / "o3"))[0] == MediaError.exit_code


@pytest.mark.parametrize("argv", [["search", "--person", "Ann"], ["search", "--image", "IMG"],
                                  ["search", "--text", "hello"], ["people", "unknown"], ["people", "list"],
                                  ["people", "name", "1", "Ann"], ["query", "--image", "IMG"], ["train"],
                                  ["label", "IMG", "--out", "OUT"]])
def test_read_only_commands_never_create_a_store(tmp_path, capsys, argv):
    image = synthetic.write_image(tmp_path / "face.jpg", synthetic.astronaut_face())
    db = tmp_path / "missing.db"
    argv = [str(image) if a == "IMG" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code, _, err = run_cli(capsys, *argv, "--db", str(db))
    assert code == StoreError.exit_code
    assert one_line(err, str(db), "no ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg"]
