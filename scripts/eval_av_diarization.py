#!/usr/bin/env python
"""Who speaks when in split-screen interviews (issue 17): both faces on screen, both mouths moving, fast turns.

Builds ``--scenes`` seeded scenes (``split_screen_scene``: two photos of ../shared/data/faces side by side,
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment, Timeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.config import Config, load_config  # noqa: E402
from avid.evaluation.diarization import score_der, score_identification  # noqa: E402
from avid.identity.store import Gallery  # noqa: E402
from avid.io import media  # noqa: E402
from avid.io.writers import to_annotation  # noqa: E402
from avid.pipeline import identify  # noqa: E402
from avid.pipeline.label import label_recording  # noqa: E402
from avid.pipeline.models import Models  # noqa: E402
from avid.voice.vad import detect_speech  # noqa: E402
from tests import media as synthetic  # noqa: E402
from tests.chimeric import identities, speakers, talking_photo  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"


# -------------------------------------------------------------------------------------------------- the scenes
# Split-screen interviews with exact truth: who is heard when, and which face on screen is theirs.
#
# Two real photos from ../shared/data/faces side by side (talking photos: their mouths open with a speech signal),
# two LibriSpeech voices taking fast turns of 1-2 s that twice overlap. Both mouths move the whole time: while one
# person is heard, the other mouths words nobody hears (their own speech, played backwards so it is not a copy of
# what they say aloud). So only which mouth moves *in time with the sound* tells who is speaking, the case
# audio-visual diarization has to solve. The truth is each heard piece's speech (Silero, no padding) under the
# person's name; the person on the left is shown in slot 0.

RATE = synthetic.SAMPLE_RATE


@dataclass
class Scene:
    video: Path
    reference: Annotation             # heard speech, by name
    names: tuple[str, str]            # left, right
    enrol_photos: tuple[Path, Path]   # another photo of each person
    enrol_voices: tuple[Path, Path]   # the first third of each voice's utterance, never in the scene


def split_screen_scene(data: Path, out_dir: Path, seed: int, cfg: Config, turns: int = 9,
                       size: tuple[int, int] = (1280, 720)) -> Scene:
    """Write scene ``seed`` into ``out_dir``: ``turns`` alternating turns of 1-2 s, two of them starting 0.6 s
    before the previous one ends."""
    rng = np.random.default_rng(seed)
    people = {name: photos for name, photos in identities(data).items() if len(photos) >= 2}
    names = tuple(str(n) for n in rng.choice(sorted(people), size=2, replace=False))
    voices = speakers(data)
    utterances = []
    for index in rng.choice(len(voices), size=2, replace=False):
        utterances.append(media.load_audio(voices[int(index)], RATE))
    enrol_voices, scene_speech = [], []
    for k, audio in enumerate(utterances):
        third = len(audio) // 3
        enrol_voices.append(synthetic.write_wav(out_dir / f"scene{seed}_voice{k}.wav", audio[:third]))
        scene_speech.append(audio[third:])
    photos = [rng.permutation(people[name]) for name in names]
    portraits = [talking_photo(_head_and_shoulders(Path(p[0]), out_dir / f"scene{seed}_face{k}.jpg", cfg), cfg)[0]
                 for k, p in enumerate(photos)]

    quiet_cfg = load_config(overrides={"voice": {"vad": {"padding_seconds": 0.0, "min_silence_seconds": 0.2}}})
    overlaps = set(rng.choice(np.arange(2, turns), size=2, replace=False).tolist())
    segments, reference = [], Annotation(uri=f"scene{seed}")
    cursor, t = [0, 0], 0.5
    for turn in range(turns):
        who = turn % 2
        length = int(rng.uniform(1.0, 2.0) * RATE)
        if cursor[who] + length > len(scene_speech[who]):
            cursor[who] = 0
        piece = scene_speech[who][cursor[who]:cursor[who] + length]
        cursor[who] += length
        start = t - 0.6 if turn in overlaps else t + rng.uniform(0.1, 0.3)
        segments.append(synthetic.Segment(piece, speaker=who, start=start))
        # Meanwhile the other mouth moves too, to speech nobody hears.
        other = scene_speech[1 - who]
        offset = int(rng.integers(0, max(1, len(other) - length)))
        segments.append(synthetic.Segment(other[offset:offset + length][::-1].copy(), speaker=1 - who,
                                          start=start, heard=False))
        for region in detect_speech(piece, quiet_cfg, RATE):
            reference[Segment(start + region.start, start + region.end)] = names[who]
        t = start + length / RATE
    video = out_dir / f"scene{seed}.mp4"
    synthetic.write_talking_video(video, segments, portraits, size=size, both_on_screen=True,
                                  duration=t + 0.5, threads=1)
    return Scene(video, reference.support(), names, (Path(photos[0][1]), Path(photos[1][1])),
                 (Path(enrol_voices[0]), Path(enrol_voices[1])))


def _head_and_shoulders(photo: Path, path: Path, cfg: Config) -> Path:
    """The photo cropped around its largest face as an interview frames a guest (the face a third of the
    picture's height), so that a wide photo's small face is not lost in its half of the screen."""
    from avid.faces import FaceDetector

    image = media.load_image(photo)
    faces = FaceDetector(cfg).detect_image(image)
    if faces:
        x1, y1, x2, y2 = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).box
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        h, w = image.shape[:2]
        top, bottom = int(max(0, cy - 1.3 * side)), int(min(h, cy + 1.7 * side))
        left, right = int(max(0, cx - 1.2 * side)), int(min(w, cx + 1.2 * side))
        image = image[top:bottom, left:right]
    synthetic.write_image(path, image)
    return path


# ------------------------------------------------------------------------------------------------ the scoring

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
