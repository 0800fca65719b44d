"""Enrolment: a named person's face and voice embeddings stored in the gallery, all in one transaction.

What a photo, clip or video gives is found by avid.pipeline.identify (``evidence_from``); this stores it, refreshes
the person's z prototype and learns what the library has already seen and heard of them (avid.identity.learning).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..config import Config
from ..errors import AvidError
from ..types import JsonResult, Person
from .learning import learn_from_library
from .scoring import Evidence
from .store import Gallery
from .training import refresh_z_prototypes


@dataclass
class Enrolment(JsonResult):
    person: Person
    added: list[dict]                  # one per stored observation: modality, source, start, end, track_id
    notes: list[str] = field(default_factory=list)
    choices: list[dict] = field(default_factory=list)   # per video: which face track was taken, and why

    def to_dict(self) -> dict:
        """What `avid enroll --json` prints."""
        person = self.person
        return {"person": {"name": person.name, "id": person.id, "face_observations": person.n_face,
                           "voice_observations": person.n_voice},
                "added": self.added, "face_tracks": self.choices, "notes": self.notes}



def check_new(gallery: Gallery, name: str, add: bool) -> None:
    """Refuse a name that is enrolled already unless ``add`` (before any work is done for it)."""
    if gallery.find_person(name) is not None and not add:
        raise AvidError(f"{name!r} is already enrolled: use --add to add these files to them, or another name")


def enroll_evidence(gallery: Gallery, name: str, evidence: Sequence[Evidence], add: bool, cfg: Config) -> Enrolment:
    """Store the faces and voices of ``evidence`` as observations of ``name`` (a new person, or with ``add`` an
    existing one), each voice paired with the face it came with; all or nothing."""
    check_new(gallery, name, add)
    added, notes = [], [n for e in evidence for n in e.notes]
    with gallery.transaction():
        person = gallery.find_person(name) or gallery.add_person(name)
        for item in evidence:
            face_id = None
            if item.face is not None:
                face_id = gallery.add_observation(person.id, "face", item.face, item.face_backend, **item.face_source)
                added.append({"modality": "face", **item.face_source})
            if item.voice is not None:
                gallery.add_observation(person.id, "voice", item.voice, item.voice_backend, paired_with=face_id,
                                        **item.voice_source)
                added.append({"modality": "voice", **item.voice_source})
        refresh_z_prototypes(gallery, [person.id])
        learned = learn_from_library(gallery, cfg).learned   # what the library has seen and heard of them
    notes += [f"learned from the library: {n} observations of {who}" for who, n in sorted(learned.items())]
    return Enrolment(person=gallery.person(name), added=added, notes=notes)
