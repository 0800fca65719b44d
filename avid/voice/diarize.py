"""Diarization the pyannote 3.x way: local speakers per window -> global speakers -> who speaks when.

Input: the segmentation of the recording (``LocalSpeakers``: per 10 s window, which of up to three local speakers
talk in each frame) and one voice embedding per (window, local speaker), made by ``avid.voice.speech`` from the
frames where that speaker talks alone.

1. Cluster the embeddings of the local speakers heard alone for at least ``min_clean_seconds`` (short or mostly
   overlapped ones embed poorly): agglomerative clustering of the unit vectors (``linkage``, cut at
   ``threshold``; docs/voice.md says how both were calibrated), or cut into the given number of speakers.
2. Assign every local speaker to a cluster centroid, most similar first, never giving two local speakers of one
   window the same cluster (they are two people: the network told them apart). With the count estimated,
   clusters with less speech than ``min_speaker_seconds``, or less than ``min_speaker_share`` of all, are no
   speakers of their own: their windows join the nearest cluster that is.
3. With the count estimated, local speakers that the clustering never saw (heard alone for too short) and that
   are left without a cluster (their window has more local speakers than there are clusters) are people who
   only talk over others or briefly: they are clustered among themselves, again never two of one window
   together, into new speakers (up to ``max_speakers``). Otherwise they share the nearest cluster.
4. Reconstruct: each window's frames carry the clusters of its local speakers; the windows covering a frame
   average their votes, and the frame's speaker count (also voted by the windows, at most two) picks that many
   best clusters. Overlapped speech thus gets both speakers.

Labels are "spk0", "spk1", ... in order of first speech.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment

from ..errors import UsageError
from ..types import SpeechTurn, VoiceWindow
from ..vectors import unit_rows
from .speech import LocalSpeakers, true_runs


@dataclass
class Diarization:
    """Speaker turns, and the speaker ("spk0"...) each local-speaker window was assigned to (None: unassigned)."""

    turns: list[SpeechTurn] = field(default_factory=list)
    window_speakers: list = field(default_factory=list)

    def voices(self, windows: list[VoiceWindow]) -> dict[str, list[VoiceWindow]]:
        """Each speaker's windows (``windows``: the ones diarized, in the same order)."""
        by_speaker: dict[str, list[VoiceWindow]] = {}
        for window, speaker in zip(windows, self.window_speakers):
            if speaker is not None:
                by_speaker.setdefault(speaker, []).append(window)
        return by_speaker


def check_counts(num_speakers, min_speakers, max_speakers) -> None:
    for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                        ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise UsageError(f"min_speakers ({min_speakers}) is more than max_speakers ({max_speakers})")


def _centroids(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return unit_rows(np.stack([embeddings[labels == c].mean(0) for c in range(k)]))


def cluster_embeddings(embeddings: np.ndarray, cfg, num_speakers: int | None = None,
                       min_speakers: int | None = None, max_speakers: int | None = None) -> np.ndarray:
    """Cluster labels (0..k-1) of L2-normalised embeddings: the tree cut at ``diarization.threshold``, or into
    ``num_speakers`` clusters when that is given, the count kept within [min_speakers, max_speakers]."""
    dcfg = cfg.diarization
    n = len(embeddings)
    upper = min(n, max_speakers or int(dcfg.max_speakers))
    lower = min(upper, min_speakers or 1)
    if num_speakers is not None:
        lower = upper = min(n, num_speakers)
    if n <= 1 or upper <= 1:
        return np.zeros(n, dtype=int)
    # The tree needs memory quadratic in its size: a long input builds it on an even sample of its embeddings.
    sample = np.linspace(0, n - 1, min(n, int(dcfg.max_cluster_windows))).round().astype(int)
    tree = linkage(embeddings[sample], method=str(dcfg.linkage), metric="euclidean")
    if lower == upper:
        cut = _cut_into(tree, embeddings[sample], upper)
    else:
        cut = fcluster(tree, t=float(dcfg.threshold), criterion="distance")
        k = len(np.unique(cut))
        if not lower <= k <= upper:
            cut = _cut_into(tree, embeddings[sample], int(np.clip(k, lower, upper)))
    labels = np.unique(cut, return_inverse=True)[1]
    if len(sample) < n:   # every embedding joins the nearest cluster of the sample
        labels = (embeddings @ _centroids(embeddings[sample], labels, labels.max() + 1).T).argmax(1)
        labels = np.unique(labels, return_inverse=True)[1]
    return labels


def _cut_into(tree: np.ndarray, embeddings: np.ndarray, k: int) -> np.ndarray:
    """Labels of exactly ``k`` clusters: the tree's, or k-means' where the tree cannot give k (a centroid-linkage
    tree can merge below an earlier merge, and then no cut of it has k clusters)."""
    cut = fcluster(tree, t=k, criterion="maxclust")
    if len(np.unique(cut)) == k:
        return cut
    from sklearn.cluster import KMeans  # here, not at the top: importing scikit-learn costs ~1 s of start-up

    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(embeddings)


def _speech_seconds(segmentation: LocalSpeakers, windows: list[VoiceWindow], assigned: np.ndarray, k: int):
    """Seconds of speech of each cluster: its windows' active frames, each second being heard in window / step
    windows."""
    starts = segmentation.starts
    share = float(np.mean(np.diff(starts))) / segmentation.window_seconds if len(starts) > 1 else 1.0
    active = np.array([segmentation.activity[w.chunk, :, w.local_speaker].sum() for w in windows])
    return np.bincount(assigned, weights=active * segmentation.frame_step * share, minlength=k)


def _absorb_small_speakers(segmentation, windows, embeddings, train, labels, assigned, dcfg, min_count: int):
    """Clusters with less speech than min_speaker_seconds (or min_speaker_share of all speech) are no speakers
    of their own (laughter, a cough, overlapped speech): their members join the nearest speaker that is. Returns
    the new labels of the clustered embeddings."""
    speech = _speech_seconds(segmentation, windows, assigned, labels.max() + 1)
    need = max(float(dcfg.min_speaker_seconds), float(dcfg.min_speaker_share) * float(speech.sum()))
    large = np.flatnonzero(speech >= need)
    if len(large) == len(speech) or len(large) < max(1, min_count):
        return labels
    centroids = _centroids(embeddings[train], labels, labels.max() + 1)[large]
    return (embeddings[train] @ centroids.T).argmax(1)


def _by_chunk(windows: list[VoiceWindow], members) -> list[np.ndarray]:
    """``members`` (window indices) grouped by the segmentation window they belong to."""
    groups: dict[int, list[int]] = {}
    for i in members:
        groups.setdefault(windows[i].chunk, []).append(i)
    return [np.asarray(group) for group in groups.values()]


def _assign(windows: list[VoiceWindow], embeddings: np.ndarray, centroids: np.ndarray,
            leave_unassigned: bool = False) -> np.ndarray:
    """Cluster of every window: within each segmentation window, distinct clusters for distinct local speakers
    (the most similar overall assignment). Where a window has more local speakers than there are clusters, the
    ones left over get -1 with ``leave_unassigned``, else their most similar cluster."""
    similarity = embeddings @ centroids.T
    labels = similarity.argmax(1)
    for members in _by_chunk(windows, range(len(windows))):
        if len(members) > 1:
            rows, cols = linear_sum_assignment(-similarity[members])
            if leave_unassigned:
                labels[members] = -1
            labels[members[rows]] = cols
    return labels


def _new_speakers(windows: list[VoiceWindow], embeddings: np.ndarray, assigned: np.ndarray, cfg, first: int,
                  room: int) -> np.ndarray:
    """Unassigned local speakers (-1) clustered among themselves into at most ``room`` new speakers, numbered
    from ``first``; two of one window are never put together. Those beyond ``room`` stay -1."""
    orphans = np.flatnonzero(assigned < 0)
    if not len(orphans) or room < 1:
        return assigned
    labels = cluster_embeddings(embeddings[orphans], cfg, max_speakers=len(orphans))
    next_label = labels.max() + 1
    taken: set[tuple[int, int]] = set()
    for position, i in enumerate(orphans):   # a second orphan of one window in one new cluster gets its own
        key = (windows[i].chunk, int(labels[position]))
        if key in taken:
            labels[position] = next_label
            next_label += 1
            key = (windows[i].chunk, int(labels[position]))
        taken.add(key)
    order = np.argsort(-np.bincount(labels, weights=[windows[i].clean_seconds + 1e-3 for i in orphans]),
                       kind="stable")[:room]            # the new speakers heard most, as far as there is room
    number = {int(label): first + rank for rank, label in enumerate(order)}
    out = assigned.copy()
    out[orphans] = [number.get(int(label), -1) for label in labels]
    return out


def diarize(segmentation: LocalSpeakers, windows: list[VoiceWindow], cfg, num_speakers: int | None = None,
            min_speakers: int | None = None, max_speakers: int | None = None) -> Diarization:
    """Speaker turns (overlapped speech with both speakers) from the segmentation and the local-speaker windows.

    ``num_speakers`` fixes the count; otherwise it is estimated within [min_speakers, max_speakers].
    """
    check_counts(num_speakers, min_speakers, max_speakers)
    dcfg = cfg.diarization
    if not windows or len(segmentation.starts) == 0:
        return Diarization([], [None] * len(windows))
    embeddings = unit_rows(np.stack([w.embedding for w in windows]).astype(np.float32))
    clean = np.array([w.clean_seconds for w in windows])
    train = np.flatnonzero(clean >= float(dcfg.min_clean_seconds))
    if len(train) < 2:
        train = np.arange(len(windows))
    labels = cluster_embeddings(embeddings[train], cfg, num_speakers, min_speakers, max_speakers)
    centroids = _centroids(embeddings[train], labels, labels.max() + 1)
    assigned = _assign(windows, embeddings, centroids)
    if num_speakers is None:
        labels = _absorb_small_speakers(segmentation, windows, embeddings, train, labels, assigned, dcfg,
                                        min_speakers or 1)
        centroids = _centroids(embeddings[train], labels, labels.max() + 1)
        assigned = _assign(windows, embeddings, centroids, leave_unassigned=True)
        nearest = (embeddings @ centroids.T).argmax(1)
        unseen = np.ones(len(windows), dtype=bool)
        unseen[train] = False                     # the clustering judged these (small speakers absorbed)
        assigned[~unseen & (assigned < 0)] = nearest[~unseen & (assigned < 0)]
        room = min(max_speakers or int(dcfg.max_speakers), int(dcfg.max_speakers)) - len(centroids)
        assigned = _new_speakers(windows, embeddings, assigned, cfg, len(centroids), room)
        assigned[assigned < 0] = nearest[assigned < 0]   # no room for more speakers: the nearest one
    k = int(max(labels.max(), assigned.max())) + 1

    # Reconstruction: per window and frame, which clusters talk; averaged over the windows covering each frame.
    n_chunks, n_frames, _ = segmentation.activity.shape
    clustered = np.zeros((n_chunks, n_frames, k), dtype=np.float32)
    for window, cluster in zip(windows, assigned):
        column = segmentation.probabilities[window.chunk, :, window.local_speaker].astype(np.float32)
        clustered[window.chunk, :, cluster] = np.maximum(clustered[window.chunk, :, cluster], column)
    scores = segmentation.aggregate(clustered)
    count = np.minimum(segmentation.counts(cfg, int(dcfg.max_simultaneous)), k)
    ranked = np.argsort(-scores, axis=1)
    active = np.zeros_like(scores, dtype=bool)
    rows = np.arange(len(scores))
    for rank in range(int(count.max(initial=0))):
        chosen = ranked[:, rank]
        take = (count > rank) & (scores[rows, chosen] > float(dcfg.min_frame_probability))
        active[rows[take], chosen[take]] = True
    turns = _turns(active, segmentation, float(dcfg.merge_gap_seconds), float(dcfg.min_turn_seconds))
    names = _name_in_order_of_speech(turns)
    window_speakers = [names.get(int(c)) for c in assigned]
    for turn in turns:
        turn.speaker = names[int(turn.speaker)]
    return Diarization(turns, window_speakers)


def _turns(active: np.ndarray, segmentation: LocalSpeakers, merge_gap: float, min_turn: float) -> list[SpeechTurn]:
    """Each cluster's runs of active frames as turns (gaps under ``merge_gap`` bridged, blips under ``min_turn``
    dropped); turns sharing time with another speaker's are marked as overlapped."""
    turns: list[SpeechTurn] = []
    for cluster in range(active.shape[1]):
        spans: list[list[float]] = []
        for first, end in true_runs(active[:, cluster]):
            start, stop = segmentation.span(first, end)
            if spans and start - spans[-1][1] <= merge_gap + 1e-9:
                spans[-1][1] = stop
            else:
                spans.append([start, stop])
        turns += [SpeechTurn(start=round(a, 3), end=round(b, 3), speaker=str(cluster))
                  for a, b in spans if b - a >= min_turn]
    return mark_overlaps(turns)


def mark_overlaps(turns: list[SpeechTurn]) -> list[SpeechTurn]:
    """The turns sorted by time, each marked as overlapped where it shares time with another speaker's."""
    turns.sort(key=lambda t: (t.start, t.end))
    for i, turn in enumerate(turns):
        for other in turns[i + 1:]:
            if other.start >= turn.end:
                break
            if other.speaker != turn.speaker:
                turn.overlap = other.overlap = True
    return turns


def _name_in_order_of_speech(turns: list[SpeechTurn]) -> dict[int, str]:
    names: dict[int, str] = {}
    for turn in turns:
        names.setdefault(int(turn.speaker), f"spk{len(names)}")
    return names
