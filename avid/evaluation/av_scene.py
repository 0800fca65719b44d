"""Split-screen interviews with exact truth: who is heard when, and which face on screen is theirs.

Two real photos from ../shared/data/faces side by side (talking photos: their mouths open with a speech signal),
two LibriSpeech voices taking fast turns of 1-2 s that twice overlap. Both mouths move the whole time: while one
person is heard, the other mouths words nobody hears (their own speech, played backwards so it is not a copy of
what they say aloud). So only which mouth moves *in time with the sound* tells who is speaking, the case
audio-visual diarization has to solve. The truth is each heard piece's speech (Silero, no padding) under the
person's name; the person on the left is shown in slot 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment

from .. import synthetic
from ..config import Config, load_config
from ..io import media
from ..voice.vad import detect_speech
from .identification import identities, speakers, talking_photo

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
    from ..faces import FaceDetector

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
