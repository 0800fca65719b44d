"""Faces: MTCNN detection, tracking across frames, face embeddings (dlib or facenet) and mouth openness.

Names are imported on first use (PEP 562): the face-descriptor process imports ``avid.faces.descriptors`` alone,
and must not pay for torch and scipy, which the detector and the tracker bring.
"""

# name -> the module that defines it
_EXPORTS = {
    "FaceDetector": "detect", "FaceTracker": "track", "mouth_openness": "landmarks",
    "FaceEncoder": "embed", "DlibFaceEncoder": "embed", "FacenetFaceEncoder": "embed", "get_face_encoder": "embed",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'avid.faces' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
