"""Face thumbnails and voice clips cut from the library's own files, in memory: nothing is written to disk."""
from __future__ import annotations

import io
import threading
import wave
from collections import OrderedDict
from typing import Optional

import numpy as np

CLIP_RATE = 16000


class MemoryCache:
    """A small LRU of bytes, shared by the server's threads."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def face_jpeg(path: str, box: Optional[list[float]], size: int) -> Optional[bytes]:
    """A JPEG of the face at ``box`` ([time, x1, y1, x2, y2]) in ``path`` (a photo without a box: all of it),
    at most ``size`` pixels on its longer side; None when the file cannot be read (moved, deleted, damaged)."""
    from PIL import Image

    from ..errors import AvidError
    from ..library.unknown import _frame_at

    try:
        image = _frame_at(path, box[0] if box else 0.0)
    except (AvidError, OSError):
        return None
    if image is None:
        return None
    if box:
        x1, y1, x2, y2 = box[1:]
        pad = 0.25 * max(x2 - x1, y2 - y1)         # as the cluster thumbnails of `avid people unknown`
        h, w = image.shape[:2]
        image = image[max(0, int(y1 - pad)):min(h, int(y2 + pad)), max(0, int(x1 - pad)):min(w, int(x2 + pad))]
        if image.size == 0:
            return None
    picture = Image.fromarray(np.ascontiguousarray(image))
    picture.thumbnail((size, size))
    out = io.BytesIO()
    picture.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


def voice_wav(path: str, start: float, end: float, max_seconds: float) -> Optional[bytes]:
    """A 16 kHz mono WAV of ``path`` from ``start`` for at most ``max_seconds`` (to ``end``); it seeks, so a
    clip late in a long file costs no more than an early one. None when the file cannot be read."""
    import av

    end = min(end, start + max_seconds)
    samples = []
    try:
        with av.open(path) as container:
            stream = container.streams.audio[0]
            container.seek(int(max(0.0, start - 0.5) / stream.time_base), stream=stream, backward=True)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=CLIP_RATE)
            have = None       # the time of the first sample kept
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                for piece in resampler.resample(frame):
                    data = piece.to_ndarray().reshape(-1)
                    if have is None:
                        have = frame.time
                    samples.append(data)
                if frame.time > end:
                    break
    except (av.error.FFmpegError, IndexError, OSError):
        return None
    if not samples:
        return None
    audio = np.concatenate(samples)
    first = max(0, int(round((start - have) * CLIP_RATE)))
    audio = audio[first:first + int(round((end - start) * CLIP_RATE))]
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(CLIP_RATE)
        wav.writeframes(audio.astype("<i2").tobytes())
    return out.getvalue()
