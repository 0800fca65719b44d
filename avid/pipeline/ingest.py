"""One input -> face tracks and speech with embeddings: what `avid process` extracts and writes.

A video is decoded in a background thread (FFmpeg releases the GIL) while the main thread runs face detection and
tracking on batches of sampled frames; its audio is then streamed through voice activity detection and the voice
encoder. Nothing holds the whole video or the whole audio track, so memory stays flat with input length.
"""
from __future__ import annotations

import contextlib
import importlib
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from ..config import Config
from ..errors import NoContentError
from ..io import media
from ..stages import stage, timed_iter
from ..types import FaceTrack, Frame, IngestResult, MediaInfo
from .models import Models

ProgressCallback = Callable[[float, float], None]   # called with (media seconds done, media seconds in all)


def process_file(path: str | Path, cfg: Config, models: Models | None = None,
                 progress: ProgressCallback | None = None, transcribe: bool = False,
                 language: str | None = None) -> IngestResult:
    """Extract face tracks, speech regions and voice windows (with embeddings) from an image, audio file or video;
    with ``transcribe`` also the words said (``language`` forces one; avid/text/transcribe.py).

    Raises MediaError for unreadable input and NoContentError when the input holds neither a face nor speech.
    """
    models = models or Models(cfg)
    info = media.probe(path, max_pixels=cfg.media.max_image_pixels)
    if transcribe and info.has_audio:
        models.transcriber          # loaded first, so that a missing model is said before any work
    if info.has_video:
        # Started first, so that their loading overlaps the main thread's imports: dlib's descriptor process and
        # its 68-point landmark model (which dlib reads without the GIL).
        models.face_background
        if cfg.faces.landmarks.mouth:
            from ..faces.dlib_files import MOUTH_PREDICTOR_FILE, preload_shape_predictor

            preload_shape_predictor(MOUTH_PREDICTOR_FILE)
    result = IngestResult(media=info, face_backend=models.face_encoder.name, face_dim=models.face_encoder.dim)
    if info.has_audio:
        # The audio thread's modules are imported here, before it starts: two threads importing one package at
        # once (scipy: the face tracker's and the diarizer's) can leave one of them a half-made module.
        for module in ("campplus", "embed", "segmentation_net", "speech", "vad"):
            importlib.import_module(f"..voice.{module}", __package__)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="avid-audio") as pool:
        # The audio runs on the second core, loading its own models, while the main thread loads the detector
        # and works through the frames.
        speech = pool.submit(_speech, path, cfg, models, transcribe, language) if info.has_audio else None
        if info.kind == "image":
            result.face_tracks = _image_faces(path, info, cfg, models)
        elif info.has_video:
            result.face_tracks = _video_faces(path, info, cfg, models, progress, speech)
        if speech is not None:
            result.speech_regions, analysis, result.energy, transcript = speech.result()
            result.voice_backend, result.voice_dim = models.voice_encoder.name, models.voice_encoder.dim
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


def _video_faces(path, info: MediaInfo, cfg: Config, models: Models, progress: ProgressCallback | None,
                 speech: Future | None = None) -> list[FaceTrack]:
    """The face tracks of a video; stops early with the audio's error (a missing voice model, corrupt audio)."""
    from ..faces import FaceTracker
    from ..faces.detect import KeyframeDetection

    tracker = FaceTracker(cfg, models.face_encoder, models.face_background)
    detector = KeyframeDetection(models.detector, cfg.faces.detector.key_frame_every)
    batch: list[Frame] = []
    batch_size = cfg.faces.detector.batch_size

    def flush() -> None:
        with stage("detect"):
            found = detector.detect(batch)
        for frame, detections in zip(batch, found):
            with stage("track"):
                tracker.update(frame, detections)
        if progress and batch:
            progress(batch[-1].time, info.duration)
        batch.clear()
        if speech is not None and speech.done() and speech.exception() is not None:
            raise speech.exception()

    frames = timed_iter("decode video", media.iter_frames(path, cfg.media.frame_rate,
                                                         max_side=cfg.media.detect_max_side,
                                                         threads=cfg.threads.decode))
    for frame in _prefetch(frames, maxsize=2 * batch_size):
        batch.append(frame)
        if len(batch) == batch_size:
            flush()
    flush()
    return tracker.finish()


def _speech(path, cfg: Config, models: Models, transcribe: bool = False, language: str | None = None):
    """Speech regions, the segmentation with its local-speaker embeddings, the energy track and (with
    ``transcribe``) the transcript of the speech regions: one audio decode."""
    from ..text.transcribe import SpeechTape
    from ..voice.speech import analyse_speech
    from ..voice.vad import EnergyMeter

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
