"""dlib's model files from the face-recognition-models wheel, found without importing it (it needs
pkg_resources), and its shape predictors loaded once per process. Light: no torch, no OpenCV."""
from __future__ import annotations

import importlib.util
import threading
from concurrent.futures import Future
from pathlib import Path

from ..errors import ModelError

DLIB_DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"   # face-recognition-models' ResNet


def dlib_model_path(file_name: str) -> Path:
    """A model file shipped by face-recognition-models (found without importing it: it needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / file_name
    if not path.exists():
        raise ModelError("model file missing from face-recognition-models (reinstall it)", path)
    return path


MOUTH_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"      # 68 points, mouth openness (100 MB)
_predictors: dict[str, Future] = {}
_predictors_lock = threading.Lock()


def dlib_shape_predictor(file_name: str):
    """A dlib shape predictor from face-recognition-models, loaded once per process."""
    loading = _predictors.get(file_name)         # called per detection: no lock once it is there
    return (loading or preload_shape_predictor(file_name)).result()


def preload_shape_predictor(file_name: str) -> Future:
    """Start loading a shape predictor in a thread, once per process: dlib reads it without the GIL, so the 68-point
    model's ~0.4 s passes while the main thread imports torch and loads the detector."""
    import dlib        # here, not in the thread: imports are best made by one thread at a time

    with _predictors_lock:
        if file_name not in _predictors:
            _predictors[file_name] = future = Future()

            def load() -> None:
                try:
                    future.set_result(dlib.shape_predictor(str(dlib_model_path(file_name))))
                except BaseException as exc:     # given to whoever asks for the predictor
                    future.set_exception(exc)

            threading.Thread(target=load, name="avid-load-landmarks", daemon=True).start()
        return _predictors[file_name]
