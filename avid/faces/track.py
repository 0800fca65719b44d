"""Face tracking: link per-frame detections into tracks, one per person on screen for a stretch of time.

Detections join open tracks by box overlap (IoU, optimal assignment per frame), but never across a shot cut (the
colour histograms of consecutive frames differ): an edited interview may cut between two people framed alike.
A track unseen for ``max_gap_seconds``, or cut off by a shot change, is closed: its best ``max_embed_crops``
aligned chips are embedded and freed, so memory holds only a few small chips per OPEN track whatever the video's
length. At the end, tracks of one face that never share the screen are merged by appearance (a person lost for a
moment, moving fast or framed anew, by a looser rule than one leaving and coming back much later), spurious short
tracks are dropped, and ids are renumbered from 0 in order of first appearance.
"""
from __future__ import annotations

import heapq
import itertools
import logging
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from ..config import Config
from ..stages import stage
from ..types import FaceDetection, FaceTrack, Frame
from ..vectors import unit_mean, unit_rows
from .descriptors import embed_best_first
from .embed import FaceEncoder
from .landmarks import mouth_openness

log = logging.getLogger(__name__)


@dataclass
class _OpenTrack:
    track: FaceTrack
    # Min-heap of (quality, tie-breaker, chip): the worst kept chip is at the top, ready to be replaced.
    chips: list[tuple[float, int, np.ndarray]] = field(default_factory=list)


@dataclass
class _ClosedTrack:
    track: FaceTrack
    n_chips: int                      # how many chips the embedding averages (its weight in a merge)
    spans: list[tuple[float, float]]  # on-screen intervals of the tracks merged into this one
    pending: Optional[Future] = None  # the embedding, while a background process computes it ...
    chips: list[np.ndarray] = field(default_factory=list)   # ... from these (kept should that process die)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) against every box in ``b`` (m, 4): (n, m)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """Hue-saturation histogram of an RGB image, summing to 1 (two frames of one shot intersect near 1)."""
    height = max(1, round(160 * image.shape[0] / image.shape[1]))
    small = cv2.resize(image, (160, height), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    return histogram / max(float(histogram.sum()), 1.0)


class FaceTracker:
    """Feed it every sampled frame with its detections (``update``), then collect the tracks (``finish``)."""

    def __init__(self, cfg: Config, encoder: FaceEncoder, background=None):
        settings = cfg.faces.tracker
        self.iou_threshold = float(settings.iou_threshold)
        self.max_gap = float(settings.max_gap_seconds)
        self.min_detections = int(settings.min_track_detections)
        self.max_chips = max(1, int(settings.max_embed_crops))
        self.chip_agreement = float(settings.chip_agreement)
        self.reappear_similarity = float(settings.reappear_similarity)
        self.short_gap = float(settings.short_gap_seconds)
        self.short_gap_similarity = float(settings.short_gap_similarity)
        self.cut_similarity = float(settings.cut_similarity)
        self.with_mouth = bool(cfg.faces.landmarks.mouth)
        self.encoder = encoder
        self.background = background    # when given, embeds the chips in another process (avid.faces.descriptors)
        self._open: list[_OpenTrack] = []
        self._closed: list[_ClosedTrack] = []
        self._ids = itertools.count()
        self._chip_order = itertools.count()
        self._frames_seen = 0
        self._last_histogram: np.ndarray | None = None

    def update(self, frame: Frame, detections: list[FaceDetection]) -> None:
        """Add one frame's detections (coords in original pixels; ``frame.image`` may be downscaled)."""
        self._frames_seen += 1
        histogram = colour_histogram(frame.image)
        cut = (self._last_histogram is not None
               and np.minimum(histogram, self._last_histogram).sum() < self.cut_similarity)
        self._last_histogram = histogram
        self._close_idle(float("inf") if cut else frame.time)     # after a cut, nothing on screen continues
        targets = self._assign(detections)
        chip_wanted = [self._wants_chip(target, det.quality) for target, det in zip(targets, detections)]
        wanted = [det for det, want in zip(detections, chip_wanted) if want]
        with stage("face embed"):
            chips = iter(self.encoder.chips(frame.image, wanted, frame.scale) if wanted else [])
        for det, target, want in zip(detections, targets, chip_wanted):
            if target is None:
                target = _OpenTrack(FaceTrack(id=next(self._ids)))
                self._open.append(target)
            target.track.detections.append(det)
            if self.with_mouth:
                with stage("landmarks"):
                    target.track.mouth_openness.append(mouth_openness(frame.image, det, frame.scale))
            if want:
                self._keep_chip(target, det.quality, next(chips))

    def finish(self) -> list[FaceTrack]:
        """Close every track, merge re-appearances, drop spurious short tracks; ids from 0 by first appearance."""
        self._close_idle(float("inf"))
        for waiting in self._closed:
            if waiting.pending is not None:
                self._set_embedding(waiting, self._background_result(waiting))
                waiting.pending, waiting.chips = None, []
        closed = self._merge_reappearances(self._closed)
        self._closed = []
        # A still image or a clip shorter than the floor keeps every track, even single detections.
        floor = self.min_detections if self._frames_seen >= self.min_detections else 1
        tracks = [c.track for c in closed if len(c.track.detections) >= floor]
        tracks.sort(key=lambda t: (t.start, t.id))
        for new_id, track in enumerate(tracks):
            track.id = new_id
        return tracks

    # ---------------------------------------------------------------------------------------------- linking

    def _assign(self, detections: list[FaceDetection]) -> list[_OpenTrack | None]:
        """The open track each detection continues (None: it starts a new one), by maximum total IoU."""
        targets: list[_OpenTrack | None] = [None] * len(detections)
        if not detections or not self._open:
            return targets
        last_boxes = np.array([t.track.detections[-1].box for t in self._open], dtype=np.float64)
        boxes = np.array([d.box for d in detections], dtype=np.float64)
        iou = box_iou(boxes, last_boxes)
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] >= self.iou_threshold:
                targets[r] = self._open[c]
        return targets

    def _wants_chip(self, target: _OpenTrack | None, quality: float) -> bool:
        """Whether a detection's chip would be among its track's best (only those are aligned at all)."""
        return target is None or len(target.chips) < self.max_chips or quality > target.chips[0][0]

    def _keep_chip(self, target: _OpenTrack, quality: float, chip: np.ndarray) -> None:
        item = (quality, next(self._chip_order), chip)
        if len(target.chips) < self.max_chips:
            heapq.heappush(target.chips, item)
        else:
            heapq.heapreplace(target.chips, item)

    def _close_idle(self, now: float) -> None:
        """Embed and close tracks unseen for longer than the gap; their chips are freed here."""
        still_open = []
        for open_track in self._open:
            if now - open_track.track.end <= self.max_gap:
                still_open.append(open_track)
            elif len(open_track.track.detections) >= self.min_detections or self._frames_seen < self.min_detections:
                self._closed.append(self._close(open_track))
            # else: a spurious blip in a video; finish() would drop it, so it is not even embedded
        self._open = still_open

    def _close(self, open_track: _OpenTrack) -> _ClosedTrack:
        track = open_track.track
        chips = [chip for _, _, chip in sorted(open_track.chips, key=lambda item: -item[0])]   # best first
        open_track.chips.clear()
        closed = _ClosedTrack(track, n_chips=len(chips), spans=[(track.start, track.end)])
        if self.background is not None:
            try:
                closed.pending, closed.chips = self.background.submit(chips), chips   # resolved in finish()
                return closed
            except BrokenProcessPool:
                self._lost_background()
        self._set_embedding(closed, self._embed_here(chips))
        return closed

    def _embed_here(self, chips: list[np.ndarray]) -> np.ndarray:
        with stage("face embed"):
            return embed_best_first(self.encoder.embed_chips, chips, self.chip_agreement)

    @staticmethod
    def _set_embedding(closed: _ClosedTrack, embeddings: np.ndarray) -> None:
        """A track's embedding, the mean of its chips' (weighted by their count when tracks merge)."""
        closed.track.embedding, closed.n_chips = unit_mean(embeddings), len(embeddings)

    def _lost_background(self) -> None:
        log.warning("the face-descriptor process died: embedding in this one")
        self.background = None

    def _background_result(self, waiting: _ClosedTrack) -> np.ndarray:
        """The background process's embeddings of a track's chips; computed here should that process have died."""
        with stage("face embed wait"):
            try:
                return waiting.pending.result()
            except BrokenProcessPool:
                if self.background is not None:
                    self._lost_background()
        return self._embed_here(waiting.chips)

    # ---------------------------------------------------------------------------------------------- merging

    def _merge_reappearances(self, closed: list[_ClosedTrack]) -> list[_ClosedTrack]:
        """Greedily merge the most alike pairs of tracks of one face that are never on screen together: alike
        enough for a re-appearance after any gap, or (a looser rule) for a face lost for a moment."""
        if len(closed) < 2:
            return closed
        embeddings = np.stack([c.track.embedding for c in closed])
        similarity = embeddings @ embeddings.T                      # n x n, never n x n x dim
        loosest = min(self.reappear_similarity, self.short_gap_similarity)
        group = list(range(len(closed)))            # index of the track each one has been merged into
        members = {i: closed[i] for i in range(len(closed))}
        rows, cols = np.nonzero(np.triu(similarity >= loosest, k=1))
        for k in np.argsort(-similarity[rows, cols], kind="stable"):
            a, b = _root(group, int(rows[k])), _root(group, int(cols[k]))
            if a == b:
                continue
            first, second = members[a], members[b]
            if not self._one_face(first, second):
                continue
            keep, gone = (a, b) if first.track.start <= second.track.start else (b, a)
            members[keep] = _join(members[keep], members.pop(gone))
            group[gone] = keep
        return list(members.values())

    def _one_face(self, a: _ClosedTrack, b: _ClosedTrack) -> bool:
        """Whether two (groups of) tracks are one face: never on screen together, and alike as the rule for
        their gap asks. Checked on the groups as they are now (average linkage), not just two original tracks."""
        if _overlaps(a.spans, b.spans):
            return False
        similarity = float(np.dot(a.track.embedding, b.track.embedding))
        if similarity >= self.reappear_similarity:
            return True
        return similarity >= self.short_gap_similarity and _gap(a.spans, b.spans) <= self.short_gap


def _root(group: list[int], i: int) -> int:
    while group[i] != i:
        i = group[i]
    return i


def _gap(spans_a: list[tuple[float, float]], spans_b: list[tuple[float, float]]) -> float:
    """Seconds between the nearest ends of two sets of (non-overlapping) on-screen intervals."""
    return min(max(b0 - a1, a0 - b1) for a0, a1 in spans_a for b0, b1 in spans_b)


def _overlaps(spans_a: list[tuple[float, float]], spans_b: list[tuple[float, float]]) -> bool:
    return any(a0 <= b1 and b0 <= a1 for a0, a1 in spans_a for b0, b1 in spans_b)


def _join(a: _ClosedTrack, b: _ClosedTrack) -> _ClosedTrack:
    """One track from two of the same face: detections in time order, embeddings averaged by chip count."""
    detections = a.track.detections + b.track.detections
    order = sorted(range(len(detections)), key=lambda k: detections[k].time)
    mouth = a.track.mouth_openness + b.track.mouth_openness
    track = FaceTrack(id=min(a.track.id, b.track.id), detections=[detections[k] for k in order],
                      mouth_openness=[mouth[k] for k in order] if len(mouth) == len(detections) else [],
                      embedding=unit_rows(a.n_chips * a.track.embedding + b.n_chips * b.track.embedding))
    return _ClosedTrack(track, n_chips=a.n_chips + b.n_chips, spans=a.spans + b.spans)
