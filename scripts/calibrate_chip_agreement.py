#!/usr/bin/env python
"""Calibrate faces.tracker.chip_agreement: when are a track's two best chips enough?

A closed face track is embedded from its best chips (faces.tracker.max_embed_crops, 4): dlib takes about 65 ms of
CPU per chip. For every track of the videos given (default: ../shared/data/video/ and the 60 s benchmark video of
scripts/bench_ingest.py), this prints the cosine of its two best chips' embeddings and how close the mean of those
two is to the mean of all of them, the embedding the tracker would otherwise keep.

    python scripts/calibrate_chip_agreement.py [VIDEO ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.faces import track  # noqa: E402
from avid.pipeline.ingest import process_file  # noqa: E402
from avid.pipeline.models import Models  # noqa: E402
from avid.vectors import unit_mean  # noqa: E402

DEFAULT_VIDEOS = sorted((ROOT.parent / "shared" / "data" / "video").glob("*.mp4")) + [ROOT / "bench_out" / "bench_60s.mp4"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("videos", nargs="*", type=Path, default=[v for v in DEFAULT_VIDEOS if v.exists()])
    args = parser.parse_args()
    if not args.videos:
        print("no videos: give some, or make the benchmark video (python scripts/bench_ingest.py)")
        return 1
    cfg = load_config(overrides={"faces": {"encoder": {"background_process": False}}})
    models = Models(cfg, background=False)
    rows = []
    close = track.FaceTracker._close

    def measure(self, open_track):         # every chip of each track, best first, before the tracker's own pass
        chips = [chip for _, _, chip in sorted(open_track.chips, key=lambda item: -item[0])]
        if len(chips) >= 3:
            unit = models.face_encoder.embed_chips(chips)
            rows.append((float(unit[0] @ unit[1]), float(unit_mean(unit[:2]) @ unit_mean(unit)), len(chips)))
        return close(self, open_track)

    track.FaceTracker._close = measure
    for video in args.videos:
        process_file(video, cfg, models)
    print(f"{'best two: cosine':>18} {'their mean vs all':>18} {'chips':>6}")
    for best_two, to_all, n in sorted(rows):
        print(f"{best_two:18.3f} {to_all:18.4f} {n:6d}")
    for agreement in (0.95, 0.97, 0.98):
        kept = [to_all for best_two, to_all, _ in rows if best_two >= agreement]
        print(f"chip_agreement {agreement}: {len(kept)} of {len(rows)} tracks embed two chips; their mean is within "
              f"cosine {1 - min(kept, default=1.0):.4f} of all chips' mean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
