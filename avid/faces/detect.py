"""Face detection: batched MTCNN with the P-, R- and O-net weights that ship in the facenet-pytorch wheel.

Detections come back in ORIGINAL frame pixels (box and five landmarks multiplied by ``Frame.scale``), each with a
``quality`` score that ranks crops for embedding: big, confident and frontal faces first.

The three MTCNN stages follow facenet-pytorch's ``detect_face`` step for step (the nets and box helpers are in
``mtcnn.py``), with two changes for speed on CPU, where its per-candidate torch resizing took half the time: the
image pyramid and the candidate crops are resized with OpenCV on uint8 images, and the nets run channels-last (their
ceil-mode max-pooling is ~3x faster so): 1.3-1.6x faster in all. Each pyramid level is shrunk from the one above it
(a third of the resizing; docs/speed.md). The faces found are the same; boxes differ by resampling alone (median
2 px on the Hamilton clip; tests/test_faces.py checks the agreement).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..config import Config
from ..device import resolve_device
from ..threads import limit_threads
from ..types import FaceDetection, Frame
from .mtcnn import apply_regression, batched_nms, generate_boxes, load_nets, to_square


def _as_net_input(images: np.ndarray, device: str) -> torch.Tensor:
    """(n, h, w, 3) uint8 -> the nets' normalised channels-last float input on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    return ((tensor - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def run_mtcnn(images: np.ndarray, min_face_size: float, thresholds: list[float], factor: float,
              device: str = "cpu") -> list[tuple[np.ndarray, np.ndarray]]:
    """MTCNN on a batch of equal-size RGB uint8 images (n, h, w, 3), the nets on ``device`` (the box bookkeeping
    between them stays on the CPU).

    Returns per image (boxes (k, 5): x1, y1, x2, y2, probability; landmarks (k, 5, 2)) in image pixels.
    """
    boxes, image_index = _propose(images, min_face_size, thresholds[0], factor, device)
    return refine_candidates(images, boxes, image_index, thresholds, device)


def _propose(images: np.ndarray, min_face_size: float, threshold: float, factor: float,
             device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1: the P-net slides over a pyramid of scales, from faces of min_face_size up to the whole image.
    Returns the square candidate boxes (k, 5: x1, y1, x2, y2, score) and the image index of each."""
    pnet, _, _ = load_nets(device)
    height, width = images.shape[1:3]
    scales, scale, side = [], 12.0 / min_face_size, min(height, width) * 12.0 / min_face_size
    while side >= 12:
        scales.append(scale)
        scale, side = scale * factor, side * factor
    boxes, image_index = [], []
    level = images
    for scale in scales:
        # Each level is shrunk from the one before (area averaging both times): a third of the work of shrinking
        # the frame again at every scale, for the same pyramid up to rounding.
        size = (int(width * scale + 1), int(height * scale + 1))
        level = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in level])
        regression, probability = (out.cpu() for out in pnet(_as_net_input(level, device)))
        found, index = generate_boxes(regression, probability[:, 1], scale, threshold)
        keep = batched_nms(found[:, :4], found[:, 4], index, 0.5)
        boxes.append(found[keep])
        image_index.append(index[keep])
    boxes, image_index = torch.cat(boxes), torch.cat(image_index)
    keep = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7)
    boxes, image_index = boxes[keep], image_index[keep]
    span_x, span_y = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = to_square(torch.stack([boxes[:, 0] + boxes[:, 5] * span_x, boxes[:, 1] + boxes[:, 6] * span_y,
                                   boxes[:, 2] + boxes[:, 7] * span_x, boxes[:, 3] + boxes[:, 8] * span_y,
                                   boxes[:, 4]], dim=1))
    return boxes, image_index


def refine_candidates(images: np.ndarray, boxes: torch.Tensor, image_index: torch.Tensor, thresholds: list[float],
                      device: str = "cpu") -> list[tuple[np.ndarray, np.ndarray]]:
    """Stages 2 and 3 on candidate boxes (k, >= 4: x1, y1, x2, y2, ...) of ``images``: the P-net's, or the faces
    found in an earlier frame. Returns per image (boxes (k, 5) with probability, landmarks (k, 5, 2))."""
    _, rnet, onet = load_nets(device)
    # Stage 2: the R-net rescores each candidate on a 24x24 crop and refines its box.
    if len(boxes):
        regression, probability = _run_bucketed(rnet, _crops(images, boxes, image_index, 24), device)
        passed = probability[:, 1] > thresholds[1]
        boxes = torch.cat([boxes[passed, :4], probability[passed, 1:2]], dim=1)
        image_index, regression = image_index[passed], regression[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7)
        boxes = to_square(apply_regression(boxes[keep], regression[keep]))
        image_index = image_index[keep]
    # Stage 3: the O-net on 48x48 crops gives the final score, box and five landmarks.
    landmarks = torch.zeros(0, 5, 2)
    if len(boxes):
        regression, points, probability = _run_bucketed(onet, _crops(images, boxes, image_index, 48), device)
        passed = probability[:, 1] > thresholds[2]
        boxes = torch.cat([boxes[passed, :4], probability[passed, 1:2]], dim=1)
        image_index, regression, points = image_index[passed], regression[passed], points[passed]
        box_w, box_h = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
        landmarks = torch.stack([box_w * points[:, :5] + boxes[:, 0:1] - 1,
                                 box_h * points[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = apply_regression(boxes, regression)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], image_index, 0.7, overlap="min")
        boxes, image_index, landmarks = boxes[keep], image_index[keep], landmarks[keep]
    boxes, landmarks, image_index = boxes.numpy(), landmarks.numpy(), image_index.numpy()
    return [(boxes[image_index == i], landmarks[image_index == i]) for i in range(len(images))]


def _run_bucketed(net, crops: np.ndarray, device: str, bucket: int = 32) -> tuple[torch.Tensor, ...]:
    """Run ``net`` on the uint8 crops zero-padded to a multiple of ``bucket``, so that the batch sizes repeat: oneDNN
    caches kernels per input shape, and with a new shape for every candidate count memory grew with video length.
    The outputs come back on the CPU."""
    n = len(crops)
    padded = -(-n // bucket) * bucket
    if padded != n:
        crops = np.concatenate([crops, np.zeros((padded - n, *crops.shape[1:]), crops.dtype)])
    return tuple(out[:n].cpu() for out in net(_as_net_input(crops, device)))


def _crops(images: np.ndarray, boxes: torch.Tensor, image_index: torch.Tensor, size: int) -> np.ndarray:
    """Each candidate box cut from its image (clipped to it, as facenet-pytorch does) and resized to size x size."""
    height, width = images.shape[1:3]
    corners = boxes[:, :4].trunc().int().numpy()
    x1, y1 = np.maximum(corners[:, 0], 1) - 1, np.maximum(corners[:, 1], 1) - 1
    x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
    crops = np.zeros((len(corners), size, size, 3), np.uint8)
    for k, i in enumerate(image_index.numpy()):
        if x2[k] > x1[k] and y2[k] > y1[k]:
            crops[k] = cv2.resize(images[i, y1[k]:y2[k], x1[k]:x2[k]], (size, size), interpolation=cv2.INTER_AREA)
    return crops


def frontalness(landmarks: np.ndarray) -> float:
    """1 for a frontal face, towards 0 as it turns away: how evenly the nose sits between the eyes and between
    the mouth corners. ``landmarks`` are MTCNN's five points: left eye, right eye, nose, left and right mouth corner.
    """
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, dtype=np.float64)
    ratios = []
    for left, right in ((left_eye, right_eye), (mouth_left, mouth_right)):
        to_left, to_right = np.linalg.norm(nose - left), np.linalg.norm(nose - right)
        ratios.append(min(to_left, to_right) / max(to_left, to_right, 1e-6))
    return float(np.mean(ratios))


def sharpness(image: np.ndarray, box: tuple[float, float, float, float], side: int = 64) -> float:
    """How sharp a face is, whatever its size and contrast: the spread of the Laplacian of the face box resized
    to ``side`` pixels, over the spread of its grey levels. Photos in focus give about 0.3 or more; blur lowers it
    (a blurred or upscaled tiny face is a weak sample for any face encoder)."""
    h, w = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2, :3]), cv2.COLOR_RGB2GRAY)
    shrink = (x2 - x1) > side
    grey = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    spread = float(grey.std())
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F).std() / spread) if spread > 1.0 else 0.0


class FaceDetector:
    """MTCNN over batches of frames; thresholds, floors and speed settings from ``cfg.faces.detector``."""

    def __init__(self, cfg: Config):
        settings = cfg.faces.detector
        self.min_face_size = float(settings.min_face_size)
        self.min_probability = float(settings.min_probability)
        self.thresholds = [float(t) for t in settings.thresholds]
        self.factor = float(settings.pyramid_factor)
        self.batch_size = max(1, int(settings.batch_size))
        self.image_max_side = int(settings.image_max_side)
        self.full_quality_size = float(settings.full_quality_size)
        limit_threads(cfg)
        self.device = resolve_device(cfg.device)
        load_nets(self.device)                          # load now, not on the first frame

    def detect(self, frames: list[Frame]) -> list[list[FaceDetection]]:
        """Faces in each frame, in the same order. Consecutive frames of one size are run as one batch."""
        return [found for start, end in self._batches(frames) for found in self._detect_batch(frames[start:end])]

    def find_again(self, frames: list[Frame], earlier: list[list[FaceDetection]]) -> list[list[FaceDetection]]:
        """The faces of ``earlier`` (per frame: detections from a frame shortly before it) in each frame, by the R-
        and O-nets alone on their boxes: a face that moved a little is found with its new box and landmarks, one
        that left is not, and a new face is not looked for."""
        return [found for start, end in self._batches(frames)
                for found in self._find_again_batch(frames[start:end], earlier[start:end])]

    def _batches(self, frames: list[Frame]) -> list[tuple[int, int]]:
        """(start, end) of runs of consecutive frames of one size, at most batch_size long."""
        runs, start = [], 0
        while start < len(frames):
            shape = frames[start].image.shape
            end = start + 1
            while end < len(frames) and end - start < self.batch_size and frames[end].image.shape == shape:
                end += 1
            runs.append((start, end))
            start = end
        return runs

    def _find_again_batch(self, frames: list[Frame], earlier: list[list[FaceDetection]]) -> list[list[FaceDetection]]:
        images = np.stack([_as_rgb(f.image) for f in frames])
        boxes = [(d.box[0] / f.scale, d.box[1] / f.scale, d.box[2] / f.scale, d.box[3] / f.scale, d.probability)
                 for f, found in zip(frames, earlier) for d in found]
        image_index = [i for i, found in enumerate(earlier) for _ in found]
        if not boxes:
            return [[] for _ in frames]
        with torch.inference_mode():
            found = refine_candidates(images, to_square(torch.tensor(boxes, dtype=torch.float32)),
                                      torch.tensor(image_index), self.thresholds, self.device)
        return [self._to_detections(frame, boxes, points) for frame, (boxes, points) in zip(frames, found)]

    def detect_image(self, image: np.ndarray) -> list[FaceDetection]:
        """Faces in one RGB photo, in its own pixels; large photos are downscaled for detection only."""
        image = _as_rgb(image)
        scale = max(image.shape[:2]) / self.image_max_side
        if scale > 1:
            size = (round(image.shape[1] / scale), round(image.shape[0] / scale))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            frame = Frame(index=0, time=0.0, image=small, scale=image.shape[1] / size[0])
        else:
            frame = Frame(index=0, time=0.0, image=image, scale=1.0)
        return self.detect([frame])[0]

    def _detect_batch(self, frames: list[Frame]) -> list[list[FaceDetection]]:
        height, width = frames[0].image.shape[:2]
        if min(height, width) < self.min_face_size:      # not even one pyramid level fits
            return [[] for _ in frames]
        images = np.stack([_as_rgb(f.image) for f in frames])
        with torch.inference_mode():
            found = run_mtcnn(images, self.min_face_size, self.thresholds, self.factor, self.device)
        return [self._to_detections(frame, boxes, points) for frame, (boxes, points) in zip(frames, found)]

    def _to_detections(self, frame: Frame, boxes: np.ndarray, points: np.ndarray) -> list[FaceDetection]:
        detections = []
        for box, landmarks in zip(boxes, points):
            x1, y1, x2, y2, probability = (float(v) for v in box)
            side = max(x2 - x1, y2 - y1)             # in detection-frame pixels
            if probability < self.min_probability or side < self.min_face_size:
                continue
            size_score = min(1.0, side / self.full_quality_size)
            quality = probability * size_score * frontalness(landmarks)
            s = frame.scale
            detections.append(FaceDetection(time=frame.time, box=(x1 * s, y1 * s, x2 * s, y2 * s),
                                            probability=probability,
                                            landmarks=(np.asarray(landmarks, dtype=np.float32) * s),
                                            quality=float(quality),
                                            sharpness=sharpness(frame.image, (x1, y1, x2, y2))))
        detections.sort(key=lambda d: d.box[0])     # left to right: a stable order within a frame
        return detections


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 view of a grey, RGB or RGBA image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"face detection needs a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[..., :3]
    raise ValueError(f"face detection needs an (H, W, 3) RGB image, got shape {image.shape}")


class KeyframeDetection:
    """A video's sampled frames through MTCNN in full on every ``every``-th (key) frame; the frames between find
    the faces of the last key frame again (``FaceDetector.find_again``: with ``every`` 2, detection took 2.63 s of
    CPU against 3.28 s for the 60 s benchmark video, so a frame between costs about 60% of a full one). A face that
    comes into view is found at the next key frame, at most ``every - 1`` sampled frames late. ``every`` 1 runs
    MTCNN in full on every frame. One per video: it remembers the last key frame's faces across batches."""

    def __init__(self, detector: FaceDetector, every: int):
        self.detector, self.every = detector, max(1, int(every))
        self._last_key: list[FaceDetection] = []
        self._shape: tuple | None = None

    def detect(self, frames: list[Frame]) -> list[list[FaceDetection]]:
        """Faces in each frame (consecutive sampled frames of one video, ``Frame.index`` counting from 0)."""
        if self.every == 1 or not frames:
            return self.detector.detect(frames)
        # A frame whose size changes (a new stream) is a key frame: earlier boxes mean nothing in it.
        is_key = []
        for frame in frames:
            shape = frame.image.shape
            is_key.append(frame.index % self.every == 0 or shape != self._shape)
            self._shape = shape
        keys = [f for f, key in zip(frames, is_key) if key]
        found_at_keys = iter(self.detector.detect(keys))
        results: list[list[FaceDetection] | None] = []
        earlier, between = [], []
        for frame, key in zip(frames, is_key):
            if key:
                self._last_key = next(found_at_keys)
                results.append(self._last_key)
            else:
                results.append(None)
                between.append(frame)
                earlier.append(self._last_key)
        found_between = iter(self.detector.find_again(between, earlier))
        return [found if found is not None else next(found_between) for found in results]
