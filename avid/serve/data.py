"""What the web app shows, read from the store through read-only connections (avid.identity.store.StoreReader,
SQLite ``mode=ro``).

Every page reads here; nothing here writes. The store is in WAL mode, so these reads see the last committed state
while ``avid process`` (or a naming action) writes, and never wait for the writer.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..identity.store import StoreReader
from ..identity.store.reader import FileSummary
from ..intervals import merge_intervals
from ..io.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


def read_only(db: Path) -> StoreReader:
    """A read-only connection: it can neither change the store nor create one (the app checked the store when it
    started; a store removed or damaged since fails as sqlite3.Error, which the app answers)."""
    return StoreReader(db, checked=False)


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


def _recording(row: FileSummary) -> Recording:
    file_id, path, status, error, n_face, n_voice = row
    return Recording(id=file_id, path=path, name=Path(path).name, status=status, kind=media_kind(path),
                     missing=not os.path.isfile(path), error=error, n_face=n_face or 0, n_voice=n_voice or 0)


def recordings(store: StoreReader, limit: Optional[int] = None) -> list[Recording]:
    return [_recording(r) for r in store.recordings(limit)]


def progress(db: Path, store: StoreReader) -> Optional[dict]:
    """A running ``avid process`` on this store (what it keeps in its lock file), or None: files done, failed and
    left in that run."""
    lock = db.with_name(db.name + ".lock")
    try:
        state = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not state.get("running") or not _alive(state.get("pid")):
        return None         # finished, or killed (SIGKILL leaves running: true behind a dead pid)
    failed = store.failed_since(str(state.get("started", "")))
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


def summary(db: Path, store: StoreReader) -> dict:
    files = store.file_counts()
    named, unnamed = store.observation_counts()
    return {"files": {"done": files.get("done", 0), "failed": files.get("failed", 0)},
            "people": store.people_count(),
            "observations": {"named": named, "unnamed": unnamed}, "unknown_clusters": store.unknown_cluster_count(),
            "transcripts": store.has_transcripts(),
            "progress": progress(db, store)}


# ================================================================================================ people


def people(store: StoreReader) -> list[dict]:
    """Everyone in the gallery with counts: face and voice observations, and the library files they appear or
    speak in (as ``avid people list``, with the files)."""
    return [{**r._asdict(), "seconds_heard": round(r.seconds_heard, 1), "face": face_observation(store, person=r.id)}
            for r in store.people_summaries()]


def person(store: StoreReader, person_id: int) -> Optional[dict]:
    """A person and every library file and time range where they appear (faces) or speak (voices); what they
    were enrolled from (files not in the library) apart."""
    found = store.person(person_id)
    if found is None:
        return None
    rows = store.appearances(person_id)
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
    return {"id": found.id, "name": found.name, "created": found.created, "files": files, "enrolled": enrolled,
            "faces": sum(1 for r in rows if r.modality == "face"),
            "voices": sum(1 for r in rows if r.modality == "voice"), "face": face_observation(store, person=found.id)}


def face_observation(store: StoreReader, person: int) -> Optional[int]:
    """The observation to show as a person's face: their best-seen library face, else a photo enrolled."""
    largest = store.largest_library_face(person)
    if largest is not None:
        return largest
    for obs_id, source in store.face_sources(person):
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


def clusters(store: StoreReader, faces_shown: int, voices_shown: int) -> list[Cluster]:
    """The unknown clusters as last listed by ``avid people unknown`` (the stored clustering: the page does not
    cluster again, which writes), without what has been named since; largest first."""
    groups: dict[int, list] = defaultdict(list)
    for member in store.unknown_cluster_members():
        groups[member.cluster].append(member)
    found = []
    for cid, group in groups.items():
        faces = [r for r in group if r.modality == "face"]
        voices = [r for r in group if r.modality == "voice"]
        if faces:      # the most typical faces first: closest to the cluster's mean
            vectors = np.stack([r.vector for r in faces])
            order = np.argsort(-(vectors @ vectors.mean(axis=0)), kind="stable")
            faces = [faces[i] for i in order]
        voices.sort(key=lambda r: -((r.end or 0) - (r.start or 0)))    # the longest turns first: clearest to hear
        files = {r.file_id: r.path for r in group if r.file_id is not None}
        found.append(Cluster(id=cid, n_face=len(faces), n_voice=len(voices), faces=[r.id for r in faces[:faces_shown]],
                             voices=[{"id": r.id, "file": r.file_id, "start": r.start, "end": r.end}
                                     for r in voices[:voices_shown]],
                             files=[{"id": i, "name": Path(p).name} for i, p in sorted(files.items(),
                                                                                    key=lambda kv: kv[1])]))
    found.sort(key=lambda c: (-(c.n_face + c.n_voice), c.id))
    return found


# ================================================================================================ one recording


def recording(store: StoreReader, file_id: int) -> Optional[dict]:
    """A file of the library with who is seen (face tracks, with the box where each is best seen) and who speaks
    when (speaker turns, with their words when transcribed), each by name, unknown cluster, or neither."""
    row = store.file(file_id)
    if row is None:
        return None
    faces, turns, transcript = [], [], []
    for obs_id, modality, start, end, track, pid, name, cluster, box, words in store.file_observations(row[4]):
        who = {"person_id": pid, "label": name or (f"unknown {cluster}" if cluster is not None else "unknown"),
               "cluster": cluster}
        item = {"id": obs_id, "start": round(start or 0.0, 3), "end": round(end or 0.0, 3), **who}
        if modality == "face":
            faces.append({**item, "track": track, "box": box[1:] if box else None})
        else:
            turns.append(item)
            said = words or []
            if said:
                transcript.append({"start": item["start"], "end": item["end"], "label": who["label"],
                                   "text": "".join(w[2] for w in said).strip()})
    path = row[1]
    return {"id": row[0], "path": path, "name": Path(path).name, "status": row[2], "error": row[3],
            "kind": media_kind(path), "missing": not os.path.isfile(path), "faces": faces, "turns": turns,
            "transcript": transcript,
            "speakers": sorted({t["label"] for t in turns}, key=lambda s: (s.startswith("unknown"), s))}


def file_path(store: StoreReader, file_id: int) -> Optional[str]:
    """The path of a file recorded in the store, by its id: the only way the app finds media to serve."""
    return store.file_path(file_id)


def file_ids_by_path(store: StoreReader) -> dict[str, int]:
    return store.file_ids_by_path()


def face_source(store: StoreReader, obs_id: int) -> Optional[tuple[str, Optional[list[float]]]]:
    """Where a face observation can be seen: (file, [time, x1, y1, x2, y2]) for a library face; (photo, None) for
    a face enrolled from a photo; None otherwise."""
    row = store.face_place(obs_id)
    if row is None:
        return None
    source, library_path = row
    if library_path is not None:
        box = store.face_box(obs_id)
        if box is not None:
            return library_path, box
    return (source, None) if media_kind(source) == "image" else None


def voice_source(store: StoreReader, obs_id: int) -> Optional[tuple[str, float, float]]:
    """(library file, start, end) of a voice observation."""
    row = store.voice_place(obs_id)
    return None if row is None else (row[0], row[1] or 0.0, row[2] or 0.0)
