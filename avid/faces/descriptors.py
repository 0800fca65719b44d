"""dlib face descriptors computed in a second process, beside the detection.

dlib holds the GIL for the whole of each descriptor (about 65 ms of CPU), so a thread cannot run it beside the
MTCNN detection of the next frames; a process can. This module is all the child imports (numpy and dlib, not
torch nor the rest of avid), so it starts in a fraction of a second, and it starts while the parent loads its own
models. Only the dlib backend runs here: FaceNet runs in torch and SFace in OpenCV's DNN module, which both
release the GIL inside their kernels.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

_model = None
_jitter = 0


def _start(model_path: str, jitter: int, parent: int) -> None:
    """Runs once in the child: its own copy of the network. Ctrl-C is the parent's to handle, and the child ends
    with the parent, however the parent ends."""
    global _model, _jitter
    import dlib

    from ..children import end_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end_with_parent(parent)
    _model, _jitter = dlib.face_recognition_model_v1(model_path), jitter


def _describe(chips: list[np.ndarray]) -> np.ndarray:
    if not chips:
        return np.zeros((0, 128), np.float32)
    descriptors = np.array(_model.compute_face_descriptor(chips, _jitter), dtype=np.float32)
    return descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)


class BackgroundDescriptors:
    """``submit(chips)`` -> a Future of their (n, 128) unit descriptors, as DlibFaceEncoder.embed_chips gives."""

    def __init__(self, model_path: str, jitter: int):
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start, initargs=(model_path, jitter, os.getpid()))
        self._pool.submit(_describe, [])          # start the child now, beside the parent's own loading

    def submit(self, chips: list[np.ndarray]) -> Future:
        return self._pool.submit(_describe, [np.ascontiguousarray(c) for c in chips])
