"""Speech activity, speaker change and overlap from pyannote's segmentation-3.0, over sliding windows.

The network reads 10 s windows and says, for every ~17 ms frame, which of up to three *local* speakers talk (at
most two at once). ``LocalSpeakerAnalyzer`` slides it over a stream of audio chunks (``voice.segmentation
.step_seconds`` apart) and, while each window's audio is at hand, embeds every local speaker from the frames
where it talks alone (all its frames when it never does): the pyannote 3.x recipe, where those embeddings are
what the diarizer clusters. Only the audio of the windows still to come is held, so memory stays flat with input
length; what is kept per window is its frame decisions (a few KB) and up to three embeddings.

From the kept decisions: the number of speakers talking in every frame (the windows covering a frame vote), hence
speech regions with tight boundaries (no padding: a frame is speech because the network says so, unless its audio
is digital silence, which the network bridges over short pauses) and overlapped speech.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from ..errors import ConfigError
from ..stages import stage
from ..types import SpeechRegion, VoiceWindow
from ..vectors import unit_rows

LOUDNESS_HOP = 0.01     # seconds: the audio's level is kept at this resolution (a 2 h recording: 720,000 values)


@dataclass
class LocalSpeakers:
    """Segmentation of a recording: per window, per frame, which local speakers (up to 3) talk.

    Frame ``f`` of a window starting at ``starts[c]`` is centred at ``starts[c] + frame_start + f * frame_step
    + frame_duration / 2``; windows are ``window_seconds`` long (the last one may run past the end of the audio).
    """

    starts: np.ndarray              # (C,) seconds
    activity: np.ndarray            # (C, F, S) uint8 hard decisions
    probabilities: np.ndarray       # (C, F, S) float16: each local speaker's probability of talking
    overlap: np.ndarray             # (C, F) float16: probability that two speakers talk at once
    speech: np.ndarray              # (C, F) float16: probability that anyone talks
    frame_start: float
    frame_step: float
    frame_duration: float
    window_seconds: float
    duration: float                 # seconds of audio analysed
    loudness: Optional[np.ndarray] = None   # dBFS of every LOUDNESS_HOP seconds of the audio (None: not measured)

    @property
    def num_frames(self) -> int:
        """Frames of the whole recording on the common grid (frame ``g`` centred at ``time_of(g)``)."""
        return int(np.ceil(self.duration / self.frame_step)) + 1

    def offsets(self) -> np.ndarray:
        """Index on the common frame grid of each window's first frame."""
        return np.round(self.starts / self.frame_step).astype(int)

    def time_of(self, frames: np.ndarray) -> np.ndarray:
        """Centre time (seconds) of common-grid frames."""
        return self.frame_start + np.asarray(frames) * self.frame_step + self.frame_duration / 2

    def span(self, first: int, end: int) -> tuple[float, float]:
        """(start, end) seconds of the common-grid frames first..end-1, kept inside the recording."""
        half = self.frame_step / 2
        return (max(0.0, float(self.time_of(first)) - half),
                min(self.duration, float(self.time_of(end - 1)) + half))

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        """Per common-grid frame, the mean over the windows that cover it of per-window frame ``values`` (C, F, ...);
        0 where no window reaches."""
        total = np.zeros((self.num_frames + values.shape[1],) + values.shape[2:], dtype=np.float32)
        cover = np.zeros(len(total), dtype=np.float32)
        for offset, window in zip(self.offsets(), values):
            total[offset:offset + len(window)] += window
            cover[offset:offset + len(window)] += 1
        total = total[:self.num_frames]
        cover = cover[:self.num_frames]
        shape = (-1,) + (1,) * (values.ndim - 2)
        return np.where(cover.reshape(shape) > 0, total / np.maximum(cover, 1).reshape(shape), 0.0)

    def audible(self, min_db: float, min_seconds: float = 0.0) -> np.ndarray:
        """Per common-grid frame: False inside a run of at least ``min_seconds`` of frames whose audio is all
        quieter than ``min_db`` (all True where the level was not measured)."""
        if self.loudness is None or not len(self.loudness):
            return np.ones(self.num_frames, dtype=bool)
        centres = self.time_of(np.arange(self.num_frames))
        first = np.clip(((centres - self.frame_step / 2) / LOUDNESS_HOP).astype(int), 0, len(self.loudness) - 1)
        last = np.clip(((centres + self.frame_step / 2) / LOUDNESS_HOP).astype(int), 0, len(self.loudness) - 1)
        loud = np.concatenate([[0], np.cumsum(self.loudness >= min_db)])
        audible = loud[last + 1] - loud[first] > 0
        for start, end in true_runs(~audible):
            if (end - start) * self.frame_step < min_seconds:
                audible[start:end] = True
        return audible

    def speaker_count(self, max_count: int = 2, speech_threshold: float | None = None,
                      overlap_threshold: float | None = None, min_db: float | None = None,
                      min_silence: float = 0.0) -> np.ndarray:
        """How many speakers talk in each common-grid frame (0, 1 or 2).

        Without thresholds, pyannote's rule: the windows' mean of their hard counts (each window's most likely
        class), rounded. With ``speech_threshold``, a frame is speech where the windows' mean probability that
        anyone talks reaches it; with ``overlap_threshold``, a speech frame has two speakers where their mean
        probability of two at once reaches it (at 0.5 each, the more likely answer: with only two windows over a
        frame, the rounded hard votes drop a frame that one of them hears and keep one that both barely do).
        With ``min_db``, a pause of at least ``min_silence`` seconds whose audio is all quieter than that is
        silence whatever the network says (it bridges short pauses, even of digital silence).
        """
        hard = np.rint(self.aggregate(self.activity.sum(axis=2, keepdims=True).astype(np.float32))[:, 0])
        speaking = hard > 0
        if speech_threshold is not None:
            speaking = self.aggregate(self.speech[:, :, None].astype(np.float32))[:, 0] >= speech_threshold
        if min_db is not None:
            speaking &= self.audible(min_db, min_silence)
        two = hard >= 2
        if overlap_threshold is not None:
            two = self.aggregate(self.overlap[:, :, None].astype(np.float32))[:, 0] >= overlap_threshold
        return np.where(speaking, np.where(two & (max_count >= 2), 2, 1), 0).astype(int)

    def counts(self, cfg, max_count: int = 2) -> np.ndarray:
        """``speaker_count`` with the configured thresholds (voice.segmentation)."""
        settings = cfg.voice.segmentation
        return self.speaker_count(max_count, _optional(settings.speech_threshold),
                                  _optional(settings.overlap_threshold), _optional(settings.silence_db),
                                  float(settings.min_digital_silence_seconds))


def _optional(value) -> float | None:
    return None if value is None else float(value)


@dataclass
class LocalSpeakerAnalysis:
    """What one pass over a recording's audio gives the voice stages."""

    segmentation: LocalSpeakers
    windows: list[VoiceWindow] = field(default_factory=list)   # one per embedded (window, local speaker)


def window_starts(duration: float, window: float, step: float) -> np.ndarray:
    """Start times of the sliding windows over ``duration`` seconds: every ``step``, the last reaching the end."""
    if duration <= window:
        return np.zeros(1)
    count = int(np.ceil((duration - window) / step)) + 1
    return np.arange(count) * step


class LocalSpeakerAnalyzer:
    """Streams audio chunks through segmentation-3.0 and embeds each window's local speakers.

    ``encoder`` is a voice encoder with ``embed_local(window_audios, frame_masks, frame_times)`` (avid.voice.embed).
    """

    def __init__(self, cfg, encoder, sample_rate: int = 16000):
        from .segmentation_net import load_segmentation

        settings = cfg.voice.segmentation
        with stage("load models"):
            self.model = load_segmentation(cfg)
        if sample_rate != 16000:
            raise ConfigError(f"segmentation needs 16000 Hz audio (media.audio_sample_rate), got {sample_rate}")
        self.sample_rate = sample_rate
        self.window = float(self.model.window_seconds)
        self.step = float(settings.step_seconds)
        if not 0 < self.step <= self.window:
            raise ConfigError(f"voice.segmentation.step_seconds must be in (0, {self.window}], got {self.step}")
        self.batch_size = int(settings.batch_size)
        self.min_embed_seconds = float(settings.min_embed_seconds)
        self.max_embed_seconds = float(settings.max_embed_seconds)
        self.encoder = encoder
        self._window_samples = int(round(self.window * sample_rate))
        self._step_samples = int(round(self.step * sample_rate))
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0       # stream sample index of _buffer[0]
        self._next_start = 0         # stream sample index of the next window to run
        self._seen = 0               # samples fed so far
        self._starts: list[float] = []
        self._activity: list[np.ndarray] = []
        self._probabilities: list[np.ndarray] = []
        self._overlap: list[np.ndarray] = []
        self._speech: list[np.ndarray] = []
        self._windows: list[VoiceWindow] = []
        self._loudness: list[np.ndarray] = []
        self._hop_samples = int(round(LOUDNESS_HOP * sample_rate))
        self._unmeasured = np.zeros(0, dtype=np.float32)    # samples short of a whole loudness hop

    def feed(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._measure(chunk)
        self._buffer = np.concatenate([self._buffer, chunk])
        self._seen += len(chunk)
        ready = []
        while self._next_start + self._window_samples <= self._seen:
            ready.append(self._next_start)
            self._next_start += self._step_samples
            if len(ready) == self.batch_size:
                self._run(ready)
                ready = []
        self._run(ready)

    def _measure(self, chunk: np.ndarray) -> None:
        from .vad import frame_db

        audio = np.concatenate([self._unmeasured, chunk])
        whole = len(audio) // self._hop_samples * self._hop_samples
        self._loudness.append(frame_db(audio[:whole].reshape(-1, self._hop_samples)).astype(np.float16))
        self._unmeasured = audio[whole:]

    def finish(self) -> LocalSpeakerAnalysis:
        from .vad import frame_db

        if len(self._unmeasured):
            self._loudness.append(frame_db(self._unmeasured[None]).astype(np.float16))
            self._unmeasured = self._unmeasured[:0]
        duration = self._seen / self.sample_rate
        # The windows still owed: those the full-length loop did not reach, the last one running past the end.
        last = window_starts(duration, self.window, self.step)[-1]
        pending = [] if self._starts and self._starts[-1] >= last - 1e-9 else list(
            range(self._next_start, int(round(last * self.sample_rate)) + 1, self._step_samples))
        for i in range(0, len(pending), self.batch_size):
            self._run(pending[i:i + self.batch_size])
        model = self.model
        frames = model.num_frames(self._window_samples)
        activity = (np.stack(self._activity) if self._activity
                    else np.zeros((0, frames, model.num_speakers), dtype=np.uint8))
        segmentation = LocalSpeakers(starts=np.asarray(self._starts, dtype=np.float64), activity=activity,
                                     probabilities=np.stack(self._probabilities).astype(np.float16),
                                     overlap=np.stack(self._overlap).astype(np.float16),
                                     speech=np.stack(self._speech).astype(np.float16),
                                     frame_start=model.frame_start, frame_step=model.frame_step,
                                     frame_duration=model.frame_duration, window_seconds=self.window,
                                     duration=duration,
                                     loudness=np.concatenate(self._loudness + [np.zeros(0, np.float16)]))
        return LocalSpeakerAnalysis(segmentation, self._windows)

    def _run(self, starts: list[int]) -> None:
        """Segment and embed the windows starting at these stream samples, then forget audio no window needs."""
        if not starts:
            return
        from .segmentation_net import speaker_probabilities, to_multilabel

        audio = []
        for start in starts:
            piece = self._buffer[start - self._buffer_start:start - self._buffer_start + self._window_samples]
            audio.append(piece)
        batch = np.zeros((len(starts), 1, self._window_samples), dtype=np.float32)
        for i, piece in enumerate(audio):
            batch[i, 0, :len(piece)] = piece       # the last window is padded with silence, as pyannote does
        with stage("segmentation"):
            log_probs = self.model.log_probs(batch)
        activity = to_multilabel(log_probs, self.model.powerset).astype(np.uint8)
        probabilities = speaker_probabilities(log_probs, self.model.powerset)
        sizes = self.model.powerset.sum(axis=1)
        overlap = np.exp(log_probs) @ (sizes >= 2).astype(np.float32)
        speech = np.exp(log_probs) @ (sizes >= 1).astype(np.float32)
        with stage("voice embed"):
            self._embed(starts, audio, activity)
        for start, act, prob, over, talk in zip(starts, activity, probabilities, overlap, speech):
            self._starts.append(start / self.sample_rate)
            self._activity.append(act)
            self._probabilities.append(prob.astype(np.float16))
            self._overlap.append(over.astype(np.float16))
            self._speech.append(talk.astype(np.float16))
        keep_from = max(0, self._next_start - self._buffer_start)
        self._buffer = self._buffer[keep_from:]
        self._buffer_start += keep_from

    def _embed(self, starts: list[int], audio: list[np.ndarray], activity: np.ndarray) -> None:
        """One embedding per local speaker with enough speech in a window: from the frames where it talks alone,
        or all its frames where those are too few (pyannote's exclude-overlap rule)."""
        model = self.model
        min_frames = max(1, int(np.ceil(self.min_embed_seconds / model.frame_step)))
        max_frames = max(min_frames, int(self.max_embed_seconds / model.frame_step))
        alone = activity.sum(axis=2, keepdims=True) == 1
        jobs = []   # (window index in batch, local speaker, frames to embed, frames alone)
        for i, act in enumerate(activity):
            for speaker in range(act.shape[1]):
                active = act[:, speaker].astype(bool)
                clean = active & alone[i, :, 0]
                mask = clean if clean.sum() >= min_frames else active
                if mask.sum() >= min_frames:
                    jobs.append((i, speaker, _middle(mask, max_frames), int(clean.sum())))
        if not jobs:
            return
        frame_times = model.frame_start + np.arange(activity.shape[1]) * model.frame_step + model.frame_duration / 2
        embeddings = self.encoder.embed_local([audio[i] for i, *_ in jobs], [m for _, _, m, _ in jobs], frame_times)
        for (i, speaker, mask, clean), embedding in zip(jobs, embeddings):
            if embedding is None:
                continue
            start = starts[i] / self.sample_rate
            used = np.flatnonzero(mask)
            self._windows.append(VoiceWindow(
                start=round(start + float(frame_times[used[0]] - model.frame_step / 2), 3),
                end=round(start + float(frame_times[used[-1]] + model.frame_step / 2), 3),
                embedding=embedding, chunk=len(self._starts) + i, local_speaker=speaker,
                clean_seconds=round(clean * model.frame_step, 3)))


def _middle(mask: np.ndarray, most: int) -> np.ndarray:
    """``mask`` with at most ``most`` of its True frames kept: the middle ones (the speech a window sees best)."""
    chosen = np.flatnonzero(mask)
    if len(chosen) <= most:
        return mask
    first = (len(chosen) - most) // 2
    kept = np.zeros_like(mask)
    kept[chosen[first:first + most]] = True
    return kept


def speech_regions(segmentation: LocalSpeakers, cfg) -> list[SpeechRegion]:
    """Speech regions where at least one speaker talks: pauses under ``min_silence_seconds`` bridged, blips under
    ``min_speech_seconds`` dropped, regions over ``max_region_seconds`` cut; no padding."""
    settings = cfg.voice.segmentation
    if len(segmentation.starts) == 0:
        return []
    speaking = segmentation.counts(cfg) > 0
    bridged: list[list[int]] = []
    for first, end in true_runs(speaking):
        if bridged and (first - bridged[-1][1]) * segmentation.frame_step < float(settings.min_silence_seconds):
            bridged[-1][1] = end
        else:
            bridged.append([first, end])
    regions = []
    longest = float(cfg.voice.vad.max_region_seconds)
    for first, end in bridged:
        start, stop = segmentation.span(first, end)
        if stop - start < float(settings.min_speech_seconds):
            continue
        pieces = int(np.ceil((stop - start) / longest))
        for k in range(pieces):
            a = start + k * (stop - start) / pieces
            regions.append(SpeechRegion(round(a, 3), round(a + (stop - start) / pieces, 3)))
    return regions


class WindowIndex:
    """Local-speaker windows sorted by start, to embed any stretch as the mean of the windows whose embedded
    seconds overlap it, weighted by the overlap (a point-like window counts when it lies in the stretch)."""

    def __init__(self, windows: list[VoiceWindow]):
        order = np.argsort([w.start for w in windows], kind="stable")
        self.windows = [windows[i] for i in order]
        self.starts = np.array([w.start for w in self.windows], dtype=np.float64)
        self.ends = np.maximum(np.array([w.end for w in self.windows], dtype=np.float64), self.starts + 0.01)
        self.longest = float((self.ends - self.starts).max()) if self.windows else 0.0

    def embedding(self, start: float, end: float) -> Optional[np.ndarray]:
        """The stretch's embedding, or None when no window overlaps it."""
        lo, hi = np.searchsorted(self.starts, [start - self.longest, end])
        overlap = np.minimum(self.ends[lo:hi], end) - np.maximum(self.starts[lo:hi], start)
        inside = np.flatnonzero(overlap > 0)
        if not len(inside):
            return None
        vectors = np.stack([self.windows[lo + k].embedding for k in inside])
        return unit_rows((overlap[inside, None] * vectors).sum(0)).astype(np.float32)


def attach_region_embeddings(regions: list[SpeechRegion], windows: list[VoiceWindow],
                             min_seconds: float) -> None:
    """Each region long enough gets the embedding of its stretch (``WindowIndex``): a local speaker's middle
    seconds may fall in a pause between two regions, so windows count by overlap, not by their centre."""
    index = WindowIndex(windows)
    for region in regions:
        if region.duration >= min_seconds:
            region.embedding = index.embedding(region.start, region.end)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) index pairs of the runs of True in a boolean array."""
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def analyse_speech(chunks: Iterable[np.ndarray], cfg, encoder, sample_rate: int = 16000):
    """Speech regions (with embeddings), local-speaker windows and the segmentation, from a stream of chunks."""
    analyzer = LocalSpeakerAnalyzer(cfg, encoder, sample_rate)
    for chunk in chunks:
        analyzer.feed(chunk)
    analysis = analyzer.finish()
    regions = speech_regions(analysis.segmentation, cfg)
    attach_region_embeddings(regions, analysis.windows, float(cfg.voice.embed.min_region_seconds))
    return regions, analysis
