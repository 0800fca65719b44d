"""Synthetic test and demo media, made offline from what avid's dependencies ship (not part of the avid package).

Speech comes from eSpeak NG (the ``espeakng-loader`` wheel, driven through ctypes), faces from scikit-image's
astronaut photo and matplotlib's Grace Hopper photo. ``write_talking_video`` turns "who says what, when" into an
H.264 + AAC MP4, written frame by frame so that memory stays flat however long the video is. The person who is
speaking is on screen with their mouth opened in step with the speech energy (a real cue for mouth-motion based
active-speaker detection), and the picture pans and zooms slowly so that it is not a still image.

There are also helpers that write the bad inputs a robust pipeline must reject cleanly (empty, renamed text,
truncated, corrupt) and the awkward ones it must accept (silence only, no face, a non-ASCII file name).
Used by the tests and, from the source tree, by ``scripts/make_sample.py`` (the demo) and the benchmarks and
evaluations in scripts/ (they put the repository on sys.path and import ``tests.media``); ``espeakng-loader`` and
``scikit-image`` come with the ``dev`` extra.
"""
from __future__ import annotations

import ctypes
import math
import struct
import threading
import wave
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np
from PIL import Image

SAMPLE_RATE = 16000

# eSpeak voices that Resemblyzer tells apart clearly: a male and a female variant of the default synthesiser,
# and eSpeak's Klatt synthesiser, which sounds least like either (see tests/test_synthetic.py for the margins).
MALE_VOICE = "en-us+m3"
FEMALE_VOICE = "en+f3"
KLATT_VOICE = "en-us+klatt"

# A file name that trips up code which assumes ASCII without spaces.
AWKWARD_NAME = "clip de démo ñ.mp4"

_AAC_FRAME_SIZE = 1024          # samples per AAC frame
_MOUTH_INTERIOR = np.array([70, 30, 35], dtype=np.float32)   # dark red: what an opened mouth shows


# ----------------------------------------------------------------------------------------------------- speech

class _ESpeak:
    """The eSpeak NG shared library in synchronous mode; samples arrive through a callback into ``chunks``."""

    # Constants from espeak-ng's speak_lib.h.
    AUDIO_OUTPUT_SYNCHRONOUS = 2
    INITIALIZE_DONT_EXIT = 0x8000
    POS_CHARACTER = 1
    CHARS_UTF8 = 1
    ENDPAUSE = 0x1000
    PARAM_RATE, PARAM_PITCH = 1, 3
    CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise RuntimeError("speech synthesis needs the espeakng-loader package (pip install -e '.[dev]')") from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, self.INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data_path.decode()}")
        self.chunks: list[np.ndarray] = []
        self._callback = self.CALLBACK(self._collect)   # kept on self: ctypes must not free it
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]

    def _collect(self, wav, n_samples: int, _events) -> int:
        if wav and n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0    # 0 = carry on synthesising

    def synth(self, text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"unknown eSpeak voice {voice!r} (try 'en-us', '{MALE_VOICE}', '{FEMALE_VOICE}')")
        self.lib.espeak_SetParameter(self.PARAM_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(self.PARAM_PITCH, int(pitch), 0)
        encoded = text.encode("utf-8") + b"\0"
        self.chunks = []
        self.lib.espeak_ng_SetRandSeed(1)    # breathy voices (f3) add noise: make it repeatable
        status = self.lib.espeak_Synth(encoded, len(encoded), 0, self.POS_CHARACTER, 0,
                                       self.CHARS_UTF8 | self.ENDPAUSE, None, None)
        if status != 0:
            raise RuntimeError(f"eSpeak NG synthesis failed (status {status})")
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        self.chunks = []
        return samples.astype(np.float32) / 32768.0


_espeak: _ESpeak | None = None
_espeak_lock = threading.Lock()    # eSpeak keeps global state: one synthesis at a time


def speak(text: str, voice: str = "en-us", rate_wpm: int = 160, pitch: int = 50,
          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Synthesise ``text`` with eSpeak NG as float32 mono audio at ``sample_rate``.

    ``voice`` is an eSpeak voice name, optionally with a variant ("en-us+m3", "en+f3"); ``pitch`` is 0-100.
    Thread-safe (one synthesis at a time). Repeatable: a process that makes the same calls in the same order
    gets the same samples (eSpeak carries a little state from one utterance to the next).
    """
    global _espeak
    with _espeak_lock:
        if _espeak is None:
            _espeak = _ESpeak()
        audio = _espeak.synth(text, voice, rate_wpm, pitch)
        native_rate = _espeak.sample_rate
    return resample(audio, native_rate, sample_rate)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float audio with FFmpeg's resampler (PyAV)."""
    if from_rate == to_rate or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    frame = av.AudioFrame.from_ndarray(audio.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


def silence(seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)


# ------------------------------------------------------------------------------------------------------ faces

@dataclass(frozen=True)
class Portrait:
    """A photo of one person, and where the mouth is so that it can be animated.

    ``mouth`` is (left x, lip-line y, right x, chin y) in photo pixels; None leaves the mouth still.
    ``voice`` is the eSpeak voice the demo media give this person.
    """

    image: np.ndarray
    mouth: tuple[int, int, int, int] | None = None
    name: str = ""
    voice: str = "en-us"


def astronaut_face() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins), 512x512 RGB."""
    try:
        from skimage import data
    except ImportError:
        raise RuntimeError("the astronaut photo needs scikit-image (pip install -e '.[dev]')") from None
    return np.ascontiguousarray(data.astronaut())


def grace_hopper_face() -> np.ndarray:
    """matplotlib's sample photo of Grace Hopper, 512x600 RGB."""
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return np.asarray(img.convert("RGB"))


# Mouth positions measured once with dlib's 68-point landmarks (outer lip corners, inner lip line, chin point).
def astronaut() -> Portrait:
    return Portrait(astronaut_face(), mouth=(201, 146, 246, 178), name="astronaut", voice=FEMALE_VOICE)


def grace_hopper() -> Portrait:
    return Portrait(grace_hopper_face(), mouth=(233, 279, 300, 333), name="grace_hopper", voice=KLATT_VOICE)


class _MouthAnimator:
    """Opens a portrait's mouth by a fraction 0..1: the lower lip and jaw move down, the gap shows dark.

    Works on a small region around the mouth with a smooth displacement field, so there are no seams.
    """

    def __init__(self, portrait: Portrait):
        self.original = portrait.image
        self.image = portrait.image.copy()
        x1, lip, x2, chin = portrait.mouth
        jaw = chin - lip
        self.max_open = 0.4 * jaw      # pixels at full opening
        h, w = self.image.shape[:2]
        self.x0, self.x1 = max(0, x1 - 4), min(w, x2 + 5)
        self.y0, self.y1 = max(0, lip - 2), min(h, chin + jaw)   # the neck below the chin absorbs the movement
        ys, xs = np.mgrid[self.y0:self.y1, self.x0:self.x1].astype(np.float32)
        # Across the mouth: most open in the middle, closed at the corners (a lens-shaped opening).
        across = np.clip((xs - x1) / max(1, x2 - x1), 0, 1)
        profile_x = np.sin(np.pi * across) ** 2
        # Down the face: everything from the lip line to the chin moves fully, then tapers to nothing.
        profile_y = np.where(ys < lip, 0.0, np.clip((chin + jaw - ys) / jaw, 0, 1))
        self.profile = (profile_x * profile_y).astype(np.float32)
        self.lip = float(lip)
        self.grid_x = xs - self.x0
        self.grid_y = ys - self.y0
        self.last_opening = None

    def render(self, opening: float) -> np.ndarray:
        opening = round(float(np.clip(opening, 0, 1)), 2)
        if opening == self.last_opening:
            return self.image
        self.last_opening = opening
        region = self.original[self.y0:self.y1, self.x0:self.x1]
        shift = opening * self.max_open * self.profile
        warped = cv2.remap(region, self.grid_x, self.grid_y - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # Pixels below the lip line that sample from above it are inside the open mouth.
        source_y = self.grid_y + self.y0 - shift
        ys = self.grid_y + self.y0
        inside = np.clip((self.lip - source_y) / 1.5, 0, 1) * (ys >= self.lip) * (shift > 0.5)
        inside = inside[..., None]
        blended = warped.astype(np.float32) * (1 - inside) + _MOUTH_INTERIOR * inside
        self.image[self.y0:self.y1, self.x0:self.x1] = blended.astype(np.uint8)
        return self.image


# ------------------------------------------------------------------------------------------------------ video

@dataclass
class Segment:
    """One stretch of speech: ``audio`` (float32 mono at the video's sample rate) said by ``speaker``.

    ``speaker`` indexes the ``people`` of ``write_talking_video``; None is an off-screen voice. ``start`` in
    seconds; None starts it a short gap after the previous segment ends. A segment that is not ``heard`` only
    moves the speaker's mouth (someone mouthing words, or talking with the sound switched to someone else): it is
    not in the soundtrack.
    """

    audio: np.ndarray
    speaker: int | None = 0
    start: float | None = None
    heard: bool = True


@dataclass
class BackgroundFace:
    """A still photo pasted small into the picture from ``start`` to ``end`` seconds (someone in the background,
    a photo on the wall): centred at (``x``, ``y``) and ``height`` tall, all as fractions of the frame."""

    image: np.ndarray
    start: float = 0.0
    end: float = float("inf")
    x: float = 0.12
    y: float = 0.22
    height: float = 0.3


def _background(width: int, height: int) -> np.ndarray:
    """A soft blue-grey studio gradient."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (0.7 * ys / height + 0.3 * xs / width)[..., None]
    top, bottom = np.array([70, 90, 120], np.float32), np.array([25, 30, 45], np.float32)
    return (top * (1 - t) + bottom * t).astype(np.uint8)


def _speech_envelope(audio: np.ndarray, sample_rate: int, fps: float) -> np.ndarray:
    """Per video frame, how open the mouth is: frame RMS over the segment's loud level, 0..1."""
    hop = sample_rate / fps
    n_frames = max(1, int(math.ceil(audio.size / hop)))
    rms = np.array([np.sqrt(np.mean(audio[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n_frames)])
    loud = np.percentile(rms, 90)
    if loud < 1e-4:                       # silence: the mouth stays closed
        return np.zeros(n_frames, np.float32)
    envelope = np.clip(rms / loud, 0, 1)
    return np.where(envelope < 0.15, 0.0, envelope).astype(np.float32)


def _paste(canvas: np.ndarray, image: np.ndarray, center_x: float, center_y: float, height: float) -> None:
    """Scale ``image`` to ``height`` pixels and paste it centred at (center_x, center_y), clipped to the canvas."""
    h, w = image.shape[:2]
    new_h = max(2, int(round(height)))
    new_w = max(2, int(round(w * new_h / h)))
    scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR)
    left, top = int(round(center_x - new_w / 2)), int(round(center_y - new_h / 2))
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, left), max(0, top), min(W, left + new_w), min(H, top + new_h)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = scaled[cy0 - top:cy1 - top, cx0 - left:cx1 - left]


def write_talking_video(path: str | Path, segments: Sequence[Segment], people: Sequence[Portrait | np.ndarray],
                        size: tuple[int, int] = (1280, 720), fps: int = 25, *, both_on_screen: bool = False,
                        with_audio: bool = True, duration: float | None = None, sample_rate: int = SAMPLE_RATE,
                        audio_rate: int = 44100, lead_seconds: float = 0.5, gap_seconds: float = 0.4,
                        preset: str = "veryfast", crf: int = 23, threads: int = 0, faststart: bool = False,
                        background_faces: Sequence[BackgroundFace] = ()) -> float:
    """Write an H.264 (+ AAC) MP4 of people taking turns to speak; returns its duration in seconds.

    By default only the person who is speaking (or spoke last) is on screen, like an edited interview;
    ``both_on_screen`` shows everyone side by side all the time, so that only mouth motion tells who speaks.
    ``people`` may be Portraits (mouth animated) or plain RGB photos (mouth still); an empty list gives a video
    with no face. ``with_audio=False`` writes no audio stream. ``duration`` pads with silence or cuts the end.
    Frames are rendered and encoded one at a time, so memory does not grow with the duration.
    ``threads=1`` makes the file byte-identical from run to run (x264's threads make it vary slightly); 0 = auto.
    ``faststart`` puts the index at the front, as web videos do (a truncated copy then still opens).
    ``background_faces`` are still faces pasted into the picture besides the people.
    """
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"H.264 needs an even frame size, got {width}x{height}")
    people = [p if isinstance(p, Portrait) else Portrait(np.asarray(p)) for p in people]
    timeline = _place_segments(segments, sample_rate, lead_seconds, gap_seconds)
    for _, segment, _ in timeline:
        if segment.speaker is not None and not 0 <= segment.speaker < len(people):
            raise ValueError(f"segment speaker {segment.speaker} is not one of the {len(people)} people")
    end = max((start + seg.audio.size / sample_rate for start, seg, _ in timeline), default=0.0)
    total = duration if duration is not None else end + lead_seconds
    n_frames = max(1, int(round(total * fps)))
    total = n_frames / fps
    envelopes = [_speech_envelope(seg.audio, sample_rate, fps) for _, seg, _ in timeline]
    animators = [_MouthAnimator(p) if p.mouth is not None else None for p in people]
    background = _background(width, height)

    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else None) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": preset, "crf": str(crf), "threads": str(threads)}
        audio = resampler = None
        if with_audio:
            audio = container.add_stream("aac", rate=audio_rate, layout="mono")
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=audio_rate, frame_size=_AAC_FRAME_SIZE)
        samples_done = 0
        on_screen = next((seg.speaker for _, seg, _ in timeline), 0 if people else None)
        for index in range(n_frames):
            t = index / fps
            openings = [0.0] * len(people)
            for (start, segment, _), envelope in zip(timeline, envelopes):
                k = int((t - start) * fps)
                if 0 <= k < envelope.size and segment.speaker is not None:
                    openings[segment.speaker] = max(openings[segment.speaker], float(envelope[k]))
                    if segment.heard:
                        on_screen = segment.speaker
            canvas = background.copy()
            shown = range(len(people)) if both_on_screen else ([] if on_screen is None else [on_screen])
            _draw_people(canvas, people, animators, openings, list(shown), t)
            for extra in background_faces:
                if extra.start <= t < extra.end:
                    _paste(canvas, extra.image, extra.x * width, extra.y * height, extra.height * height)
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
            if audio is not None:
                upto = int(round((index + 1) / fps * sample_rate))
                chunk = _mix(timeline, samples_done, upto, sample_rate)
                container.mux(_encode_audio(audio, resampler, chunk, samples_done, sample_rate))
                samples_done = upto
        container.mux(video.encode(None))
        if audio is not None:
            container.mux(_encode_audio(audio, resampler, None, samples_done, sample_rate))
    return total


def _place_segments(segments: Sequence[Segment], sample_rate: int, lead: float, gap: float):
    """(start seconds, segment, start sample) for each segment, in the order given."""
    placed, cursor = [], lead
    for segment in segments:
        start = cursor if segment.start is None else float(segment.start)
        placed.append((start, segment, int(round(start * sample_rate))))
        cursor = start + segment.audio.size / sample_rate + gap
    return placed


def _mix(timeline, begin: int, end: int, sample_rate: int) -> np.ndarray:
    """The soundtrack's samples [begin, end): the sum of every segment that overlaps them."""
    out = np.zeros(end - begin, dtype=np.float32)
    for _, segment, first in timeline:
        if not segment.heard:
            continue
        lo, hi = max(begin, first), min(end, first + segment.audio.size)
        if lo < hi:
            out[lo - begin:hi - begin] += segment.audio[lo - first:hi - first]
    return np.clip(out, -1.0, 1.0)


def _encode_audio(stream, resampler, chunk: np.ndarray | None, offset: int, sample_rate: int) -> list:
    if chunk is None:                       # flush the resampler, then the encoder
        frames = resampler.resample(None)
    else:
        if chunk.size == 0:
            return []
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        frames = resampler.resample(frame)
    packets = [p for f in frames for p in stream.encode(f)]
    if chunk is None:
        packets += stream.encode(None)
    return packets


def _draw_people(canvas: np.ndarray, people: list[Portrait], animators: list, openings: list[float],
                 shown: list[int], t: float) -> None:
    """Paste the visible people on the canvas with a slow, gentle pan and zoom (different per person)."""
    H, W = canvas.shape[:2]
    slot_width = W / max(1, len(shown))
    for slot, who in enumerate(shown):
        animator = animators[who]
        image = animator.render(openings[who]) if animator is not None else people[who].image
        h, w = image.shape[:2]
        fit = min(0.88 * H, 0.92 * slot_width * h / w)        # photo height that fits the slot
        phase = 1.7 * who
        zoom = 1.0 + 0.05 * math.sin(2 * math.pi * t / 9.0 + phase)
        pan_x = 0.02 * slot_width * math.sin(2 * math.pi * t / 13.0 + phase)
        pan_y = 0.015 * H * math.sin(2 * math.pi * t / 11.0 + phase)
        _paste(canvas, image, (slot + 0.5) * slot_width + pan_x, H / 2 + pan_y, fit * zoom)


# --------------------------------------------------------------------------------------------- files of a kind

def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM mono WAV."""
    path = Path(path)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return path


_AUDIO_CODECS = {".wav": ("pcm_s16le", "s16"), ".flac": ("flac", "s16"), ".mp3": ("libmp3lame", "fltp"),
                 ".m4a": ("aac", "fltp")}


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, file_rate: int | None = None,
                channels: int = 1) -> Path:
    """Write mono float audio as .wav, .flac, .mp3 or .m4a with PyAV (chosen by the extension).

    ``file_rate`` resamples on the way (e.g. 44100 to look like a typical file); ``channels=2`` duplicates the
    signal into stereo.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _AUDIO_CODECS:
        raise ValueError(f"no audio codec for {ext!r} (have {', '.join(_AUDIO_CODECS)})")
    codec, sample_format = _AUDIO_CODECS[ext]
    file_rate = file_rate or sample_rate
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=file_rate, layout=layout)
        frame_size = _AAC_FRAME_SIZE if codec == "aac" else 1152 if codec == "libmp3lame" else None
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=file_rate, frame_size=frame_size)
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1).astype(np.float32).reshape(1, -1), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        for out in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))
    return path


def write_image(path: str | Path, image: np.ndarray, quality: int = 92) -> Path:
    """Save an RGB array as .jpg, .png or .webp (by the extension)."""
    path = Path(path)
    Image.fromarray(image).save(path, quality=quality)
    return path


def write_large_png(path: str | Path, width: int, height: int, rows: int | None = None) -> Path:
    """A grey RGB PNG of any size, written row by row (never held whole): mostly constant, so small on disk. With
    ``rows`` only that many rows of data follow the header (the header is what a decompression-bomb check reads)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes([128, 128, 128]) * width       # filter byte 0, then the pixels
    compressor, data = zlib.compressobj(9), []
    for _ in range(height if rows is None else rows):
        data.append(compressor.compress(row))
    data.append(compressor.flush())
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        fh.write(chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b""))
    return Path(path)


def write_cut(source: str | Path, path: str | Path, start: float, duration: float, fps: int = 25) -> Path:
    """Re-encode ``duration`` seconds of a video from ``start`` (H.264 + AAC, its audio resampled to mono 16 kHz):
    a short clip of a real recording, as a user would cut one."""
    from avid.io.media import load_audio

    audio = load_audio(source, SAMPLE_RATE, start, start + duration)
    path = Path(path)
    with av.open(str(source)) as reader, av.open(str(path), "w") as container:
        stream = reader.streams.video[0]
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = stream.codec_context.width, stream.codec_context.height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "20"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio.size else None
        reader.seek(int(max(0.0, start - 1.0) / stream.time_base), stream=stream)
        index = 0
        for frame in reader.decode(stream):
            t = float(frame.pts * stream.time_base)
            while t >= start + index / fps and index < round(duration * fps):
                out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                out.pts = index
                container.mux(video.encode(out))
                index += 1
            if index >= round(duration * fps):
                break
        container.mux(video.encode(None))
        if sound is not None:
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE, frame_size=_AAC_FRAME_SIZE)
            container.mux(_encode_audio(sound, resampler, audio.astype(np.float32), 0, SAMPLE_RATE))
            container.mux(_encode_audio(sound, resampler, None, audio.size, SAMPLE_RATE))
    return path


# --------------------------------------------------------------------------------------------------- bad inputs

def write_empty(path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_text_as(path: str | Path, text: str = "This is a text file, not a video.\n") -> Path:
    """A plain text file under a media extension (a renamed .txt)."""
    path = Path(path)
    path.write_text(text * 20, encoding="utf-8")
    return path


def write_truncated(source: str | Path, path: str | Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of a valid media file: an interrupted download or copy."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[:max(1, int(len(data) * fraction))])
    return path


def write_corrupt(path: str | Path, size: int = 64_000, seed: int = 0) -> Path:
    """Random bytes behind a valid-looking MP4 'ftyp' header: it smells like a video but is not one."""
    header = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    body = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes()
    path = Path(path)
    path.write_bytes(header + body)
    return path
