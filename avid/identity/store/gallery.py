"""The gallery: known people, their face and voice observations, prototypes and the shared model.

The tables themselves are in avid/identity/store/schema.py; the library's records in the same file are read and
written by avid/identity/store/library.py (mixed into ``Gallery``) and reader.py (read-only).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ...errors import DISK_FULL, DiskFullError, StoreError
from ...types import Match, Person
from ...vectors import unit_mean, unit_rows
from . import schema
from .base import (CACHES, MODALITIES, SPACES, check_health, clean_name, companion, default_path, from_blob,
                   name_key, now, remove_store, store_error, to_blob)
from .library import LibraryRecords


@dataclass
class Observation:
    """One stored face or voice embedding."""

    id: int
    person_id: Optional[int]
    modality: str
    source: str
    embedding: np.ndarray
    backend: str
    dim: int
    content_hash: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    track_id: Optional[int] = None
    paired_with: Optional[int] = None
    person: Optional[str] = None      # the person's name, when named
    learned: Optional[dict] = None    # how it was learned from the library (avid.identity.learning); None:
                                      # enrolled or named


class Gallery(LibraryRecords):
    """A store opened to read and write: people, observations, prototypes, the shared model and (LibraryRecords)
    the library's records, in one SQLite file (see avid.identity.store)."""

    def __init__(self, path: str | Path | None = None, timeout: float = 30.0):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._depth = 0
        created = self._create_private(self.path)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database ({exc})", self.path) from None
        try:
            self._setup()
        except BaseException as exc:
            self._db.close()
            if created:          # a store that could not be made is not left behind, empty
                remove_store(self.path)
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, self.path) from None
            raise

    # ------------------------------------------------------------------------------------------ opening
    @staticmethod
    def _create_private(path: Path) -> bool:
        """Create the file (and any missing directory) readable by the user only, before SQLite opens it; an
        existing file of the user's is made private too, whoever created it. True when this call created it."""
        if path.is_symlink() and not path.exists():
            raise StoreError("is a symbolic link to nothing (give the real file, or a new path)", path)
        if path.exists():
            if not path.is_file():
                raise StoreError("not a file", path)
            if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return False
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for directory in reversed(missing):
                directory.mkdir(mode=0o700)
                os.chmod(directory, 0o700)       # mkdir's mode is filtered by the umask
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False                         # another process created it just now
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise DiskFullError("disk full: cannot create the database (free space and run again)",
                                    path) from None
            raise StoreError(f"cannot create database ({exc.strerror})", path) from None
        os.fchmod(fd, 0o600)
        os.close(fd)
        return True

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA secure_delete = ON")   # deleted rows are overwritten, not just unlinked
        db.execute("PRAGMA busy_timeout = 30000")
        tables = schema.table_names(db)
        if not tables:
            db.execute("PRAGMA journal_mode = WAL")
            with self.transaction():
                if not schema.is_empty(db):
                    return self._check_version()  # created concurrently by another process
                schema.create(db, now())
            return
        if not schema.is_ours(db, tables):
            raise StoreError("not an avid gallery database (it holds other tables)", self.path)
        check_health(db, self.path)
        self._check_version()
        db.execute("PRAGMA journal_mode = WAL")

    def _check_version(self) -> None:
        version = schema.stored_version(self._db)
        if version > schema.SCHEMA_VERSION:
            raise StoreError(f"database schema version {version} is newer than this avid supports "
                             f"({schema.SCHEMA_VERSION}); upgrade avid to use it", self.path)
        if version < schema.SCHEMA_VERSION:
            with self.transaction():
                schema.migrate(self._db, version, self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested uses join the outermost one. All or nothing."""
        if self._depth:
            self._depth += 1
            try:
                yield self._db
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")   # take the write lock now, not halfway through
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:   # SQLite may already have rolled back itself (a full disk, say)
                    self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from None
        finally:
            self._depth = 0

    def meta(self, key: str) -> Optional[str]:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (key, value))

    # ------------------------------------------------------------------------------------------ people
    def add_person(self, name: str) -> Person:
        name = clean_name(name)
        with self.transaction() as db:
            same = self.find_person(name)
            if same is not None:
                also = "" if same.name == name else f" as {same.name!r}"
                raise StoreError(f"a person named {name!r} already exists{also} (use --add to add to them)")
            created = now()
            cursor = db.execute("INSERT INTO people (name, created) VALUES (?, ?)", (name, created))
        return Person(id=int(cursor.lastrowid), name=name, created=created)

    def people(self) -> list[Person]:
        rows = self._db.execute("""
            SELECT p.id, p.name, p.created,
                   (SELECT count(*) FROM observations o WHERE o.person_id = p.id AND o.modality = 'face'),
                   (SELECT count(*) FROM observations o WHERE o.person_id = p.id AND o.modality = 'voice')
            FROM people p ORDER BY p.name""").fetchall()
        return [Person(id=r[0], name=r[1], created=r[2], n_face=r[3], n_voice=r[4]) for r in rows]

    def find_person(self, name: str) -> Optional[Person]:
        """The person a name means, or None: the same name whatever its Unicode form and letter case ("José"
        composed or not, "Alice" or "alice" are one person)."""
        key = name_key(name)
        return next((p for p in self.people() if name_key(p.name) == key), None)

    def person(self, name: str) -> Person:
        """The person of that name (``find_person``); StoreError when there is none."""
        found = self.find_person(name)
        if found is None:
            raise StoreError(f"no person named {name!r} in the gallery (see `avid people list`)")
        return found

    def rename(self, old: str, new: str) -> Person:
        new = clean_name(new)
        with self.transaction() as db:
            person = self.person(old)
            other = self.find_person(new)
            if other is not None and other.id != person.id:
                raise StoreError(f"a person named {other.name!r} already exists (use `avid people merge` to join them)")
            db.execute("UPDATE people SET name = ? WHERE id = ?", (new, person.id))
        return self.person(new)

    def merge(self, src: str, dst: str) -> Person:
        """Move all of ``src``'s observations to ``dst`` and remove ``src``. The z prototypes of ``dst`` are dropped
        (stale) for the caller (avid.identity.training.refresh_z_prototypes) or the next training to recompute."""
        if src == dst:
            raise StoreError("cannot merge a person into themselves")
        with self.transaction() as db:
            source, target = self.person(src), self.person(dst)
            db.execute("UPDATE observations SET person_id = ? WHERE person_id = ?", (target.id, source.id))
            db.execute("DELETE FROM people WHERE id = ?", (source.id,))
            db.execute("DELETE FROM prototypes WHERE person_id = ? AND space LIKE 'z%'", (target.id,))
            self.refresh_prototypes(target.id)
        return self.person(dst)

    def delete(self, name: str) -> dict:
        """Delete a person and every row of theirs; drop the shared model (fitted with their data).

        Returns counts of what was removed: ``{"observations": n, "model": bool}``.
        """
        with self.transaction() as db:
            person = self.person(name)
            n_obs = db.execute("SELECT count(*) FROM observations WHERE person_id = ?", (person.id,)).fetchone()[0]
            db.execute("DELETE FROM people WHERE id = ?", (person.id,))   # cascades to observations, prototypes
            had_model = db.execute("DELETE FROM model").rowcount > 0
            if had_model:
                db.execute("DELETE FROM prototypes WHERE space LIKE 'z%'")
        try:
            self._scrub()
        except sqlite3.Error as exc:
            error = store_error(exc, self.path)      # the rows are gone (secure_delete zeroed them) and committed
            why = "disk full" if isinstance(error, DiskFullError) else error.problem
            raise type(error)(f"{why}: {person.name!r} is deleted, but the file could not be compacted afterwards "
                              f"to reclaim the space it held", self.path) from None
        self._drop_caches()
        return {"observations": int(n_obs), "model": had_model}

    def _drop_caches(self) -> None:
        """Remove the library's caches beside the store (the FAISS index, the cluster thumbnails): they may hold a
        deleted person's vectors and face crops, and are rebuilt when next needed."""
        import shutil

        for kind in CACHES:
            folder = companion(self.path, kind)
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)

    def _scrub(self) -> None:
        """Push deleted pages out of the WAL and rewrite the file, so no freed bytes remain readable."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------------------------------------ observations
    def add_observation(self, person: Optional[int | str], modality: str, embedding: np.ndarray, backend: str,
                        source: str, content_hash: Optional[str] = None, start: Optional[float] = None,
                        end: Optional[float] = None, track_id: Optional[int] = None,
                        paired_with: Optional[int] = None) -> int:
        """Store one embedding; ``person`` is a person id or name, or None for an unnamed observation.

        Refuses an embedding from a different encoder (backend or dimension) than the gallery already holds for
        that modality: vectors from different encoders cannot be compared.
        """
        if modality not in MODALITIES:
            raise StoreError(f"modality must be one of {MODALITIES}, got {modality!r}")
        vector = np.asarray(embedding, dtype=np.float32).ravel()
        if vector.size == 0 or not np.all(np.isfinite(vector)):
            raise StoreError(f"{modality} embedding from {source} is empty or not finite")
        with self.transaction() as db:
            person_id = self._person_id(person)
            existing = db.execute("SELECT backend, dim FROM observations WHERE modality = ? LIMIT 1",
                                  (modality,)).fetchone()
            if existing is not None and tuple(existing) != (backend, vector.size):
                raise StoreError(f"this gallery holds {existing[0]} {existing[1]}-D {modality} embeddings; "
                                 f"cannot add {backend} {vector.size}-D ones (use another --db, or the same "
                                 f"encoder as before)", self.path)
            cursor = db.execute(
                "INSERT INTO observations (person_id, modality, source, content_hash, start, end, track_id, "
                "paired_with, embedding, backend, dim, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (person_id, modality, str(source), content_hash, start, end, track_id, paired_with,
                 to_blob(vector), backend, int(vector.size), now()))
            if person_id is not None:
                self.refresh_prototypes(person_id, modality)
        return int(cursor.lastrowid)

    def _person_id(self, person: Optional[int | str]) -> Optional[int]:
        if person is None:
            return None
        if isinstance(person, str):
            return self.person(person).id
        if self._db.execute("SELECT 1 FROM people WHERE id = ?", (int(person),)).fetchone() is None:
            raise StoreError(f"no person with id {person}")
        return int(person)

    def observations(self, person: Optional[int | str] = None, modality: Optional[str] = None,
                     named: Optional[bool] = None) -> list[Observation]:
        """Observations, filtered by person (id or name), modality, and named (True) / unnamed (False) / all."""
        where, params = [], []
        if person is not None:
            where.append("o.person_id = ?")
            params.append(self._person_id(person))
        if modality is not None:
            where.append("o.modality = ?")
            params.append(modality)
        if named is True:
            where.append("o.person_id IS NOT NULL")
        elif named is False:
            where.append("o.person_id IS NULL")
        sql = ("SELECT o.id, o.person_id, o.modality, o.source, o.embedding, o.backend, o.dim, o.content_hash, "
               "o.start, o.end, o.track_id, o.paired_with, p.name, o.learned FROM observations o "
               "LEFT JOIN people p ON p.id = o.person_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY o.id", params).fetchall()
        return [Observation(id=r[0], person_id=r[1], modality=r[2], source=r[3], embedding=from_blob(r[4], r[6]),
                            backend=r[5], dim=r[6], content_hash=r[7], start=r[8], end=r[9], track_id=r[10],
                            paired_with=r[11], person=r[12], learned=json.loads(r[13]) if r[13] else None)
                for r in rows]

    def encoders(self) -> dict[str, tuple[str, int]]:
        """The (backend, dim) of the stored embeddings per modality, for the modalities present."""
        rows = self._db.execute("SELECT modality, backend, dim FROM observations GROUP BY modality").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    # ------------------------------------------------------------------------------------------ prototypes
    def assign(self, observation_ids: Sequence[int], person: int | str) -> int:
        """Give observations (e.g. a cluster of unnamed ones) to a person; returns how many changed. The person's raw
        prototypes are updated; their z prototype is left for avid.identity.training.refresh_z_prototypes or
        training."""
        with self.transaction() as db:
            person_id = self._person_id(person)
            changed = db.executemany("UPDATE observations SET person_id = ? WHERE id = ?",
                                     [(person_id, int(i)) for i in observation_ids]).rowcount
            self.refresh_prototypes(person_id)
        return int(changed)

    def learn(self, person: int | str, learned: dict[int, dict]) -> int:
        """Give unnamed observations to a person as learned ones: ``learned`` maps observation id -> provenance
        (JSON-able: which modality vouched, by which observation, with what score). Observations that are named
        by now or rejected for this person are left alone. Returns how many were learned."""
        with self.transaction() as db:
            person_id = self._person_id(person)
            rejected = self.rejected(person_id)
            rows = [(person_id, json.dumps(provenance, sort_keys=True), int(i)) for i, provenance in learned.items()
                    if int(i) not in rejected]
            changed = db.executemany("UPDATE observations SET person_id = ?, learned = ? WHERE id = ? AND "
                                     "person_id IS NULL", rows).rowcount if rows else 0
            if changed:
                self.refresh_prototypes(person_id)
        return int(changed)

    def forget(self, person: int | str, observation_ids: Optional[Sequence[int]] = None) -> int:
        """Reject a person's learned observations (``observation_ids``, or all of them): they become unnamed
        again and are never learned for this person again. Enrolled and named observations are not touched
        (StoreError if one is asked for). Returns how many were forgotten."""
        with self.transaction() as db:
            person_id = self._person_id(person)
            learned = {o.id for o in self.observations(person=person_id) if o.learned is not None}
            wanted = learned if observation_ids is None else {int(i) for i in observation_ids}
            if wanted - learned:
                raise StoreError(f"observation(s) {', '.join(map(str, sorted(wanted - learned)))} are not learned "
                                 f"observations of this person (see `avid people show`)")
            db.executemany("UPDATE observations SET person_id = NULL, learned = NULL WHERE id = ?",
                           [(i,) for i in wanted])
            db.executemany("INSERT OR IGNORE INTO rejections VALUES (?, ?)", [(i, person_id) for i in wanted])
            db.execute("DELETE FROM prototypes WHERE person_id = ? AND space LIKE 'z%'", (person_id,))
            self.refresh_prototypes(person_id)
        return len(wanted)

    def rejected(self, person: int | str) -> set[int]:
        """Ids of the observations rejected for a person (``forget``)."""
        person_id = self._person_id(person)
        return {r[0] for r in self._db.execute("SELECT observation_id FROM rejections WHERE person_id = ?",
                                               (person_id,))}

    def replace_embeddings(self, modality: str, vectors: dict[int, np.ndarray], backend: str,
                           drop: Sequence[int] = ()) -> None:
        """Swap every ``modality`` observation's embedding for ``vectors`` ({observation id: vector}) from encoder
        ``backend``, deleting the ids in ``drop``: all at once or nothing, so that a store never holds two encoders'
        vectors. The raw prototypes are recomputed; the shared model (fitted on the old vectors) is dropped."""
        with self.transaction() as db:
            ids = {r[0] for r in db.execute("SELECT id FROM observations WHERE modality = ?", (modality,))}
            if ids != set(vectors) | set(drop):
                raise StoreError(f"re-embedding must cover every {modality} observation")
            db.executemany("DELETE FROM observations WHERE id = ?", [(int(i),) for i in drop])
            db.executemany("UPDATE observations SET embedding = ?, backend = ?, dim = ? WHERE id = ?",
                           [(to_blob(v), backend, int(np.asarray(v).size), int(i)) for i, v in vectors.items()])
            if db.execute("DELETE FROM model").rowcount > 0:
                db.execute("DELETE FROM prototypes WHERE space LIKE 'z%'")
            for person in self.people():
                self.refresh_prototypes(person.id, modality)
        if drop:
            self._scrub()

    def refresh_prototypes(self, person: int | str, modality: Optional[str] = None) -> None:
        """Recompute a person's raw prototypes (the normalised mean of their embeddings per modality)."""
        person_id = self._person_id(person)
        for mod in [modality] if modality else MODALITIES:
            vectors = [o.embedding for o in self.observations(person=person_id, modality=mod)]
            self._db.execute("DELETE FROM prototypes WHERE person_id = ? AND space = ?", (person_id, mod))
            if vectors:
                prototype = unit_mean(vectors)
                self._db.execute("INSERT INTO prototypes VALUES (?, ?, ?, ?)",
                                 (person_id, mod, to_blob(prototype), prototype.size))

    def set_prototypes(self, space: str, vectors: dict[int, np.ndarray]) -> None:
        """Replace all prototypes of ``space`` with ``vectors`` ({person id: vector}) in one transaction."""
        if space not in SPACES:
            raise StoreError(f"space must be one of {SPACES}, got {space!r}")
        with self.transaction() as db:
            db.execute("DELETE FROM prototypes WHERE space = ?", (space,))
            db.executemany("INSERT INTO prototypes VALUES (?, ?, ?, ?)",
                           [(int(pid), space, to_blob(v), int(np.asarray(v).size)) for pid, v in vectors.items()])

    def prototypes(self, space: str) -> tuple[list[Person], np.ndarray]:
        """The people that have a prototype in ``space`` and their vectors as rows of a matrix."""
        rows = self._db.execute("SELECT p.id, p.name, p.created, t.vector, t.dim FROM prototypes t "
                                "JOIN people p ON p.id = t.person_id WHERE t.space = ? ORDER BY p.name",
                                (space,)).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        people = [Person(id=r[0], name=r[1], created=r[2]) for r in rows]
        return people, np.stack([from_blob(r[3], r[4]) for r in rows])

    def match(self, vector: np.ndarray, space: str, top_k: Optional[int] = None) -> list[Match]:
        """People ranked by cosine similarity of ``vector`` to their prototype in ``space`` (best first).

        Scores here are raw cosine similarities, accepted unconditionally; open-set decisions (thresholds,
        calibration) are made by avid.pipeline.identify.
        """
        people, matrix = self.prototypes(space)
        if not people:
            return []
        query = unit_rows(np.ravel(vector))
        if matrix.shape[1] != query.size:
            raise StoreError(f"query vector has {query.size} values but {space} prototypes have {matrix.shape[1]}")
        scores = matrix @ query
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [Match(person_id=people[i].id, name=people[i].name, score=float(scores[i]), modality=space)
                for i in order]

    # ------------------------------------------------------------------------------------------ model
    def save_model(self, checkpoint: bytes, metadata: dict, prototypes: dict[str, dict[int, np.ndarray]]) -> None:
        """Store a trained shared model and its z prototypes ({space: {person id: vector}}) in one transaction."""
        with self.transaction() as db:
            db.execute("INSERT INTO model VALUES (1, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                       "checkpoint = excluded.checkpoint, metadata = excluded.metadata, created = excluded.created",
                       (checkpoint, json.dumps(metadata, sort_keys=True), now()))
            db.execute("DELETE FROM prototypes WHERE space LIKE 'z%'")
            for space, vectors in prototypes.items():
                self.set_prototypes(space, vectors)

    def load_model(self) -> Optional[tuple[bytes, dict]]:
        """The stored checkpoint bytes and metadata, or None when no model has been trained."""
        row = self._db.execute("SELECT checkpoint, metadata FROM model WHERE id = 1").fetchone()
        if row is None:
            return None
        return bytes(row[0]), json.loads(row[1])

    # ------------------------------------------------------------------------------------------ files
    def file_status(self, content_hash: str) -> Optional[str]:
        row = self._db.execute("SELECT status FROM files WHERE content_hash = ?", (content_hash,)).fetchone()
        return row[0] if row else None

    def set_file_status(self, path: str, content_hash: str, status: str, error: Optional[str] = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO files (path, content_hash, status, processed_at, error) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(content_hash) DO UPDATE SET path = excluded.path, status = excluded.status, "
                       "processed_at = excluded.processed_at, error = excluded.error",
                       (str(path), content_hash, status, now(), error))
