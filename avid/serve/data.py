"""What the web app shows, read from the store through read-only connections (SQLite ``mode=ro``).

Every page reads here; nothing here writes. The store is in WAL mode, so these reads see the last committed state
while ``avid process`` (or a naming action) writes, and never wait for the writer.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..identity.store import from_blob
from ..intervals import merge_intervals
from ..io.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection: it can neither change the store nor create one."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        yield conn
    finally:
        conn.close()


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def media_kind(path: str) -> str:
    """'video', 'audio' or 'image' by extension ('' for anything else)."""
    ext = Path(path).suffix.lower()
    return ("video" if ext in VIDEO_EXTENSIONS else "audio" if ext in AUDIO_EXTENSIONS
            else "image" if ext in IMAGE_EXTENSIONS else "")


def _ranges(spans: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(a, 2), round(b, 2)] for a, b in merge_intervals(spans)]


# ================================================================================================ home


@dataclass
class Recording:
    id: int
    path: str
    name: str
    status: str
    kind: str
    missing: bool
    error: Optional[str] = None
    n_face: int = 0
    n_voice: int = 0


def _recording(row) -> Recording:
    file_id, path, status, error, n_face, n_voice = row
    return Recording(id=file_id, path=path, name=Path(path).name, status=status, kind=media_kind(path),
                     missing=not os.path.isfile(path), error=error, n_face=n_face or 0, n_voice=n_voice or 0)


def recordings(conn: sqlite3.Connection, limit: Optional[int] = None) -> list[Recording]:
    rows = conn.execute(
        "SELECT f.id, f.path, f.status, f.error, "
        "(SELECT count(*) FROM observations o WHERE o.content_hash = f.content_hash AND o.modality = 'face'), "
        "(SELECT count(*) FROM observations o WHERE o.content_hash = f.content_hash AND o.modality = 'voice') "
        "FROM files f ORDER BY f.path, f.id" + ("" if limit is None else f" LIMIT {int(limit)}")).fetchall()
    return [_recording(r) for r in rows]


def progress(db: Path, conn: sqlite3.Connection) -> Optional[dict]:
    """A running ``avid process`` on this store (what it keeps in its lock file), or None: files done, failed and
    left in that run."""
    lock = db.with_name(db.name + ".lock")
    try:
        state = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not state.get("running") or not _alive(state.get("pid")):
        return None         # finished, or killed (SIGKILL leaves running: true behind a dead pid)
    failed = conn.execute("SELECT count(*) FROM files WHERE status = 'failed' AND processed_at >= ?",
                          (str(state.get("started", "")),)).fetchone()[0]
    total, finished = int(state.get("total") or 0), int(state.get("finished") or 0)
    return {"total": total, "done": max(0, finished - failed), "failed": failed, "left": max(0, total - finished),
            "started": state.get("started")}


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summary(db: Path, conn: sqlite3.Connection) -> dict:
    tables = _tables(conn)
    files = dict(conn.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
    named, unnamed = conn.execute("SELECT count(person_id), count(*) - count(person_id) FROM observations").fetchone()
    clusters = 0
    if "library_clusters" in tables:
        clusters = conn.execute("SELECT count(DISTINCT c.cluster_id) FROM library_clusters c JOIN observations o "
                                "ON o.id = c.observation_id WHERE o.person_id IS NULL").fetchone()[0]
    return {"files": {"done": files.get("done", 0), "failed": files.get("failed", 0)},
            "people": conn.execute("SELECT count(*) FROM people").fetchone()[0],
            "observations": {"named": named, "unnamed": unnamed}, "unknown_clusters": clusters,
            "transcripts": "library_words" in tables and conn.execute(
                "SELECT count(*) FROM library_words").fetchone()[0] > 0,
            "progress": progress(db, conn)}


# ================================================================================================ people


def people(conn: sqlite3.Connection) -> list[dict]:
    """Everyone in the gallery with counts: face and voice observations, and the library files they appear or
    speak in (as ``avid people list``, with the files)."""
    rows = conn.execute("""
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
    return [{"id": r[0], "name": r[1], "created": r[2], "faces": r[3], "voices": r[4], "files_seen": r[5],
             "files_heard": r[6], "seconds_heard": round(r[7], 1), "face": face_observation(conn, person=r[0])}
            for r in rows]


def person(conn: sqlite3.Connection, person_id: int) -> Optional[dict]:
    """A person and every library file and time range where they appear (faces) or speak (voices); what they
    were enrolled from (files not in the library) apart."""
    row = conn.execute("SELECT id, name, created FROM people WHERE id = ?", (int(person_id),)).fetchone()
    if row is None:
        return None
    rows = conn.execute(
        "SELECT o.modality, o.source, o.start, o.end, o.learned, f.id, f.path FROM observations o "
        "LEFT JOIN files f ON f.content_hash = o.content_hash AND f.status = 'done' "
        "WHERE o.person_id = ? ORDER BY f.path, o.start", (int(person_id),)).fetchall()
    by_file: dict[int, dict] = {}
    enrolled = []
    for modality, source, start, end, learned, file_id, path in rows:
        if file_id is None:
            enrolled.append({"modality": modality, "source": source, "learned": bool(learned)})
            continue
        entry = by_file.setdefault(file_id, {"file": file_id, "path": path, "name": Path(path).name,
                                             "missing": not os.path.isfile(path), "face": [], "voice": []})
        entry[modality].append((start or 0.0, end or 0.0))
    files = []
    for entry in by_file.values():
        entry["face"], entry["voice"] = _ranges(entry["face"]), _ranges(entry["voice"])
        files.append(entry)
    return {"id": row[0], "name": row[1], "created": row[2], "files": files, "enrolled": enrolled,
            "faces": sum(1 for r in rows if r[0] == "face"), "voices": sum(1 for r in rows if r[0] == "voice"),
            "face": face_observation(conn, person=row[0])}


def face_observation(conn: sqlite3.Connection, person: int) -> Optional[int]:
    """The observation to show as a person's face: their best-seen library face, else a photo enrolled."""
    if "library_faces" in _tables(conn):
        row = conn.execute("SELECT o.id FROM observations o JOIN library_faces b ON b.observation_id = o.id "
                           "WHERE o.person_id = ? ORDER BY (b.x2 - b.x1) * (b.y2 - b.y1) DESC LIMIT 1",
                           (person,)).fetchone()
        if row:
            return row[0]
    for obs_id, source in conn.execute("SELECT id, source FROM observations WHERE person_id = ? AND "
                                       "modality = 'face' ORDER BY id", (person,)):
        if media_kind(source) == "image":
            return obs_id
    return None


# ================================================================================================ unknown people


@dataclass
class Cluster:
    id: int
    n_face: int
    n_voice: int
    faces: list[int] = field(default_factory=list)        # observation ids to show, most typical first
    voices: list[dict] = field(default_factory=list)      # {"id", "file", "start", "end"}
    files: list[dict] = field(default_factory=list)       # {"id", "name"}

    def to_dict(self) -> dict:
        return asdict(self)


def clusters(conn: sqlite3.Connection, faces_shown: int, voices_shown: int) -> list[Cluster]:
    """The unknown clusters as last listed by ``avid people unknown`` (the stored clustering: the page does not
    cluster again, which writes), without what has been named since; largest first."""
    if "library_clusters" not in _tables(conn):
        return []
    rows = conn.execute(
        "SELECT c.cluster_id, o.id, o.modality, o.embedding, o.dim, o.start, o.end, f.id, f.path "
        "FROM library_clusters c JOIN observations o ON o.id = c.observation_id "
        "LEFT JOIN files f ON f.content_hash = o.content_hash "
        "WHERE o.person_id IS NULL ORDER BY c.cluster_id, o.id").fetchall()
    groups: dict[int, list] = defaultdict(list)
    for row in rows:
        groups[row[0]].append(row)
    found = []
    for cid, group in groups.items():
        faces = [r for r in group if r[2] == "face"]
        voices = [r for r in group if r[2] == "voice"]
        if faces:      # the most typical faces first: closest to the cluster's mean
            vectors = np.stack([from_blob(r[3], r[4]) for r in faces])
            order = np.argsort(-(vectors @ vectors.mean(axis=0)), kind="stable")
            faces = [faces[i] for i in order]
        voices.sort(key=lambda r: -((r[6] or 0) - (r[5] or 0)))    # the longest turns first: clearest to hear
        files = {r[7]: r[8] for r in group if r[7] is not None}
        found.append(Cluster(id=cid, n_face=len(faces), n_voice=len(voices), faces=[r[1] for r in faces[:faces_shown]],
                             voices=[{"id": r[1], "file": r[7], "start": r[5], "end": r[6]}
                                     for r in voices[:voices_shown]],
                             files=[{"id": i, "name": Path(p).name} for i, p in sorted(files.items(),
                                                                                    key=lambda kv: kv[1])]))
    found.sort(key=lambda c: (-(c.n_face + c.n_voice), c.id))
    return found


# ================================================================================================ one recording


def recording(conn: sqlite3.Connection, file_id: int) -> Optional[dict]:
    """A file of the library with who is seen (face tracks, with the box where each is best seen) and who speaks
    when (speaker turns, with their words when transcribed), each by name, unknown cluster, or neither."""
    row = conn.execute("SELECT f.id, f.path, f.status, f.error, f.content_hash FROM files f WHERE f.id = ?",
                       (int(file_id),)).fetchone()
    if row is None:
        return None
    tables = _tables(conn)
    digest = row[4]
    cluster_sql = ("(SELECT cluster_id FROM library_clusters WHERE observation_id = o.id)"
                   if "library_clusters" in tables else "NULL")
    box_sql = ("(SELECT json_array(time, x1, y1, x2, y2) FROM library_faces WHERE observation_id = o.id)"
               if "library_faces" in tables else "NULL")
    words_sql = ("(SELECT words FROM library_words WHERE observation_id = o.id)"
                 if "library_words" in tables else "NULL")
    obs = conn.execute(
        f"SELECT o.id, o.modality, o.start, o.end, o.track_id, p.id, p.name, {cluster_sql}, {box_sql}, {words_sql} "
        "FROM observations o LEFT JOIN people p ON p.id = o.person_id WHERE o.content_hash = ? "
        "ORDER BY o.start, o.id", (digest,)).fetchall()
    faces, turns, transcript = [], [], []
    for obs_id, modality, start, end, track, pid, name, cluster, box, words in obs:
        who = {"person_id": pid, "label": name or (f"unknown {cluster}" if cluster is not None else "unknown"),
               "cluster": cluster}
        item = {"id": obs_id, "start": round(start or 0.0, 3), "end": round(end or 0.0, 3), **who}
        if modality == "face":
            faces.append({**item, "track": track, "box": json.loads(box)[1:] if box else None})
        else:
            turns.append(item)
            said = json.loads(words) if words else []
            if said:
                transcript.append({"start": item["start"], "end": item["end"], "label": who["label"],
                                   "text": "".join(w[2] for w in said).strip()})
    path = row[1]
    return {"id": row[0], "path": path, "name": Path(path).name, "status": row[2], "error": row[3],
            "kind": media_kind(path), "missing": not os.path.isfile(path), "faces": faces, "turns": turns,
            "transcript": transcript,
            "speakers": sorted({t["label"] for t in turns}, key=lambda s: (s.startswith("unknown"), s))}


def file_path(conn: sqlite3.Connection, file_id: int) -> Optional[str]:
    """The path of a file recorded in the store, by its id: the only way the app finds media to serve."""
    row = conn.execute("SELECT path FROM files WHERE id = ?", (int(file_id),)).fetchone()
    return row[0] if row else None


def file_ids_by_path(conn: sqlite3.Connection) -> dict[str, int]:
    return {path: file_id for file_id, path in conn.execute("SELECT id, path FROM files WHERE status = 'done' "
                                                            "ORDER BY id")}


def face_source(conn: sqlite3.Connection, obs_id: int) -> Optional[tuple[str, Optional[list[float]]]]:
    """Where a face observation can be seen: (file, [time, x1, y1, x2, y2]) for a library face; (photo, None) for
    a face enrolled from a photo; None otherwise."""
    tables = _tables(conn)
    row = conn.execute("SELECT o.source, f.path FROM observations o LEFT JOIN files f ON f.content_hash = "
                       "o.content_hash WHERE o.id = ? AND o.modality = 'face'", (int(obs_id),)).fetchone()
    if row is None:
        return None
    source, library_path = row
    if library_path is not None and "library_faces" in tables:
        box = conn.execute("SELECT time, x1, y1, x2, y2 FROM library_faces WHERE observation_id = ?",
                           (int(obs_id),)).fetchone()
        if box is not None:
            return library_path, list(box)
    return (source, None) if media_kind(source) == "image" else None


def voice_source(conn: sqlite3.Connection, obs_id: int) -> Optional[tuple[str, float, float]]:
    """(library file, start, end) of a voice observation."""
    row = conn.execute("SELECT f.path, o.start, o.end FROM observations o JOIN files f ON f.content_hash = "
                       "o.content_hash WHERE o.id = ? AND o.modality = 'voice'", (int(obs_id),)).fetchone()
    return None if row is None else (row[0], row[1] or 0.0, row[2] or 0.0)
