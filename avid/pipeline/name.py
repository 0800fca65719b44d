"""Naming: each speaker and face track of a recording matched against the gallery; the unmatched get stable
``unknown-N`` labels in order of first speech, and can be enrolled."""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ..config import Config
from ..types import FaceTrack, Match, SpeakerLabel, SpeechTurn, VoiceWindow
from ..vectors import unit_mean


# --------------------------------------------------------------------------------------------------- naming
def speaker_voice(speaker_windows: list[VoiceWindow], min_alone: float) -> Optional[np.ndarray]:
    """A speaker's voice: the mean (re-normalised) of the embeddings of its windows where it talks alone for at
    least ``min_alone`` seconds (mixed or short speech blurs the voice); of its longest ones if none does."""
    if not speaker_windows:
        return None
    longest = max(w.clean_seconds for w in speaker_windows)
    clean = [w for w in speaker_windows if w.clean_seconds >= min(min_alone, longest)]
    mean = unit_mean([w.embedding for w in clean])
    return mean if mean is not None and mean.any() else None


def _unknown_number(name: str, prefix: str) -> Optional[int]:
    found = re.fullmatch(rf"{re.escape(prefix)}-(\d+)", name)
    return int(found.group(1)) if found else None


def name_speakers(turns: list[SpeechTurn], voices: dict[str, list[VoiceWindow]], tracks: list[FaceTrack],
                  links: dict[str, list[int]], cfg: Config, gallery=None, enroll_unknown: bool = False,
                  source: str = "", backends: tuple[str, str] = ("", "")) -> list[SpeakerLabel]:
    """Name every speaker from the gallery (voice + main linked face), or ``unknown-N`` in order of first speech.

    ``voices``: each speaker's voice windows (what diarization assigned to it).

    Numbering continues after the highest ``unknown-N`` already in the gallery, so labels never collide with
    people enrolled earlier; ``enroll_unknown`` stores each unknown speaker (voice and face) under its label.
    ``backends`` names the (face, voice) encoders that made the embeddings, as the gallery records them.
    """
    prefix = str(cfg.label.unknown_prefix)
    by_speaker: dict[str, list[SpeechTurn]] = {}
    for turn in sorted(turns, key=lambda t: t.start):
        by_speaker.setdefault(turn.speaker, []).append(turn)
    tracks_by_id = {track.id: track for track in tracks}
    next_unknown = 1 + max([n for n in (_unknown_number(p, prefix) for p in _gallery_names(gallery)) if n] or [0])
    speakers: list[SpeakerLabel] = []
    for speaker, speaker_turns in by_speaker.items():   # in order of first speech
        track_ids = links.get(speaker, [])
        voice = speaker_voice(voices.get(speaker, []), float(cfg.label.voice_min_alone_seconds))
        face = tracks_by_id[track_ids[0]].embedding if track_ids else None
        sharpness = tracks_by_id[track_ids[0]].sharpness if track_ids else None
        label = SpeakerLabel(speaker=speaker, name="", track_ids=list(track_ids),
                             speech_seconds=float(sum(t.end - t.start for t in speaker_turns)),
                             n_turns=len(speaker_turns))
        match = _identify(gallery, face, voice, cfg, backends, sharpness)
        if match is not None:
            label.score, label.modality = match.score, match.modality
        if match is not None and match.accepted and match.person_id is not None:
            label.name, label.person_id, label.known = match.name, match.person_id, True
        else:
            label.name = f"{prefix}-{next_unknown}"
            next_unknown += 1
            if enroll_unknown and gallery is not None and (face is not None or voice is not None):
                label.person_id = _enroll(gallery, label, face, voice, source, speaker_turns, backends)
        speakers.append(label)
    names = {s.speaker: s for s in speakers}
    for turn in turns:
        turn.name, turn.score = names[turn.speaker].name, names[turn.speaker].score
    return speakers


def _gallery_names(gallery) -> list[str]:
    if gallery is None:
        return []
    return [person.name for person in gallery.people()]


def _identify(gallery, face: Optional[np.ndarray], voice: Optional[np.ndarray], cfg: Config,
              backends: tuple[str, str], face_sharpness: Optional[float] = None) -> Optional[Match]:
    """The best gallery match for a face and/or voice embedding (``accepted`` says whether it passes the open-set
    threshold), or None with no gallery, an empty one, or nothing to match."""
    if gallery is None or (face is None and voice is None) or not gallery.people():
        return None
    from ..identity.scoring import Evidence, query_embeddings

    evidence = Evidence(face=face, voice=voice, face_backend=backends[0], voice_backend=backends[1],
                        face_sharpness=face_sharpness)
    matches = query_embeddings(gallery, evidence, top_k=1, cfg=cfg).matches
    return matches[0] if matches else None


def _enroll(gallery, label: SpeakerLabel, face: Optional[np.ndarray], voice: Optional[np.ndarray], source: str,
            speaker_turns: list[SpeechTurn], backends: tuple[str, str]) -> int:
    """Store an unknown speaker under its label: its face (if linked) and its voice, paired as one person's."""
    from ..identity.training import refresh_z_prototypes

    start, end = speaker_turns[0].start, speaker_turns[-1].end
    face_backend, voice_backend = backends
    with gallery.transaction():   # all of it or nothing
        person_id = gallery.add_person(label.name).id
        face_id = None
        if face is not None:
            face_id = gallery.add_observation(person_id, "face", face, face_backend, source, start=start, end=end,
                                              track_id=label.track_ids[0])
        if voice is not None:
            gallery.add_observation(person_id, "voice", voice, voice_backend, source, start=start, end=end,
                                    paired_with=face_id)
        refresh_z_prototypes(gallery, [person_id])   # findable in the shared space too, if a model is trained
    return person_id


def name_tracks(tracks: list[FaceTrack], speakers: list[SpeakerLabel], gallery, cfg: Config,
                face_backend: str = "") -> dict[int, str]:
    """The name to show on each face track: its speaker's, or a face-only gallery match for silent faces."""
    names: dict[int, str] = {}
    for speaker in speakers:
        for track_id in speaker.track_ids:
            names[track_id] = speaker.name
    for track in tracks:
        if track.id in names or track.embedding is None:
            continue
        match = _identify(gallery, track.embedding, None, cfg, (face_backend, ""), track.sharpness)
        if match is not None and match.accepted and match.person_id is not None:
            names[track.id] = match.name
    return names

