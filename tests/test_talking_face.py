"""talking_face.choose_face on tracks made by hand: the rules in order, without decoding any media."""
from __future__ import annotations

import numpy as np
import pytest

from avid.config import load_config
from avid.pipeline.talking_face import choose_face
from avid.types import FaceDetection, FaceTrack, SpeechRegion

PERIOD = 0.2    # the default 5 fps face sampling


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return vector / np.linalg.norm(vector)


def track(track_id: int, start: float, end: float, side: float, embedding: np.ndarray,
          talking: bool = False) -> FaceTrack:
    times = np.arange(start, end + 1e-9, PERIOD)
    detections = [FaceDetection(time=float(t), box=(0.0, 0.0, side, side), probability=0.99) for t in times]
    # A talking mouth opens and closes from sample to sample; a still one only jitters.
    mouth = [0.05 + (0.25 if talking and k % 2 else 0.0) + 0.002 * (k % 3) for k in range(len(times))]
    return FaceTrack(id=track_id, detections=detections, embedding=embedding, mouth_openness=mouth)


def test_the_face_seen_talking_wins_over_a_larger_still_one(cfg):
    speech = [SpeechRegion(1.0, 5.0)]
    tracks = [track(0, 0.0, 6.0, 200, unit(0)), track(1, 0.0, 6.0, 80, unit(1), talking=True)]
    choice = choose_face(tracks, speech, None, cfg)
    assert (choice.reason, choice.chosen.track_ids, choice.silent_face) == ("talking", [1], False)


def test_comparable_still_faces_are_ambiguous_and_a_larger_one_dominates(cfg):
    speech = [SpeechRegion(1.0, 5.0)]
    alike = [track(0, 0.0, 6.0, 120, unit(0)), track(1, 0.0, 6.0, 110, unit(1))]
    assert choose_face(alike, speech, None, cfg).chosen is None
    unequal = [track(0, 0.0, 6.0, 200, unit(0)), track(1, 2.0, 5.0, 90, unit(1))]
    choice = choose_face(unequal, speech, None, cfg)
    assert choice.reason == "dominant" and choice.chosen.track_ids == [0]
    assert choice.silent_face          # its mouth is measured still while someone speaks


def test_speech_while_no_face_is_on_screen_is_judged_by_screen_time(cfg):
    speech = [SpeechRegion(10.0, 12.0)]
    tracks = [track(0, 0.0, 6.0, 120, unit(0)), track(1, 0.0, 1.0, 120, unit(1))]
    choice = choose_face(tracks, speech, None, cfg)
    assert choice.reason == "dominant" and choice.chosen.track_ids == [0] and not choice.silent_face


def test_two_tracks_of_one_face_are_one_face(cfg):
    face = unit(0)
    again = face + 0.01 * unit(5)
    tracks = [track(0, 0.0, 2.0, 120, face, talking=True), track(1, 3.0, 5.0, 120, again / np.linalg.norm(again))]
    choice = choose_face(tracks, [SpeechRegion(0.0, 5.0)], None, cfg)
    assert choice.reason == "only face" and sorted(choice.chosen.track_ids) == [0, 1]
    assert choice.to_dict()["track_id"] == 0
