"""dlib face descriptors computed in a second process, beside the detection.

dlib holds the GIL for the whole of each descriptor (about 70 ms of CPU), so a thread cannot run it beside the
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

from ..children import end_with_parent, interrupts_held
from ..threads import limit_blas

_model = None
_jitter = 0
_agreement = 2.0


def embed_best_first(embed, chips: list[np.ndarray], agreement: float) -> np.ndarray:
    """Unit embeddings of a track's chips, best first: the two best, and the rest only when those two are less
    alike than ``agreement`` (cosine). Two chips of a steady face that agree average to within cosine 0.007 of all
    of them (scripts/calibrate_chip_agreement.py); the rest would cost about 70 ms of dlib apiece for that.
    ``embed`` maps chips to unit rows."""
    first = embed(chips[:2])
    if len(chips) <= 2 or (len(first) == 2 and float(first[0] @ first[1]) >= agreement):
        return first
    return np.concatenate([first, embed(chips[2:])])


def _start(model_path: str, jitter: int, agreement: float, blas_threads: int, parent: int) -> None:
    """Runs once in the child: its own copy of the network. Ctrl-C is the parent's to handle, and the child ends
    with the parent, however the parent ends."""
    global _model, _jitter, _agreement
    import dlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})      # held while it started
    end_with_parent(parent)
    limit_blas(blas_threads)         # numpy's and dlib's (a dlib built with BLAS: scripts/setup.sh)
    _model, _jitter, _agreement = dlib.face_recognition_model_v1(model_path), jitter, agreement


def _describe(chips: list[np.ndarray]) -> np.ndarray:
    if not chips:
        return np.zeros((0, 128), np.float32)
    return embed_best_first(_unit_descriptors, chips, _agreement)


def _unit_descriptors(chips: list[np.ndarray]) -> np.ndarray:
    descriptors = np.array(_model.compute_face_descriptor(chips, _jitter), dtype=np.float32)
    return descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)


class BackgroundDescriptors:
    """``submit(chips)`` (best first) -> a Future of their unit descriptors (n, 128), as ``embed_best_first`` over
    DlibFaceEncoder.embed_chips gives."""

    def __init__(self, model_path: str, jitter: int, agreement: float, blas_threads: int):
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start,
                                         initargs=(model_path, jitter, agreement, blas_threads, os.getpid()))
        with interrupts_held():                   # start the child now, beside the parent's own loading
            self._pool.submit(_describe, [])

    def submit(self, chips: list[np.ndarray]) -> Future:
        return self._pool.submit(_describe, [np.ascontiguousarray(c) for c in chips])
