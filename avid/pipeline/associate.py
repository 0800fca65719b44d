"""Which face is talking: each speaker linked to the visible face tracks whose mouths move while it speaks.

Evidence per (speaker, track): co-occurrence (how much of the speaker's speech the face is on screen for) and
mouth motion (the spread of mouth openness during that speech above the jitter of a still mouth, against its
spread while the speaker is silent, plus its correlation with the speech energy). A speaker with no such face
stays voice-only; a face track belongs to at most one speaker, and a speaker has one face at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..config import Config
from ..intervals import merge_intervals
from ..types import EnergyTrack, FaceTrack, SpeechTurn


# --------------------------------------------------------------------------------------------------- association
@dataclass
class PairEvidence:
    """How well one face track fits one speaker as the face that is talking."""

    speaker: str
    track_id: int
    visible_seconds: float        # the track is on screen this long while the speaker speaks
    cooccurrence: float           # visible_seconds over the speaker's speech time, 0..1
    mouth_score: Optional[float]  # 0..1 from mouth activity, contrast and correlation; None without mouth values
    activity: float = 0.0         # std of mouth openness while the speaker speaks
    activity_elsewhere: Optional[float] = None   # ... while the track is on screen and the speaker is silent
    correlation: float = 0.0      # mouth openness vs speech energy while the speaker speaks
    score: float = 0.0


def _in_turns(times: np.ndarray, turns: list[SpeechTurn]) -> np.ndarray:
    """Which of ``times`` fall inside any of ``turns`` (O(n log m): hours of face samples against many turns)."""
    merged = merge_intervals((turn.start, turn.end) for turn in turns)
    if not merged:
        return np.zeros(np.shape(times), dtype=bool)
    starts, ends = np.array(merged).T
    index = np.searchsorted(starts, times, side="right") - 1
    return (index >= 0) & (times < ends[np.maximum(index, 0)])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def sample_period(cfg: Config) -> float:
    """Seconds each face detection stands for: the face sampling period."""
    return 1.0 / float(cfg.media.frame_rate)


def pair_evidence(speaker: str, turns: list[SpeechTurn], track: FaceTrack, energy: Optional[EnergyTrack],
                  cfg: Config) -> PairEvidence:
    """Co-occurrence and mouth-motion evidence that ``track`` is the face of ``speaker`` (whose turns are given).

    Mouth evidence, when the track has mouth openness values: the mouth must move while the speaker speaks (its
    spread above the jitter of a still mouth, or how much more open it is than while the speaker is silent),
    more than it does while the speaker is silent (a listener moves its mouth at other times: the contrast), and a mouth that opens on the loud syllables adds to it (correlation
    with speech energy; weak at a few frames a second, and music or noise blur it, so it only adds).
    """
    opts = cfg.association
    times = np.array([d.time for d in track.detections], dtype=np.float64)
    speaking = _in_turns(times, turns)
    speech_seconds = sum(t.end - t.start for t in turns)
    visible = float(speaking.sum()) * sample_period(cfg)
    cooccurrence = min(1.0, visible / speech_seconds) if speech_seconds > 0 else 0.0
    evidence = PairEvidence(speaker, track.id, visible, cooccurrence, None)
    mouth = np.asarray(track.mouth_openness, dtype=np.float64)
    min_samples = int(opts.min_mouth_samples)
    if mouth.size != times.size:
        evidence.score = cooccurrence   # no mouth evidence: co-occurrence alone
        return evidence
    measured = np.isfinite(mouth)
    talking, elsewhere = speaking & measured, ~speaking & measured
    if talking.sum() < min_samples:
        evidence.score = cooccurrence
        return evidence
    floor = float(opts.mouth_motion_floor)
    evidence.activity = float(np.std(mouth[talking]))
    motion = evidence.activity
    if elsewhere.sum() >= min_samples:
        # A mouth held more open while the speaker speaks than otherwise moves with the speech too, even when it
        # varies little within it (a short phrase sampled a few times).
        motion = max(motion, float(np.mean(mouth[talking]) - np.mean(mouth[elsewhere])))
    above = max(0.0, motion - floor) / floor   # how many jitter floors beyond a still mouth
    mouth_score = above / (1.0 + above)
    if energy is not None:
        level = energy.around(times[talking], float(opts.energy_window_seconds))
        evidence.correlation = _pearson(mouth[talking], level)
        # Correlation only counts for a mouth that moves: the jitter of a still one correlates by chance.
        mouth_score = 1.0 - (1.0 - mouth_score) * (1.0 - mouth_score * max(0.0, evidence.correlation))
    if elsewhere.sum() >= min_samples:
        evidence.activity_elsewhere = float(np.std(mouth[elsewhere]))
        contrast = evidence.activity / max(evidence.activity + evidence.activity_elsewhere, 1e-9)
        mouth_score *= min(1.0, 2.0 * contrast)   # 0.5 = moves as much either way; less = moves when others speak
    evidence.mouth_score = mouth_score
    weight = float(opts.mouth_weight)
    evidence.score = (1 - weight) * cooccurrence + weight * mouth_score
    return evidence


@dataclass
class Association:
    """What association found: speaker -> linked face tracks (best first), the evidence for every candidate
    (speaker, track) pair, and the voice clusters merged because one face speaks them all (absorbed, kept)."""

    links: dict[str, list[int]]
    evidence: list[PairEvidence]
    merged: list[tuple[str, str]]


def associate(turns: list[SpeechTurn], tracks: list[FaceTrack], energy: Optional[EnergyTrack],
              cfg: Config) -> Association:
    """Link speakers to the face tracks that are talking, and set ``track_id`` on each turn where one is visible.

    A track is linked to at most one speaker, the one it fits best; a speaker may have several tracks (the same
    person in several shots) but only one face at a time, so of two tracks on screen together only the better
    one is linked. Two speakers who never talk at the same time and whose speech the same face is talking are
    one person that diarization split (singing and talking, say): they are merged, and the turns relabelled.
    """
    merged: list[tuple[str, str]] = []
    while True:
        by_speaker = _turns_by_speaker(turns)
        candidates = [e for speaker, speaker_turns in by_speaker.items()
                      for e in _candidates(speaker, speaker_turns, tracks, energy, cfg)]
        accepted = [e for e in candidates if _acceptable(e, candidates, cfg)]
        merge = _speakers_sharing_a_face(accepted, by_speaker, cfg)
        if merge is None:
            break
        absorbed, kept = merge
        for turn in turns:
            if turn.speaker == absorbed:
                turn.speaker = kept
        merged.append(merge)
    best_for_track: dict[int, PairEvidence] = {}    # each track goes to the speaker it fits best
    for evidence in accepted:
        held = best_for_track.get(evidence.track_id)
        if held is None or (evidence.score, evidence.visible_seconds) > (held.score, held.visible_seconds):
            best_for_track[evidence.track_id] = evidence
    by_id = {track.id: track for track in tracks}
    links: dict[str, list[int]] = {speaker: [] for speaker in by_speaker}
    for evidence in sorted(best_for_track.values(), key=lambda e: -e.score):
        linked = [by_id[t] for t in links[evidence.speaker]]
        if not linked or _same_person_elsewhere(by_id[evidence.track_id], linked, cfg):
            links[evidence.speaker].append(evidence.track_id)
    link_turns(turns, tracks, links, cfg)
    return Association(links, candidates, merged)


def _turns_by_speaker(turns: list[SpeechTurn]) -> dict[str, list[SpeechTurn]]:
    """Turns grouped by speaker, speakers in order of first speech."""
    by_speaker: dict[str, list[SpeechTurn]] = {}
    for turn in sorted(turns, key=lambda t: t.start):
        by_speaker.setdefault(turn.speaker, []).append(turn)
    return by_speaker


def _candidates(speaker: str, speaker_turns: list[SpeechTurn], tracks: list[FaceTrack],
                energy: Optional[EnergyTrack], cfg: Config) -> list[PairEvidence]:
    """Evidence for each track on screen long enough while the speaker speaks."""
    need = min(float(cfg.association.min_overlap_seconds), 0.5 * sum(t.end - t.start for t in speaker_turns))
    found = []
    for track in tracks:
        if track.detections:
            evidence = pair_evidence(speaker, speaker_turns, track, energy, cfg)
            if evidence.visible_seconds >= need:
                found.append(evidence)
    return found


def _speakers_sharing_a_face(accepted: list[PairEvidence], by_speaker: dict[str, list[SpeechTurn]],
                             cfg: Config) -> Optional[tuple[str, str]]:
    """(absorbed, kept): two speakers whose speech one face track is talking, who never speak together; the
    later speaker is absorbed into the earlier. None when there are no such two."""
    order = {speaker: i for i, speaker in enumerate(by_speaker)}
    speakers_of: dict[int, list[str]] = {}
    for evidence in accepted:
        if evidence.mouth_score is not None:    # co-occurrence alone is no proof that a face speaks
            speakers_of.setdefault(evidence.track_id, []).append(evidence.speaker)
    for speakers in speakers_of.values():
        speakers = sorted(speakers, key=order.get)
        for i, kept in enumerate(speakers):
            for absorbed in speakers[i + 1:]:
                together = _overlap_seconds(by_speaker[kept], by_speaker[absorbed])
                if together < float(cfg.association.min_overlap_seconds):
                    return absorbed, kept
    return None


def _overlap_seconds(a: list[SpeechTurn], b: list[SpeechTurn]) -> float:
    """Seconds during which a turn of ``a`` and a turn of ``b`` are both running (both sorted by start)."""
    total, j = 0.0, 0
    for turn in a:
        while j < len(b) and b[j].end <= turn.start:
            j += 1
        k = j
        while k < len(b) and b[k].start < turn.end:
            total += min(turn.end, b[k].end) - max(turn.start, b[k].start)
            k += 1
    return total


def _same_person_elsewhere(track: FaceTrack, linked: list[FaceTrack], cfg: Config) -> bool:
    """Whether ``track`` can be one more face track of a speaker already linked to ``linked`` (best first): it
    is never on screen together with them, and it looks like the best one, as the face encoder's calibrated
    acceptance threshold judges (a speaker is one person)."""
    for other in linked:
        if min(track.end, other.end) - max(track.start, other.start) >= float(cfg.association.min_overlap_seconds):
            return False
    main = linked[0].embedding
    if track.embedding is None or main is None:
        return False
    from ..identity.scoring import raw_threshold  # the encoder's calibrated same-person similarity

    return float(np.dot(track.embedding, main)) >= raw_threshold(cfg, cfg.faces.encoder.backend)


def _acceptable(evidence: PairEvidence, candidates: list[PairEvidence], cfg: Config) -> bool:
    opts = cfg.association
    if evidence.mouth_score is None:
        # Without mouth values only an unambiguous face can be linked: the one face on screen for that speaker.
        rivals = [c for c in candidates if c.speaker == evidence.speaker and c.track_id != evidence.track_id]
        return not rivals and evidence.cooccurrence >= float(opts.min_cooccurrence_alone)
    return evidence.mouth_score >= float(opts.min_mouth_score) and evidence.score >= float(opts.min_score)


def link_turns(turns: list[SpeechTurn], tracks: list[FaceTrack], links: dict[str, list[int]], cfg: Config) -> None:
    """Each turn gets the speaker's linked track that is on screen longest during it, if long enough."""
    times_of = {track.id: np.array([d.time for d in track.detections]) for track in tracks}
    for turn in turns:
        turn.track_id = None
        need = min(float(cfg.association.min_overlap_seconds), 0.5 * (turn.end - turn.start))
        best, best_seconds = None, 0.0
        for track_id in links.get(turn.speaker, []):
            times = times_of[track_id]
            count = np.searchsorted(times, turn.end, side="left") - np.searchsorted(times, turn.start, side="left")
            seconds = float(count) * sample_period(cfg)
            if seconds >= need and seconds > best_seconds:
                best, best_seconds = track_id, seconds
        turn.track_id = best

