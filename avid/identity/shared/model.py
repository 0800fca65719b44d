"""The bimodal autoencoder: face and voice embeddings in, one shared code z out (after Ngiam et al., ICML 2011).

Each modality has its own encoder into the shared space: a fixed centring (the component all embeddings of that
encoder share is removed, so different people sit near cosine 0; see ``set_centring``), a linear map initialised
as an isometry (orthonormal columns, so the centred cosine similarities are exactly preserved at the start), plus
a small residual MLP that starts at zero. The shared code is the L2-normalised sum of the encoded modalities that are present, plus
a learned offset per presence pattern: the inputs carry presence flags, and a missing modality is zeroed. Two
decoders reconstruct the face and the voice embedding from z, whichever modalities went in.

Because every part starts from an isometry, an untrained model matches exactly like the centred embeddings do;
training (avid.identity.shared.train) moves it only as far as its losses ask. Checkpoints are a plain state dict plus metadata (encoder
backends and dimensions, sizes, config hash, version) saved with ``torch.save`` and read back with
``weights_only=True``; a checkpoint for other encoders, or a damaged or foreign file, raises ModelError.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ModelError

CHECKPOINT_FORMAT = "avid.shared.BimodalAutoencoder"
CHECKPOINT_VERSION = 1
PATTERNS = ("face", "voice", "both")   # presence patterns, each with a learned offset in z


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint must agree with to be used: the encoders that made its inputs, and its sizes."""

    face_backend: str
    face_dim: int
    voice_backend: str
    voice_dim: int
    z_dim: int = 256
    hidden_dim: int = 256


def config_hash(section: dict) -> str:
    """A short stable hash of a config section (recorded in checkpoints, so one can tell how a model was made)."""
    text = json.dumps(section, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _isometry(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A rows x cols matrix with orthonormal columns (rows >= cols), or orthonormal rows when rows < cols."""
    q, r = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols), generator=generator))
    q = q * torch.sign(torch.diagonal(r))            # make the factorisation unique, hence seed-deterministic
    return q if rows >= cols else q.T


class ModalityEncoder(nn.Module):
    """x -> A x + MLP(x): an isometry plus a residual that starts at zero."""

    def __init__(self, in_dim: int, z_dim: int, hidden_dim: int, generator: torch.Generator):
        super().__init__()
        self.linear = nn.Linear(in_dim, z_dim, bias=False)
        self.residual = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, z_dim))
        with torch.no_grad():
            self.linear.weight.copy_(_isometry(z_dim, in_dim, generator))
            for layer in (self.residual[0], self.residual[2]):
                bound = 1.0 / layer.in_features ** 0.5
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                layer.bias.zero_()
            self.residual[2].weight.zero_()       # the residual starts at exactly zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.residual(x)


class ModalityDecoder(nn.Module):
    """z -> reconstructed unit-length embedding of one modality."""

    def __init__(self, z_dim: int, out_dim: int, hidden_dim: int, generator: torch.Generator):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
        with torch.no_grad():
            for layer in (self.net[0], self.net[2]):
                bound = 1.0 / layer.in_features ** 0.5
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                layer.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(z), dim=-1)


class BimodalAutoencoder(nn.Module):
    """Face and/or voice embedding -> shared code z -> both embeddings reconstructed."""

    def __init__(self, spec: ModelSpec, seed: int = 0):
        super().__init__()
        self.spec = spec
        generator = torch.Generator().manual_seed(seed)
        self.face_encoder = ModalityEncoder(spec.face_dim, spec.z_dim, spec.hidden_dim, generator)
        self.voice_encoder = ModalityEncoder(spec.voice_dim, spec.z_dim, spec.hidden_dim, generator)
        # The presence flags enter as a learned offset per pattern (face only, voice only, both): the shared layer
        # can then centre each pattern's codes, so that a face alone and a voice alone land in the same region.
        self.pattern_offset = nn.Parameter(torch.zeros(len(PATTERNS), spec.z_dim))
        # Centring, set from the training data (set_centring): each embedding loses the component that all
        # embeddings of its encoder share, so that different people sit near cosine 0 instead of near the mean
        # impostor similarity c (0.83 for dlib faces, 0.57 for Resemblyzer voices): faces and voices on one scale.
        self.register_buffer("impostor_centre", torch.zeros(2))
        self.register_buffer("face_mean", torch.zeros(spec.face_dim))
        self.register_buffer("voice_mean", torch.zeros(spec.voice_dim))
        self.face_decoder = ModalityDecoder(spec.z_dim, spec.face_dim, spec.hidden_dim, generator)
        self.voice_decoder = ModalityDecoder(spec.z_dim, spec.voice_dim, spec.hidden_dim, generator)

    def forward(self, face: torch.Tensor, voice: torch.Tensor, face_present: torch.Tensor,
                voice_present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched: ``face`` (n, face_dim) and ``voice`` (n, voice_dim), zero rows where absent, with presence
        flags (n,) of 0/1. Returns (z, reconstructed face, reconstructed voice)."""
        z = self.code(face, voice, face_present, voice_present)
        return z, self.face_decoder(z), self.voice_decoder(z)

    @torch.no_grad()
    def set_centring(self, face_mean: np.ndarray, face_centre: float, voice_mean: np.ndarray,
                     voice_centre: float) -> None:
        """Centre inputs on the encoders' shared directions (unit ``*_mean``) and impostor similarities ``c``.

        An embedding x becomes (x - sqrt(c) m) / sqrt(1 - c): for embeddings whose component along m is the
        typical sqrt(c), cosine similarities become (s - c) / (1 - c), so different people land near 0 and the
        same embedding at 1, for both modalities. c = 0 leaves the embeddings as they are.
        """
        self.face_mean.copy_(torch.as_tensor(face_mean, dtype=torch.float32))
        self.voice_mean.copy_(torch.as_tensor(voice_mean, dtype=torch.float32))
        self.impostor_centre.copy_(torch.tensor([face_centre, voice_centre], dtype=torch.float32))

    def _centred(self, x: torch.Tensor, mean: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        return (x - centre.sqrt() * mean) / (1 - centre).sqrt()

    def code(self, face: torch.Tensor, voice: torch.Tensor, face_present: torch.Tensor,
             voice_present: torch.Tensor) -> torch.Tensor:
        fp, vp = face_present.float().unsqueeze(-1), voice_present.float().unsqueeze(-1)
        if bool(((fp + vp) == 0).any()):
            raise ValueError("every row needs at least one modality present")
        face = self._centred(face, self.face_mean, self.impostor_centre[0])
        voice = self._centred(voice, self.voice_mean, self.impostor_centre[1])
        # Zero the missing modality's input as well as its code, so no stale values leak through.
        h = fp * self.face_encoder(face * fp) + vp * self.voice_encoder(voice * vp)
        pattern = (fp * (1 - vp)) * self.pattern_offset[0] + ((1 - fp) * vp) * self.pattern_offset[1] \
            + (fp * vp) * self.pattern_offset[2]
        return F.normalize(h + pattern, dim=-1)

    # ------------------------------------------------------------------------------------------ numpy API
    @torch.no_grad()
    def encode(self, face: Optional[np.ndarray] = None, voice: Optional[np.ndarray] = None) -> np.ndarray:
        """z for a face embedding, a voice embedding, or both (one vector (d,) or a batch (n, d) of each).

        Returns (z_dim,) for single vectors, (n, z_dim) for batches; L2-normalised float32.
        """
        if face is None and voice is None:
            raise ValueError("encode needs a face embedding, a voice embedding, or both")
        single = (face if face is not None else voice).ndim == 1
        face_t = self._as_batch(face, self.spec.face_dim, "face")
        voice_t = self._as_batch(voice, self.spec.voice_dim, "voice")
        n = (face_t if face_t is not None else voice_t).shape[0]
        if face_t is not None and voice_t is not None and face_t.shape[0] != voice_t.shape[0]:
            raise ValueError("face and voice batches must have the same number of rows")
        face_present = torch.full((n,), float(face_t is not None))
        voice_present = torch.full((n,), float(voice_t is not None))
        face_t = face_t if face_t is not None else torch.zeros(n, self.spec.face_dim)
        voice_t = voice_t if voice_t is not None else torch.zeros(n, self.spec.voice_dim)
        was_training = self.training
        self.eval()
        z = self.code(face_t, voice_t, face_present, voice_present).numpy().astype(np.float32)
        self.train(was_training)
        return z[0] if single else z

    @staticmethod
    def _as_batch(x: Optional[np.ndarray], dim: int, what: str) -> Optional[torch.Tensor]:
        if x is None:
            return None
        x = np.asarray(x, dtype=np.float32)
        x = x[None, :] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != dim:
            raise ModelError(f"the shared model expects {dim}-D {what} embeddings, got shape {tuple(x.shape)}")
        return torch.from_numpy(np.ascontiguousarray(x))

    # ------------------------------------------------------------------------------------------ checkpoints
    def to_bytes(self, metadata: Optional[dict] = None) -> bytes:
        """Serialise as a state dict plus metadata (plain types only, loadable with weights_only=True)."""
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "spec": asdict(self.spec),
                    "metadata": dict(metadata or {}), "state_dict": self.state_dict()}, buffer)
        return buffer.getvalue()

    def save(self, path: str | Path, metadata: Optional[dict] = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(self.to_bytes(metadata))
        tmp.replace(path)   # never leave a half-written checkpoint


def from_bytes(data: bytes, expect: Optional[ModelSpec] = None,
               source: str = "shared model checkpoint") -> tuple[BimodalAutoencoder, dict]:
    """Load a checkpoint made by ``to_bytes``; returns (model, metadata).

    ``expect`` gives the encoder backends and dimensions the caller's embeddings come from; a checkpoint made for
    others is refused (its codes would be meaningless). Damaged or foreign data raises ModelError.
    """
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises many types for damaged data; all mean "not a usable checkpoint"
        raise ModelError(f"not a readable avid shared-model checkpoint ({exc.__class__.__name__})", source) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError("not an avid shared-model checkpoint", source)
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise ModelError(f"checkpoint version {payload['version']} is newer than this avid supports "
                         f"({CHECKPOINT_VERSION}); upgrade avid", source)
    try:
        spec = ModelSpec(**payload["spec"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"checkpoint has no valid model description ({exc})", source) from None
    if expect is not None:
        for modality in ("face", "voice"):
            have = (getattr(spec, f"{modality}_backend"), getattr(spec, f"{modality}_dim"))
            want = (getattr(expect, f"{modality}_backend"), getattr(expect, f"{modality}_dim"))
            if have != want:
                raise ModelError(f"checkpoint was trained on {have[0]} {have[1]}-D {modality} embeddings, but these "
                                 f"are {want[0]} {want[1]}-D; retrain with `avid train`", source)
    model = BimodalAutoencoder(spec)
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise ModelError(f"checkpoint weights do not fit the model ({exc.__class__.__name__})", source) from None
    model.eval()
    return model, dict(payload.get("metadata", {}))


def load(path: str | Path, expect: Optional[ModelSpec] = None) -> tuple[BimodalAutoencoder, dict]:
    """Load a checkpoint file (see ``from_bytes``)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint ({exc.strerror})", path) from None
    return from_bytes(data, expect, str(path))
