"""Face-only identification on ../shared/data/faces, and the speed of each face stage on a video.

Identification: every photo of a named person (``_group`` and ``_unknown`` are skipped) is a query against all the
other photos (nearest neighbour by cosine similarity of face embeddings); top-1 accuracy. The largest face of each
photo is used (they are single-person photos). A photo with no face found counts as an error and is listed. A person
with a single photo cannot be found among the others: such photos stay in the gallery as distractors but are not
queries. As an honesty check, accuracy is also given with the other copies of the SAME photo (resolutions and crops
of one portrait) removed from the gallery of each query.

Speed (``--speed VIDEO``): decode at the configured rate and size, then time detection per frame, and alignment +
embedding, 68-point mouth landmarks and the tracker per face.

    python scripts/eval_faces.py                          # dlib backend, ../shared/data/faces
    python scripts/eval_faces.py --backend facenet --config my.yaml
    python scripts/eval_faces.py --speed ../shared/data/video/short_hamilton_clip.mp4
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avid.config import Config, load_config
from avid.faces import FaceDetector, FaceTracker, get_face_encoder, mouth_openness
from avid.io import media
from avid.types import FaceDetection

DEFAULT_DATA = Path(os.environ.get("AVID_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# Copies of one photo under different names (checked by eye, and by labels.csv's notes for the resolutions):
# Obama's official portrait at four resolutions, a full-size copy, two partial-face crops and a small crop.
SAME_PHOTO_GROUPS = [
    {"barack_obama/obama.jpg", "barack_obama/obama-240p.jpg", "barack_obama/obama-480p.jpg",
     "barack_obama/obama-720p.jpg", "barack_obama/obama-1080p.jpg", "barack_obama/obama_partial_face.jpg",
     "barack_obama/obama_partial_face2.jpg", "barack_obama/obama_small.jpg"},
]


@dataclass
class Photo:
    key: str                       # "identity/file"
    identity: str
    embedding: np.ndarray | None   # None: no face found


@dataclass
class Result:
    key: str
    identity: str
    predicted: str | None          # None: no face found
    nearest: str | None            # the gallery photo it matched
    honest_predicted: str | None   # the same with copies of its own photo removed from the gallery

    @property
    def correct(self) -> bool:
        return self.predicted == self.identity

    @property
    def honest_correct(self) -> bool:
        return self.honest_predicted == self.identity


def largest_face(detections: list[FaceDetection]) -> FaceDetection | None:
    if not detections:
        return None
    return max(detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))


def embed_photos(faces_dir: Path, cfg: Config) -> list[Photo]:
    """One embedding (of its largest face) per photo of every named identity."""
    detector, encoder = FaceDetector(cfg), get_face_encoder(cfg)
    photos = []
    for folder in sorted(p for p in faces_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS):
            image = media.load_image(path)
            face = largest_face(detector.detect_image(image))
            embedding = encoder.embed(image, [face])[0] if face is not None else None
            photos.append(Photo(f"{folder.name}/{path.name}", folder.name, embedding))
    return photos


def same_photo(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in SAME_PHOTO_GROUPS)


def identify(photos: list[Photo]) -> list[Result]:
    """Nearest-neighbour identity of each query photo among all the others (and among the honest gallery)."""
    counts: dict[str, int] = {}
    for photo in photos:
        counts[photo.identity] = counts.get(photo.identity, 0) + 1
    results = []
    for query in photos:
        if counts[query.identity] < 2:
            continue
        if query.embedding is None:
            results.append(Result(query.key, query.identity, None, None, None))
            continue
        gallery = [p for p in photos if p.key != query.key and p.embedding is not None]
        best = max(gallery, key=lambda p: float(query.embedding @ p.embedding))
        honest = [p for p in gallery if not same_photo(p.key, query.key)]
        honest_best = max(honest, key=lambda p: float(query.embedding @ p.embedding))
        results.append(Result(query.key, query.identity, best.identity, best.key, honest_best.identity))
    return results


def print_report(photos: list[Photo], results: list[Result], backend: str) -> None:
    identities = sorted({p.identity for p in photos})
    print(f"face-only identification, {backend} backend, nearest neighbour over the other photos\n")
    print(f"{'identity':<20}{'photos':>7}{'queries':>8}{'no face':>8}{'top-1':>7}{'honest':>8}")
    for identity in identities:
        mine = [r for r in results if r.identity == identity]
        n_photos = sum(p.identity == identity for p in photos)
        print(f"{identity:<20}{n_photos:>7}{len(mine):>8}{sum(r.predicted is None for r in mine):>8}"
              f"{sum(r.correct for r in mine):>7}{sum(r.honest_correct for r in mine):>8}")
    skipped = [p.key for p in photos if not any(r.key == p.key for r in results)]
    if skipped:
        print(f"\nnot queries (the only photo of their person; kept in the gallery): {', '.join(skipped)}")
    errors = [r for r in results if not r.correct or not r.honest_correct]
    if errors:
        print("\nerrors:")
        for r in errors:
            if r.predicted is None:
                print(f"  {r.key}: no face found")
            else:
                print(f"  {r.key}: top-1 {r.predicted} ({r.nearest}); without copies of its photo: "
                      f"{r.honest_predicted}")
    n = len(results)
    print(f"\ntop-1 accuracy: {sum(r.correct for r in results)}/{n} = {accuracy(results):.1%}")
    print(f"top-1 accuracy without same-photo copies in the gallery: {sum(r.honest_correct for r in results)}/{n}"
          f" = {accuracy(results, honest=True):.1%}")


def accuracy(results: list[Result], honest: bool = False) -> float:
    if not results:
        return 0.0
    return sum(r.honest_correct if honest else r.correct for r in results) / len(results)


class Stopwatch:
    """Wall and CPU seconds of a block (with one torch thread, CPU time is what an idle core would take)."""

    def __enter__(self) -> "Stopwatch":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def measure_speed(video: Path, cfg: Config) -> None:
    """Per-stage timings on the frames of ``video`` sampled as ``avid process`` samples them."""
    detector, encoder = FaceDetector(cfg), get_face_encoder(cfg)
    frames = list(media.iter_frames(video, cfg.media.frame_rate, cfg.media.detect_max_side))
    detector.detect(frames[:1])                                  # load the models outside the timings
    with Stopwatch() as detect:
        detections = detector.detect(frames)
    pairs = [(frame, d) for frame, dets in zip(frames, detections) for d in dets]
    if not pairs:
        print(f"{video}: no face detected in {len(frames)} frames")
        return
    with Stopwatch() as align:
        chips = [encoder.chips(frame.image, [d], frame.scale)[0] for frame, d in pairs]
    with Stopwatch() as embed:
        encoder.embed_chips(chips)
    mouth_openness(pairs[0][0].image, pairs[0][1], pairs[0][0].scale)   # load the 68-point model
    with Stopwatch() as mouth:
        for frame, d in pairs:
            mouth_openness(frame.image, d, frame.scale)
    tracker = FaceTracker(cfg, encoder)
    with Stopwatch() as tracking:
        for frame, dets in zip(frames, detections):
            tracker.update(frame, dets)
        tracks = tracker.finish()
    n, f = len(pairs), len(frames)
    size = "x".join(str(v) for v in frames[0].image.shape[1::-1])
    print(f"{video.name}: {f} frames at {cfg.media.frame_rate:g} fps, {size}, {n} faces, {len(tracks)} tracks, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'stage':<40}{'wall ms':>9}{'CPU ms':>9}")
    rows = [("detection, per frame", detect, f), ("alignment (5-point + chip), per face", align, n),
            (f"embedding ({encoder.name}), per face", embed, n), ("mouth landmarks (68-point), per face", mouth, n),
            ("tracker (all in), per frame", tracking, f)]
    for label, watch, count in rows:
        print(f"{label:<40}{1000 * watch.wall / count:>9.1f}{1000 * watch.cpu / count:>9.1f}")
    seconds = f / cfg.media.frame_rate
    print(f"faces total (detection + tracker): {(detect.wall + tracking.wall) / seconds:.3f} s wall, "
          f"{(detect.cpu + tracking.cpu) / seconds:.3f} s CPU per second of video")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (with faces/)")
    parser.add_argument("--backend", choices=["dlib", "facenet"], help="face encoder (default: the config's)")
    parser.add_argument("--config", type=Path, help="a YAML file overriding avid/configs/default.yaml")
    parser.add_argument("--speed", type=Path, metavar="VIDEO", help="time each face stage on VIDEO instead")
    args = parser.parse_args(argv)
    overrides = {"faces": {"encoder": {"backend": args.backend}}} if args.backend else None
    cfg = load_config(args.config, overrides)
    if args.speed:
        measure_speed(args.speed, cfg)
        return 0
    faces_dir = args.data / "faces"
    if not faces_dir.is_dir():
        print(f"{faces_dir}: not found (pass --data or set AVID_SHARED_DATA)", file=sys.stderr)
        return 2
    photos = embed_photos(faces_dir, cfg)
    results = identify(photos)
    print_report(photos, results, cfg.faces.encoder.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
