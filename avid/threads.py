"""CPU threads per library, from the config's ``threads`` section: set here, and only here, for the process.

torch and OpenCV each keep one thread count per process. They are set before the first network or image operation
(every model factory calls ``limit_threads``), so that the main thread's MTCNN, the audio thread's voice nets and
OpenCV's resizing do not each start a thread per core on top of the others. OpenBLAS (numpy's, and dlib's where
dlib is built with it) is set the same way for the libraries loaded so far. FFmpeg's, CTranslate2's and FAISS's
counts are given to them where they are created, from the same section.
"""
from __future__ import annotations

import threadpoolctl


def limit_blas(threads: int) -> None:
    """Hold every BLAS loaded so far (numpy's OpenBLAS, dlib's) to ``threads``; 0 leaves them. Their default, a
    thread per core, spins beside avid's other work: the label benchmark took 15.0 / 14.8 s of CPU so, against
    13.1 / 13.3 s with one (docs/speed.md)."""
    if threads > 0:
        threadpoolctl.threadpool_limits(threads, user_api="blas")


def limit_threads(cfg) -> None:
    """Give torch, OpenCV and the BLAS libraries the config's thread counts (0 leaves a library's own default)."""
    import cv2
    import torch

    limit_blas(int(cfg.threads.blas))
    torch_threads, opencv_threads = int(cfg.threads.torch), int(cfg.threads.opencv)
    if torch_threads > 0 and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    if opencv_threads > 0 and cv2.getNumThreads() != opencv_threads:
        cv2.setNumThreads(opencv_threads)
