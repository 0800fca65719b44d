"""Diarization: window voice embeddings -> speaker turns ("who speaks when").

1. Cluster the window embeddings by cosine similarity. With the count unknown: agglomerative clustering (average
   linkage) cut at ``diarization.threshold``; clusters with less than ``min_speaker_seconds`` of windows, or less
   than ``min_speaker_share`` of all windows, join the nearest larger one (odd windows such as laughter, overlapped
   speech or windows across a change of speaker otherwise become extra "speakers", and a long recording has
   enough of them to make several); the count is then kept within [min_speakers, max_speakers]. With a count
   given (or a bound to enforce): k-means on the unit vectors, which, unlike a tree cut, does not spend a cluster
   on one outlier. No k-means style refinement follows: where a spurious small cluster had survived, it pulled a
   sixth of a 2-hour conversation into itself (scripts/bench_long_audio.py).
2. Score every short frame (``frame_seconds``) of speech against each speaker centroid, averaging the windows
   that cover it (windows overlap, so each frame sees several), and smooth the scores over ``smooth_seconds``.
   The best speaker wins the frame; runs shorter than ``min_turn_seconds`` join their neighbours; frames that no
   window covers (speech too short to embed) take the speaker of the nearest covered frame.
3. Overlapped speech: where a second speaker scores within ``overlap_margin`` of the best for at least
   ``min_overlap_seconds``, that speaker is reported as talking too. Every turn that shares time with another
   speaker's turn has ``overlap=True``.

Labels are "spk0", "spk1", ... in order of first speech.
"""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.ndimage import uniform_filter1d

from ..errors import AvidError
from ..types import SpeechRegion, SpeechTurn, VoiceWindow
from ..vectors import unit_rows


def _check_counts(num_speakers, min_speakers, max_speakers) -> None:
    for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                        ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise AvidError(f"{name} must be at least 1, got {value}")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise AvidError(f"min_speakers ({min_speakers}) is more than max_speakers ({max_speakers})")


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return unit_rows(np.stack([embeddings[labels == c].mean(0) for c in range(labels.max() + 1)]))


def cluster_embeddings(embeddings: np.ndarray, cfg, num_speakers: int | None = None,
                       min_speakers: int | None = None, max_speakers: int | None = None,
                       min_size: int = 1) -> np.ndarray:
    """Cluster labels (0..k-1) of L2-normalised embeddings; k estimated unless ``num_speakers`` is given.

    ``min_size``: with an estimated count, clusters of fewer embeddings join the nearest larger cluster.
    """
    dcfg = cfg.diarization
    n = len(embeddings)
    upper = min(n, max_speakers or int(dcfg.max_speakers))
    lower = min(upper, min_speakers or 1)
    if num_speakers is not None:
        lower = upper = min(n, num_speakers)
    if n <= 1 or upper <= 1:
        return np.zeros(n, dtype=int)
    if lower == upper:
        k = upper
    else:
        # The tree needs memory quadratic in its size: a long input builds it on an even sample of its windows.
        sample = np.linspace(0, n - 1, min(n, int(dcfg.max_cluster_windows))).round().astype(int)
        tree = linkage(embeddings[sample], method=dcfg.linkage, metric="cosine")
        labels = fcluster(tree, t=float(dcfg.threshold), criterion="distance") - 1
        labels = _absorb_small_clusters(embeddings[sample], labels, max(1, round(min_size * len(sample) / n)))
        k = labels.max() + 1
        if lower <= k <= upper:
            if len(sample) < n:   # every window joins the nearest cluster of the sample
                labels = (embeddings @ _centroids(embeddings[sample], labels).T).argmax(1)
            return np.unique(labels, return_inverse=True)[1]
        k = int(np.clip(k, lower, upper))
    from sklearn.cluster import KMeans   # here, not at the top: importing scikit-learn costs ~1 s of start-up

    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(embeddings)


def _absorb_small_clusters(embeddings: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    sizes = np.bincount(labels)
    large = np.flatnonzero(sizes >= min_size)
    if len(large) == 0:   # nobody spoke long enough to stand out: one speaker
        return np.zeros_like(labels)
    centroids = unit_rows(np.stack([embeddings[labels == c].mean(0) for c in large]))
    nearest = large[(embeddings @ centroids.T).argmax(1)]
    labels = np.where(np.isin(labels, large), labels, nearest)
    return np.unique(labels, return_inverse=True)[1]


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, first, end) of each run of equal values."""
    if len(values) == 0:
        return []
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(values)]])
    return [(int(values[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def _absorb_short_runs(labels: np.ndarray, min_frames: int) -> np.ndarray:
    """Inside continuous speech (labels >= 0), runs shorter than ``min_frames`` take their longer neighbour's label."""
    labels = labels.copy()
    for _ in range(4):   # a few passes: absorbing one run can leave a neighbour still short
        changed = False
        runs = [r for r in _runs(labels) if r[0] >= 0]
        for i, (label, first, end) in enumerate(runs):
            if end - first >= min_frames:
                continue
            before = runs[i - 1] if i > 0 and runs[i - 1][2] == first else None
            after = runs[i + 1] if i + 1 < len(runs) and runs[i + 1][1] == end else None
            neighbours = [r for r in (before, after) if r is not None and r[0] != label]
            if neighbours:
                labels[first:end] = max(neighbours, key=lambda r: r[2] - r[1])[0]
                changed = True
        if not changed:
            break
    return labels


def _fill_uncovered(best: np.ndarray, speech: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Speech frames that no window covers take the label of the nearest covered frame."""
    missing = np.flatnonzero(speech & ~covered)
    known = np.flatnonzero(covered)
    if len(missing) == 0 or len(known) == 0:
        return best
    best = best.copy()
    right = np.minimum(np.searchsorted(known, missing), len(known) - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(missing - known[left]) <= np.abs(known[right] - missing), known[left], known[right])
    best[missing] = best[nearest]
    return best


def diarize(windows: list[VoiceWindow], cfg, num_speakers: int | None = None, min_speakers: int | None = None,
            max_speakers: int | None = None, regions: list[SpeechRegion] | None = None) -> list[SpeechTurn]:
    """Speaker turns from window embeddings, and the speech regions they came from (to cover short speech).

    ``num_speakers`` fixes the count; otherwise it is estimated within [min_speakers, max_speakers].
    """
    _check_counts(num_speakers, min_speakers, max_speakers)
    dcfg = cfg.diarization
    spans = [(r.start, r.end) for r in regions] if regions else [(w.start, w.end) for w in windows]
    if not windows:
        return []
    step = float(dcfg.frame_seconds)
    n_frames = int(np.ceil(max(end for _, end in spans + [(w.start, w.end) for w in windows]) / step)) + 1

    speech = np.zeros(n_frames, dtype=bool)
    for start, end in spans:
        speech[int(round(start / step)):int(round(end / step))] = True

    embeddings = unit_rows(np.stack([w.embedding for w in windows]).astype(np.float32))
    embed_cfg = cfg.voice.embed
    min_size = 1 + int(np.ceil(max(0.0, float(dcfg.min_speaker_seconds) - float(embed_cfg.window_seconds))
                               / float(embed_cfg.hop_seconds)))
    min_size = max(min_size, int(np.ceil(float(dcfg.min_speaker_share) * len(windows))))
    labels = cluster_embeddings(embeddings, cfg, num_speakers, min_speakers, max_speakers, min_size)
    k = labels.max() + 1
    similarity = embeddings @ _centroids(embeddings, labels).T

    # Frame scores: mean similarity to each centroid of the windows covering the frame, then smoothed.
    scores = np.zeros((n_frames, k), dtype=np.float32)
    cover = np.zeros(n_frames, dtype=np.float32)
    for window, sim in zip(windows, similarity):
        first = int(round(window.start / step))
        end = max(int(round(window.end / step)), first + 1)
        scores[first:end] += sim
        cover[first:end] += 1
    covered = speech & (cover > 0)
    scores[covered] /= cover[covered, None]
    smooth = max(1, int(round(float(dcfg.smooth_seconds) / step)))
    scores = uniform_filter1d(scores, size=smooth, axis=0, mode="nearest")

    best = np.where(covered, scores.argmax(1), -1)
    best = _absorb_short_runs(best, max(1, int(round(float(dcfg.min_turn_seconds) / step))))
    best = _fill_uncovered(best, speech, covered)
    second = _second_speaker(scores, best, covered, dcfg, step) if k > 1 else np.full(n_frames, -1)
    return _frames_to_turns(best, second, step, spans, float(dcfg.merge_gap_seconds))


def _second_speaker(scores: np.ndarray, best: np.ndarray, covered: np.ndarray, dcfg, step: float) -> np.ndarray:
    """Per frame, a second speaker talking over ``best`` (-1 for none): the runner-up scoring within the margin.

    Windows over two voices embed between the two speakers, so both centroids score about equally there.
    """
    second = np.full(len(best), -1)
    if dcfg.overlap_margin is None:
        return second
    ranked = np.argsort(-scores, axis=1)[:, :2]
    rows = np.arange(len(best))
    close = covered & (scores[rows, ranked[:, 0]] - scores[rows, ranked[:, 1]] <= float(dcfg.overlap_margin))
    other = np.where(ranked[:, 1] != best, ranked[:, 1], ranked[:, 0])   # the runner-up, unless it won the frame
    second = np.where(close & (best >= 0) & (other != best), other, -1)
    min_frames = max(1, int(round(float(dcfg.min_overlap_seconds) / step)))
    for label, first, end in _runs(second):
        if label >= 0 and end - first < min_frames:
            second[first:end] = -1
    return second


def _frames_to_turns(best: np.ndarray, second: np.ndarray, step: float, spans: list[tuple[float, float]],
                     merge_gap: float) -> list[SpeechTurn]:
    pieces = [(first * step, end * step, label) for labels in (best, second)
              for label, first, end in _runs(labels) if label >= 0]
    # One speaker's pieces (main and overlapping) merge where they touch or nearly touch.
    merged: list[list] = []
    for start, end, label in sorted(pieces, key=lambda p: (p[2], p[0])):
        if merged and merged[-1][2] == label and start - merged[-1][1] <= merge_gap + 1e-9:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, label])
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)   # turns stay inside the speech
    turns = [SpeechTurn(start=round(max(lo, s), 3), end=round(min(hi, e), 3), speaker=str(label))
             for s, e, label in merged if min(hi, e) > max(lo, s)]
    turns.sort(key=lambda t: (t.start, t.end))
    for i, turn in enumerate(turns):
        for other in turns[i + 1:]:
            if other.start >= turn.end:
                break
            if other.speaker != turn.speaker:
                turn.overlap = other.overlap = True
    names: dict[str, str] = {}
    for turn in turns:
        turn.speaker = names.setdefault(turn.speaker, f"spk{len(names)}")
    return turns


def to_annotation(turns: list[SpeechTurn], uri: str = "audio", use_names: bool = False):
    """Speaker turns as a pyannote.core Annotation, labelled by speaker (or by name where ``use_names`` and set)."""
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for turn in turns:
        if turn.end <= turn.start:
            continue
        segment = Segment(turn.start, turn.end)
        annotation[segment, annotation.new_track(segment)] = turn.name if use_names and turn.name else turn.speaker
    return annotation
