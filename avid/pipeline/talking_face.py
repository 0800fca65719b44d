"""Which face in a video is the person: the one seen talking with the speech, else the one that dominates.

A video given as one person's evidence (``enroll --video``, ``query --video``, ``search --video``, a manifest's
video rows) and each speech region of the library's face-voice pairing need one face: the person a viewer would
say the clip is of. The rule, in order:

1. **Talking.** A face whose mouth moves with the speech and that is on screen while it is heard (the mouth and
   co-occurrence evidence ``avid label`` links speakers to faces with, ``label.pair_evidence``) is the person.
   Two different faces both talking are told apart only by a clear lead in that evidence.
2. **Dominant.** With nobody seen talking (still photos, no mouth landmarks, no speech), the face that dominates:
   on screen longest while speech is heard (or at all, without speech), times its size and detection
   confidence, by a clear ratio over the next different face.
3. Otherwise it is ambiguous, and the caller refuses with the list of faces and why.

Tracks of one face (never on screen together, embeddings as alike as the face encoder's same-person threshold
requires) count as one face, so a person filmed in two shots is not "two comparable faces".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..config import Config
from ..types import EnergyTrack, FaceTrack, SpeechRegion, SpeechTurn, median_sharpness, median_side
from ..vectors import unit_rows
from .associate import pair_evidence, sample_period


@dataclass
class Candidate:
    """One face (one or more tracks of one person) and the evidence that it is the person of the clip."""

    tracks: list[FaceTrack]           # main track first (most detections)
    visible_seconds: float            # on screen while speech is heard (or at all, without speech)
    size: float                       # median face box side in pixels
    probability: float                # mean detection probability
    mouth_score: Optional[float]      # 0..1, the best of its tracks; None without mouth evidence
    talk_score: float                 # label.pair_evidence score: co-occurrence and mouth motion
    talking: bool                     # seen talking with the speech
    dominance: float = 0.0
    with_speech: bool = True          # visible_seconds counts only time with speech

    @property
    def sharpness(self) -> Optional[float]:
        """Median faces.detect.sharpness of its detections (None when not measured)."""
        return median_sharpness([d for t in self.tracks for d in t.detections])

    @property
    def track_ids(self) -> list[int]:
        return [t.id for t in self.tracks]

    def describe(self) -> str:
        ids = "+".join(str(i) for i in self.track_ids)
        mouth = "no mouth evidence" if self.mouth_score is None else f"mouth {self.mouth_score:.2f}"
        talking = "talking" if self.talking else "not seen talking"
        return (f"track {ids}: {self.tracks[0].start:.1f}-{max(t.end for t in self.tracks):.1f} s, "
                f"{sum(len(t.detections) for t in self.tracks)} detections, face about {self.size:.0f} px, "
                f"{self.visible_seconds:.1f} s on screen{' with speech' if self.with_speech else ''}, {mouth}, "
                f"{talking}")


@dataclass
class TrackChoice:
    """The face chosen as the person of a clip (None when it is ambiguous) and why."""

    chosen: Optional[Candidate]
    reason: str                       # "only face" | "talking" | "dominant" | "track" (asked for) | "ambiguous"
    explanation: str                  # one sentence for people
    candidates: list[Candidate] = field(default_factory=list)
    # The chosen face is on screen while speech is heard but its mouth is seen not to move with it: the voice
    # is probably someone else's (off screen, or the face is a photo).
    silent_face: bool = False

    @property
    def embedding(self) -> Optional[np.ndarray]:
        """The chosen face's embedding: its tracks' embeddings weighted by their detections."""
        if self.chosen is None:
            return None
        tracks = [t for t in self.chosen.tracks if t.embedding is not None]
        weights = np.array([len(t.detections) for t in tracks], np.float32)
        return unit_rows((weights[:, None] * np.stack([t.embedding for t in tracks])).sum(0)).astype(np.float32)

    def to_dict(self) -> dict:
        chosen = self.chosen
        return {"track_id": chosen.tracks[0].id if chosen else None, "track_ids": chosen.track_ids if chosen else [],
                "reason": self.reason, "explanation": self.explanation,
                "candidates": [c.describe() for c in self.candidates]}


def track_size(track: FaceTrack) -> float:
    """Median face box side (pixels) over the track."""
    return median_side(track.detections)


def _same_face(a: FaceTrack, b: FaceTrack, threshold: float) -> bool:
    never_together = a.end < b.start or b.end < a.start
    return never_together and float(np.dot(a.embedding, b.embedding)) >= threshold


def _group_faces(tracks: list[FaceTrack], threshold: float) -> list[list[FaceTrack]]:
    """Tracks grouped into faces: a track joins a group when it is the same face (never together, alike) as every
    track in it, most detections first."""
    groups: list[list[FaceTrack]] = []
    for track in sorted(tracks, key=lambda t: -len(t.detections)):
        home = next((g for g in groups if all(_same_face(track, other, threshold) for other in g)), None)
        if home is None:
            groups.append([track])
        else:
            home.append(track)
    return groups


def _candidate(group: list[FaceTrack], turns: list[SpeechTurn], energy: Optional[EnergyTrack],
               cfg: Config) -> Candidate:
    period = sample_period(cfg)
    opts = cfg.association
    visible, mouth, talk, talking = 0.0, None, 0.0, False
    for track in group:
        if turns:
            evidence = pair_evidence("speech", turns, track, energy, cfg)
            visible += evidence.visible_seconds
            talk = max(talk, evidence.score)
            if evidence.mouth_score is not None:
                mouth = max(mouth or 0.0, evidence.mouth_score)
                talking |= (evidence.mouth_score >= float(opts.min_mouth_score)
                            and evidence.score >= float(opts.min_score))
        else:
            visible += len(track.detections) * period
    detections = [d for t in group for d in t.detections]
    candidate = Candidate(tracks=group, visible_seconds=visible,
                          size=median_side(detections),
                          probability=float(np.mean([d.probability for d in detections])),
                          mouth_score=mouth, talk_score=talk, talking=talking, with_speech=bool(turns))
    # Prominence on screen: time x face size (a face twice as large, or on screen twice as long, counts twice).
    candidate.dominance = visible * candidate.size * candidate.probability
    return candidate


def choose_face(tracks: Sequence[FaceTrack], speech: Sequence[SpeechRegion | SpeechTurn],
                energy: Optional[EnergyTrack], cfg: Config, track_id: Optional[int] = None) -> TrackChoice:
    """The face of ``tracks`` that is the person heard in ``speech`` (or seen, without speech); see the module
    docstring. ``track_id`` asks for one track (the caller checks that it exists)."""
    from ..identity.scoring import raw_threshold  # the face encoder's calibrated same-person similarity

    opts = cfg.talking_face
    usable = [t for t in tracks if t.embedding is not None and t.detections]
    turns = [SpeechTurn(s.start, s.end, "speech") for s in speech if s.end > s.start]
    if not usable:
        return TrackChoice(None, "ambiguous", "no face track")
    groups = _group_faces(usable, raw_threshold(cfg, cfg.faces.encoder.backend))
    if track_id is not None:
        groups = [[t for t in usable if t.id == track_id]]
    candidates = [_candidate(g, turns, energy, cfg) for g in groups]
    if turns and not any(c.visible_seconds > 0 for c in candidates):
        turns = []      # no face is on screen while anyone speaks: judge them by their time on screen
        candidates = [_candidate(g, turns, energy, cfg) for g in groups]
    candidates.sort(key=lambda c: (-c.talking, -c.talk_score, -c.dominance))
    best = candidates[0]

    def silent(candidate: Candidate) -> bool:
        """Heard, but its mouth is measured not to move with the speech: the voice is not this face's."""
        return bool(turns) and candidate.mouth_score is not None and not candidate.talking

    if track_id is not None:
        return TrackChoice(best, "track", f"track {track_id} was asked for", candidates, silent(best))
    if len(candidates) == 1:
        return TrackChoice(best, "only face", "the only face in the video", candidates, silent(best))
    talkers = [c for c in candidates if c.talking]
    if talkers:
        runner_up = talkers[1].talk_score if len(talkers) > 1 else None
        if runner_up is None or best.talk_score >= runner_up + float(opts.talking_margin):
            why = f"the face seen talking with the speech (score {best.talk_score:.2f}"
            why += f", next {runner_up:.2f})" if runner_up is not None else "; no other face talks)"
            return TrackChoice(best, "talking", why, candidates)
        return TrackChoice(None, "ambiguous", f"{len(talkers)} different faces are seen talking with the speech, "
                           f"with comparable evidence", candidates)
    by_dominance = sorted(candidates, key=lambda c: -c.dominance)
    best, second = by_dominance[0], by_dominance[1]
    if best.dominance > 0 and best.dominance >= float(opts.dominance_ratio) * second.dominance:
        what = "with speech" if turns else "at all"
        return TrackChoice(best, "dominant", f"no face is seen talking; this one dominates (on screen {what} "
                           f"{best.visible_seconds:.1f} s at {best.size:.0f} px, next {second.visible_seconds:.1f} "
                           f"s at {second.size:.0f} px)", by_dominance, silent(best))
    neither = "no face is seen talking and " if turns else "there is no speech and "
    return TrackChoice(None, "ambiguous", f"{neither}{len(candidates)} different faces are on screen comparably "
                       f"long and large", by_dominance)
