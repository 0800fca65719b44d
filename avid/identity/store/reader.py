"""Reading a store without being able to change it: a read-only SQLite connection (``mode=ro``) beside the writer's.

The store is in WAL mode, so a reader sees the last committed state, never waits for a writer and never holds one
up. The library's searches read here, and so does every page of ``avid serve``. A reader neither creates a store
nor upgrades one: a version 2 store that no writer of this version has opened yet may lack the library's tables
(schema.py, migration 3), and what they would hold then reads as empty.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

from ...types import Person
from .base import check_health, existing_store, from_blob

# The library's observations of one modality: those of files it has finished.
_LIBRARY_ROWS = ("FROM observations o JOIN files f ON f.content_hash = o.content_hash AND f.status = 'done' "
                 "WHERE o.modality = ?")
_CHUNK = 500      # ids per statement: under SQLite's limit on bound parameters, however it was built


@dataclass
class LibraryObservations:
    """The library's observations of one modality, as a matrix with their file, times and names."""

    ids: np.ndarray
    vectors: np.ndarray
    sources: list[str]
    hashes: list[str]
    spans: np.ndarray             # (n, 2) start, end
    names: list[Optional[str]]


class ObservationPlace(NamedTuple):
    """Where an observation is: its file and time range, and whose it is."""

    id: int
    path: str
    content_hash: str
    start: Optional[float]
    end: Optional[float]
    person: Optional[str]         # the person's name; None when unnamed


class TextMatch(NamedTuple):
    """A speaker turn whose words match a full-text search."""

    source: str
    words: list                   # [start, end, word] each
    person: Optional[str]
    cluster: Optional[int]        # its unknown cluster, when unnamed and clustered
    snippet: str                  # the text around the match, matched words in [brackets]
    rank: float                   # FTS5 bm25: lower is better


class FileSummary(NamedTuple):
    id: int
    path: str
    status: str
    error: Optional[str]
    n_face: int
    n_voice: int


class PersonSummary(NamedTuple):
    id: int
    name: str
    created: str
    faces: int                    # face observations
    voices: int                   # voice observations
    files_seen: int               # library files with their face
    files_heard: int              # library files with their voice
    seconds_heard: float


class Appearance(NamedTuple):
    """One of a person's observations; ``file_id`` and ``path`` are None when it is not from a library file."""

    modality: str
    source: str
    start: Optional[float]
    end: Optional[float]
    learned: Optional[str]
    file_id: Optional[int]
    path: Optional[str]


class ClusterMember(NamedTuple):
    """An unnamed observation of an unknown cluster (as last clustered), with its library file."""

    cluster: int
    id: int
    modality: str
    embedding: bytes
    dim: int
    start: Optional[float]
    end: Optional[float]
    file_id: Optional[int]
    path: Optional[str]

    @property
    def vector(self) -> np.ndarray:      # decoded on demand: pages only look at the faces'
        return from_blob(self.embedding, self.dim)


class FileObservation(NamedTuple):
    """A face track or speaker turn of one library file, with whose it is and what the library keeps of it."""

    id: int
    modality: str
    start: Optional[float]
    end: Optional[float]
    track: Optional[int]
    person_id: Optional[int]
    person: Optional[str]
    cluster: Optional[int]
    box: Optional[list]           # a face's best detection: [time, x1, y1, x2, y2]
    words: Optional[list]         # a speaker turn's words: [start, end, word] each


class StoreReader:
    """A read-only connection to a store; close it (or use it in a ``with``) when done.

    ``checked``: refuse a store that is not there (StoreError: reading never creates one) and a damaged one before
    anything reads it. The web app checks once when it starts, and its pages then read unchecked: a store removed
    or damaged while it serves fails as sqlite3.Error, which it answers itself.
    """

    def __init__(self, path: str | Path, checked: bool = True):
        self.path = Path(path)
        if checked:
            existing_store(self.path)
        self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        self._tables: Optional[set[str]] = None
        if checked:
            try:
                check_health(self._db, self.path)
            except BaseException:
                self._db.close()
                raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def tables(self) -> set[str]:
        """The names of the store's tables (and views), read once."""
        if self._tables is None:
            self._tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master "
                                                           "WHERE type IN ('table', 'view')")}
        return self._tables

    # ------------------------------------------------------------------------------------------ the library
    def done_hashes(self) -> set[str]:
        """The content hashes of the files the library has finished (a rerun skips them)."""
        return {row[0] for row in self._db.execute("SELECT content_hash FROM files WHERE status = 'done'")}

    def library_signature(self, modality: str) -> tuple[int, Optional[int], float]:
        """(count, largest id, sum of ids) of the library's observations of one modality: it changes whenever the
        set of them does, so it tells whether an index built over them is still current."""
        count, max_id, id_total = self._db.execute(f"SELECT count(*), max(o.id), total(o.id) {_LIBRARY_ROWS}",
                                                   (modality,)).fetchone()
        return count, max_id, id_total

    def library_vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, observation ids) of the library's observations of one modality, in id order."""
        rows = self._db.execute(f"SELECT o.id, o.embedding, o.dim {_LIBRARY_ROWS} ORDER BY o.id",
                                (modality,)).fetchall()
        return np.stack([from_blob(r[1], r[2]) for r in rows]), np.array([r[0] for r in rows], dtype=np.int64)

    def observation_places(self, observation_ids: Sequence[int]) -> list[ObservationPlace]:
        """Where each of the observations is (those in a file of the library)."""
        ids = [int(i) for i in observation_ids]
        rows = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            rows += self._db.execute(
                "SELECT o.id, f.path, o.content_hash, o.start, o.end, p.name FROM observations o "
                "JOIN files f ON f.content_hash = o.content_hash LEFT JOIN people p ON p.id = o.person_id "
                f"WHERE o.id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return [ObservationPlace(*row) for row in rows]

    def has_text_index(self) -> bool:
        """Whether the store has the full-text index of what was said (see the module docstring)."""
        return "library_text" in self.tables()

    def has_person_named(self, name: str) -> bool:
        """Whether someone has exactly this name."""
        return self._db.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    def text_matches(self, phrase: str, person: Optional[str], limit: int) -> list[TextMatch]:
        """The speaker turns whose text matches ``phrase`` (an FTS5 query), best first, at most ``limit``;
        ``person``: only those of the person of exactly that name."""
        if not self.has_text_index():
            return []
        sql = ("SELECT o.source, w.words, p.name, c.cluster_id, snippet(library_text, 0, '[', ']', '...', 12), "
               "bm25(library_text) AS rank FROM library_text t JOIN observations o ON o.id = t.observation_id "
               "JOIN library_words w ON w.observation_id = o.id LEFT JOIN people p ON p.id = o.person_id "
               "LEFT JOIN library_clusters c ON c.observation_id = o.id WHERE library_text MATCH ?")
        params: list = [phrase]
        if person is not None:
            sql += " AND p.name = ?"
            params.append(person)
        rows = self._db.execute(sql + " ORDER BY rank LIMIT ?", params + [int(limit)]).fetchall()
        return [TextMatch(source, json.loads(words), name, cluster, snippet, float(rank))
                for source, words, name, cluster, snippet, rank in rows]

    def library_observations(self, modality: str, unnamed_only: bool = False) -> LibraryObservations:
        """The library's observations of one modality (``unnamed_only``: those nobody is named for), in id order."""
        sql = ("SELECT o.id, o.embedding, o.dim, f.path, o.content_hash, o.start, o.end, p.name FROM observations o "
               "JOIN files f ON f.content_hash = o.content_hash AND f.status = 'done' "
               "LEFT JOIN people p ON p.id = o.person_id WHERE o.modality = ?")
        if unnamed_only:
            sql += " AND o.person_id IS NULL"
        rows = self._db.execute(sql + " ORDER BY o.id", (modality,)).fetchall()
        if not rows:
            return LibraryObservations(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), [], [],
                                       np.zeros((0, 2)), [])
        return LibraryObservations(
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            vectors=np.stack([from_blob(r[1], r[2]) for r in rows]),
            sources=[r[3] for r in rows], hashes=[r[4] for r in rows],
            spans=np.array([(r[5] or 0.0, r[6] or 0.0) for r in rows], dtype=np.float64),
            names=[r[7] for r in rows])

    def voice_face_pairs(self) -> dict[int, int]:
        """{unnamed voice observation: the face observation seen saying it}, for the voices paired at ingest."""
        return dict(self._db.execute("SELECT id, paired_with FROM observations WHERE modality = 'voice' AND "
                                     "person_id IS NULL AND paired_with IS NOT NULL").fetchall())

    def face_boxes(self) -> dict[int, tuple]:
        """{face observation: (time, x1, y1, x2, y2) where it is best seen} for every library face."""
        if "library_faces" not in self.tables():
            return {}
        return {r[0]: r[1:] for r in self._db.execute("SELECT observation_id, time, x1, y1, x2, y2 "
                                                      "FROM library_faces")}

    def library_contents(self) -> dict:
        """The library's files (content hash, status, error) and observations, in a canonical order without row ids
        or times (avid.library.collection.library_contents)."""
        files = sorted(self._db.execute("SELECT content_hash, status, error FROM files").fetchall())
        observations = sorted(self._db.execute(
            "SELECT o.content_hash, o.modality, o.track_id, round(o.start, 3), round(o.end, 3), o.embedding, "
            "o.backend, (SELECT p.track_id FROM observations p WHERE p.id = o.paired_with), "
            "(SELECT json_array(round(time, 3), round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)) "
            " FROM library_faces WHERE observation_id = o.id) "
            "FROM observations o WHERE o.content_hash IN (SELECT content_hash FROM files)").fetchall(),
            key=lambda r: tuple("" if v is None else str(v) for v in r[:5]))
        return {"files": files, "observations": observations}

    # ------------------------------------------------------------------------------------------ overview
    def recordings(self, limit: Optional[int] = None) -> list[FileSummary]:
        """The files the library knows, by path, with how many face tracks and speaker turns each gave."""
        rows = self._db.execute(
            "SELECT f.id, f.path, f.status, f.error, "
            "(SELECT count(*) FROM observations o WHERE o.content_hash = f.content_hash AND o.modality = 'face'), "
            "(SELECT count(*) FROM observations o WHERE o.content_hash = f.content_hash AND o.modality = 'voice') "
            "FROM files f ORDER BY f.path, f.id" + ("" if limit is None else f" LIMIT {int(limit)}")).fetchall()
        return [FileSummary(*row) for row in rows]

    def failed_since(self, started: str) -> int:
        """How many files failed at or after ``started`` (a stored time)."""
        return self._db.execute("SELECT count(*) FROM files WHERE status = 'failed' AND processed_at >= ?",
                                (started,)).fetchone()[0]

    def file_counts(self) -> dict[str, int]:
        """{status: how many files}."""
        return dict(self._db.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())

    def observation_counts(self) -> tuple[int, int]:
        """(named, unnamed) observations."""
        named, unnamed = self._db.execute("SELECT count(person_id), count(*) - count(person_id) "
                                          "FROM observations").fetchone()
        return named, unnamed

    def unnamed_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM observations WHERE person_id IS NULL").fetchone()[0]

    def people_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM people").fetchone()[0]

    def unknown_cluster_count(self) -> int:
        """How many clusters of the last clustering still hold an unnamed observation."""
        if "library_clusters" not in self.tables():
            return 0
        return self._db.execute("SELECT count(DISTINCT c.cluster_id) FROM library_clusters c JOIN observations o "
                                "ON o.id = c.observation_id WHERE o.person_id IS NULL").fetchone()[0]

    def has_transcripts(self) -> bool:
        """Whether anything said is stored."""
        return "library_words" in self.tables() and self._db.execute(
            "SELECT count(*) FROM library_words").fetchone()[0] > 0

    # ------------------------------------------------------------------------------------------ people
    def people_summaries(self) -> list[PersonSummary]:
        """Everyone, by name, with their observations and the library files they are seen or heard in."""
        rows = self._db.execute("""
            SELECT p.id, p.name, p.created,
                   (SELECT count(*) FROM observations o WHERE o.person_id = p.id AND o.modality = 'face'),
                   (SELECT count(*) FROM observations o WHERE o.person_id = p.id AND o.modality = 'voice'),
                   (SELECT count(DISTINCT f.id) FROM observations o JOIN files f ON f.content_hash = o.content_hash
                     WHERE o.person_id = p.id AND o.modality = 'face'),
                   (SELECT count(DISTINCT f.id) FROM observations o JOIN files f ON f.content_hash = o.content_hash
                     WHERE o.person_id = p.id AND o.modality = 'voice'),
                   (SELECT total(o.end - o.start) FROM observations o JOIN files f ON f.content_hash = o.content_hash
                     WHERE o.person_id = p.id AND o.modality = 'voice')
            FROM people p ORDER BY p.name""").fetchall()
        return [PersonSummary(*row) for row in rows]

    def person(self, person_id: int) -> Optional[Person]:
        """The person with this id, or None."""
        row = self._db.execute("SELECT id, name, created FROM people WHERE id = ?", (int(person_id),)).fetchone()
        return None if row is None else Person(id=row[0], name=row[1], created=row[2])

    def appearances(self, person_id: int) -> list[Appearance]:
        """A person's observations, by library file (finished ones) and time; those from elsewhere first."""
        rows = self._db.execute(
            "SELECT o.modality, o.source, o.start, o.end, o.learned, f.id, f.path FROM observations o "
            "LEFT JOIN files f ON f.content_hash = o.content_hash AND f.status = 'done' "
            "WHERE o.person_id = ? ORDER BY f.path, o.start", (int(person_id),)).fetchall()
        return [Appearance(*row) for row in rows]

    def largest_library_face(self, person_id: int) -> Optional[int]:
        """The person's library face observation whose best detection is the largest, or None."""
        if "library_faces" not in self.tables():
            return None
        row = self._db.execute("SELECT o.id FROM observations o JOIN library_faces b ON b.observation_id = o.id "
                               "WHERE o.person_id = ? ORDER BY (b.x2 - b.x1) * (b.y2 - b.y1) DESC LIMIT 1",
                               (person_id,)).fetchone()
        return row[0] if row else None

    def face_sources(self, person_id: int) -> Iterator[tuple[int, str]]:
        """(observation id, source file) of each of the person's faces, in id order, read as they are taken."""
        yield from self._db.execute("SELECT id, source FROM observations WHERE person_id = ? AND modality = 'face' "
                                    "ORDER BY id", (person_id,))

    def unknown_cluster_members(self) -> list[ClusterMember]:
        """The observations of the last clustering that are still unnamed, by cluster and id."""
        if "library_clusters" not in self.tables():
            return []
        rows = self._db.execute(
            "SELECT c.cluster_id, o.id, o.modality, o.embedding, o.dim, o.start, o.end, f.id, f.path "
            "FROM library_clusters c JOIN observations o ON o.id = c.observation_id "
            "LEFT JOIN files f ON f.content_hash = o.content_hash "
            "WHERE o.person_id IS NULL ORDER BY c.cluster_id, o.id").fetchall()
        return [ClusterMember(*row) for row in rows]

    # ------------------------------------------------------------------------------------------ one file
    def file(self, file_id: int) -> Optional[tuple[int, str, str, Optional[str], str]]:
        """(id, path, status, error, content hash) of a file the store records, or None."""
        return self._db.execute("SELECT f.id, f.path, f.status, f.error, f.content_hash FROM files f WHERE f.id = ?",
                                (int(file_id),)).fetchone()

    def file_observations(self, content_hash: str) -> list[FileObservation]:
        """The observations of one file by start time, each with its person, cluster, box and words."""
        tables = self.tables()
        cluster_sql = ("(SELECT cluster_id FROM library_clusters WHERE observation_id = o.id)"
                       if "library_clusters" in tables else "NULL")
        box_sql = ("(SELECT json_array(time, x1, y1, x2, y2) FROM library_faces WHERE observation_id = o.id)"
                   if "library_faces" in tables else "NULL")
        words_sql = ("(SELECT words FROM library_words WHERE observation_id = o.id)"
                     if "library_words" in tables else "NULL")
        rows = self._db.execute(
            f"SELECT o.id, o.modality, o.start, o.end, o.track_id, p.id, p.name, {cluster_sql}, {box_sql}, "
            f"{words_sql} FROM observations o LEFT JOIN people p ON p.id = o.person_id WHERE o.content_hash = ? "
            "ORDER BY o.start, o.id", (content_hash,)).fetchall()
        return [FileObservation(*row[:8], json.loads(row[8]) if row[8] else None,
                                json.loads(row[9]) if row[9] else None) for row in rows]

    def file_path(self, file_id: int) -> Optional[str]:
        """The path of a file the store records, by its id."""
        row = self._db.execute("SELECT path FROM files WHERE id = ?", (int(file_id),)).fetchone()
        return row[0] if row else None

    def file_ids_by_path(self) -> dict[str, int]:
        """{path: file id} of the finished files (the latest id where a path was processed twice)."""
        return {path: file_id for file_id, path in self._db.execute("SELECT id, path FROM files WHERE status = "
                                                                    "'done' ORDER BY id")}

    def face_place(self, observation_id: int) -> Optional[tuple[str, Optional[str]]]:
        """(source, library file path or None) of a face observation; None when there is no such face."""
        return self._db.execute("SELECT o.source, f.path FROM observations o LEFT JOIN files f ON f.content_hash = "
                                "o.content_hash WHERE o.id = ? AND o.modality = 'face'",
                                (int(observation_id),)).fetchone()

    def face_box(self, observation_id: int) -> Optional[list[float]]:
        """[time, x1, y1, x2, y2] where a library face is best seen, or None."""
        if "library_faces" not in self.tables():
            return None
        row = self._db.execute("SELECT time, x1, y1, x2, y2 FROM library_faces WHERE observation_id = ?",
                               (int(observation_id),)).fetchone()
        return None if row is None else list(row)

    def voice_place(self, observation_id: int) -> Optional[tuple[str, Optional[float], Optional[float]]]:
        """(library file path, start, end) of a voice observation, or None."""
        return self._db.execute("SELECT f.path, o.start, o.end FROM observations o JOIN files f ON f.content_hash = "
                                "o.content_hash WHERE o.id = ? AND o.modality = 'voice'",
                                (int(observation_id),)).fetchone()
