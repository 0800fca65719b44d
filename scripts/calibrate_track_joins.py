#!/usr/bin/env python
"""Calibrate the tracker's short-gap join (faces.tracker.short_gap_similarity) on ../shared/data.

Two kinds of pairs of face tracks a moment apart, as the tracker sees them in video:

- different people: for every pair of named identities of faces/, a clip that cuts from one's photo to the
  other's (same framing, no gap). The cosine similarity of their two tracks must stay below the join rule, or
  the tracker would make two people one.
- one person: 2 s cuts of video/short_hamilton_clip.mp4 (Lin-Manuel Miranda moving fast: the tracker loses and
  re-finds him) with the join switched off, so each track stays separate: the similarity of his tracks there
  should reach the rule, or one person stays two tracks.

    python scripts/calibrate_track_joins.py [--data ../shared/data] [--starts 0 0.5 0.8]

Clips are written to a temporary folder, never into the project.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.io import media
from avid.pipeline.ingest import process_file  # noqa: E402
from avid.pipeline.models import Models
from tests import media as synthetic  # noqa: E402
from tests.chimeric import identities  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"


def track_similarities(path: Path, models: Models, cfg) -> list[tuple[float, float]]:
    """(cosine, gap seconds) for each pair of face tracks of a clip that are never on screen together."""
    tracks = [t for t in process_file(str(path), cfg, models).face_tracks if t.embedding is not None]
    pairs = []
    for a, b in itertools.combinations(tracks, 2):
        gap = max(b.start - a.end, a.start - b.end)
        if gap > 0:
            pairs.append((float(np.dot(a.embedding, b.embedding)), gap))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--starts", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.8, 1.0],
                        help="where the 2 s cuts of the Hamilton clip start (seconds)")
    args = parser.parse_args()
    if not (args.data / "faces").is_dir():
        print(f"shared dev data not found at {args.data}", file=sys.stderr)
        return 2
    # Joins off: every track the tracker finds stays separate, so the pairs can be measured.
    cfg = load_config(overrides={"faces": {"tracker": {"reappear_similarity": 2.0, "short_gap_similarity": 2.0}}})
    models = Models(cfg)
    rule = float(load_config().faces.tracker.short_gap_similarity)
    different, same = [], []
    with tempfile.TemporaryDirectory(prefix="avid-joins-") as tmp:
        people = identities(args.data)
        for (a, photos_a), (b, photos_b) in itertools.combinations(people.items(), 2):
            clip = Path(tmp) / f"{a}-{b}.mp4"
            still = synthetic.Segment(synthetic.silence(1.6))
            synthetic.write_talking_video(clip, [still, synthetic.Segment(synthetic.silence(1.6), speaker=1)],
                                          [media.load_image(photos_a[0]), media.load_image(photos_b[0])],
                                          size=(640, 360), gap_seconds=0.0)
            found = track_similarities(clip, models, cfg)
            different += [(s, g, f"{a} -> {b}") for s, g in found]
        video = args.data / "video" / "short_hamilton_clip.mp4"
        for start in args.starts:
            clip = synthetic.write_cut(video, Path(tmp) / f"hamilton_{start}.mp4", start, 2.0)
            same += [(s, g, f"hamilton {start:.1f}-{start + 2:.1f} s") for s, g in track_similarities(clip, models, cfg)]
    print(f"different people cut back to back: {len(different)} track pairs")
    for s, g, what in sorted(different, reverse=True)[:5]:
        print(f"  {s:.3f}  gap {g:.1f} s  {what}")
    print(f"one person moving fast (Hamilton 2 s cuts): {len(same)} track pairs")
    for s, g, what in sorted(same, reverse=True):
        print(f"  {s:.3f}  gap {g:.1f} s  {what}")
    wrong = sum(s >= rule for s, _, _ in different)
    joined = sum(s >= rule for s, _, _ in same)
    print(f"faces.tracker.short_gap_similarity {rule}: joins {wrong} of {len(different)} different-people pairs, "
          f"{joined} of {len(same)} one-person pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
