#!/usr/bin/env python
"""Open-set faces on ../shared/data/faces (issue 10, part 3): are strangers' faces answered ``unknown``?

For each seed, some of the 9 named identities are enrolled with ONE random photo each in a temporary gallery; the
genuine queries are their other photos; the strangers are all photos of the identities not enrolled and of
faces/_unknown. Photos are embedded by ``avid.pipeline.identify.evidence_from`` (what ``avid query --image`` does) and scored
by ``avid.identity.scoring.score_people`` (raw embeddings, no shared model), so the figures are what a user gets:

- genuine accepted: the best-ranked person is right and passes ``identify.threshold``;
- strangers accepted: anyone passes;
- EER, and the raw cosine threshold that lets at most ``--target`` (1%) of strangers in, found on DEV seeds (1000 onwards: other
  draws of the same photos, so only an approximately honest calibration) and applied to the test seeds.

"honest" drops genuine queries that are other copies of the enrolment photo (Obama's portrait at several
resolutions, SAME_PHOTO_GROUPS of scripts/eval_faces.py). ``--degrade`` adds query copies (written to a temporary
folder, never into the project) made harder the way video frames are: ``blur`` (Gaussian, sigma = face side / 25)
and ``small`` (the photo shrunk so that the face is about 44 px); enrolment always uses the original photos.
The configured backend (dlib by default) with the configured thresholds is today's figure.

    python scripts/eval_face_openset.py                                  # dlib, 10 seeds, 5 people enrolled
    python scripts/eval_face_openset.py --backend dlib sface dlib_sface --degrade blur small
    python scripts/eval_face_openset.py --seeds 20 --enrol 4 --data ../shared/data
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_faces import DEFAULT_DATA, same_photo  # noqa: E402

from avid.config import load_config  # noqa: E402
from avid.errors import NoContentError  # noqa: E402
from avid.evaluation.face_openset import Photo, figures, make_splits, run_split, threshold_for  # noqa: E402
from avid.identity.scoring import raw_threshold  # noqa: E402
from avid.io import media  # noqa: E402
from avid.pipeline.identify import evidence_from
from avid.pipeline.models import Models  # noqa: E402

DEV_SEEDS = 1000


def degraded(image: np.ndarray, kind: str, face_side: float) -> np.ndarray | None:
    """A harder copy of a photo whose face is ``face_side`` pixels; None where it would not be harder."""
    if kind == "blur":
        return cv2.GaussianBlur(image, (0, 0), face_side / 25)
    if kind == "small":
        factor = 44 / face_side
        if factor >= 1:
            return None
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    raise ValueError(kind)


def embed_all(faces_dir: Path, backend: str, kinds: list[str], config: str | None,
              tmp: Path) -> tuple[list[Photo], dict[str, list[Photo]], list[str]]:
    """Original photos and their degraded copies, each embedded once; returns (originals, copies per kind,
    notes on photos with no face)."""
    cfg = load_config(config, overrides={"faces": {"encoder": {"backend": backend}}})
    models = Models(cfg)
    originals, copies, notes = [], {k: [] for k in kinds}, []
    for folder in sorted(p for p in faces_dir.iterdir() if p.is_dir() and p.name != "_group"):
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS):
            key = f"{folder.name}/{path.name}"
            try:
                evidence = evidence_from(path, cfg, models)
            except NoContentError:
                notes.append(f"{key}: no face")
                continue
            originals.append(Photo(key, folder.name, key, evidence.face, evidence.face_sharpness))
            if not kinds:
                continue
            image = media.load_image(path)
            side = _face_side(image, models)
            for kind in kinds:
                harder = degraded(image, kind, side)
                if harder is None:
                    continue
                target = tmp / f"{folder.name}__{path.stem}.{kind}.png"
                cv2.imwrite(str(target), cv2.cvtColor(harder, cv2.COLOR_RGB2BGR))
                try:
                    copy = evidence_from(target, cfg, models)
                    copies[kind].append(Photo(f"{key}#{kind}", folder.name, key, copy.face, copy.face_sharpness))
                except NoContentError:
                    notes.append(f"{key}#{kind}: no face")
    return originals, copies, notes


def _face_side(image: np.ndarray, models: Models) -> float:
    boxes = [d.box for d in models.detector.detect_image(image)]
    return max(float(np.sqrt((b[2] - b[0]) * (b[3] - b[1]))) for b in boxes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (holds faces/)")
    parser.add_argument("--seeds", type=int, default=10, help="test splits (seeds 0..N-1)")
    parser.add_argument("--dev-seeds", type=int, default=20, help=f"dev splits for calibration (seeds {DEV_SEEDS}..)")
    parser.add_argument("--enrol", type=int, default=5, help="identities enrolled per split")
    parser.add_argument("--backend", nargs="+", default=None, help="face encoder backends (default: the config's)")
    parser.add_argument("--degrade", nargs="*", default=[], choices=["blur", "small"],
                        help="also query with harder copies of the photos")
    parser.add_argument("--target", type=float, default=0.01,
                        help="stranger share the dev threshold may let in (dev t column)")
    parser.add_argument("--config", default=None, help="a config file (overrides avid/configs/default.yaml)")
    args = parser.parse_args(argv)
    faces_dir = args.data / "faces"
    if not faces_dir.is_dir():
        print(f"no {faces_dir}: this evaluation needs the shared test data", file=sys.stderr)
        return 2
    base = load_config(args.config)
    backends = args.backend or [base.faces.encoder.backend]
    threshold = float(base.identify.threshold)
    print(f"open-set faces: {args.enrol} identities enrolled (one photo each), test seeds 0-{args.seeds - 1}, "
          f"dev seeds {DEV_SEEDS}-{DEV_SEEDS + args.dev_seeds - 1}; accepted at calibrated score >= {threshold}")
    print(f"{'backend':<11}{'queries':<8}{'raw t':>7}{'genuine':>9}{'honest':>8}{'strangers':>10}{'EER':>7}"
          f"{'   | dev t':>13}{'genuine':>9}{'honest':>8}{'strangers':>10}")
    with tempfile.TemporaryDirectory(prefix="avid-openset-") as tmp:
        for backend in backends:
            cfg = load_config(args.config, overrides={"faces": {"encoder": {"backend": backend}}})
            t_raw = raw_threshold(cfg, backend)
            originals, copies, notes = embed_all(faces_dir, backend, args.degrade, args.config, Path(tmp))
            for note in notes:
                print(f"  ({backend}: {note})")
            test = make_splits(originals, range(args.seeds), args.enrol)
            dev = make_splits(originals, range(DEV_SEEDS, DEV_SEEDS + args.dev_seeds), args.enrol)
            dev_outcomes = [run_split(s, originals, originals, cfg, backend, same_photo, Path(tmp)) for s in dev]
            t_dev = threshold_for(dev_outcomes, args.target)
            for kind, queries in [("photos", originals)] + [(k, copies[k]) for k in args.degrade]:
                outcomes = [run_split(s, originals, queries, cfg, backend, same_photo, Path(tmp)) for s in test]
                now, honest = figures(outcomes, threshold), figures(outcomes, threshold, honest=True)
                dev_now, dev_honest = figures(outcomes, t_dev), figures(outcomes, t_dev, honest=True)
                eer = "-" if now.eer is None else f"{now.eer:.1%}"
                print(f"{backend:<11}{kind:<8}{t_raw:>7.3f}{now.genuine_accepted:>9.1%}{honest.genuine_accepted:>8.1%}"
                      f"{now.strangers_accepted:>10.1%}{eer:>7}   | {t_dev * (1 - t_raw) + t_raw:>8.3f}"
                      f"{dev_now.genuine_accepted:>9.1%}{dev_honest.genuine_accepted:>8.1%}"
                      f"{dev_now.strangers_accepted:>10.1%}   (n {now.genuine}/{honest.genuine} genuine, "
                      f"{now.strangers} strangers)")
    print("genuine: right person at top-1 and accepted; honest: without copies of the enrolment photo; strangers: "
          "accepted as anyone; dev t: the raw cosine letting at most "
          f"{args.target:.0%} of dev-split strangers in (clean photos), applied to the test splits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
