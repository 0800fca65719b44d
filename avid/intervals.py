"""Time intervals, (start, end) in seconds: their union.

Not pyannote's ``Timeline.support()``: it drops zero-length segments, and a photo's observation is the point 0-0,
which a search hit must still show.
"""
from __future__ import annotations

from typing import Iterable


def merge_intervals(intervals: Iterable[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    """The union of ``intervals`` in time order, joining any two that overlap, touch or are at most ``gap`` apart."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(float(start), float(end)) for start, end in merged]
