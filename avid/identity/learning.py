"""Learn a person's other modality from the library: the voice heard with their face, the face seen with their voice.

The library pairs each speech region with the face seen saying it (``library._speaking_face``: the face whose mouth
moves with the speech, or the only face on screen when its mouth is not seen still). When one side of a face track
and the speech paired with it is vouched for as an enrolled person, the other side is theirs too, and all of it
becomes *learned* observations of them:

- a face is vouched for when it matches the person's face prototype at ``library.learn.min_face_similarity`` or
  more, by a margin of ``library.learn.min_margin`` over the next person; the speech heard with one face track is
  vouched for by its mean embedding likewise (``min_voice_similarity``); and either is vouched for when the user
  named it (enrolment, ``avid people name``);
- prototypes that vouch are made of enrolled and named observations only, never learned ones, so that one wrong
  link cannot pull in more;
- nothing is learned when the two sides disagree: they vouch for two different people, or the person already has
  a voice (face) that the new one does not match at the identify threshold (a dubbed video, a voice-over);
- an observation the user rejected for a person (``avid people forget``) is never learned for them again.

Learned observations carry their provenance (which modality vouched, through which observation, with what score),
count in the person's prototypes (so query, search, label naming and training all use them), and are deleted with
the person. ``learn_from_library`` is run after ``avid process --db``, ``avid enroll`` and ``avid people name``,
and by ``avid people learn``; it only looks at unnamed pairs, so running it again is cheap and changes nothing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..config import Config
from ..vectors import unit_mean
from .store import Gallery, Observation

MODALITIES = ("face", "voice")


@dataclass
class LearnReport:
    learned: dict[str, int] = field(default_factory=dict)    # person name -> observations learned now
    skipped: dict[str, int] = field(default_factory=dict)    # reason -> pairs not learned

    @property
    def total(self) -> int:
        return sum(self.learned.values())


def _vouching_prototypes(observations: list[Observation]) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per modality, (person ids, prototype matrix) from enrolled and named observations only."""
    by_person: dict[str, dict[int, list[np.ndarray]]] = {m: {} for m in MODALITIES}
    for obs in observations:
        if obs.person_id is not None and obs.learned is None:
            by_person[obs.modality].setdefault(obs.person_id, []).append(obs.embedding)
    prototypes = {}
    for modality, vectors in by_person.items():
        ids = sorted(vectors)
        matrix = np.stack([unit_mean(vectors[i]) for i in ids]) if ids else np.zeros((0, 0), np.float32)
        prototypes[modality] = (ids, matrix)
    return prototypes


def _vouch(observations: list[Observation], prototypes: tuple[list[int], np.ndarray], min_similarity: float,
           min_margin: float) -> Optional[tuple[int, float]]:
    """(person id, similarity) when ``observations`` (of one modality, e.g. all the speech heard with one face
    track: their mean says most) are confidently one enrolled person; one named by the user vouches by itself."""
    named = {o.person_id for o in observations if o.person_id is not None and o.learned is None}
    if len(named) == 1:
        return named.pop(), 1.0
    ids, matrix = prototypes
    unnamed = [o.embedding for o in observations if o.person_id is None]
    if named or not ids or not unnamed:
        return None
    similarities = matrix @ unit_mean(unnamed)
    order = np.argsort(-similarities)
    best = float(similarities[order[0]])
    runner_up = float(similarities[order[1]]) if len(ids) > 1 else -1.0
    if best >= min_similarity and best - runner_up >= min_margin:
        return ids[int(order[0])], best
    return None


def learn_from_library(gallery: Gallery, cfg: Config) -> LearnReport:
    """Link the library's face tracks and the speech paired with them to enrolled people (see the module
    docstring); one transaction."""
    from .scoring import raw_threshold
    from .training import refresh_z_prototypes

    opts = cfg.library.learn
    report = LearnReport()
    with gallery.transaction():
        observations = gallery.observations()
        by_id = {o.id: o for o in observations}
        prototypes = _vouching_prototypes(observations)
        minimum = {"face": float(opts.min_face_similarity), "voice": float(opts.min_voice_similarity)}
        agree = {m: raw_threshold(cfg, backend) for m, (backend, _) in gallery.encoders().items()}
        names = {p.id: p.name for p in gallery.people()}
        rejected = {pid: gallery.rejected(pid) for pid in names}
        heard_with: dict[int, list[Observation]] = {}      # face observation id -> the speech paired with it
        for obs in observations:
            if obs.modality == "voice" and obs.paired_with in by_id:
                heard_with.setdefault(obs.paired_with, []).append(obs)
        learned: dict[int, dict[int, dict]] = {}

        def skip(reason: str) -> None:
            report.skipped[reason] = report.skipped.get(reason, 0) + 1

        for face_id, voices in heard_with.items():
            group = {"face": [by_id[face_id]], "voice": voices}
            if all(o.person_id is not None for o in group["face"] + voices):
                continue
            vouched = {m: _vouch(group[m], prototypes[m], minimum[m], float(opts.min_margin)) for m in MODALITIES}
            people = {v[0] for v in vouched.values() if v is not None}
            if not people:
                continue
            if len(people) > 1:
                skip("the face and the voice heard with it are two different people")
                continue
            person_id = people.pop()
            reason = _contradiction(group, person_id, prototypes, agree)
            unnamed = [o for o in group["face"] + voices if o.person_id is None]
            if reason is None and any(o.id in rejected[person_id] for o in unnamed):
                reason = "rejected by the user"
            if reason is not None:
                skip(reason)
                continue
            by = [m for m in MODALITIES if vouched[m] is not None]
            for obs in unnamed:
                learned.setdefault(person_id, {})[obs.id] = {
                    "vouched_by": "+".join(by), "face_observation": face_id,
                    "scores": {m: round(vouched[m][1], 4) for m in by}, "source": obs.source,
                    "learned": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for person_id, items in learned.items():
            count = gallery.learn(person_id, items)
            if count:
                report.learned[names[person_id]] = count
        if report.learned:
            refresh_z_prototypes(gallery, list(learned))
    return report


def _contradiction(group: dict[str, list[Observation]], person_id: int, prototypes: dict,
                   agree: dict[str, float]) -> Optional[str]:
    """Why a group must not be learned for the person: its unnamed side disagrees with what is known of them
    (their enrolled voice, for a new voice, at the identify threshold). None when nothing contradicts it."""
    for modality, observations in group.items():
        ids, matrix = prototypes[modality]
        unnamed = [o.embedding for o in observations if o.person_id is None]
        if not unnamed or person_id not in ids or modality not in agree:
            continue
        if float(matrix[ids.index(person_id)] @ unit_mean(unnamed)) < agree[modality]:
            return f"the {modality} does not match the person's known {modality}"
    return None
