"""Mouth openness from dlib's 68-point face landmarks: a per-detection cue for who is speaking.

Openness is the inner-lip vertical gap over the mouth width (outer corners), so it does not depend on face size:
about 0 for a closed mouth, 0.1-0.5 when talking.
"""
from __future__ import annotations

import numpy as np

from ..types import FaceDetection
from .dlib_files import MOUTH_PREDICTOR_FILE, dlib_shape_predictor
from .embed import dlib_rect

# Indices into dlib's 68 points (iBUG 300-W layout).
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54
_INNER_UPPER = (61, 62, 63)      # inner upper lip, left to right
_INNER_LOWER = (67, 66, 65)      # inner lower lip, the points facing them


_CHIN = 8


def _points(image: np.ndarray, detection: FaceDetection, scale: float) -> np.ndarray:
    """The 68 landmarks (x, y) of the face at ``detection``, in ``image`` pixels."""
    predictor = dlib_shape_predictor(MOUTH_PREDICTOR_FILE)
    shape = predictor(np.ascontiguousarray(image), dlib_rect(detection, scale))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def mouth_region(image: np.ndarray, detection: FaceDetection, scale: float = 1.0) -> tuple[int, int, int, int]:
    """(left x, lip-line y, right x, chin y) of the face's mouth in ``image`` pixels: where a talking photo's
    mouth opens (the Portrait of tests/media.py, the test and demo media)."""
    points = _points(image, detection, scale)
    lip = np.mean([points[i, 1] for i in _INNER_UPPER + _INNER_LOWER])
    return (int(points[_MOUTH_LEFT, 0]), int(round(lip)), int(points[_MOUTH_RIGHT, 0]), int(points[_CHIN, 1]))


def mouth_openness(image: np.ndarray, detection: FaceDetection, scale: float = 1.0) -> float:
    """Inner-lip gap / mouth width for the face at ``detection`` (its coords / ``scale`` are ``image`` pixels)."""
    points = _points(image, detection, scale)
    width = np.linalg.norm(points[_MOUTH_RIGHT] - points[_MOUTH_LEFT])
    gap = np.mean([np.linalg.norm(points[u] - points[l]) for u, l in zip(_INNER_UPPER, _INNER_LOWER)])
    return float(gap / width) if width > 0 else 0.0
