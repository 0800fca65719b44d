"""Media input: probe files, stream video frames at a rate, stream audio as 16 kHz mono, load images.

Everything here streams: a frame or an audio chunk is produced, used and dropped, so memory does not grow with
the length of the input. PyAV (FFmpeg) does the decoding; problems surface as MediaError naming the file.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import MediaError
from ..intervals import merge_intervals
from ..types import Frame, MediaInfo

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
SUPPORTED_EXTENSIONS = IMAGE_EXTENSIONS | AUDIO_EXTENSIONS | VIDEO_EXTENSIONS

# FFmpeg's log goes nowhere (PyAV's default); problems are reported through MediaError. Routing it into Python with
# av.logging.set_level(...) can deadlock FFmpeg's decoder threads against the GIL when a decoder is closed early.
av.logging.set_level(None)

# Pillow's own decompression-bomb limit is replaced by media.max_image_pixels, checked on the header before any decode.
Image.MAX_IMAGE_PIXELS = None

# A decoded video may end this much before its declared duration without being called truncated.
TRUNCATION_TOLERANCE_SECONDS = 1.0
# Stretches of a video read on their own (iter_frames ``within``) further apart than this are reached by seeking.
SEEK_GAP_SECONDS = 2.0


def media_kind(path: str | Path) -> str:
    """'image', 'audio' or 'video' from the file extension; MediaError for anything else."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    supported = ", ".join(sorted(e.lstrip(".") for e in SUPPORTED_EXTENSIONS))
    raise MediaError(f"unsupported format '{ext or '(no extension)'}' (supported: {supported})", path)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError("file not found", path)
    if not path.is_file():
        raise MediaError("not a regular file", path)
    if path.stat().st_size == 0:
        raise MediaError("file is empty", path)


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise MediaError("not a readable media file (corrupt, truncated, or not audio/video at all)", path) from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot open media ({exc.__class__.__name__}: {exc})", path) from None


def probe(path: str | Path, max_pixels: int | None = None) -> MediaInfo:
    """Describe a media file without decoding it; MediaError if it is missing, empty, corrupt or unsupported, or an
    image of more than ``max_pixels`` (default media.max_image_pixels)."""
    path = Path(path)
    kind = media_kind(path)
    _check_file(path)
    if kind == "image":
        with _open_image(path, max_pixels) as img:
            width, height = _upright_size(img)
        return MediaInfo(path=str(path), kind="image", width=width, height=height, has_video=True)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        # An audio file may carry a cover picture as a "video" stream; it is not a video.
        if video is not None and (kind == "audio" or video.disposition & av.stream.Disposition.attached_pic):
            video = None
        if audio is not None and audio.codec_context is None:    # a stream FFmpeg has no decoder for
            if kind == "audio" and video is None:
                raise MediaError("unsupported audio encoding (no decoder for it): convert it, for example to "
                                 "16-bit PCM WAV or FLAC", path)
            audio = None
        if audio is not None and not audio.codec_context.sample_rate:    # FFmpeg guessed, and found no sound
            if kind == "audio":
                raise MediaError("not audio: no sound can be decoded from it (a text file renamed?)", path)
            audio = None
        if video is None and audio is None:
            raise MediaError("no audio or video stream", path)
        duration = _duration(container, video, audio)
        info = MediaInfo(path=str(path), kind="video" if video is not None else "audio", duration=duration)
        if video is not None:
            info.has_video = True
            info.width, info.height = video.codec_context.width, video.codec_context.height
            info.fps = float(video.average_rate or video.guessed_rate or 0.0)
            info.video_codec = video.codec_context.name
        if audio is not None:
            info.has_audio = True
            info.audio_codec = audio.codec_context.name
            info.audio_sample_rate = audio.codec_context.sample_rate
            info.audio_channels = audio.codec_context.channels
    return info


def _duration(container, video, audio) -> float:
    """The longest of the streams' ends (streams may start late: times are presentation times from zero)."""
    ends = [0.0]
    if container.duration is not None:
        ends.append(container.duration / av.time_base)
    for stream in (video, audio):
        if stream is not None and stream.duration is not None and stream.time_base is not None:
            ends.append(float((stream.duration + (stream.start_time or 0)) * stream.time_base))
    return max(ends)


def iter_frames(path: str | Path, fps: float, max_side: int | None = None, threads: int = 0, gray: bool = False,
                within: Sequence[tuple[float, float]] | None = None) -> Iterator[Frame]:
    """Yield RGB frames (grey levels with ``gray``) sampled at ``fps`` with their presentation times; with
    ``within``, only the frames inside those (start, end) stretches.

    Every frame is decoded (H.264 needs them), but only the sampled ones are converted to RGB, and they are
    scaled in FFmpeg (cheap) so that their longer side is at most ``max_side``. ``Frame.scale`` maps the
    returned image back to original pixels.
    """
    path = Path(path)
    media_kind(path)
    _check_file(path)
    period = 1.0 / fps
    next_time = None
    index = 0
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError("no video stream", path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        last_time = None
        declared_end = (float((stream.duration + (stream.start_time or 0)) * stream.time_base)
                        if stream.duration is not None and stream.time_base is not None else None)
        try:
            for frame in _decoded(container, stream, within):
                if frame.pts is None or frame.time is None:
                    continue
                t = float(frame.time)
                last_time = t
                if next_time is not None and t + 1e-6 < next_time:
                    continue
                if within is not None and not any(a <= t < b for a, b in within):
                    continue
                scale = 1.0
                width, height = frame.width, frame.height
                if max_side and max(width, height) > max_side:
                    scale = max(width, height) / max_side
                    width, height = round(width / scale) // 2 * 2, round(height / scale) // 2 * 2
                image = frame.to_ndarray(format="gray" if gray else "rgb24", width=width, height=height)
                yield Frame(index=index, time=t, image=image, scale=frame.width / width)
                index += 1
                # Stay on the fps grid from the first frame; after a gap in the video, restart the grid.
                next_time = t + period if next_time is None else max(next_time + period, t + period / 2)
        except av.error.FFmpegError as exc:
            where = f" after {last_time:.2f}s" if last_time is not None else ""
            raise MediaError(f"video is corrupt or truncated{where} ({exc.__class__.__name__})", path) from None
        # A file cut short with its index intact decodes cleanly but ends early.
        if within is None and declared_end and (last_time or 0.0) < declared_end - TRUNCATION_TOLERANCE_SECONDS:
            raise MediaError(f"video is truncated: frames stop at {last_time or 0.0:.2f}s of {declared_end:.2f}s",
                             path)


def _decoded(container, stream, within: Sequence[tuple[float, float]] | None) -> Iterator:
    """The video stream's decoded frames: all of them, or with ``within`` the stretches' frames (and perhaps a few
    around them): it seeks to the key frame before each stretch further than SEEK_GAP_SECONDS on, rather than
    decoding the whole video up to it."""
    if within is None:
        yield from container.decode(stream)
        return
    position = 0.0
    for start, end in merge_intervals(within, gap=SEEK_GAP_SECONDS):
        if start - position > SEEK_GAP_SECONDS:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            yield frame
            if frame.time is not None and frame.time >= end:
                position = float(frame.time)
                break
        else:
            return                          # the end of the video


def iter_audio(path: str | Path, sample_rate: int = 16000, chunk_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono chunks at ``sample_rate`` (the last may be shorter)."""
    path = Path(path)
    media_kind(path)
    _check_file(path)
    chunk = int(round(chunk_seconds * sample_rate))
    pending: list[np.ndarray] = []
    n_pending = 0
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError("no audio stream", path)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for packet_frame in container.decode(stream):
                for out in resampler.resample(packet_frame):
                    samples = out.to_ndarray().reshape(-1)
                    pending.append(samples)
                    n_pending += samples.size
                    while n_pending >= chunk:
                        buffer = np.concatenate(pending)
                        yield buffer[:chunk].astype(np.float32, copy=False)
                        rest = buffer[chunk:]
                        pending, n_pending = [rest], rest.size
            for out in resampler.resample(None):
                samples = out.to_ndarray().reshape(-1)
                pending.append(samples)
                n_pending += samples.size
        except av.error.FFmpegError as exc:
            raise MediaError(f"audio is corrupt or truncated ({exc.__class__.__name__})", path) from None
    if n_pending:
        yield np.concatenate(pending).astype(np.float32, copy=False)


def load_audio(path: str | Path, sample_rate: int = 16000, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """The audio track as float32 mono at ``sample_rate``, from ``start`` to ``end`` seconds (the whole of it by
    default; decoding stops at ``end``). For short clips or stretches; long inputs use iter_audio."""
    first = 0 if start is None else max(0, int(start * sample_rate))
    last = None if end is None else int(np.ceil(end * sample_rate))
    chunks, position = [], 0
    for chunk in iter_audio(path, sample_rate):
        if last is not None and position >= last:
            break
        stop = None if last is None else max(0, last - position)
        chunks.append(chunk[max(0, first - position):stop])
        position += len(chunk)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


@lru_cache(maxsize=1)
def _packaged_max_pixels() -> int:
    from ..config import load_config

    return int(load_config().media.max_image_pixels)


def _open_image(path: Path, max_pixels: int | None) -> Image.Image:
    """The image opened lazily (its header read, nothing decoded); MediaError when it is not an image or has more
    pixels than ``max_pixels`` (a decompression bomb: a small file that decodes to gigabytes)."""
    _check_file(path)
    try:
        img = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"not a readable image ({exc.__class__.__name__})", path) from None
    limit = max_pixels or _packaged_max_pixels()
    if img.width * img.height > limit:
        img.close()
        raise MediaError(f"image is {img.width} x {img.height} pixels, more than media.max_image_pixels ({limit}): "
                         f"refused unread (a decompression bomb?)", path)
    return img


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed: EXIF orientations 5-8 turn the picture a quarter. Only EXIF read with the
    header counts (asked for more, Pillow decodes a whole PNG to look for it at its end)."""
    turned = "exif" in img.info and img.getexif().get(0x0112) in (5, 6, 7, 8)
    return (img.height, img.width) if turned else img.size


def load_image(path: str | Path, max_side: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """An image file as an RGB uint8 array (EXIF orientation applied).

    With ``max_side``, a larger image is reduced by a whole factor while it is decoded, to no less than
    ``max_side`` on its longer side (JPEG decodes at 1/2, 1/4 or 1/8 scale; others are decoded once and reduced),
    so a huge photo never exists several times over at full size. Images of more than ``max_pixels`` (default
    media.max_image_pixels) are refused before decoding.
    """
    path = Path(path)
    with _open_image(path, max_pixels) as img:
        try:
            factor = max(img.size) // max_side if max_side else 1
            if factor > 1:
                img.draft("RGB", (-(-img.width // factor), -(-img.height // factor)))
                factor = max(img.size) // max_side
                if factor > 1:
                    img = img.reduce(factor)       # keeps the EXIF orientation (the image's info) for below
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:
            raise MediaError(f"not a readable image ({exc.__class__.__name__})", path) from None


def content_hash(path: str | Path, block_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in blocks (constant memory): what identifies a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()
