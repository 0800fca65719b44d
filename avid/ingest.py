"""One input -> face tracks and speech with embeddings: what `avid process` extracts and writes.

A video is decoded in a background thread (FFmpeg releases the GIL) while the main thread runs face detection and
tracking on batches of sampled frames; its audio is then streamed through voice activity detection and the voice
encoder. Nothing holds the whole video or the whole audio track, so memory stays flat with input length.
"""
from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import __version__, media
from .config import Config
from .errors import AvidError, NoContentError
from .private import private_output
from .stages import stage, timed_iter
from .types import FaceDetection, FaceTrack, Frame, IngestResult, MediaInfo

SCHEMA_NAME = "avid.ingest"
SCHEMA_VERSION = 2   # 2: voice windows are local speakers of segmentation windows
EMBEDDING_ARRAYS = ("face_tracks", "speech_regions", "voice_windows")

ProgressCallback = Callable[[float, float], None]   # called with (media seconds done, media seconds in all)


class Models:
    """The encoders one process needs, loaded lazily once and reused across inputs."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._detector = self._face_encoder = self._voice_encoder = self._transcriber = None

    @property
    def detector(self):
        if self._detector is None:
            with stage("load models"):
                from .faces import FaceDetector

                self._detector = FaceDetector(self.cfg)
        return self._detector

    @property
    def face_encoder(self):
        if self._face_encoder is None:
            with stage("load models"):
                from .faces import get_face_encoder

                self._face_encoder = get_face_encoder(self.cfg)
        return self._face_encoder

    @property
    def voice_encoder(self):
        if self._voice_encoder is None:
            with stage("load models"):
                from .voice.embed import get_voice_encoder

                self._voice_encoder = get_voice_encoder(self.cfg)
        return self._voice_encoder

    @property
    def transcriber(self):
        if self._transcriber is None:
            with stage("load models"):
                from .transcribe import Transcriber

                self._transcriber = Transcriber(self.cfg)
        return self._transcriber


def process_file(path: str | Path, cfg: Config, models: Models | None = None,
                 progress: ProgressCallback | None = None, transcribe: bool = False,
                 language: str | None = None) -> IngestResult:
    """Extract face tracks, speech regions and voice windows (with embeddings) from an image, audio file or video;
    with ``transcribe`` also the words said (``language`` forces one; avid/transcribe.py).

    Raises MediaError for unreadable input and NoContentError when the input holds neither a face nor speech.
    """
    models = models or Models(cfg)
    info = media.probe(path, max_pixels=cfg.media.max_image_pixels)
    result = IngestResult(media=info, face_backend=models.face_encoder.name, face_dim=models.face_encoder.dim)
    if info.has_audio:
        result.voice_backend, result.voice_dim = models.voice_encoder.name, models.voice_encoder.dim
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="avid-audio") as pool:
        # The audio runs on the second core while the main thread works through the frames.
        if transcribe and info.has_audio:
            models.transcriber      # loaded here, so that a missing model is said before any work
        speech = pool.submit(_speech, path, cfg, models, transcribe, language) if info.has_audio else None
        if info.kind == "image":
            result.face_tracks = _image_faces(path, info, cfg, models)
        elif info.has_video:
            result.face_tracks = _video_faces(path, info, cfg, models, progress)
        if speech is not None:
            result.speech_regions, analysis, result.energy, transcript = speech.result()
            result.voice_windows, result.segmentation = analysis.windows, analysis.segmentation
            if transcript is not None:
                result.words = transcript.words
                result.warnings += transcript.warnings
    _explain_missing(result)
    return result


def _image_faces(path, info: MediaInfo, cfg: Config, models: Models) -> list[FaceTrack]:
    """Faces of a photo decoded reduced to about what detection works at; boxes in the photo's own pixels."""
    image = media.load_image(path, max_side=cfg.faces.detector.image_max_side, max_pixels=cfg.media.max_image_pixels)
    detections = models.detector.detect_image(image)
    if not detections:
        return []
    embeddings = models.face_encoder.embed(image, detections)
    scale = info.width / image.shape[1]
    if scale != 1:
        detections = [replace(d, box=tuple(v * scale for v in d.box),
                              landmarks=None if d.landmarks is None else d.landmarks * scale) for d in detections]
    return [FaceTrack(id=i, detections=[d], embedding=e) for i, (d, e) in enumerate(zip(detections, embeddings))]


def _video_faces(path, info: MediaInfo, cfg: Config, models: Models,
                 progress: ProgressCallback | None) -> list[FaceTrack]:
    from .faces import FaceTracker

    tracker = FaceTracker(cfg, models.face_encoder)
    batch: list[Frame] = []
    batch_size = cfg.faces.detector.batch_size

    def flush() -> None:
        with stage("detect"):
            found = models.detector.detect(batch)
        for frame, detections in zip(batch, found):
            with stage("track"):
                tracker.update(frame, detections)
        if progress and batch:
            progress(batch[-1].time, info.duration)
        batch.clear()

    frames = timed_iter("decode video", media.iter_frames(path, cfg.media.frame_rate,
                                                         max_side=cfg.media.detect_max_side,
                                                         threads=cfg.media.decode_threads))
    for frame in _prefetch(frames, maxsize=2 * batch_size):
        batch.append(frame)
        if len(batch) == batch_size:
            flush()
    flush()
    return tracker.finish()


def _speech(path, cfg: Config, models: Models, transcribe: bool = False, language: str | None = None):
    """Speech regions, the segmentation with its local-speaker embeddings, the energy track and (with
    ``transcribe``) the transcript of the speech regions: one audio decode."""
    from .transcribe import SpeechTape
    from .voice.speech import analyse_speech
    from .voice.vad import EnergyMeter

    sample_rate = cfg.media.audio_sample_rate
    meter = EnergyMeter(cfg, sample_rate)
    with contextlib.ExitStack() as stack:
        tape = stack.enter_context(SpeechTape(sample_rate)) if transcribe else None
        chunks = timed_iter("decode audio", (meter.feed(tape.feed(chunk) if tape else chunk) for chunk in
                                             media.iter_audio(path, sample_rate, cfg.media.audio_chunk_seconds)))
        regions, analysis = analyse_speech(chunks, cfg, models.voice_encoder, sample_rate=sample_rate)
        transcript = None
        if tape:
            with stage("transcribe"):
                transcript = models.transcriber.transcribe(tape, regions, language)
    return regions, analysis, meter.track(), transcript


def _explain_missing(result: IngestResult) -> None:
    """Say what an input lacks; refuse it only when there is nothing at all to report."""
    info, path = result.media, result.media.path
    if info.kind == "image":
        if not result.face_tracks:
            raise NoContentError("no face found in the image", path)
        return
    if info.kind == "video" and not info.has_audio:
        result.warnings.append("no audio stream: faces only")
    if info.has_audio and not result.speech_regions:
        result.warnings.append("no speech found (silence or non-speech audio)")
    if info.has_video and not result.face_tracks:
        result.warnings.append("no face found")
    if not result.face_tracks and not result.speech_regions:
        what = "no face and no speech found" if info.kind == "video" else "no speech found (silence only?)"
        raise NoContentError(what, path)


def _prefetch(iterator: Iterator, maxsize: int) -> Iterator:
    """Run ``iterator`` in a background thread, a bounded queue ahead of the consumer; re-raise its errors here."""
    items: queue.Queue = queue.Queue(maxsize=maxsize)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put(item)
            items.put(done)
        except BaseException as exc:   # handed to the consumer, which re-raises it
            items.put(exc)

    worker = threading.Thread(target=produce, daemon=True, name="avid-decode")
    worker.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():   # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


# ----------------------------------------------------------------------------------------------- writing results


def output_stem(path: str | Path) -> str:
    """The base name of an input's outputs: its file name without the extension (spaces and accents are kept)."""
    return Path(path).stem or Path(path).name


def write_result(result: IngestResult, out_dir: str | Path, stem: str | None = None) -> Path:
    """Write ``<stem>.json`` (the documented schema) and ``<stem>.npz`` (all embeddings) into ``out_dir``.

    Both are private to the user and written atomically (avid.private): a crash never leaves a half-written result,
    and a link planted in a shared output folder is never followed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or output_stem(result.media.path)
    json_path, npz_path = out_dir / f"{stem}.json", out_dir / f"{stem}.npz"
    document, arrays = to_document(result, npz_path.name)
    # The JSON names the NPZ: it is moved into place last.
    with private_output(json_path) as tmp_json, private_output(npz_path) as tmp_npz:
        with open(tmp_npz, "wb") as fh:
            np.savez(fh, **arrays)
        tmp_json.write_text(json.dumps(document, indent=1, ensure_ascii=False), encoding="utf-8")
    return json_path


def _round(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def _detection_record(det: FaceDetection) -> dict:
    record = {"time": _round(det.time), "box": [_round(v, 1) for v in det.box], "probability": _round(det.probability, 4)}
    if det.landmarks is not None:
        record["landmarks"] = np.round(np.asarray(det.landmarks, dtype=float), 1).tolist()
    return record


def to_document(result: IngestResult, embeddings_file: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON document and the embedding arrays for one result (schema documented in README.md)."""
    def stack(vectors: list, dim: int) -> np.ndarray:
        present = [v for v in vectors if v is not None]
        return np.stack(present).astype(np.float32) if present else np.zeros((0, dim), np.float32)

    def refs(vectors: list, array: str) -> list:
        row, out = 0, []
        for v in vectors:
            out.append(None if v is None else {"array": array, "row": row})
            row += v is not None
        return out

    tracks, regions, windows = result.face_tracks, result.speech_regions, result.voice_windows
    arrays = {
        "face_tracks": stack([t.embedding for t in tracks], result.face_dim),
        "speech_regions": stack([r.embedding for r in regions], result.voice_dim),
        "voice_windows": stack([w.embedding for w in windows], result.voice_dim),
    }
    track_refs = refs([t.embedding for t in tracks], "face_tracks")
    region_refs = refs([r.embedding for r in regions], "speech_regions")
    window_refs = refs([w.embedding for w in windows], "voice_windows")
    document = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "avid_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "media": asdict(result.media),
        "encoders": {"face": {"backend": result.face_backend, "dim": result.face_dim},
                     "voice": {"backend": result.voice_backend, "dim": result.voice_dim}},
        "embeddings_file": embeddings_file,
        "face_tracks": [
            {"id": t.id, "start": _round(t.start), "end": _round(t.end), "num_detections": len(t.detections),
             "mean_probability": _round(t.mean_probability, 4),
             "detections": [_detection_record(d) for d in t.detections],
             **({"mouth_openness": [_round(m, 3) for m in t.mouth_openness]} if t.mouth_openness else {}),
             "embedding": ref}
            for t, ref in zip(tracks, track_refs)],
        "speech_regions": [{"start": _round(r.start), "end": _round(r.end), "embedding": ref}
                           for r, ref in zip(regions, region_refs)],
        "voice_windows": [{"start": _round(w.start), "end": _round(w.end), "window": w.chunk,
                           "local_speaker": w.local_speaker, "alone_seconds": _round(w.clean_seconds),
                           "embedding": ref}
                          for w, ref in zip(windows, window_refs)],
        "warnings": list(result.warnings),
    }
    return document, arrays


def read_result(json_path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read back a document written by write_result, with its embedding arrays (no pickle is ever loaded)."""
    json_path = Path(json_path)
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AvidError(f"cannot read result ({exc.__class__.__name__})", json_path) from None
    if document.get("schema") != SCHEMA_NAME:
        raise AvidError("not an avid process result", json_path)
    if document.get("schema_version", 0) > SCHEMA_VERSION:
        raise AvidError(f"result schema version {document['schema_version']} is newer than this avid "
                        f"understands ({SCHEMA_VERSION}); upgrade avid", json_path)
    with np.load(json_path.parent / document["embeddings_file"], allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return document, arrays
