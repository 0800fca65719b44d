"""Chimeric people: the face of one person with the voice of another, for the identification tests and the
evaluations in scripts/ (not part of the avid package: `avid eval ident` scores any manifest, avid.evaluation).

From ../shared/data: its face identities (``identities``) paired with LibriSpeech speakers (``speakers``,
``split_speakers``), written out as half-utterance WAVs and manifests (``chimeric_manifest``) or as talking-photo
videos (``talking_photo``, ``talking_photo_manifest``). Without data: made-up embeddings of such people
(``synthetic_people``), for the shared model's tests and the training benchmark.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from avid.config import Config
from avid.evaluation.identification import ManifestRow
from avid.io import media
from tests import media as synthetic

N_STRANGERS = 50      # non-enrolled speakers in the chimeric manifest


def speakers(data: Path) -> list[Path]:
    return sorted((data / "voices" / "librispeech_train-clean-100").glob("*.flac"))


def split_speakers(data: Path, seed: int, n_people: int) -> tuple[list[Path], list[Path], list[Path]]:
    """(paired with faces, non-enrolled, dev) speaker utterances: a seeded shuffle, disjoint."""
    files = speakers(data)
    order = np.random.default_rng(seed).permutation(len(files))
    shuffled = [files[i] for i in order]
    return shuffled[:n_people], shuffled[n_people:n_people + N_STRANGERS], shuffled[n_people + N_STRANGERS:]


def halves(path: Path, out_dir: Path) -> tuple[str, str]:
    """Write the first and second half of an utterance as 16 kHz WAVs; return their paths."""
    audio = media.load_audio(path, 16000)
    middle = len(audio) // 2
    first = synthetic.write_wav(out_dir / f"{path.stem}_a.wav", audio[:middle])
    second = synthetic.write_wav(out_dir / f"{path.stem}_b.wav", audio[middle:])
    return str(first), str(second)


def identities(data: Path) -> dict[str, list[Path]]:
    faces = data / "faces"
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS)
            for d in sorted(faces.iterdir()) if d.is_dir() and not d.name.startswith("_")}


def chimeric_manifest(data: Path, out_dir: Path, seed: int) -> Path:
    """Write the chimeric manifest of issue 3 (and the half-utterance WAVs) into ``out_dir``; return its path.

    Each named face identity of ``data``/faces is paired with one LibriSpeech speaker (a ``seed``-ed draw) and
    enrolled with its first photo in sorted order and the first half of the utterance; the other photos, the
    second half, and the two together are its test queries. faces/_unknown and N_STRANGERS other speakers'
    second halves are non-enrolled. The remaining speakers are left out (a dev set for calibration).
    """
    people = identities(data)
    paired, strangers, _ = split_speakers(data, seed, len(people))
    rows = []
    for (person, photos), speech in zip(people.items(), paired):
        first, second = halves(speech, out_dir)
        name = f"{person}+{speech.stem.split('-')[0]}"
        rows += [(name, "face", "enrol", str(photos[0])), (name, "voice", "enrol", first)]
        rows += [(name, "face", "test", str(p)) for p in photos[1:]] + [(name, "voice", "test", second)]
    for photo in sorted((data / "faces" / "_unknown").iterdir()):
        if photo.suffix.lower() in media.IMAGE_EXTENSIONS:
            rows.append(("unknown_face", "face", "test", str(photo)))
    for speech in strangers:
        rows.append((f"speaker_{speech.stem.split('-')[0]}", "voice", "test", halves(speech, out_dir)[1]))
    return _write_manifest(out_dir / "chimeric.csv", rows)


def _write_manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """The CSV `avid eval ident` reads: one row per file, the columns of ManifestRow."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([f.name for f in fields(ManifestRow)])
        writer.writerows(rows)
    return path


def talking_photo(photo: Path, cfg: Config) -> tuple[synthetic.Portrait, float]:
    """A photo whose mouth a talking video can open (the mouth found with dlib's landmarks on its largest face;
    a still mouth when no face is found), and that face's height as a fraction of the photo's."""
    from avid.faces import FaceDetector
    from avid.faces.landmarks import mouth_region

    image = media.load_image(photo)
    faces = FaceDetector(cfg).detect_image(image)
    if not faces:
        return synthetic.Portrait(image), 0.5
    largest = max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    return (synthetic.Portrait(image, mouth=mouth_region(image, largest)),
            (largest.box[3] - largest.box[1]) / image.shape[0])


def talking_photo_manifest(data: Path, out_dir: Path, seed: int, cfg: Config) -> Path:
    """The chimeric people of ``chimeric_manifest`` with video queries: each test photo of a person becomes a
    talking-photo video (its mouth opening with the speech) saying the second half of the person's utterance,
    with a second, smaller face of another identity, still, in the background for most of it; enrolment is the
    first photo and the first half, as there. faces/_unknown, speaking a non-enrolled speaker's half, is a
    non-enrolled video. Written into ``out_dir``; returns the manifest's path."""
    people = identities(data)
    paired, strangers, _ = split_speakers(data, seed, len(people))
    rng = np.random.default_rng(seed)
    unknown = [p for p in sorted((data / "faces" / "_unknown").iterdir()) if p.suffix.lower() in media.IMAGE_EXTENSIONS]
    rows = []

    def video(photo: Path, speech: str, behind: Path, name: str) -> str:
        audio = media.load_audio(speech, synthetic.SAMPLE_RATE)
        length = audio.size / synthetic.SAMPLE_RATE + 1.0
        portrait, face_share = talking_photo(photo, cfg)
        extra, extra_share = talking_photo(behind, cfg)
        # The background face is shown at half the size of the speaker's (whose photo fills 88% of the height).
        height = min(0.4, 0.5 * 0.88 * face_share / extra_share)
        path = out_dir / f"{name}.mp4"
        synthetic.write_talking_video(path, [synthetic.Segment(audio)], [portrait], background_faces=[
            synthetic.BackgroundFace(extra.image, start=0.25 * length, end=0.9 * length, height=height)])
        return str(path)

    names = list(people)
    for (person, photos), speech in zip(people.items(), paired):
        first, second = halves(speech, out_dir)
        name = f"{person}+{speech.stem.split('-')[0]}"
        rows += [(name, "face", "enrol", str(photos[0])), (name, "voice", "enrol", first)]
        for k, photo in enumerate(photos[1:]):
            other = people[names[(names.index(person) + 1 + int(rng.integers(len(names) - 1))) % len(names)]]
            behind = other[int(rng.integers(len(other)))]
            rows.append((name, "video", "test", video(photo, second, behind, f"{person}_{k}")))
    for k, (photo, speech) in enumerate(zip(unknown, strangers)):
        behind = people[names[int(rng.integers(len(names)))]][0]
        rows.append(("unknown_face", "video", "test", video(photo, halves(speech, out_dir)[1], behind, f"unknown_{k}")))
    return _write_manifest(out_dir / "talking_photos.csv", rows)


# ------------------------------------------------------------------------------------- made-up people, no data
@dataclass
class SyntheticPeople:
    faces: np.ndarray            # (people, observations, 128)
    voices: np.ndarray           # (people, observations, 256)
    stranger_faces: np.ndarray   # (strangers, 128): people never enrolled
    stranger_voices: np.ndarray  # (strangers, 256)


def _clusters(rng: np.random.Generator, n_people: int, n_obs: int, dim: int, centre: float,
              spread: float) -> np.ndarray:
    """Unit embeddings that share a mean direction (mean cosine of different people about ``centre``), one
    random identity direction per person, and per-observation noise of relative size ``spread``."""
    mean = rng.standard_normal(dim)
    mean /= np.linalg.norm(mean)

    def off_mean(x: np.ndarray) -> np.ndarray:
        x = x - (x @ mean)[..., None] * mean
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    identity = off_mean(rng.standard_normal((n_people, 1, dim))) + spread * off_mean(
        rng.standard_normal((n_people, n_obs, dim)))
    x = np.sqrt(centre) * mean + np.sqrt(1 - centre) * off_mean(identity)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_people(n_people: int, n_obs: int, seed: int = 0, strangers: int = 10, face_spread: float = 0.5,
                     voice_spread: float = 0.8) -> SyntheticPeople:
    """Chimeric people with dlib-like faces (128-D, different people at cosine ~0.83) and Resemblyzer-like voices
    (256-D, ~0.57), faces and voices independent; for tests and the training benchmark."""
    rng = np.random.default_rng(seed)
    faces = _clusters(rng, n_people + strangers, n_obs, 128, 0.83, face_spread)
    voices = _clusters(rng, n_people + strangers, n_obs, 256, 0.57, voice_spread)
    return SyntheticPeople(faces[:n_people], voices[:n_people], faces[n_people:, 0], voices[n_people:, 0])
