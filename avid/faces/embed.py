"""Face encoders behind one interface: aligned face chips in, L2-normalised float32 embeddings out.

Backends:
- ``dlib``: dlib's ResNet (128-D, from face-recognition-models), chips aligned with dlib's 5-point shape predictor
  and ``get_face_chip``. Works offline; the default.
- ``facenet``: InceptionResnetV1 trained on VGGFace2 (512-D, facenet-pytorch) from a LOCAL weights file
  (``faces.encoder.facenet_weights``); nothing is ever downloaded.

Alignment (``chips``) is split from embedding (``embed_chips``) so that the tracker can keep a few small chips per
track and embed only the best of them. Models load once per process.
"""
from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import Config
from ..errors import ConfigError, ModelError
from ..types import FaceDetection
from ..vectors import unit_rows

FACENET_WEIGHTS_NAME = "20180402-114759-vggface2.pt"
FACENET_WEIGHTS_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{FACENET_WEIGHTS_NAME}"

# dlib's landmark models were trained on boxes from dlib's own detector, which sit lower and tighter than MTCNN's.
# Measured over the 45 matching faces of ../shared/data/faces: dlib's box centre is 0.066 MTCNN-box heights lower,
# and its (square) side is 1.10 MTCNN widths or 0.82 MTCNN heights.
_DLIB_BOX_SHIFT_Y = 0.066
_DLIB_BOX_PER_WIDTH = 1.10
_DLIB_BOX_PER_HEIGHT = 0.82


def dlib_model_path(file_name: str) -> Path:
    """A model file shipped by face-recognition-models (found without importing it: it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / file_name
    if not path.exists():
        raise ModelError("model file missing from face-recognition-models (reinstall it)", path)
    return path


@lru_cache(maxsize=None)
def dlib_shape_predictor(file_name: str):
    """A dlib shape predictor from face-recognition-models, loaded once per process."""
    import dlib

    return dlib.shape_predictor(str(dlib_model_path(file_name)))


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
        self._model = _dlib_resnet()

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
        descriptors = self._model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips], self.jitter)
        return unit_rows(np.array(descriptors))


@lru_cache(maxsize=1)
def _dlib_resnet():
    import dlib

    return dlib.face_recognition_model_v1(str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))


class FacenetFaceEncoder(FaceEncoder):
    """facenet-pytorch's InceptionResnetV1 (VGGFace2, LFW 99.65%) on 160x160 crops around the MTCNN box."""

    name = "facenet"
    dim = 512
    chip_size = 160

    def __init__(self, cfg: Config):
        self.margin = float(cfg.faces.encoder.facenet_margin)
        self._model = _facenet_model(_facenet_weights_path(cfg))

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
        batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            vectors = self._model((batch - 127.5) / 128.0)     # facenet-pytorch's fixed_image_standardization
        return unit_rows(vectors.numpy())


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
def _facenet_model(path: Path):
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
    return model.eval()


ENCODERS = {"dlib": DlibFaceEncoder, "facenet": FacenetFaceEncoder}


def get_face_encoder(cfg: Config) -> FaceEncoder:
    """The encoder named by ``cfg.faces.encoder.backend``."""
    backend = cfg.faces.encoder.backend
    if backend not in ENCODERS:
        raise ConfigError(f"unknown faces.encoder.backend {backend!r} (choose from {', '.join(ENCODERS)})")
    return ENCODERS[backend](cfg)
