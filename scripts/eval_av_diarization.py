#!/usr/bin/env python
"""Who speaks when in split-screen interviews (issue 17): both faces on screen, both mouths moving, fast turns.

Builds ``--scenes`` seeded scenes with avid.evaluation.av_scene (two photos of ../shared/data/faces side by side,
two LibriSpeech voices, turns of 1-2 s with two overlaps, the silent person mouthing unheard speech), enrols both
people (another photo and the first third of their voice) in a fresh gallery, runs `avid label` on each and
scores it: the identification error rate (names must match, no mapping) and DER at collar 0, overlap scored, and
the share of reference turns longer than 1 s whose speech avid credits to the right face (turns carrying the
person's name and a face track on their side of the picture cover more than half of it).

    python scripts/eval_av_diarization.py [--scenes 5] [--first-seed 0] [--keep DIR] [--config FILE]

Turn the lips off with a config of ``active_speaker: {enabled: false}`` for the audio-only figures.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from pyannote.core import Segment, Timeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import load_config  # noqa: E402
from avid.evaluation.av_scene import split_screen_scene  # noqa: E402
from avid.evaluation.diarization import score_der, score_identification  # noqa: E402
from avid.identity.store import Gallery  # noqa: E402
from avid.io.writers import to_annotation  # noqa: E402
from avid.pipeline import identify  # noqa: E402
from avid.pipeline.label import label_recording  # noqa: E402
from avid.pipeline.models import Models  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"


def credited_turns(scene, result, width: float) -> tuple[int, int]:
    """(turns over 1 s credited to the right face, turns over 1 s) of one scene: more than half of the turn is
    covered by turns carrying the person's name and a face track on their side of the picture. (A spurious
    overlapping voice is the DER's to count, not a reason to call the turn someone else's.)"""
    side = {}
    for track in result.face_tracks:
        centre = np.mean([(d.box[0] + d.box[2]) / 2 for d in track.detections])
        side[track.id] = 0 if centre < width / 2 else 1
    right = total = 0
    for segment, _, name in scene.reference.itertracks(yield_label=True):
        if segment.duration <= 1.0:
            continue
        total += 1
        theirs = Timeline([Segment(t.start, t.end) for t in result.turns
                           if t.name == name and side.get(t.track_id) == scene.names.index(name)])
        right += theirs.support().crop(segment).duration() > segment.duration / 2
    return right, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--config", help="YAML overriding avid/configs/default.yaml")
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="scenes are seeds FIRST.. (dev scenes: 100..)")
    parser.add_argument("--keep", type=Path, help="write the scenes here and keep them")
    args = parser.parse_args()
    if not (args.data / "faces").is_dir():
        print(f"shared data not found at {args.data}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    models = Models(cfg)
    totals = {"ier": np.zeros(2), "der": np.zeros(2), "credit": np.zeros(2)}
    with tempfile.TemporaryDirectory(prefix="avid-av-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(f"{'scene':>5s} {'people':40s} {'speech s':>8s} {'IER@0':>6s} {'DER@0':>6s} {'turns>1s right':>14s}")
        for seed in range(args.first_seed, args.first_seed + args.scenes):
            scene = split_screen_scene(args.data, out, seed, cfg)
            with Gallery(Path(tmp) / f"gallery{seed}.db") as gallery:
                for name, photo, voice in zip(scene.names, scene.enrol_photos, scene.enrol_voices):
                    identify.enroll(gallery, name, images=[photo], audios=[voice], cfg=cfg, models=models)
                result = label_recording(scene.video, cfg, gallery=gallery, models=models)
            hypothesis = to_annotation(result.turns, scene.reference.uri, use_names=True)
            duration = result.media.duration
            ier = score_identification(scene.reference, hypothesis, collar=0.0, duration=duration)
            der = score_der(scene.reference, hypothesis, collar=0.0, duration=duration)
            right, total = credited_turns(scene, result, result.media.width)
            for key, (errors, base) in {"ier": (ier["error_rate"] * ier["total"], ier["total"]),
                                        "der": (der["error_rate"] * der["total"], der["total"]),
                                        "credit": (right, total)}.items():
                totals[key] += [errors, base]
            print(f"{seed:5d} {' / '.join(scene.names):40s} {ier['total']:8.1f} {100 * ier['error_rate']:5.1f}% "
                  f"{100 * der['error_rate']:5.1f}% {right:>6d} of {total:<6d}", flush=True)
    print(f"all scenes: IER {100 * totals['ier'][0] / totals['ier'][1]:.1f}%, DER "
          f"{100 * totals['der'][0] / totals['der'][1]:.1f}% (collar 0, overlap scored); turns over 1 s credited to "
          f"the right face: {int(totals['credit'][0])} of {int(totals['credit'][1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
