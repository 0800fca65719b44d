"""Who is this? Enrolled people scored against a face and/or voice embedding (``score_people``,
``query_embeddings``), with calibrated thresholds.

Scores are calibrated the same way in both spaces (docs/shared_representation.md): a raw cosine similarity ``s``
becomes ``(s - t) / (1 - t)``, where ``t`` is the acceptance threshold calibrated on dev data for that encoder
(``identify.raw_thresholds``). So 0 is the threshold and 1 an identical embedding, for faces and voices alike. In z,
the model is trained so that impostor similarities are the raw ones centred, ``(s - c) / (1 - c)``, which gives
the same threshold in z as ``(t - c) / (1 - c)``; a face-and-voice query's threshold is the mean of the two. A match
is accepted when its calibrated score is at least ``identify.threshold`` (0 by default).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..config import Config, load_config
from ..errors import AvidError, ConfigError
from ..types import JsonResult, Match, Person
from ..vectors import unit_rows
from .shared import model as shared_model
from .store import Gallery
from .training import load_model

MODALITIES_RAW = ("face", "voice")


# ---------------------------------------------------------------------------------------------- evidence from media
@dataclass
class Evidence:
    """The face and/or voice embedding that one input (or a set of inputs) gives, with where it came from."""

    face: Optional[np.ndarray] = None
    voice: Optional[np.ndarray] = None
    face_backend: str = ""
    voice_backend: str = ""
    face_source: dict = field(default_factory=dict)    # source, start, end, track_id (+ content_hash when enrolled)
    voice_source: dict = field(default_factory=dict)
    choice: Optional[dict] = None   # for a video: which face track was taken as its person and why
    face_sharpness: Optional[float] = None   # faces.detect.sharpness of the face (median over a track)
    notes: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        if self.face is not None and self.voice is not None:
            return "both"
        return "face" if self.face is not None else "voice"


# ---------------------------------------------------------------------------------------------- calibration
def raw_threshold(cfg: Config, backend: str) -> float:
    """The calibrated raw cosine threshold of an encoder backend (``identify.raw_thresholds``)."""
    thresholds = cfg.identify.raw_thresholds
    if backend not in thresholds:
        raise ConfigError(f"no identify.raw_thresholds entry for encoder {backend!r}; calibrate one "
                          f"(scripts/eval_chimeric.py --calibrate) and add it")
    return float(thresholds[backend])


def face_threshold(cfg: Config, backend: str, sharpness: Optional[float] = None) -> float:
    """The raw face threshold for a query face: the encoder's, raised linearly as the face is less sharp than
    ``identify.blur.sharp`` (by ``identify.blur.max_raise`` for no detail at all). Blur makes different people's
    faces look alike to a face encoder (their similarities rise towards the threshold) and one person's apart."""
    base = raw_threshold(cfg, backend)
    if sharpness is None:
        return base
    blur = cfg.identify.blur
    return base + float(blur.max_raise) * max(0.0, 1.0 - float(sharpness) / float(blur.sharp))


def calibrated(similarity: np.ndarray | float, threshold: float) -> np.ndarray:
    """Cosine similarity -> calibrated score: 0 at the threshold, 1 for identical embeddings."""
    return (np.asarray(similarity, dtype=np.float64) - threshold) / (1.0 - threshold)


def voice_similarities(prototypes: np.ndarray, voice: np.ndarray, cfg: Config) -> np.ndarray:
    """Cosine of a voice (or of each row of a stack of voices) to each enrolled person's voice prototype, both
    taken relative to the gallery's mean voice once it has ``identify.voice_centering.min_people`` people with a
    voice (raw cosine before that).

    A speaker encoder's vectors share a direction set by the recording domain (CAM++'s training data is not the
    user's): two strangers recorded alike score higher than they should. The gallery's own mean removes it
    (docs/voice.md: LibriSpeech open set, strangers accepted 3.2% -> 0.6% at the same genuine rate); a mean of a
    few voices is mostly those voices, hence the minimum, and the threshold is the one calibrated for raw cosine.
    """
    prototypes, voice = np.asarray(prototypes, np.float32), np.asarray(voice, np.float32)
    least = cfg.identify.voice_centering.min_people
    if least is None or len(prototypes) < int(least):
        return voice @ prototypes.T
    centre = prototypes.mean(axis=0)
    return unit_rows(voice - centre) @ unit_rows(prototypes - centre).T


def z_thresholds(model: shared_model.BimodalAutoencoder, face: float, voice: float) -> dict[str, float]:
    """Thresholds in z per query mode, carried over from the raw ``face`` and ``voice`` thresholds through the
    model's impostor centring (training holds impostor similarities in z to the centred raw ones)."""
    c_face, c_voice = (float(c) for c in model.impostor_centre)
    z_face = (face - c_face) / (1 - c_face)
    z_voice = (voice - c_voice) / (1 - c_voice)
    return {"face": z_face, "voice": z_voice, "both": (z_face + z_voice) / 2}


# ---------------------------------------------------------------------------------------------- query
@dataclass
class QueryResult(JsonResult):
    matches: list[Match]               # best first; ``accepted`` says which pass the threshold
    mode: str                          # face | voice | both
    space: str                         # "z" (shared model) or "raw" (per-modality embeddings, score fusion)
    threshold: float                   # the calibrated score needed to accept
    notes: list[str] = field(default_factory=list)
    choice: Optional[dict] = None      # a video query: which face track was taken as its person, and why

    @property
    def answer(self) -> Match:
        """The best accepted match, or ``unknown`` (carrying the best score) when none passes."""
        if self.matches and self.matches[0].accepted:
            return self.matches[0]
        best = self.matches[0].score if self.matches else float("-inf")
        return Match(person_id=None, name="unknown", score=best, modality=self.mode, accepted=False)

    def to_dict(self) -> dict:
        """What `avid query --json` prints."""
        answer = self.answer
        return {"answer": {"name": answer.name, "person_id": answer.person_id, "score": answer.score,
                           "accepted": answer.accepted},
                "mode": self.mode, "space": self.space, "threshold": self.threshold,
                "matches": [{"rank": i + 1, "name": m.name, "person_id": m.person_id, "score": m.score,
                             "accepted": m.accepted} for i, m in enumerate(self.matches)],
                "face_track": self.choice, "notes": self.notes}


def score_people(gallery: Gallery, face: Optional[np.ndarray], voice: Optional[np.ndarray], cfg: Config,
                 face_backend: str = "", voice_backend: str = "", use_model: bool = True,
                 loaded=None, face_sharpness: Optional[float] = None) -> tuple[list[tuple[Person, float]], str, list[str]]:
    """Calibrated scores of the enrolled people for a face and/or voice embedding, best first.

    ``face_sharpness`` (faces.detect.sharpness of the query face) raises the face threshold for a blurred face
    (``face_threshold``), so that it gets a weak score rather than a confident wrong name.

    Each person is scored on what both the query and the person have: a face query ranks the people with a face,
    a voice query those with a voice, and a face-and-voice query scores people with both on both (fused) and
    the others on the modality they have. With a trained model (and ``use_model``) the scores come from the
    shared code z, otherwise from the raw embeddings with score fusion. Returns (scores, space, notes).
    """
    notes: list[str] = []
    have = gallery.encoders()
    for modality, vector, backend in (("face", face, face_backend), ("voice", voice, voice_backend)):
        if vector is not None and modality in have and backend and have[modality][0] != backend:
            raise AvidError(f"the gallery holds {have[modality][0]} {modality} embeddings but this query's are "
                            f"{backend}: use the same encoder (faces.encoder.backend) as at enrolment")
    thresholds = {"face": face_threshold(cfg, have.get("face", (face_backend or cfg.faces.encoder.backend,))[0],
                                         face_sharpness),
                  "voice": raw_threshold(cfg, have.get("voice", (voice_backend or cfg.voice.encoder.backend,))[0])}
    queries = {"face": face, "voice": voice}
    model = None
    if use_model:
        loaded = loaded if loaded is not None else load_model(gallery)
        if loaded is not None and gallery.prototypes("z")[0]:
            model = loaded[0]
        else:
            notes.append("no shared model trained yet (run `avid train`): matching raw embeddings per modality")
    # Per modality: calibrated similarity of the query (that modality alone) to each person's prototype.
    single: dict[str, dict[int, float]] = {}
    people_by_id: dict[int, Person] = {}
    for modality, vector in queries.items():
        if vector is None:
            continue
        people, protos = _prototypes(gallery, model, modality)
        if model is not None:
            vector, threshold = model.encode(**{modality: vector}), z_thresholds(model, **thresholds)[modality]
        else:
            threshold = thresholds[modality]
        if not people:
            scores = []
        elif model is not None or modality == "face":
            scores = calibrated(protos @ np.asarray(vector, np.float32), threshold)
        else:
            scores = calibrated(voice_similarities(protos, vector, cfg), threshold)
        single[modality] = {p.id: float(s) for p, s in zip(people, scores)}
        people_by_id.update({p.id: p for p in people})
    combined: dict[int, float] = {}
    for pid in people_by_id:
        values = [single[m][pid] for m in single if pid in single[m]]
        combined[pid] = float(np.mean(values))      # raw score fusion: the mean of calibrated scores
    if model is not None and face is not None and voice is not None:
        # In z, people with both modalities are matched on the joint code of the face and voice together.
        people, protos = _prototypes(gallery, model, "both")
        both = calibrated(protos @ model.encode(face=face, voice=voice), z_thresholds(model, **thresholds)["both"])
        combined.update({p.id: float(s) for p, s in zip(people, both) if all(p.id in single[m] for m in single)})
    ranked = sorted(((people_by_id[pid], score) for pid, score in combined.items()), key=lambda x: (-x[1], x[0].name))
    return ranked, "z" if model is not None else "raw", notes


def _prototypes(gallery: Gallery, model: Optional[shared_model.BimodalAutoencoder],
                modality: str) -> tuple[list[Person], np.ndarray]:
    """People and prototypes to match a ``modality`` query against ("face", "voice" or "both"): raw ones without a
    model; with one, the stored z prototypes, filled in from the raw ones (z of the mean embeddings, as training
    computes them) for anyone who has none yet, e.g. people named in the library since the last training."""
    if model is None:
        return gallery.prototypes(modality)
    space = "z" if modality == "both" else f"z_{modality}"
    people, matrix = gallery.prototypes(space)
    known = {p.id for p in people}
    raw = {}
    for m in MODALITIES_RAW:
        raw_people, raw_matrix = gallery.prototypes(m)
        raw[m] = {p.id: v for p, v in zip(raw_people, raw_matrix)}
    wanted = MODALITIES_RAW if modality == "both" else (modality,)
    extra = [p for p in gallery.people() if p.id not in known and all(p.id in raw[m] for m in wanted)]
    if not extra:
        return people, matrix
    codes = [model.encode(**{m: raw[m][p.id] for m in wanted}) for p in extra]
    return people + extra, np.vstack([matrix.reshape(-1, model.spec.z_dim), codes])


def query_embeddings(gallery: Gallery, evidence: Evidence, top_k: Optional[int] = None,
                     cfg: Optional[Config] = None, use_model: bool = True, loaded=None) -> QueryResult:
    """``query`` for embeddings already extracted (evaluation and library search reuse this)."""
    cfg = cfg or load_config()
    scored, space, notes = score_people(gallery, evidence.face, evidence.voice, cfg, evidence.face_backend,
                                        evidence.voice_backend, use_model, loaded, evidence.face_sharpness)
    threshold = float(cfg.identify.threshold)
    top_k = int(top_k if top_k is not None else cfg.identify.top_k)
    matches = [Match(person_id=p.id, name=p.name, score=round(float(s), 4), modality=evidence.mode,
                     accepted=bool(s >= threshold)) for p, s in scored[:top_k]]
    return QueryResult(matches=matches, mode=evidence.mode, space=space, threshold=threshold,
                       notes=evidence.notes + notes, choice=evidence.choice)

