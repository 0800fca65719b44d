"""The encoders and detectors of one pipeline, each loaded on first use and then kept."""
from __future__ import annotations

from ..config import Config
from ..stages import stage


class Models:
    """The encoders one process needs, loaded lazily once and reused across inputs. With ``background`` (and
    ``faces.encoder.background_process``), a video's dlib descriptors are computed in a second process
    (avid.faces.descriptors); pool workers, already one per core, compute them in their own."""

    def __init__(self, cfg: Config, background: bool = True):
        self.cfg = cfg
        self._detector = self._face_encoder = self._voice_encoder = self._transcriber = None
        self._background = None
        self._wants_background = (background and bool(cfg.faces.encoder.background_process)
                                  and cfg.faces.encoder.backend == "dlib")

    @property
    def face_background(self):
        """dlib's descriptors in a second process (avid.faces.descriptors), started on first use; None when off."""
        if self._background is None and self._wants_background:
            from ..faces.descriptors import BackgroundDescriptors
            from ..faces.dlib_files import DLIB_DESCRIPTOR_FILE, dlib_model_path

            self._background = BackgroundDescriptors(str(dlib_model_path(DLIB_DESCRIPTOR_FILE)),
                                                     int(self.cfg.faces.encoder.dlib_jitter),
                                                     float(self.cfg.faces.tracker.chip_agreement),
                                                     int(self.cfg.threads.blas))
        return self._background

    @property
    def detector(self):
        if self._detector is None:
            with stage("load models"):
                from ..faces import FaceDetector

                self._detector = FaceDetector(self.cfg)
        return self._detector

    @property
    def face_encoder(self):
        if self._face_encoder is None:
            with stage("load models"):
                from ..faces import get_face_encoder

                self._face_encoder = get_face_encoder(self.cfg)
        return self._face_encoder

    @property
    def voice_encoder(self):
        if self._voice_encoder is None:
            with stage("load models"):
                from ..voice.embed import get_voice_encoder

                self._voice_encoder = get_voice_encoder(self.cfg)
        return self._voice_encoder

    @property
    def transcriber(self):
        if self._transcriber is None:
            with stage("load models"):
                from ..text.transcribe import Transcriber

                self._transcriber = Transcriber(self.cfg)
        return self._transcriber

