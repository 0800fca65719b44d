"""Enrolment and queries from media files: what a photo, an audio clip or a video says about its person.

This is what `avid enroll`, `avid query` and `avid people reembed` run:

- ``evidence_from`` ingests one file and takes the largest face of a photo, the speech of an audio clip, or the face
  of a video that is its person (avid.pipeline.talking_face) with the speech heard while it is on screen;
- ``enroll`` stores that evidence as observations of a named person (avid.identity.enroll), all in one transaction;
- ``query`` ranks the enrolled people for it (avid.identity.scoring) and says ``unknown`` below the threshold.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..config import Config, load_config
from ..errors import AvidError, NoContentError
from ..identity.enroll import Enrolment, check_new, enroll_evidence
from ..identity.scoring import Evidence, QueryResult, query_embeddings
from ..identity.store import Gallery, clean_name
from ..io.media import content_hash, media_kind
from ..types import FaceTrack, IngestResult, box_area
from ..vectors import unit_mean
from .ingest import process_file
from .models import Models
from .talking_face import TrackChoice, choose_face, track_size


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
    from ..io.media import load_audio

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


# ---------------------------------------------------------------------------------------------- re-embedding
def reembed_voices(gallery: Gallery, cfg: Config, models: Models, drop_missing: bool = False) -> dict:
    """Embed every stored voice again with the configured voice encoder, from its source file (the stretch
    ``start``-``end`` where recorded), so that a gallery or library made with another encoder can be used.

    Observations whose source file is gone cannot be re-embedded: unless ``drop_missing`` nothing is changed
    (AvidError lists them); with it they are deleted. Returns counts and the encoder used.
    """
    from ..io.media import load_audio

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
    check_new(gallery, name, add)
    paths = [*images, *audios, *videos]
    models = models or Models(cfg)
    evidence = [evidence_from(p, cfg, models, given_as="image") for p in images]
    evidence += [evidence_from(p, cfg, models, given_as="audio") for p in audios]
    evidence += [evidence_from(p, cfg, models, track=track, given_as="video") for p in videos]
    for path, item in zip(paths, evidence):
        digest = content_hash(path)   # stored with enrolled observations only: queries need no second read
        for source in (item.face_source, item.voice_source):
            if source:
                source["content_hash"] = digest
    enrolment = enroll_evidence(gallery, name, evidence, add, cfg)
    enrolment.choices = [{"source": str(p), **e.choice} for p, e in zip(paths, evidence) if e.choice is not None]
    return enrolment


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
