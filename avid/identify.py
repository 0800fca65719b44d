"""Enrol people, train the shared model, and identify people from a face, a voice, or both.

This is the Python API behind `avid enroll`, `avid train`, `avid query` and `avid people`:

- ``enroll`` turns photos (their largest face), audio clips (their speech) and videos (one face track and the
  speech heard while it is on screen) into observations of a named person, all in one transaction.
- ``train`` fits the shared-representation autoencoder on the gallery and stores it with each person's z prototype.
- ``query`` ranks the enrolled people for a face, a voice or both, and says ``unknown`` below the threshold. With a
  trained model it matches in the shared code z; before any training it matches raw embeddings per modality and
  fuses the scores, and says so.

Scores are calibrated the same way in both spaces (docs/shared_representation.md): a raw cosine similarity ``s``
becomes ``(s - t) / (1 - t)``, where ``t`` is the acceptance threshold calibrated on dev data for that encoder
(``identify.raw_thresholds``). So 0 is the threshold and 1 an identical embedding, for faces and voices alike. In z,
the model is trained so that impostor similarities are the raw ones centred, ``(s - c) / (1 - c)``, which gives
the same threshold in z as ``(t - c) / (1 - c)``; a face-and-voice query's threshold is the mean of the two. A match
is accepted when its calibrated score is at least ``identify.threshold`` (0 by default).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import __version__
from .config import Config, load_config
from .errors import AvidError, ConfigError, ModelError, NoContentError
from .gallery import Gallery, Observation, clean_name
from .ingest import Models, process_file
from .media import content_hash, media_kind
from .shared import model as shared_model
from .shared.train import PROTOTYPE_SPACES, UNNAMED, TrainingData, TrainReport, person_prototypes, train_model
from .talking_face import TrackChoice, choose_face, track_size
from .types import FaceTrack, IngestResult, JsonResult, Match, Person, box_area
from .vectors import unit_mean, unit_rows

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


def describe_tracks(tracks: Sequence[FaceTrack]) -> str:
    """One line per face track: id, time range, detections and face size, longest first."""
    lines = []
    for t in sorted(tracks, key=lambda t: (t.start - t.end, t.id)):
        lines.append(f"  track {t.id}: {t.start:.1f}-{t.end:.1f} s, {len(t.detections)} detections, "
                     f"face about {track_size(t):.0f} px")
    return "\n".join(lines)


def _speech_between(result: IngestResult, start: Optional[float] = None,
                    end: Optional[float] = None) -> Optional[tuple[float, float]]:
    """The first and last moment of speech in [start, end] (all speech when None), or None without any."""
    lo, hi = (float("-inf") if start is None else start), (float("inf") if end is None else end)
    heard = [(max(r.start, lo), min(r.end, hi)) for r in result.speech_regions if r.end > lo and r.start < hi]
    return (heard[0][0], heard[-1][1]) if heard else None


def _window_voice(result: IngestResult, start: float, end: float) -> Optional[np.ndarray]:
    """The normalised mean of the diarization window embeddings in [start, end] (too little speech to embed
    it whole), or None."""
    return unit_mean([w.embedding for w in result.voice_windows if w.end > start and w.start < end])


def _whole_voice(path: str, start: float, end: float, cfg: Config, models: Models) -> Optional[np.ndarray]:
    """The voice of all the speech of ``path`` between ``start`` and ``end`` as one utterance (None if it has too
    little): for enrolment and queries, where the diarization windows would each use only their middle seconds.
    (The stretch is decoded a second time.)"""
    from .media import load_audio

    audio = load_audio(path, int(cfg.media.audio_sample_rate), start, end)
    try:
        return models.voice_encoder.embed_utterance(audio)
    except NoContentError:
        return None


def _choose_track(result: IngestResult, track: Optional[int], path: str, cfg: Config) -> TrackChoice:
    """The face of a video that is its person (``track`` when given): talking_face.choose_face, or AvidError
    listing the faces when two different ones are comparably likely."""
    tracks = [t for t in result.face_tracks if t.embedding is not None and t.detections]
    if track is not None and not any(t.id == track for t in tracks):
        raise AvidError(f"no face track {track}; the tracks are:\n{describe_tracks(tracks)}", path)
    choice = choose_face(tracks, result.speech_regions, result.energy, cfg, track)
    if tracks and choice.chosen is None:
        listed = "\n".join(f"  {c.describe()}" for c in choice.candidates)
        raise AvidError(f"cannot tell whose video this is: {choice.explanation}; choose a face with --track ID:"
                        f"\n{listed}", path)
    return choice


_GIVEN_AS = {"image": ("image",), "audio": ("audio", "video"), "video": ("video",)}


def evidence_from(path: str | Path, cfg: Config, models: Models, track: Optional[int] = None,
                  given_as: Optional[str] = None) -> Evidence:
    """Ingest one file and take what identifies its person: the largest face of a photo; the speech of an audio
    clip; the face of a video that is its person (``track``, or the one seen talking, or the one that dominates:
    talking_face.choose_face) and the speech heard while it is on screen.

    ``given_as`` ("image", "audio", "video": the option the file came with) refuses a file of another kind, a
    photo given as a video say; an audio clip may be a video's sound, and then only its voice is taken."""
    path = str(path)
    if given_as is not None and media_kind(path) not in _GIVEN_AS[given_as]:
        names = {"image": "a still image", "audio": "an audio clip", "video": "a video"}
        raise AvidError(f"is {names[media_kind(path)]}, not {names[given_as]}: give it with --{media_kind(path)}",
                        path)
    result = process_file(path, cfg, models)
    kind = result.media.kind
    evidence = Evidence(face_backend=result.face_backend, voice_backend=result.voice_backend)
    evidence.notes.extend(f"{path}: {w}" for w in result.warnings)
    if kind == "image":
        faces = [t for t in result.face_tracks if t.embedding is not None and t.detections]
        if not faces:
            raise NoContentError("no face found in the image", path)
        largest = max(faces, key=lambda t: box_area(t.detections[0].box))
        if len(faces) > 1:
            evidence.notes.append(f"{path}: {len(faces)} faces; using the largest")
        evidence.face = largest.embedding.astype(np.float32)
        evidence.face_sharpness = largest.detections[0].sharpness
        evidence.face_source = {"source": path, "track_id": None, "start": None, "end": None}
        return evidence
    if given_as == "audio":
        kind = "audio"      # a video's sound track: its voice only
    choice = _choose_track(result, track, path, cfg) if kind == "video" else None
    chosen = choice.chosen if choice is not None else None
    if chosen is not None:
        evidence.face = choice.embedding
        evidence.face_sharpness = chosen.sharpness
        evidence.choice = choice.to_dict()
        evidence.face_source = {"source": path, "track_id": chosen.tracks[0].id, "start": chosen.tracks[0].start,
                                "end": max(t.end for t in chosen.tracks)}
    # With several people on screen, only speech while the chosen face is visible can be theirs.
    several = len([t for t in result.face_tracks if t.embedding is not None]) > 1
    span = (evidence.face_source["start"], evidence.face_source["end"]) if chosen and several else (None, None)
    heard = None if choice is not None and choice.silent_face else _speech_between(result, *span)
    if heard is not None:
        evidence.voice = _whole_voice(path, *heard, cfg, models)
        if evidence.voice is None:
            evidence.voice = _window_voice(result, *heard)
        if evidence.voice is not None:
            evidence.voice_source = {"source": path, "track_id": None, "start": heard[0], "end": heard[1]}
    if evidence.face is None and evidence.voice is None:
        what = "no speech long enough to embed" if kind == "audio" else "no face and no usable speech"
        raise NoContentError(what, path)
    if choice is not None and choice.silent_face:
        evidence.notes.append(f"{path}: the face (track {chosen.tracks[0].id}) is not seen talking with the "
                              f"speech, so the voice may be someone else's (off screen): face only; give the voice "
                              f"with --audio if it is theirs")
    elif kind == "video" and evidence.voice is None:
        when = f" while track {chosen.tracks[0].id} is on screen" if span[0] is not None else ""
        evidence.notes.append(f"{path}: no usable speech{when}; face only")
    if kind == "video" and evidence.face is None:
        evidence.notes.append(f"{path}: no face found; voice only")
    elif choice is not None and choice.reason not in ("only face", "track"):
        evidence.notes.append(f"{path}: using track {chosen.tracks[0].id}: {choice.explanation}")
    return evidence


def _combine(parts: list[Evidence]) -> Evidence:
    """One query from several inputs: at most one source per modality."""
    combined = Evidence()
    for part in parts:
        combined.notes.extend(part.notes)
        combined.choice = combined.choice or part.choice
        for modality in ("face", "voice"):
            if getattr(part, modality) is None:
                continue
            if getattr(combined, modality) is not None:
                raise AvidError(f"two inputs give a {modality}; a query takes one face and/or one voice")
            setattr(combined, modality, getattr(part, modality))
            setattr(combined, f"{modality}_backend", getattr(part, f"{modality}_backend"))
            setattr(combined, f"{modality}_source", getattr(part, f"{modality}_source"))
            if modality == "face":
                combined.face_sharpness = part.face_sharpness
    return combined


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


# ---------------------------------------------------------------------------------------------- the shared model
def encoder_spec(gallery: Gallery, cfg: Config) -> shared_model.ModelSpec:
    """Encoders of the gallery's embeddings (or the configured ones for a modality it has none of) + model sizes."""
    from .faces.embed import ENCODERS
    from .voice.embed import VOICE_ENCODERS

    have = gallery.encoders()
    backend = cfg.faces.encoder.backend
    if "face" not in have and backend not in ENCODERS:
        raise ConfigError(f"unknown faces.encoder.backend {backend!r}")
    face = have["face"] if "face" in have else (backend, ENCODERS[backend].dim)
    voice_backend = cfg.voice.encoder.backend
    if "voice" not in have and voice_backend not in VOICE_ENCODERS:
        raise ConfigError(f"unknown voice.encoder.backend {voice_backend!r}")
    voice = have["voice"] if "voice" in have else (voice_backend, VOICE_ENCODERS[voice_backend].dim)
    # z is at least as wide as either embedding, so that each encoder can start as an exact isometry.
    z_dim = max(int(cfg.shared.z_dim), int(face[1]), int(voice[1]))
    return shared_model.ModelSpec(face_backend=face[0], face_dim=int(face[1]), voice_backend=voice[0],
                                  voice_dim=int(voice[1]), z_dim=z_dim, hidden_dim=int(cfg.shared.hidden_dim))


def load_model(gallery: Gallery) -> Optional[tuple[shared_model.BimodalAutoencoder, dict]]:
    """The gallery's trained model and its metadata, or None; ModelError if it is damaged or for other encoders."""
    stored = gallery.load_model()
    if stored is None:
        return None
    checkpoint, _ = stored
    model, metadata = shared_model.from_bytes(checkpoint, source=f"{gallery.path} (shared model)")
    have = gallery.encoders()
    for modality, (backend, dim) in have.items():
        if (getattr(model.spec, f"{modality}_backend"), getattr(model.spec, f"{modality}_dim")) != (backend, dim):
            raise ModelError(f"the stored shared model was trained on other {modality} embeddings than the "
                             f"gallery holds; run `avid train`", gallery.path)
    return model, metadata


def training_data(observations: list[Observation], spec: shared_model.ModelSpec) -> tuple[TrainingData, list[int]]:
    """Observations -> arrays for training; returns the data and the person id of each label 0..n-1."""
    person_ids = sorted({o.person_id for o in observations if o.person_id is not None})
    label_of = {pid: i for i, pid in enumerate(person_ids)}
    faces = [o for o in observations if o.modality == "face"]
    voices = [o for o in observations if o.modality == "voice"]
    face_row = {o.id: i for i, o in enumerate(faces)}
    # Unnamed observations known to belong together (a voice heard with a face track) are pairs for alignment.
    pairs = [(face_row[o.paired_with], i) for i, o in enumerate(voices)
             if o.person_id is None and o.paired_with in face_row and faces[face_row[o.paired_with]].person_id is None]
    data = TrainingData(
        faces=np.array([o.embedding for o in faces], np.float32).reshape(len(faces), spec.face_dim),
        face_person=np.array([label_of.get(o.person_id, UNNAMED) for o in faces], np.int64),
        voices=np.array([o.embedding for o in voices], np.float32).reshape(len(voices), spec.voice_dim),
        voice_person=np.array([label_of.get(o.person_id, UNNAMED) for o in voices], np.int64),
        pairs=np.array(pairs, np.int64).reshape(-1, 2), n_people=len(person_ids))
    return data, person_ids


def train(gallery: Gallery, cfg: Optional[Config] = None,
          progress: Optional[Callable[[int, int], None]] = None) -> TrainReport:
    """Train the shared model on every observation in the gallery; store it with fresh z prototypes."""
    cfg = cfg or load_config()
    observations = gallery.observations()
    if not any(o.person_id is not None for o in observations):
        raise AvidError("nothing to train on: enrol someone first (avid enroll NAME --image/--audio/--video)",
                        gallery.path)
    spec = encoder_spec(gallery, cfg)
    data, person_ids = training_data(observations, spec)
    model, report = train_model(data, spec, cfg.shared.train, progress)
    prototypes = {space: {person_ids[label]: vector for label, vector in vectors.items()}
                  for space, vectors in person_prototypes(model, data).items()}
    metadata = {"avid_version": __version__, "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config_hash": shared_model.config_hash(cfg.shared.to_dict()), "seed": int(cfg.shared.train.seed),
                "people": len(person_ids), "face_observations": int(len(data.faces)),
                "voice_observations": int(len(data.voices)), "steps": report.steps,
                "seconds": round(report.seconds, 2), "losses": {k: round(v, 5) for k, v in report.losses.items()}}
    gallery.save_model(model.to_bytes(metadata), metadata, prototypes)
    return report


def refresh_z_prototypes(gallery: Gallery, person_ids: Optional[Sequence[int]] = None) -> None:
    """Recompute z prototypes with the stored model, for ``person_ids`` (all people when None): people enrolled,
    added to or merged since training get prototypes without retraining."""
    loaded = load_model(gallery)
    if loaded is None:
        return
    model = loaded[0]
    with gallery.transaction():
        fresh = {p.id: person_prototypes(model, training_data(gallery.observations(person=p.id), model.spec)[0])
                 for p in gallery.people() if person_ids is None or p.id in person_ids}
        for space in PROTOTYPE_SPACES:
            people, matrix = gallery.prototypes(space)
            vectors = {p.id: v for p, v in zip(people, matrix) if p.id not in fresh}
            vectors.update({pid: v for pid, spaces in fresh.items() for v in spaces[space].values()})
            gallery.set_prototypes(space, vectors)


# ---------------------------------------------------------------------------------------------- re-embedding
def reembed_voices(gallery: Gallery, cfg: Config, models: Models, drop_missing: bool = False) -> dict:
    """Embed every stored voice again with the configured voice encoder, from its source file (the stretch
    ``start``-``end`` where recorded), so that a gallery or library made with another encoder can be used.

    Observations whose source file is gone cannot be re-embedded: unless ``drop_missing`` nothing is changed
    (AvidError lists them); with it they are deleted. Returns counts and the encoder used.
    """
    from .media import load_audio

    encoder = models.voice_encoder
    vectors: dict[int, np.ndarray] = {}
    missing: list[tuple[int, str]] = []
    rate = int(cfg.media.audio_sample_rate)
    for obs in gallery.observations(modality="voice"):
        if not Path(obs.source).is_file():
            missing.append((obs.id, obs.source))
            continue
        audio = load_audio(obs.source, rate, obs.start, obs.end)
        try:
            vectors[obs.id] = encoder.embed_utterance(audio)
        except NoContentError:
            vectors[obs.id] = encoder.embed_utterance(audio, trim_silence=False)
    if missing and not drop_missing:
        listed = "\n".join(f"  {source}" for _, source in missing[:20])
        raise AvidError(f"{len(missing)} voice observations have no source file any more, so they cannot be "
                        f"re-embedded (nothing was changed; --drop-missing deletes them):\n{listed}")
    gallery.replace_embeddings("voice", vectors, encoder.name, drop=[i for i, _ in missing])
    return {"reembedded": len(vectors), "dropped": len(missing), "backend": encoder.name}


# ---------------------------------------------------------------------------------------------- enrol
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


def enroll(gallery: Gallery, name: str, images: Sequence[str | Path] = (), audios: Sequence[str | Path] = (),
           videos: Sequence[str | Path] = (), track: Optional[int] = None, add: bool = False,
           cfg: Optional[Config] = None, models: Optional[Models] = None) -> Enrolment:
    """Enrol ``name`` from photos, audio clips and videos; all or nothing.

    A name that exists is refused unless ``add`` (then the new observations join that person). ``track`` picks
    the face track of a video with several; it needs exactly one video.
    """
    cfg = cfg or load_config()
    name = clean_name(name)      # refused before any work when it cannot be a name
    if not (images or audios or videos):
        raise AvidError("nothing to enrol: give at least one --image, --audio or --video")
    if track is not None and len(videos) != 1:
        raise AvidError("--track picks a face track of one video: give exactly one --video with it")
    exists = gallery.find_person(name) is not None
    if exists and not add:
        raise AvidError(f"{name!r} is already enrolled: use --add to add these files to them, or another name")
    from .learning import learn_from_library

    models = models or Models(cfg)
    evidence = [evidence_from(p, cfg, models, given_as="image") for p in images]
    evidence += [evidence_from(p, cfg, models, given_as="audio") for p in audios]
    evidence += [evidence_from(p, cfg, models, track=track, given_as="video") for p in videos]
    for path, item in zip(list(images) + list(audios) + list(videos), evidence):
        digest = content_hash(path)   # stored with enrolled observations only: queries need no second read
        for source in (item.face_source, item.voice_source):
            if source:
                source["content_hash"] = digest
    added, notes = [], [n for e in evidence for n in e.notes]
    with gallery.transaction():
        person = gallery.person(name) if add and exists else gallery.add_person(name)
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
    choices = [{"source": str(p), **e.choice} for p, e in zip(list(images) + list(audios) + list(videos), evidence)
               if e.choice is not None]
    return Enrolment(person=gallery.person(name), added=added, notes=notes, choices=choices)


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


def query(gallery: Gallery, image: Optional[str | Path] = None, audio: Optional[str | Path] = None,
          video: Optional[str | Path] = None, top_k: Optional[int] = None, cfg: Optional[Config] = None,
          models: Optional[Models] = None, track: Optional[int] = None, use_model: bool = True) -> QueryResult:
    """Who is this? Rank enrolled people for the face and/or voice in the given files."""
    cfg = cfg or load_config()
    if not (image or audio or video):
        raise AvidError("nothing to query: give --image, --audio or --video")
    if not gallery.people():
        raise AvidError("the gallery is empty: enrol people first (avid enroll NAME ...)", gallery.path)
    models = models or Models(cfg)
    parts = [evidence_from(p, cfg, models, track=track if kind == "video" else None, given_as=kind)
             for kind, p in (("image", image), ("audio", audio), ("video", video)) if p]
    evidence = _combine(parts)
    return query_embeddings(gallery, evidence, top_k, cfg, use_model)


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
