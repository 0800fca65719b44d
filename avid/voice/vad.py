"""Voice activity detection: where in an audio stream someone is speaking.

Two frame classifiers, chosen by ``voice.vad.backend``:
- ``silero`` (default): the Silero VAD network (MIT; the weights of the model bundled in the silero-vad wheel,
  no download). It labels 32 ms frames with a speech probability. Its convolutional front end
  runs on all the frames of a chunk at once and its LSTM over the whole chunk in one call, so it costs a few
  milliseconds per second of audio. On the shared AMI meeting excerpts it misses or invents about a third as much
  speech as webrtcvad does, and it ignores noise that webrtcvad takes for speech.
- ``webrtc``: webrtcvad on 10-30 ms frames (imported only when chosen).
Either way an energy floor rejects frames too quiet to be foreground speech. Frame decisions become regions:
pauses shorter than ``min_silence_seconds`` are bridged, regions shorter than ``min_speech_seconds`` are dropped
as blips, and the rest are padded. ``SpeechDetector`` works on a stream of chunks and returns each region as soon
as it is over, so a long recording is never held in memory. ``speech_energy`` (streamed by ``EnergyMeter``) gives
the cheap RMS track that active-speaker association compares with mouth motion.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..threads import limit_threads
from ..types import EnergyTrack, SpeechRegion
from ..weights import package_file

WEBRTC_SAMPLE_RATES = (8000, 16000, 32000, 48000)
WEBRTC_FRAME_MS = (10, 20, 30)
INT16_MAX = 32767


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * INT16_MAX).astype(np.int16)


def frame_db(frames: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each row of ``frames`` (float audio in [-1, 1])."""
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=-1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


class SileroNetwork(nn.Module):
    """Silero VAD's 16 kHz network: STFT conv front end, 4 conv layers, an LSTM, speech probability per 512 samples.

    Each 512-sample frame is read with the 64 samples before it. The front end sees frames independently, so a
    whole chunk goes through it as one batch; the LSTM then runs over the chunk's frames in one call.
    """

    FRAME = 512
    CONTEXT = 64

    def __init__(self):
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.final_conv = nn.Conv1d(128, 1, 1)

    def forward(self, frames: torch.Tensor, state=None):
        """frames (n, 576): each frame with its context, in stream order -> probabilities (n,), new state."""
        x = nn.functional.pad(frames, (0, self.CONTEXT), mode="reflect").unsqueeze(1)
        x = self.stft_conv(x)
        x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        features = x.squeeze(-1).unsqueeze(0)                    # (1, n, 128): one sequence
        hidden, state = self.lstm(features, state)
        out = torch.sigmoid(self.final_conv(torch.relu(hidden[0]).unsqueeze(-1)))
        return out.reshape(-1), state


@lru_cache(maxsize=1)
def _silero_network() -> SileroNetwork:
    """The network with the weights of the TorchScript model bundled in the silero-vad wheel, loaded once."""
    # Located without importing silero_vad, whose import sets torch's thread count to 1 for the whole process.
    path = package_file("silero_vad", "data/silero_vad.jit",
                        "pip install silero-vad, or set voice.vad.backend: webrtc")
    with warnings.catch_warnings():   # torch marks TorchScript loading deprecated; it is how the model ships
        warnings.simplefilter("ignore", DeprecationWarning)
        bundled = torch.jit.load(str(path), map_location="cpu").state_dict()
    state = {"stft_conv.weight": bundled["_model.stft.forward_basis_buffer"],
             "final_conv.weight": bundled["_model.decoder.decoder.2.weight"],
             "final_conv.bias": bundled["_model.decoder.decoder.2.bias"]}
    for i in range(4):
        for kind in ("weight", "bias"):
            state[f"conv{i + 1}.{kind}"] = bundled[f"_model.encoder.{i}.reparam_conv.{kind}"]
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):   # its LSTMCell's parameters drive nn.LSTM
        state[f"lstm.{name}_l0"] = bundled[f"_model.decoder.rnn.{name}"]
    network = SileroNetwork()
    network.load_state_dict(state)
    return network.eval()


class SpeechDetector:
    """Streaming voice activity detection. Feed consecutive chunks; get regions back as they end.

    Times are seconds from the start of the stream. ``feed`` returns the regions that are over (followed by
    enough silence that no later audio can extend them); ``finish`` closes the stream and returns the rest.
    Padding never makes a region overlap its neighbour or run past the end of the stream.
    """

    def __init__(self, cfg, sample_rate: int = 16000):
        vad_cfg = cfg.voice.vad
        self.backend = vad_cfg.backend
        self.sample_rate = sample_rate
        if self.backend == "silero":
            if sample_rate != 16000:
                raise ConfigError(f"the silero VAD needs 16000 Hz audio, got {sample_rate} Hz")
            self.frame_samples = SileroNetwork.FRAME
            limit_threads(cfg)
            self._network = _silero_network()
            self._threshold = float(vad_cfg.threshold)
            self._context = np.zeros(SileroNetwork.CONTEXT, dtype=np.float32)   # samples before the next frame
            self._state = None                                                  # the LSTM's (h, c)
        elif self.backend == "webrtc":
            if sample_rate not in WEBRTC_SAMPLE_RATES:
                raise ConfigError(f"webrtc voice activity detection needs a sample rate in {WEBRTC_SAMPLE_RATES}, "
                                  f"got {sample_rate}")
            if vad_cfg.frame_ms not in WEBRTC_FRAME_MS:
                raise ConfigError(f"voice.vad.frame_ms must be one of {WEBRTC_FRAME_MS}, got {vad_cfg.frame_ms}")
            if vad_cfg.aggressiveness not in (0, 1, 2, 3):
                raise ConfigError(f"voice.vad.aggressiveness must be 0-3, got {vad_cfg.aggressiveness}")
            import webrtcvad

            self.frame_samples = sample_rate * int(vad_cfg.frame_ms) // 1000
            self._vad = webrtcvad.Vad(int(vad_cfg.aggressiveness))
        else:
            raise ConfigError(f"voice.vad.backend must be silero or webrtc, got {self.backend!r}")
        self.frame_seconds = self.frame_samples / sample_rate
        self._min_db = float(vad_cfg.min_energy_db)
        self._bridge_frames = int(round(vad_cfg.min_silence_seconds / self.frame_seconds))
        self._min_speech = float(vad_cfg.min_speech_seconds)
        self._padding = float(vad_cfg.padding_seconds)
        self._max_frames = int(round(vad_cfg.max_region_seconds / self.frame_seconds))
        self._pending = np.zeros(0, dtype=np.float32)  # samples short of a whole frame
        self._n_frames = 0                              # frames classified so far
        self._start: int | None = None                  # first frame of the open region
        self._last: int = -1                            # last speech frame of the open region
        self._closed: list[tuple[int, int]] = []        # (first, end) frames, not yet padded and returned
        self._prev_end = 0.0                            # end of the last returned region (padding stops there)
        self._finished = False

    @property
    def position(self) -> float:
        """Seconds of audio classified so far."""
        return self._n_frames * self.frame_seconds

    @property
    def earliest_open_time(self) -> float:
        """No region returned later can start before this time: audio before it may be forgotten."""
        if self._closed:
            first = self._closed[0][0]
        elif self._start is not None:
            first = self._start
        else:
            first = self._n_frames
        return max(self._prev_end, first * self.frame_seconds - self._padding)

    def feed(self, chunk: np.ndarray) -> list[SpeechRegion]:
        if self._finished:
            raise RuntimeError("SpeechDetector.feed after finish")
        audio = np.concatenate([self._pending, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        n_whole = len(audio) // self.frame_samples
        self._pending = audio[n_whole * self.frame_samples:]
        if n_whole:
            frames = audio[:n_whole * self.frame_samples].reshape(n_whole, self.frame_samples)
            for speech in self._classify(frames) & (frame_db(frames) >= self._min_db):
                self._step(bool(speech))
        return self._emit(final=False)

    def _classify(self, frames: np.ndarray) -> np.ndarray:
        """Speech (True) or not for each consecutive frame (rows of ``frames``)."""
        if self.backend == "webrtc":
            pcm = _to_int16(frames)
            return np.array([self._vad.is_speech(row.tobytes(), self.sample_rate) for row in pcm], dtype=bool)
        flat = np.concatenate([self._context, frames.reshape(-1)])
        with_context = np.lib.stride_tricks.sliding_window_view(flat, SileroNetwork.FRAME + SileroNetwork.CONTEXT)
        with_context = with_context[::SileroNetwork.FRAME][:len(frames)]
        self._context = flat[-SileroNetwork.CONTEXT:].copy()
        with torch.inference_mode():
            probability, self._state = self._network(torch.from_numpy(np.array(with_context)),
                                                     self._state)
        return probability.numpy() >= self._threshold

    def finish(self) -> list[SpeechRegion]:
        """Close the stream (a trailing part-frame is ignored) and return the regions still open."""
        if not self._finished:
            self._finished = True
            if self._start is not None:
                self._closed.append((self._start, self._last + 1))
                self._start = None
        return self._emit(final=True)

    def _step(self, speech: bool) -> None:
        index = self._n_frames
        self._n_frames += 1
        if speech:
            if self._start is None:
                self._start = index
            self._last = index
            if index + 1 - self._start >= self._max_frames:
                # Cut very long speech so that downstream memory stays bounded.
                self._closed.append((self._start, index + 1))
                self._start = None
        elif self._start is not None and index - self._last >= self._bridge_frames:
            self._closed.append((self._start, self._last + 1))
            self._start = None

    def _emit(self, final: bool) -> list[SpeechRegion]:
        out: list[SpeechRegion] = []
        while self._closed:
            first, end = self._closed[0]
            # The end padding must not reach into a region that may still begin: wait until the stream is
            # known to be silent (or ended) for the padding after this region.
            next_start = self._closed[1][0] if len(self._closed) > 1 else self._start
            if not final and next_start is None and (self._n_frames - end) * self.frame_seconds < self._padding:
                break
            self._closed.pop(0)
            start_t, end_t = first * self.frame_seconds, end * self.frame_seconds
            if end_t - start_t < self._min_speech:
                continue
            limit = next_start * self.frame_seconds if next_start is not None else self.position
            if final and next_start is None:
                limit = self.position + len(self._pending) / self.sample_rate
            padded_start = max(self._prev_end, start_t - self._padding)
            if start_t == self._prev_end:   # the continuation of a region cut at max_region_seconds
                padded_start = start_t
            padded_end = min(limit, end_t + self._padding) if end - first < self._max_frames else end_t
            out.append(SpeechRegion(start=round(padded_start, 3), end=round(padded_end, 3)))
            self._prev_end = padded_end
        return out


def detect_speech(audio: np.ndarray, cfg, sample_rate: int = 16000) -> list[SpeechRegion]:
    """Speech regions of a whole signal (float mono in [-1, 1])."""
    detector = SpeechDetector(cfg, sample_rate)
    return detector.feed(audio) + detector.finish()


def speech_energy(audio: np.ndarray, sample_rate: int = 16000, hop_seconds: float = 0.02) -> np.ndarray:
    """RMS level (linear, float32) of each consecutive ``hop_seconds`` frame; frame i covers [i*hop, (i+1)*hop).

    A trailing part-frame is ignored, so chunks whose length is a multiple of the hop can be processed one by one
    and the results concatenated.
    """
    hop = max(1, int(round(hop_seconds * sample_rate)))
    n = len(audio) // hop
    frames = np.asarray(audio[:n * hop], dtype=np.float32).reshape(n, hop)
    return np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)).astype(np.float32)


class EnergyMeter:
    """``speech_energy`` over a stream of consecutive chunks, with the frames kept aligned to time 0.

    Memory is one float per hop (``voice.energy_hop_seconds``), not the audio.
    """

    def __init__(self, cfg, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        self.hop = max(1, int(round(float(cfg.voice.energy_hop_seconds) * sample_rate)))
        self._parts: list[np.ndarray] = []
        self._carry = np.zeros(0, dtype=np.float32)   # a part-frame waiting for the next chunk

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """Measure ``chunk`` and hand it back unchanged (so the meter can sit inside a chunk generator)."""
        audio = np.concatenate([self._carry, chunk]) if self._carry.size else np.asarray(chunk, dtype=np.float32)
        whole = audio.size // self.hop * self.hop
        self._parts.append(speech_energy(audio[:whole], self.sample_rate, self.hop / self.sample_rate))
        self._carry = audio[whole:]
        return chunk

    def track(self) -> EnergyTrack:
        values = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)
        return EnergyTrack(hop=self.hop / self.sample_rate, values=values)
