"""Searching the library: where a person (a photo, a voice clip, a video or an enrolled name) appears or speaks,
one hit per file and modality, best first; and where words were said (SQLite FTS5 over the transcripts)."""
from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Config, load_config
from ..errors import AvidError, NoContentError, StoreError
from ..identity.store import Gallery, StoreReader, companion, existing_store
from ..identity.store.reader import ObservationPlace
from ..intervals import merge_intervals
from ..pipeline.models import Models
from ..private import write_private_text
from ..types import JsonResult
from .collection import _models_for
from .index import FaissIndex, Index, build_index


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


def query_vectors(cfg: Config, image: Optional[str] = None, audio: Optional[str] = None,
                  video: Optional[str] = None, person: Optional[str] = None, db_path: Optional[Path] = None,
                  models: Optional[Models] = None, track: Optional[int] = None) -> dict[str, np.ndarray]:
    """The face and voice vectors to search with, per modality (rows of a matrix).

    A file gives what ``avid query`` would take from it (``identify.evidence_from``): a photo its largest face,
    audio its speech, a video the face that is its person (``track``, or the one seen talking, or the one that
    dominates) and the speech heard with it. A person
    gives every face and voice embedding stored under their name.
    """
    from ..pipeline.identify import evidence_from

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
    with StoreReader(db) as store:
        for modality, vectors in queries.items():
            index = library_index(store, modality, cfg)
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
            hits.extend(_group_by_file(store.observation_places(list(best)), best, modality))
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
    with StoreReader(db) as store:
        if not store.has_text_index():
            return []
        phrase = _fts_phrase(text)
        if person is not None and not store.has_person_named(person):
            raise StoreError(f"no person named {person!r} in the gallery (see `avid people list`)", db)
        matches = store.text_matches(phrase, person, int(top_k))
    hits = []
    for match in matches:
        speaker = match.person or (f"unknown cluster {match.cluster}" if match.cluster is not None else "unknown")
        hits += [TextHit(match.source, start, end, speaker, match.snippet, match.rank)
                 for start, end in _phrase_spans(match.words, text)]
    return hits


def library_index(store: StoreReader, modality: str, cfg: Config) -> Optional[Index]:
    """A nearest-neighbour index over the library's observations of one modality; its ids are observation ids.

    Small libraries are searched exactly. A large library's FAISS index is kept in ``<db>-index/`` (private) and
    rebuilt only when the set of observations changes, so a search does not rebuild it.
    """
    count, max_id, id_total = store.library_signature(modality)
    if not count:
        return None
    if count < cfg.index.faiss_min_size:
        return build_index(*store.library_vectors(modality), cfg=cfg, exact=True)
    folder = companion(store.path, "index")
    path, key_path = folder / f"{modality}.faiss", folder / f"{modality}.key"
    key = json.dumps({"count": count, "max_id": max_id, "id_total": id_total, "index": cfg.index.to_dict()},
                     sort_keys=True)
    if path.exists() and key_path.exists() and key_path.read_text() == key:
        return FaissIndex.load(path, cfg.index)
    index = build_index(*store.library_vectors(modality), cfg=cfg, exact=False)
    folder.mkdir(mode=0o700, exist_ok=True)
    index.save(path)
    write_private_text(key_path, key)
    return index


def _group_by_file(places: list[ObservationPlace], best: dict[int, float], modality: str) -> list[Hit]:
    """One hit per file from the matching observations ({observation id: score}) and where they are."""
    by_file: dict[str, list[ObservationPlace]] = defaultdict(list)
    for place in places:
        by_file[place.content_hash].append(place)
    hits = []
    for digest, group in by_file.items():
        names = {p.person for p in group} - {None}
        hits.append(Hit(file=group[0].path, modality=modality, score=max(best[p.id] for p in group),
                        ranges=merge_intervals([(p.start or 0.0, p.end or 0.0) for p in group]), content_hash=digest,
                        person=", ".join(sorted(names)) or None))
    return hits
