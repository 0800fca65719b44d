"""Which visible mouth moves in time with the sound: a per-frame active-speaker signal, and audio-visual turns.

The sampled mouth evidence of ``label.pair_evidence`` (5 frames a second) links a whole speaker to a whole face
track, which is enough when one face is on screen at a time. When two or more faces are on screen together while
someone speaks, the video is read again at its own frame rate over those stretches only: each face's mouth
(between its sampled detections' mouth corners, interpolated) is cropped, and its darkness (an open mouth shows
the dark inside, or the teeth) is correlated with the speech energy over a sliding window
(``active_speaker.window_seconds``). That correlation's strength (either sign), frame by frame and face by face,
is the signal (``LipSync``). It decides:

- which face each speaker is (``relink``): the one whose mouth is most in sync with the speaker's own speech;
- who is talking at each frame (``fuse``): where the mouth in sync belongs to another speaker than the voice
  says, the frame is theirs (a change of talking mouth splits a turn), and a face in sync that no voice was
  given becomes a speaker of its own. Overlap stays the voices' to find: two mouths moving at once also
  correlate with one voice by chance, so they are no evidence of two voices.

Where no two faces share the screen during speech, nothing here runs and the turns are the audio's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import Config
from ..io import media
from ..types import EnergyTrack, FaceTrack, MediaInfo, SpeechRegion, SpeechTurn
from ..voice.diarize import mark_overlaps
from ..voice.speech import true_runs

GRID = 0.01          # seconds: turns are rebuilt on this grid


@dataclass
class LipSync:
    """Per video frame (``times``, inside stretches where two or more faces are on screen during speech), each
    face track's correlation of mouth darkness with the speech energy: -1..1, NaN where it is not on screen."""

    times: np.ndarray
    scores: dict[int, np.ndarray]

    @property
    def frame_step(self) -> float:
        """Seconds between lip frames (the video's frame period; 0.04 when there is a single frame)."""
        return float(np.median(np.diff(self.times))) if len(self.times) > 1 else 0.04

    def mean(self, track_id: int, mask: np.ndarray) -> Optional[float]:
        """Mean score of a track over the frames selected by ``mask`` where it is measured (None: nowhere)."""
        values = self.scores[track_id][mask]
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else None


def crowded_speech(tracks: list[FaceTrack], regions: list[SpeechRegion], cfg: Config) -> list[tuple[float, float]]:
    """Stretches of speech during which at least two face tracks are on screen."""
    from .associate import sample_period

    period = sample_period(cfg)
    gap = float(cfg.active_speaker.max_gap_seconds)
    spans = [span for track in tracks for span in track.visible_intervals(period, gap)]
    if len(spans) < 2 or not regions:
        return []
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    crowded, depth, opened = [], 0, 0.0
    for time, step in edges:
        if depth < 2 <= depth + step:
            opened = time
        elif depth >= 2 > depth + step and time > opened:
            crowded.append((opened, time))
        depth += step
    return [(max(a, r.start), min(b, r.end)) for a, b in crowded for r in regions if min(b, r.end) > max(a, r.start)]


class _Mouth:
    """A face track's mouth corners at any time, interpolated between its sampled detections no further apart
    than ``max_gap`` (None elsewhere)."""

    def __init__(self, track: FaceTrack, max_gap: float):
        usable = [d for d in track.detections if d.landmarks is not None]
        self.times = np.array([d.time for d in usable])
        self.corners = np.stack([np.asarray(d.landmarks, dtype=np.float64)[3:5] for d in usable]) if usable else None
        self.max_gap = max_gap

    def at(self, t: float) -> Optional[np.ndarray]:
        if self.corners is None or len(self.times) < 2:
            return None
        after = int(np.clip(np.searchsorted(self.times, t), 1, len(self.times) - 1))
        t0, t1 = self.times[after - 1], self.times[after]
        if not t0 <= t <= t1 or t1 - t0 > self.max_gap:
            return None
        weight = (t - t0) / max(t1 - t0, 1e-9)
        return (1 - weight) * self.corners[after - 1] + weight * self.corners[after]


def _darkness(gray: np.ndarray, corners: np.ndarray, scale: float) -> float:
    """How dark the mouth is (255 - mean grey level of the lips' middle), from its two corners (original
    pixels), in a frame scaled down by ``scale``."""
    import cv2

    (lx, ly), (rx, ry) = corners / scale
    width = max(4.0, float(np.hypot(rx - lx, ry - ly)))
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    x0, x1 = int(round(cx - 0.6 * width)), int(round(cx + 0.6 * width))
    y0, y1 = int(round(cy - 0.3 * width)), int(round(cy + 0.7 * width))
    crop = gray[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return np.nan
    crop = cv2.resize(crop, (24, 20), interpolation=cv2.INTER_AREA)
    return 255.0 - float(crop[6:16, 4:20].mean())     # the middle: lips and the gap between them


def _rolling_correlation(a: np.ndarray, b: np.ndarray, width: int) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` over a centred window of ``width`` frames, using the frames where
    ``a`` is known (NaN where fewer than half the window are, or either is flat)."""
    known = ~np.isnan(a)
    a0, b0 = np.where(known, a, 0.0), np.where(known, b, 0.0)

    def windowed(x):
        c = np.concatenate([[0.0], np.cumsum(x)])
        lo = np.clip(np.arange(len(x)) - width // 2, 0, len(x))
        hi = np.clip(np.arange(len(x)) + width // 2 + 1, 0, len(x))
        return c[hi] - c[lo]

    n = windowed(known.astype(float))
    sa, sb, saa, sbb, sab = (windowed(x) for x in (a0, b0, a0 * a0, b0 * b0, a0 * b0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        var = (saa - sa * sa / n) * (sbb - sb * sb / n)
        r = cov / np.sqrt(var)
    r[(n < max(3, width // 2)) | ~(var > 1e-12) | ~known] = np.nan
    return np.clip(r, -1.0, 1.0)


def lip_sync(path: str | Path, info: MediaInfo, tracks: list[FaceTrack], regions: list[SpeechRegion],
             energy: Optional[EnergyTrack], cfg: Config) -> Optional[LipSync]:
    """The per-frame signal over the crowded stretches of speech (0..1, NaN where a face is not on screen); None
    when there are none (or no energy)."""
    opts = cfg.active_speaker
    if not opts.enabled or energy is None or not info.has_video:
        return None
    stretches = crowded_speech(tracks, regions, cfg)
    if not stretches:
        return None
    half = float(opts.window_seconds) / 2
    wanted = [(max(0.0, a - half), b + half) for a, b in stretches]
    times, darkness = [], {track.id: [] for track in tracks}
    mouths = {track.id: _Mouth(track, float(opts.max_gap_seconds)) for track in tracks}
    fps = info.fps or 25.0
    # Streamed: a frame is reduced to one number per face as soon as it is decoded.
    for frame in media.iter_frames(path, fps, max_side=int(opts.max_side), gray=True, within=wanted):
        times.append(frame.time)
        for track_id, mouth in mouths.items():
            corners = mouth.at(frame.time)
            darkness[track_id].append(np.nan if corners is None else _darkness(frame.image, corners, frame.scale))
    if not times:
        return None
    times = np.array(times)
    sound = energy.around(times, 1.0 / fps)
    width = max(3, int(round(float(opts.window_seconds) * fps)))
    # Frames of separate stretches are not neighbours: each stretch is correlated on its own.
    breaks = np.flatnonzero(np.diff(times) > 1.5 / fps) + 1
    scores = {}
    for track in tracks:
        values = np.array(darkness[track.id], dtype=np.float64)
        # Either sign: an opening mouth shows the dark inside or, lit, the teeth.
        scores[track.id] = np.abs(np.concatenate([_rolling_correlation(a, b, width) for a, b in
                                                  zip(np.split(values, breaks), np.split(sound, breaks))]))
    keep = np.zeros(len(times), dtype=bool)
    for a, b in stretches:
        keep |= (times >= a) & (times < b)
    return LipSync(times[keep], {k: v[keep] for k, v in scores.items() if not np.isnan(v[keep]).all()})


def _talkers(sync: LipSync, cfg: Config) -> np.ndarray:
    """Per lip frame, the track whose mouth talks: in sync by ``min_sync`` and ahead of every other mouth on
    screen by ``margin``, for at least ``min_run_seconds`` (-1: none stands out)."""
    opts = cfg.active_speaker
    ids = sorted(sync.scores)
    scores = np.stack([sync.scores[i] for i in ids], axis=1) if ids else np.zeros((len(sync.times), 0))
    filled = np.where(np.isnan(scores), -1.0, scores)         # scores are 0..1: -1 is "not on screen"
    order = np.argsort(-filled, axis=1)
    rows = np.arange(len(filled))
    best = filled[rows, order[:, 0]] if ids else np.full(len(rows), -1.0)
    second = filled[rows, order[:, 1]] if len(ids) > 1 else np.full(len(rows), -1.0)
    talker = np.where((best >= float(opts.min_sync)) & (best - second >= float(opts.margin)),
                      np.array(ids)[order[:, 0]] if ids else -1, -1)
    shortest = int(round(float(opts.min_run_seconds) / sync.frame_step))
    for first, end in _value_runs(talker):              # a flicker of the talking mouth is not followed
        if end - first < shortest:
            talker[first:end] = -1
    return talker


def _value_runs(values: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(values)) + 1
    return list(zip(np.r_[0, edges].tolist(), np.r_[edges, len(values)].tolist()))


def _speaker_frames(turns: list[SpeechTurn], times: np.ndarray) -> dict[str, np.ndarray]:
    active = {}
    for turn in turns:
        mask = active.setdefault(turn.speaker, np.zeros(len(times), dtype=bool))
        mask |= (times >= turn.start) & (times < turn.end)
    return active


def relink(turns: list[SpeechTurn], links: dict[str, list[int]], sync: LipSync, cfg: Config) -> dict[str, list[int]]:
    """Links decided by the lips where two faces share the screen. Each frame where one voice alone is heard and
    one mouth talks (``_talkers``) is a vote for that voice being that face; a speaker with at least
    ``min_crowded_share`` of their speech in those frames has as face the track with most of their votes, by a lead of ``margin`` (as a share of their votes) over the next; a track goes to the
    speaker whose votes it holds most of. Speakers the lips cannot decide keep their links."""
    opts = cfg.active_speaker
    talker = _talkers(sync, cfg)
    heard = _speaker_frames(turns, sync.times)
    alone = sum(mask.astype(int) for mask in heard.values()) == 1 if heard else np.zeros(len(sync.times), bool)
    step = sync.frame_step
    speech = {s: sum(t.end - t.start for t in turns if t.speaker == s) for s in heard}
    choice: dict[str, tuple[float, int]] = {}
    for speaker, mask in heard.items():
        if mask.sum() * step < float(opts.min_crowded_share) * speech[speaker]:
            continue        # mostly heard with one face on screen: the sampled mouths' link stands
        votes = talker[mask & alone & (talker >= 0)]
        if not len(votes):
            continue
        tracks, counts = np.unique(votes, return_counts=True)
        order = np.argsort(-counts)
        shares = counts[order] / len(votes)
        lead = shares[0] - (shares[1] if len(shares) > 1 else 0.0)
        if lead >= float(opts.margin):
            choice[speaker] = (float(shares[0]), int(tracks[order[0]]))
    taken: dict[int, tuple[float, str]] = {}
    for speaker, (share, track) in choice.items():
        if track not in taken or share > taken[track][0]:
            taken[track] = (share, speaker)
    out = {s: list(t) for s, t in links.items()}
    for track, (_, speaker) in taken.items():
        for other in out:                              # a face is one speaker's
            if other != speaker and track in out[other]:
                out[other].remove(track)
        out[speaker] = [track] + [t for t in out.get(speaker, []) if t != track and t not in sync.scores]
    return out


def fuse(turns: list[SpeechTurn], links: dict[str, list[int]], sync: LipSync,
         cfg: Config) -> tuple[list[SpeechTurn], dict[str, list[int]]]:
    """The turns with the lips' say where two faces share the screen, and the links. Where one voice alone is
    heard but another speaker's mouth is the one talking, the speech is that speaker's (a change of talking mouth
    splits a turn); a mouth that talks for ``min_new_speaker_seconds`` without being any voice's face is the
    face of the voice without one that it talks along with most, or else a speaker of its own. Overlap the
    voices found stays; silence stays silence; elsewhere the audio's turns are kept as they are."""
    if not turns or not sync.scores:
        return turns, links
    links = {s: list(t) for s, t in links.items()}
    owner = {track: speaker for speaker, tracks in links.items() for track in tracks}
    talker = _talkers(sync, cfg)
    step = sync.frame_step
    need = float(cfg.active_speaker.min_new_speaker_seconds)
    heard = _speaker_frames(turns, sync.times)
    alone = sum(mask.astype(int) for mask in heard.values()) == 1
    faceless = [s for s in heard if not any(t in sync.scores for t in links.get(s, []))]
    for track in sorted(set(talker[talker >= 0].tolist()) - set(owner)):
        if (talker == track).sum() * step < need:
            continue
        # A talking mouth that is no voice's face is first the face of a voice without one on screen, the one
        # heard alone most while it talks; else someone heard only over others: a speaker of their own.
        votes = {s: int((heard[s] & alone & (talker == track)).sum()) for s in faceless if s not in owner.values()}
        voice = max(votes, key=votes.get, default=None)
        speaker = voice if voice is not None and votes[voice] * step >= need else _new_label(links)
        links[speaker] = [track] + links.get(speaker, [])
        owner[track] = speaker
    end = max(t.end for t in turns)
    grid = np.arange(0.0, end, GRID) + GRID / 2
    active = _speaker_frames(turns, grid)
    for speaker in links:
        active.setdefault(speaker, np.zeros(len(grid), dtype=bool))
    frame = np.clip(np.searchsorted(sync.times, grid + step / 2) - 1, 0, len(sync.times) - 1)
    near = np.abs(grid - sync.times[frame]) <= step
    speakers = list(active)
    heard = np.stack([active[s] for s in speakers])
    alone = heard.sum(axis=0) == 1
    voice = np.array(speakers, dtype=object)[heard.argmax(axis=0)]
    mouth = np.array([owner.get(int(t)) if t >= 0 else None for t in talker], dtype=object)[frame]
    switch = near & alone & (mouth != None) & (mouth != voice)     # noqa: E711 (element-wise)
    shortest = float(cfg.active_speaker.min_run_seconds) / GRID
    for first, stop in true_runs(switch):           # where the voices' overlap cuts a mouth's run to a sliver
        if stop - first < shortest:
            switch[first:stop] = False
    for speaker in speakers:
        active[speaker][switch & (voice == speaker)] = False
        active[speaker][switch & (mouth == speaker)] = True
    fused = []
    for speaker, mask in active.items():
        fused += [SpeechTurn(start=round(first * GRID, 3), end=round(min(stop * GRID, end), 3), speaker=speaker)
                  for first, stop in true_runs(mask)]
    fused = mark_overlaps([t for t in fused if t.end > t.start])
    return fused, {s: t for s, t in links.items() if any(turn.speaker == s for turn in fused)}


def _new_label(links: dict) -> str:
    number = 0
    while f"spk{number}" in links:
        number += 1
    return f"spk{number}"


def turn_sync(turns: list[SpeechTurn], sync: Optional[LipSync]) -> None:
    """Each turn's ``lip_sync``: how much in time with the sound its face's mouth moved during it (None where the
    turn has no face or was not measured)."""
    for turn in turns:
        turn.lip_sync = None
        if sync is None or turn.track_id not in sync.scores:
            continue
        mean = sync.mean(turn.track_id, (sync.times >= turn.start) & (sync.times < turn.end))
        turn.lip_sync = None if mean is None else round(mean, 3)
