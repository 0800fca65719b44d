"""Faces: MTCNN detection, tracking across frames, face embeddings (dlib or facenet) and mouth openness."""
from .detect import FaceDetector
from .embed import DlibFaceEncoder, FaceEncoder, FacenetFaceEncoder, get_face_encoder
from .landmarks import mouth_openness
from .track import FaceTracker

__all__ = ["FaceDetector", "FaceEncoder", "DlibFaceEncoder", "FacenetFaceEncoder", "get_face_encoder",
           "FaceTracker", "mouth_openness"]
