"""Faces: detection, encoders, tracking and mouth openness, on generated frames built from real face photos
(scikit-image's astronaut, matplotlib's Grace Hopper), plus identification and the Hamilton clip on shared data."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avid.config import load_config
from avid.errors import ConfigError, ModelError
from avid.faces import FaceDetector, FaceTracker, get_face_encoder, mouth_openness
from avid.faces.detect import run_mtcnn
from avid.faces.track import box_iou
from avid.io import media
from avid.types import FaceDetection, Frame
from tests import media as synthetic

ASTRONAUT_FACE = (180, 60, 268, 172)       # where MTCNN finds her face in the 512x512 photo (x1, y1, x2, y2)
ASTRONAUT_MOUTH = (201, 146, 246, 178)     # left x, lip-line y, right x, chin y (as tests/media.py measured it)


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def detector(cfg):
    return FaceDetector(cfg)


@pytest.fixture(scope="module")
def encoder(cfg):
    return get_face_encoder(cfg)


@pytest.fixture(scope="module")
def astronaut():
    return synthetic.astronaut_face()


@pytest.fixture(scope="module")
def hopper():
    return synthetic.grace_hopper_face()


def iou(a, b) -> float:
    return float(box_iou(np.array([a], float), np.array([b], float))[0, 0])


def canvas(faces: list[tuple[np.ndarray, int, int]], size=(640, 360), colour=(60, 70, 90), face_height=200):
    """A frame of ``size`` with each photo scaled to ``face_height`` and pasted with its top-left at (x, y)."""
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:] = colour
    for photo, x, y in faces:
        width = round(photo.shape[1] * face_height / photo.shape[0])
        small = cv2.resize(photo, (width, face_height), interpolation=cv2.INTER_AREA)
        frame[y:y + face_height, x:x + width] = small[:size[1] - y, :size[0] - x]
    return frame


def run_tracker(cfg, encoder, detector, images, fps=5.0, overrides=None):
    config = load_config(overrides=overrides) if overrides else cfg
    tracker = FaceTracker(config, encoder)
    for index, image in enumerate(images):
        frame = Frame(index=index, time=index / fps, image=image)
        tracker.update(frame, detector.detect([frame])[0])
    return tracker.finish()


# ---------------------------------------------------------------------------------------------- detection

def test_detects_the_astronaut_with_landmarks_and_quality(detector, astronaut):
    faces = detector.detect_image(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert iou(face.box, ASTRONAUT_FACE) > 0.8
    assert face.probability > 0.99
    assert 0.5 < face.quality <= 1.0
    x1, y1, x2, y2 = face.box
    assert face.landmarks.shape == (5, 2)
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_boxes_come_back_in_original_pixels(detector, astronaut):
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    frame = Frame(index=0, time=1.5, image=astronaut, scale=2.0)   # the 1024 frame, detected at half size
    face = detector.detect([frame])[0][0]
    assert face.time == 1.5
    assert iou(face.box, tuple(2 * v for v in ASTRONAUT_FACE)) > 0.8
    assert iou(face.box, detector.detect_image(big)[0].box) > 0.8
    assert np.all(face.landmarks > 200)                            # scaled too


def test_large_photos_are_detected_downscaled_but_reported_in_their_pixels(cfg, astronaut):
    small_side = load_config(overrides={"faces": {"detector": {"image_max_side": 256}}})
    face = FaceDetector(small_side).detect_image(astronaut)[0]
    assert iou(face.box, ASTRONAUT_FACE) > 0.7


def test_our_mtcnn_nets_compute_what_facenet_pytorchs_do():
    from facenet_pytorch import MTCNN

    from avid.faces.mtcnn import load_nets

    theirs = MTCNN(device=torch.device("cpu")).eval()
    rng = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for ours, their, size in zip(load_nets(), (theirs.pnet, theirs.rnet, theirs.onet), (40, 24, 48)):
            x = torch.randn(3, 3, size, size, generator=rng)
            for a, b in zip(ours(x.contiguous(memory_format=torch.channels_last)), their(x)):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batched_nms_keeps_what_torchvisions_keeps():
    from torchvision.ops import batched_nms as torchvision_batched_nms

    from avid.faces.mtcnn import batched_nms

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 300, (400, 2))
    boxes = torch.tensor(np.hstack([corners, corners + rng.uniform(10, 80, (400, 2))]), dtype=torch.float32)
    scores = torch.tensor(rng.permutation(400) / 400.0, dtype=torch.float32)    # no ties: one right order
    groups = torch.tensor(rng.integers(0, 4, 400))
    for threshold in (0.5, 0.7):
        expected = torchvision_batched_nms(boxes, scores, groups, threshold)
        assert batched_nms(boxes, scores, groups, threshold).tolist() == expected.tolist()


def test_agrees_with_facenet_pytorch_detect_face(astronaut, hopper):
    from facenet_pytorch import MTCNN
    from facenet_pytorch.models.utils.detect_face import detect_face

    theirs = MTCNN(device=torch.device("cpu")).eval()
    images = np.stack([canvas([(astronaut, 40, 60), (hopper, 340, 100)]),
                       canvas([(astronaut, 200, 20)], colour=(200, 190, 180))])
    with torch.inference_mode():
        ours = run_mtcnn(images, 40, [0.6, 0.7, 0.7], 0.709)
        boxes, _ = detect_face(images, 40, theirs.pnet, theirs.rnet, theirs.onet, [0.6, 0.7, 0.7], 0.709,
                               torch.device("cpu"))
    for (our_boxes, our_points), their_boxes in zip(ours, boxes):
        confident = their_boxes[their_boxes[:, 4] > 0.9]
        assert len(confident) == (our_boxes[:, 4] > 0.9).sum() > 0
        overlap = box_iou(confident[:, :4], our_boxes[:, :4])
        assert np.all(overlap.max(axis=1) > 0.85)
        assert our_points.shape == (len(our_boxes), 5, 2)


def test_no_face_in_blank_noise_or_tiny_images(detector):
    rng = np.random.default_rng(0)
    assert detector.detect_image(np.zeros((360, 640, 3), np.uint8)) == []
    assert detector.detect_image(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)) == []
    assert detector.detect_image(np.full((20, 30, 3), 128, np.uint8)) == []


def test_batches_frames_of_different_sizes_in_order(detector, astronaut):
    blank = np.zeros((300, 400, 3), np.uint8)
    frames = [Frame(0, 0.0, astronaut), Frame(1, 0.2, blank), Frame(2, 0.4, astronaut), Frame(3, 0.6, blank[..., 0])]
    counts = [len(found) for found in detector.detect(frames)]
    assert counts == [1, 0, 1, 0]


def test_key_frames_find_the_same_faces_between_them(detector, astronaut):
    """Between key frames the faces of the last key frame are found again (R- and O-net on their boxes): a face
    that moved is followed, with the box and landmarks a full detection gives; one that appears is found at the
    next key frame, and a frame of a new size is a key frame."""
    from avid.faces.detect import KeyframeDetection

    blank = np.zeros_like(astronaut)
    frames = [Frame(i, i * 0.2, np.roll(astronaut, 6 * i, axis=1)) for i in range(6)]
    frames[0] = Frame(0, 0.0, blank)                         # nobody at the first key frame ...
    frames.append(Frame(7, 1.4, cv2.resize(astronaut, (astronaut.shape[1] // 2, astronaut.shape[0] // 2))))
    full = detector.detect(frames)
    keyed = KeyframeDetection(detector, every=2).detect(frames)
    assert [len(found) for found in full] == [0, 1, 1, 1, 1, 1, 1]
    assert [len(found) for found in keyed] == [0, 0, 1, 1, 1, 1, 1]    # ... so the face of frame 1 waits for 2
    for a, b in zip(full[2:], keyed[2:]):
        assert iou(a[0].box, b[0].box) > 0.9
        assert np.abs(a[0].landmarks - b[0].landmarks).max() < 4
    # Batches of any size give the same answer: the last key frame's faces carry over.
    tracker = KeyframeDetection(detector, every=2)
    in_pieces = [found for piece in (frames[:3], frames[3:4], frames[4:]) for found in tracker.detect(piece)]
    assert [[d.box for d in found] for found in in_pieces] == [[d.box for d in found] for found in keyed]


# ---------------------------------------------------------------------------------------------- encoders

def test_dlib_embeddings_are_unit_float32_and_same_face_is_closer(encoder, detector, astronaut, hopper):
    assert encoder.name == "dlib" and encoder.dim == 128
    two = canvas([(astronaut, 20, 80), (hopper, 330, 60)], size=(640, 400), face_height=300)
    faces = detector.detect_image(two)
    assert len(faces) == 2
    vectors = encoder.embed(two, faces)
    assert vectors.shape == (2, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The astronaut alone, at another size, is nearer to her copy in the pair than Grace Hopper is.
    alone = encoder.embed(astronaut, detector.detect_image(astronaut))[0]
    astronaut_in_pair = vectors[0] if faces[0].box[0] < faces[1].box[0] else vectors[1]
    hopper_in_pair = vectors[1] if faces[0].box[0] < faces[1].box[0] else vectors[0]
    assert np.linalg.norm(alone - astronaut_in_pair) < 0.2 < np.linalg.norm(alone - hopper_in_pair)
    assert encoder.embed(astronaut, []).shape == (0, 128)


def test_embedding_uses_the_scale_to_find_the_face(encoder, detector, astronaut):
    face = detector.detect_image(astronaut)[0]
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    in_big_pixels = FaceDetection(time=0.0, box=tuple(2 * v for v in face.box), probability=face.probability)
    from_small = encoder.embed(astronaut, [in_big_pixels], scale=2.0)[0]
    from_big = encoder.embed(big, [in_big_pixels])[0]
    assert np.linalg.norm(from_small - from_big) < 0.15


def test_facenet_without_weights_says_what_to_do():
    with pytest.raises(ModelError, match="faces.encoder.facenet_weights.*20180402-114759-vggface2.pt|"
                                         "20180402-114759-vggface2.pt.*faces.encoder.facenet_weights"):
        get_face_encoder(load_config(overrides={"faces": {"encoder": {"backend": "facenet"}}}))


def test_facenet_with_a_missing_or_bad_file_names_it(tmp_path):
    missing = tmp_path / "nowhere.pt"
    with pytest.raises(ModelError) as err:
        get_face_encoder(load_config(overrides={"faces": {"encoder": {"backend": "facenet",
                                                                      "facenet_weights": str(missing)}}}))
    assert err.value.path == str(missing) and "not found" in str(err.value)
    bad = tmp_path / "bad.pt"
    bad.write_text("not weights")
    with pytest.raises(ModelError) as err:
        get_face_encoder(load_config(overrides={"faces": {"encoder": {"backend": "facenet",
                                                                      "facenet_weights": str(bad)}}}))
    assert err.value.path == str(bad)


def test_facenet_loads_a_local_state_dict(tmp_path, detector, astronaut):
    from facenet_pytorch import InceptionResnetV1

    # Same layout as the published file (which also carries the 8631-class head); random weights suffice here.
    torch.manual_seed(0)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(InceptionResnetV1(classify=True, num_classes=8631).state_dict(), path)
    config = load_config(overrides={"faces": {"encoder": {"backend": "facenet", "facenet_weights": str(path)}}})
    facenet = get_face_encoder(config)
    assert facenet.name == "facenet" and facenet.dim == 512
    vectors = facenet.embed(astronaut, detector.detect_image(astronaut))
    assert vectors.shape == (1, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="backend"):
        get_face_encoder(load_config(overrides={"faces": {"encoder": {"backend": "nope"}}}))


# ---------------------------------------------------------------------------------------------- mouth

def open_mouth(photo: np.ndarray, gap: int) -> np.ndarray:
    """The astronaut with her jaw moved down ``gap`` rows under the lip line, showing a dark mouth."""
    x1, lip, x2, chin = ASTRONAUT_MOUTH
    out = photo.copy()
    out[lip + gap:chin + 2 * gap, x1:x2] = photo[lip:chin + gap, x1:x2]
    out[lip:lip + gap, x1 + 4:x2 - 4] = (40, 10, 10)
    return out


def test_mouth_openness_grows_as_the_mouth_opens(detector, astronaut):
    values = []
    for gap in (0, 6, 12):
        image = open_mouth(astronaut, gap)
        values.append(mouth_openness(image, detector.detect_image(image)[0]))
    assert 0.0 <= values[0] < 0.25
    assert values[0] + 0.05 < values[1] < values[2] - 0.05


# ---------------------------------------------------------------------------------------------- tracking

def test_one_moving_face_is_one_track(cfg, encoder, detector, astronaut):
    frames = [canvas([(astronaut, 100 + 12 * k, 80 + 3 * k)]) for k in range(10)]
    tracks = run_tracker(cfg, encoder, detector, frames)
    assert len(tracks) == 1
    track = tracks[0]
    assert track.id == 0 and len(track.detections) == 10
    assert track.start == 0.0 and track.end == pytest.approx(1.8)
    assert len(track.mouth_openness) == 10
    assert track.embedding.shape == (128,) and track.embedding.dtype == np.float32
    assert np.linalg.norm(track.embedding) == pytest.approx(1.0, abs=1e-5)
    alone = encoder.embed(astronaut, detector.detect_image(astronaut))[0]
    assert np.linalg.norm(track.embedding - alone) < 0.2


def test_two_faces_on_screen_are_two_tracks_numbered_by_first_appearance(cfg, encoder, detector, astronaut, hopper):
    frames = [canvas([(hopper, 380, 80)])] * 2 + [canvas([(astronaut, 40, 80), (hopper, 380, 80)])] * 6
    tracks = run_tracker(cfg, encoder, detector, frames)
    assert [len(t.detections) for t in tracks] == [8, 6]
    assert [t.id for t in tracks] == [0, 1]
    assert tracks[0].start == 0.0 and tracks[1].start == pytest.approx(0.4)
    assert np.linalg.norm(tracks[0].embedding - tracks[1].embedding) > 0.3


def face_at(photo: np.ndarray, face_box, center: tuple[int, int], face_width: int, colour) -> np.ndarray:
    """A 640x360 frame with ``photo`` scaled and placed so that its face (``face_box``) is ``face_width`` wide at
    ``center``."""
    x1, y1, x2, y2 = face_box
    zoom = face_width / (x2 - x1)
    height = round(photo.shape[0] * zoom)
    left, top = round(center[0] - (x1 + x2) / 2 * zoom), round(center[1] - (y1 + y2) / 2 * zoom)
    return canvas([(photo, left, top)], colour=colour, face_height=height)


def test_a_cut_between_people_framed_alike_splits_and_a_return_merges(cfg, encoder, detector, astronaut, hopper):
    """An edited interview: the astronaut, a cut to Hopper with her face where the astronaut's was, a cut back."""
    her = face_at(astronaut, detector.detect_image(astronaut)[0].box, (320, 150), 90, colour=(150, 60, 40))
    other = face_at(hopper, detector.detect_image(hopper)[0].box, (320, 150), 90, colour=(40, 60, 150))
    her_box, other_box = detector.detect_image(her)[0].box, detector.detect_image(other)[0].box
    assert iou(her_box, other_box) > 0.6                         # box overlap alone would link them
    tracks = run_tracker(cfg, encoder, detector, [her] * 4 + [other] * 4 + [her] * 4)
    assert [len(t.detections) for t in tracks] == [8, 4]
    assert [d.time for d in tracks[0].detections] == pytest.approx([0, .2, .4, .6, 1.6, 1.8, 2.0, 2.2])
    assert tracks[1].start == pytest.approx(0.8)
    assert len(tracks[0].mouth_openness) == 8


def test_a_long_absence_closes_the_track_and_memory_stays_bounded(cfg, encoder, detector, astronaut):
    config = load_config(overrides={"faces": {"tracker": {"max_embed_crops": 2, "reappear_similarity": 2.0,
                                                           "short_gap_similarity": 2.0}}})
    tracker = FaceTracker(config, encoder)
    face, empty = canvas([(astronaut, 200, 80)]), canvas([])
    images = [face] * 4 + [empty] * 7 + [face] * 4          # 1.4 s without her: longer than max_gap_seconds
    for index, image in enumerate(images):
        frame = Frame(index=index, time=index / 5, image=image)
        tracker.update(frame, detector.detect([frame])[0])
        assert all(len(open_track.chips) <= 2 for open_track in tracker._open)
        if index == 10:
            assert tracker._open == []                        # closed, embedded, chips freed
    tracks = tracker.finish()
    assert [len(t.detections) for t in tracks] == [4, 4]     # merging switched off: two tracks
    assert np.linalg.norm(tracks[0].embedding - tracks[1].embedding) < 0.1


def test_spurious_short_tracks_are_dropped_but_stills_keep_their_face(cfg, encoder, detector, astronaut, hopper):
    frames = [canvas([(astronaut, 40, 80)])] * 5
    frames[2] = canvas([(astronaut, 40, 80), (hopper, 380, 80)])   # Hopper flashes up for one frame
    tracks = run_tracker(cfg, encoder, detector, frames)
    assert [len(t.detections) for t in tracks] == [5]
    still = run_tracker(cfg, encoder, detector, [canvas([(astronaut, 40, 80), (hopper, 380, 80)])])
    assert [len(t.detections) for t in still] == [1, 1]


def test_mouth_can_be_switched_off(encoder, detector, astronaut):
    config = load_config(overrides={"faces": {"landmarks": {"mouth": False}}})
    tracks = run_tracker(config, encoder, detector, [canvas([(astronaut, 100, 80)])] * 3)
    assert tracks[0].mouth_openness == []


# ---------------------------------------------------------------------------------------------- shared data

def load_eval_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "eval_faces.py"
    spec = importlib.util.spec_from_file_location("eval_faces", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_face_only_identification_on_shared_photos(shared_data, cfg):
    evaluation = load_eval_script()
    photos = evaluation.embed_photos(shared_data / "faces", cfg)
    results = evaluation.identify(photos)
    assert len(results) >= 35                                  # every photo whose person has another photo
    assert evaluation.accuracy(results) >= 0.95
    assert evaluation.accuracy(results, honest=True) >= 0.9


def test_hamilton_clip_names_lin_manuel_mirandas_track(shared_data, cfg, detector, encoder):
    references = {}
    for folder in sorted(p for p in (shared_data / "faces").iterdir() if p.is_dir() and not p.name.startswith("_")):
        photo = sorted(p for p in folder.iterdir() if p.suffix.lower() in media.IMAGE_EXTENSIONS)[0]
        image = media.load_image(photo)
        face = max(detector.detect_image(image), key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        references[folder.name] = encoder.embed(image, [face])[0]
    names = list(references)
    gallery = np.stack([references[n] for n in names])

    tracker = FaceTracker(cfg, encoder)
    video = shared_data / "video" / "short_hamilton_clip.mp4"
    for frame in media.iter_frames(video, cfg.media.frame_rate, cfg.media.detect_max_side):
        tracker.update(frame, detector.detect([frame])[0])
    tracks = tracker.finish()
    assert [t.id for t in tracks] == list(range(len(tracks)))
    assert all(len(t.mouth_openness) == len(t.detections) for t in tracks)

    # He is the performer: the longest track, on stage across two shots (tracks joined by appearance).
    longest = max(tracks, key=lambda t: len(t.detections))
    assert len(longest.detections) >= 20
    similarity = gallery @ longest.embedding
    assert names[int(np.argmax(similarity))] == "lin_manuel_miranda"
    assert np.sort(similarity)[-1] - np.sort(similarity)[-2] > 0.03
    # And no other track looks more like his photo than his own track does.
    lin = gallery[names.index("lin_manuel_miranda")]
    assert max(tracks, key=lambda t: float(lin @ t.embedding)) is longest
