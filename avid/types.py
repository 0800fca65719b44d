"""The small records that flow between pipeline stages.

Times are seconds from the start of the media; boxes are (x1, y1, x2, y2) in pixels of the original frame.
Embeddings are float32 numpy vectors, L2-normalised by the encoder that made them.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .intervals import merge_intervals

Box = tuple[float, float, float, float]


def box_area(box: Box) -> float:
    """Area of an (x1, y1, x2, y2) box in square pixels; 0 for an empty one."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


@dataclass
class MediaInfo:
    path: str
    kind: str                         # "video" | "audio" | "image"
    duration: float = 0.0             # seconds; 0 for images
    width: int = 0
    height: int = 0
    fps: float = 0.0                  # native video frame rate
    has_video: bool = False
    has_audio: bool = False
    video_codec: Optional[str] = None
    audio_codec: Optional[str] = None
    audio_sample_rate: int = 0
    audio_channels: int = 0


@dataclass
class Frame:
    """One sampled video frame. ``image`` is RGB uint8, possibly downscaled by ``scale`` (original = image * scale)."""

    index: int
    time: float
    image: np.ndarray
    scale: float = 1.0


@dataclass
class FaceDetection:
    time: float
    box: Box
    probability: float
    landmarks: Optional[np.ndarray] = None   # (5, 2) eyes, nose, mouth corners; original-frame pixels
    quality: float = 0.0                      # higher is a better crop for embedding (size, confidence, pose)
    sharpness: Optional[float] = None         # faces.detect.sharpness: low for blurred faces


def median_side(detections: list[FaceDetection]) -> float:
    """Median face box side (pixels) of some detections; 0 for none."""
    return float(np.median([np.sqrt(box_area(d.box)) for d in detections])) if detections else 0.0


def median_sharpness(detections: list[FaceDetection]) -> Optional[float]:
    """Median faces.detect.sharpness of some detections; None when none was measured."""
    values = [d.sharpness for d in detections if d.sharpness is not None]
    return float(np.median(values)) if values else None


@dataclass
class FaceTrack:
    """One face followed across frames: one person on screen for a stretch of time."""

    id: int
    detections: list[FaceDetection] = field(default_factory=list)
    embedding: Optional[np.ndarray] = None
    mouth_openness: list[float] = field(default_factory=list)   # per detection, when landmarks are computed

    @property
    def start(self) -> float:
        return self.detections[0].time if self.detections else 0.0

    @property
    def end(self) -> float:
        return self.detections[-1].time if self.detections else 0.0

    @property
    def sharpness(self) -> Optional[float]:
        """Median sharpness of its detections (faces.detect.sharpness; None when not measured)."""
        return median_sharpness(self.detections)

    @property
    def mean_probability(self) -> float:
        return float(np.mean([d.probability for d in self.detections])) if self.detections else 0.0

    def visible_intervals(self, sample_period: float, max_gap: float) -> list[tuple[float, float]]:
        """When the face is on screen: (start, end) intervals in time order, from the sampled detections.

        Each detection stands for one sample period (a detection at t covers [t, t + sample_period)); two
        consecutive detections are in one interval when the unseen time between them (the next one's time minus
        the end of the earlier one's period) is at most ``max_gap`` seconds. So ``start``..``end`` of a track
        merged from re-appearances can hold several intervals, and a track of one detection gives one interval
        one sample period long.
        """
        tolerance = 1e-6 * max(1.0, sample_period)    # sampled times carry float error (0.2 * 3 != 0.6)
        return merge_intervals(((d.time, d.time + sample_period) for d in self.detections), max_gap + tolerance)


@dataclass
class SpeechRegion:
    """A stretch of audio that voice activity detection marked as speech."""

    start: float
    end: float
    embedding: Optional[np.ndarray] = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class VoiceWindow:
    """One speaker's speech inside one segmentation window, embedded: what diarization clusters and what a
    recording's voices are made of. ``start``/``end`` bound the frames embedded (where the speaker talks alone,
    when it does enough); ``chunk`` and ``local_speaker`` say which window and which of its local speakers."""

    start: float
    end: float
    embedding: np.ndarray
    chunk: int = -1
    local_speaker: int = -1
    clean_seconds: float = 0.0      # seconds the speaker talks alone in the window


@dataclass
class Word:
    """One transcribed word, with the speaker turn it was said in (set by label)."""

    start: float
    end: float
    text: str                        # as the model wrote it, with its leading space when it has one
    probability: float = 0.0
    speaker: Optional[str] = None    # diarization label of the turn it falls in (None: outside every turn)
    name: Optional[str] = None       # that speaker's name


@dataclass
class SpeechTurn:
    """A stretch of speech attributed to one speaker."""

    start: float
    end: float
    speaker: str                     # diarization label, e.g. "spk0"
    overlap: bool = False            # another speaker talks at the same time
    track_id: Optional[int] = None   # the face track that is speaking, if any is visible
    name: Optional[str] = None       # the identified person, or "unknown-N"
    score: Optional[float] = None
    lip_sync: Optional[float] = None  # how much in time with the sound the face's mouth moved (avid.pipeline.active_speaker)


class JsonResult:
    """What the API returns: ``to_dict()`` (JSON-ready data; by default the dataclass's fields) and ``to_json()``."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: Optional[int] = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


@dataclass
class Person(JsonResult):
    id: int
    name: str
    created: str = ""
    n_face: int = 0
    n_voice: int = 0


@dataclass
class Match(JsonResult):
    """One ranked answer to "who is this?"."""

    person_id: Optional[int]
    name: str                        # person name, or "unknown"
    score: float                     # similarity in the matching space (higher is closer)
    modality: str = ""               # "face" | "voice" | "both"
    accepted: bool = True            # score passed the open-set threshold


@dataclass
class EnergyTrack:
    """Speech energy (RMS) of a recording, one value per ``hop`` seconds from time 0."""

    hop: float
    values: np.ndarray

    def __post_init__(self) -> None:
        self._cumulative = np.concatenate([[0.0], np.cumsum(self.values, dtype=np.float64)])

    def around(self, times: np.ndarray, window: float) -> np.ndarray:
        """Mean energy in [t - window/2, t + window/2] for each time t (0 outside the recording)."""
        cumulative = self._cumulative
        lo = np.clip(np.floor((np.asarray(times) - window / 2) / self.hop).astype(int), 0, len(self.values))
        hi = np.clip(np.ceil((np.asarray(times) + window / 2) / self.hop).astype(int), 0, len(self.values))
        counts = np.maximum(hi - lo, 1)
        return np.where(hi > lo, (cumulative[hi] - cumulative[lo]) / counts, 0.0)


@dataclass
class IngestResult(JsonResult):
    """Everything `avid process` extracts from one input."""

    media: MediaInfo
    face_tracks: list[FaceTrack] = field(default_factory=list)
    speech_regions: list[SpeechRegion] = field(default_factory=list)
    voice_windows: list[VoiceWindow] = field(default_factory=list)
    energy: Optional["EnergyTrack"] = None   # audio level over time, for active-speaker cues (kept in memory only)
    segmentation: Optional[object] = None     # avid.voice.speech.LocalSpeakers, for diarization (in memory only)
    words: list[Word] = field(default_factory=list)   # the transcript, when asked for (avid/text/transcribe.py)
    face_backend: str = ""
    face_dim: int = 0
    voice_backend: str = ""
    voice_dim: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The `avid process` JSON document (schema in README.md), without the embeddings (see ``write``)."""
        from .io.results import to_document

        return to_document(self, embeddings_file=None)[0]

    def write(self, out_dir: str | Path, stem: Optional[str] = None) -> Path:
        """``out_dir/<stem>.json`` and ``.npz`` (the embeddings), as `avid process --out` writes them."""
        from .io.results import write_result

        return write_result(self, out_dir, stem)


@dataclass
class SpeakerLabel:
    """One diarized speaker of a labelled recording: who it is, and which face tracks are its face."""

    speaker: str                     # diarization label, e.g. "spk0"
    name: str                        # the identified person, or a stable "unknown-N"
    person_id: Optional[int] = None  # gallery person id when identified or enrolled
    score: Optional[float] = None    # similarity of the best gallery match (None when the gallery is empty)
    modality: str = ""               # what the match used: "face" | "voice" | "both"
    known: bool = False              # the gallery match passed the open-set threshold
    track_ids: list[int] = field(default_factory=list)   # face tracks linked to this speaker, most speech first
    speech_seconds: float = 0.0
    n_turns: int = 0


@dataclass
class LabelResult(JsonResult):
    """A recording labelled with who speaks when, by name, linked to the face that is talking."""

    media: MediaInfo
    turns: list[SpeechTurn] = field(default_factory=list)
    face_tracks: list[FaceTrack] = field(default_factory=list)
    speakers: list[SpeakerLabel] = field(default_factory=list)
    track_names: dict[int, str] = field(default_factory=dict)   # face track id -> the name shown on it
    words: list[Word] = field(default_factory=list)              # the named transcript, when asked for
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, cfg=None) -> dict:
        """The `avid label` JSON (schema ``avid.label``); ``cfg`` gives the face tracks' visible intervals."""
        from .io.writers import to_dict

        return to_dict(self, cfg)

    def to_annotation(self, uri: Optional[str] = None, use_names: bool = True):
        """The speaker turns as a pyannote.core Annotation, labelled by name (``use_names``) or by speaker."""
        from .io.writers import to_annotation

        return to_annotation(self.turns, uri or Path(self.media.path).stem, use_names=use_names)

    def write_rttm(self, path: str | Path) -> Path:
        from .io.writers import write_rttm

        return write_rttm(self, path)

    def write_srt(self, path: str | Path, cfg=None) -> Path:
        from .io.writers import write_srt

        return write_srt(self, path, cfg)

    def write_vtt(self, path: str | Path, cfg=None) -> Path:
        from .io.writers import write_vtt

        return write_vtt(self, path, cfg)

    def write(self, out_dir: str | Path, formats=("json", "rttm", "srt", "vtt"), cfg=None) -> dict[str, Path]:
        """Every format of `avid label --format` (json, rttm, srt, vtt, txt, png, mp4) as ``out_dir/<name>.<ext>``."""
        from .config import load_config
        from .io.writers import write_outputs

        return write_outputs(self, out_dir, formats, cfg or load_config())
