"""Training the bimodal autoencoder on a gallery's observations, and the z prototypes that come out of it.

First the model's centring is measured on the data (``centring``): each modality's shared direction and the
mean cosine similarity ``c`` of different people. Then every step presents the model with faces alone, voices
alone and both together (the missing modality zeroed and flagged, as in Ngiam et al. 2011), and minimises:

- reconstruction: from any presentation, decode both modalities (a named person's voice is asked for from their
  face alone, and the other way round), as cosine distance to the true embeddings;
- alignment: InfoNCE between z(face alone) and z(voice alone) for pairs that belong together: a named person's
  face and voice, or a face track and the voice heard with it (``paired_with``);
- identity: a cosine-margin classifier (CosFace) over the named people, for every presentation;
- structure: cosine similarity in z stays equal to the centred raw similarity ``(s - c) / (1 - c)`` (for two
  face-and-voice presentations, the mean of the two modalities'), over the batch's observations and over made-up
  unseen people (``_Batcher._virtual``). This keeps z as discriminative as the raw embeddings for people the
  model never saw, and keeps their scores a known function of raw scores, so that thresholds calibrated on raw
  scores carry over to z (avid.identity.scoring.z_thresholds).

The structure term carries most weight (avid/configs/default.yaml, shared.train.loss_weights): with one or two
observations per person, a strong pull of a person's codes together distorts the geometry that unseen photos and
voices of the same people rely on (docs/shared_representation.md has the measurements).

Unnamed observations (the batch library) take part in reconstruction, structure and (when paired) alignment.
Training is seeded and deterministic: one thread, deterministic algorithms, a seeded generator for sampling.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from ...types import JsonResult
from ...vectors import unit_mean
from .model import BimodalAutoencoder, ModelSpec

UNNAMED = -1


@dataclass
class TrainingData:
    """Observations as arrays. Person labels are 0..n_people-1, or -1 (UNNAMED) for unnamed observations.

    ``pairs`` holds (face row, voice row) of observations known to belong to one person (a face track and the
    voice heard with it); named people's faces and voices are paired through their labels and need no rows here.
    """

    faces: np.ndarray
    face_person: np.ndarray
    voices: np.ndarray
    voice_person: np.ndarray
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    n_people: int = 0

    def __post_init__(self) -> None:
        self.faces = np.asarray(self.faces, np.float32)
        self.voices = np.asarray(self.voices, np.float32)
        if self.faces.ndim != 2 or self.voices.ndim != 2:
            raise ValueError("faces and voices must be 2-D arrays (rows of embeddings), possibly with 0 rows")
        self.face_person = np.asarray(self.face_person, np.int64).reshape(-1)
        self.voice_person = np.asarray(self.voice_person, np.int64).reshape(-1)
        self.pairs = np.asarray(self.pairs, np.int64).reshape(-1, 2)
        labels = np.concatenate([self.face_person, self.voice_person])
        self.n_people = max(self.n_people, int(labels.max()) + 1 if labels.size else 0)
        if len(self.faces) != len(self.face_person) or len(self.voices) != len(self.voice_person):
            raise ValueError("each observation needs exactly one person label")


@dataclass
class TrainReport(JsonResult):
    steps: int
    seconds: float
    losses: dict[str, float]      # the final value of each term


@contextlib.contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded, single-threaded, deterministic torch for the duration of the block (settings restored after)."""
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


class _Batcher:
    """Draws one training batch: for each sampled person one face and one voice, plus unnamed observations."""

    def __init__(self, data: TrainingData, cfg, rng: np.random.Generator):
        self.data, self.rng = data, rng
        self.people_per_batch = int(cfg.people_per_batch)
        self.unnamed_per_batch = int(cfg.unnamed_per_batch)
        self.virtual_per_batch = int(cfg.virtual_per_batch)
        self.faces_of = [np.flatnonzero(data.face_person == p) for p in range(data.n_people)]
        self.voices_of = [np.flatnonzero(data.voice_person == p) for p in range(data.n_people)]
        self.unnamed_faces = np.flatnonzero(data.face_person == UNNAMED)
        self.unnamed_voices = np.flatnonzero(data.voice_person == UNNAMED)
        self.face_mean = [unit_mean(data.faces[rows]) for rows in self.faces_of]
        self.face_direction = unit_mean(data.faces)
        self.voice_direction = unit_mean(data.voices)
        self.voice_mean = [unit_mean(data.voices[rows]) for rows in self.voices_of]

    def _some(self, rows: np.ndarray, k: int) -> np.ndarray:
        return rows if len(rows) <= k else self.rng.choice(rows, size=k, replace=False)

    def draw(self) -> dict:
        data = self.data
        people = self._some(np.arange(data.n_people), self.people_per_batch)
        face_rows, face_labels, voice_rows, voice_labels = [], [], [], []
        for p in people:
            if len(self.faces_of[p]):
                face_rows.append(self.rng.choice(self.faces_of[p]))
                face_labels.append(p)
            if len(self.voices_of[p]):
                voice_rows.append(self.rng.choice(self.voices_of[p]))
                voice_labels.append(p)
        pair_rows = self._some(np.arange(len(data.pairs)), self.unnamed_per_batch)
        extra_faces = self._some(self.unnamed_faces, self.unnamed_per_batch)
        extra_voices = self._some(self.unnamed_voices, self.unnamed_per_batch)
        return {"face_rows": np.array(face_rows + list(extra_faces), np.int64),
                "face_labels": np.array(face_labels + [UNNAMED] * len(extra_faces), np.int64),
                "voice_rows": np.array(voice_rows + list(extra_voices), np.int64),
                "voice_labels": np.array(voice_labels + [UNNAMED] * len(extra_voices), np.int64),
                "pairs": data.pairs[pair_rows],
                "virtual_faces": self._virtual(data.faces, data.face_person, self.face_direction),
                "virtual_voices": self._virtual(data.voices, data.voice_person, self.voice_direction)}

    def _virtual(self, embeddings: np.ndarray, labels: np.ndarray, mean_direction: np.ndarray) -> np.ndarray:
        """Embeddings of people nobody enrolled, made up near the real ones, so that the structure term holds z to
        the raw geometry where unseen people will fall (a small gallery alone leaves that region unconstrained).

        Half keep an observation's component along the modality's mean direction (what all embeddings of an
        encoder share) and turn the rest, its identity, by a random angle towards a random new direction: from
        near-duplicates to strangers. Half blend two observations of different people.
        """
        n = self.virtual_per_batch
        if n == 0 or mean_direction is None:
            return np.zeros((0, embeddings.shape[1]), np.float32)
        source = embeddings[self.rng.integers(len(embeddings), size=n)]
        shared = source @ mean_direction
        identity = source - shared[:, None] * mean_direction
        size = np.linalg.norm(identity, axis=-1, keepdims=True)
        direction = self.rng.standard_normal(source.shape)
        for basis in (mean_direction[None, :], identity / np.maximum(size, 1e-6)):
            direction -= (direction * basis).sum(-1, keepdims=True) * basis
        direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-6)
        keep = self.rng.uniform(0.0, 1.0, size=(n, 1))
        turned = shared[:, None] * mean_direction + keep * identity + np.sqrt(1 - keep ** 2) * size * direction
        first, second = self.rng.integers(len(embeddings), size=(2, n))
        differ = (labels[first] != labels[second]) | (labels[first] == UNNAMED)
        weight = self.rng.uniform(0, 1, size=(n, 1))
        blended = weight * embeddings[first] + (1 - weight) * embeddings[second]
        blended /= np.maximum(np.linalg.norm(blended, axis=-1, keepdims=True), 1e-6)
        use_blend = (np.arange(n) % 2 == 1) & differ
        return np.where(use_blend[:, None], blended, turned).astype(np.float32)


def centring(embeddings: np.ndarray, labels: np.ndarray, max_rows: int = 2000,
             min_pairs: int = 20) -> tuple[np.ndarray, float]:
    """The shared direction of one modality's embeddings (their normalised mean) and the mean cosine similarity
    of observations not known to be the same person. With fewer than ``min_pairs`` such pairs there is too little
    to measure: no centring (zero direction, centre 0). Computed on at most ``max_rows`` evenly spaced rows."""
    dim = embeddings.shape[1]
    rows = np.linspace(0, len(embeddings) - 1, min(len(embeddings), max_rows)).astype(int)
    x, y = embeddings[rows], labels[rows]
    different = ~((y[:, None] == y[None, :]) & (y[:, None] != UNNAMED))
    keep = np.triu(different, k=1)
    if keep.sum() < min_pairs:
        return np.zeros(dim, np.float32), 0.0
    centre = float(np.clip((x @ x.T)[keep].mean(), 0.0, 0.95))
    return unit_mean(x), centre


def centred(similarity: torch.Tensor, centre: float) -> torch.Tensor:
    """Raw cosine similarity mapped so that the mean impostor lands at 0 and identical at 1."""
    return (similarity - centre) / (1.0 - centre)


def _structure_loss(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between z cosine similarities and ``target`` over all pairs of rows. (A batch holds
    at most one observation per named person and presentation, so no pair is known to be one person.)"""
    if len(z) < 2:
        return z.sum() * 0
    pairs = torch.triu(torch.ones(len(z), len(z), dtype=torch.bool), diagonal=1)
    return ((z @ z.T - target)[pairs] ** 2).mean()


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` belongs with row i of ``b`` and with no other row."""
    if len(a) < 2:
        return a.sum() * 0
    logits = a @ b.T / temperature
    target = torch.arange(len(a))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _cosface(z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, scale: float,
             margin: float) -> torch.Tensor:
    named = labels != UNNAMED
    if not bool(named.any()) or weights.shape[0] < 2:
        return z.sum() * 0
    cos = z[named] @ F.normalize(weights, dim=-1).T
    cos = cos - margin * F.one_hot(labels[named], weights.shape[0])
    return F.cross_entropy(scale * cos, labels[named])


def train_model(data: TrainingData, spec: ModelSpec, train_cfg, progress=None) -> tuple[BimodalAutoencoder, TrainReport]:
    """Train a fresh model on ``data`` with the settings in ``train_cfg`` (cfg.shared.train)."""
    seed = int(train_cfg.seed)
    started = time.perf_counter()
    with deterministic(seed):
        model = BimodalAutoencoder(spec, seed=seed)
        face_mean, face_centre = centring(data.faces, data.face_person)
        voice_mean, voice_centre = centring(data.voices, data.voice_person)
        model.set_centring(face_mean, face_centre, voice_mean, voice_centre)
        batcher = _Batcher(data, train_cfg, np.random.default_rng(seed))
        faces, voices = torch.from_numpy(data.faces), torch.from_numpy(data.voices)
        class_weights = torch.nn.Parameter(_initial_class_weights(model, data, batcher))
        residual_params = [p for n, p in model.named_parameters() if ".residual." in n or "_decoder." in n]
        other_params = [p for n, p in model.named_parameters() if not (".residual." in n or "_decoder." in n)]
        optimiser = torch.optim.AdamW([
            {"params": residual_params, "weight_decay": float(train_cfg.weight_decay)},
            {"params": other_params + [class_weights], "weight_decay": 0.0}], lr=float(train_cfg.learning_rate))
        weights = train_cfg.loss_weights
        losses: dict[str, float] = {}
        steps = int(train_cfg.steps)
        model.train()
        for step in range(steps):
            terms = _step_losses(model, batcher.draw(), batcher, faces, voices, class_weights, train_cfg)
            total = sum(float(weights[name]) * value for name, value in terms.items())
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
            if progress:
                progress(step + 1, steps)
            losses = {name: float(value.detach()) for name, value in terms.items()}
        model.eval()
    return model, TrainReport(steps=steps, seconds=time.perf_counter() - started, losses=losses)


def _initial_class_weights(model: BimodalAutoencoder, data: TrainingData, batcher: _Batcher) -> torch.Tensor:
    """Start each person's class vector at the mean code of all their observations under the untrained model."""
    rows = []
    for p in range(data.n_people):
        codes = []
        if batcher.face_mean[p] is not None:
            codes.append(model.encode(face=batcher.face_mean[p]))
        if batcher.voice_mean[p] is not None:
            codes.append(model.encode(voice=batcher.voice_mean[p]))
        rows.append(np.mean(codes, axis=0))
    return torch.from_numpy(np.array(rows, np.float32).reshape(data.n_people, model.spec.z_dim))


def _step_losses(model: BimodalAutoencoder, batch: dict, batcher: _Batcher, faces: torch.Tensor,
                 voices: torch.Tensor, class_weights: torch.Tensor, cfg) -> dict[str, torch.Tensor]:
    spec = model.spec
    f_rows, f_labels = torch.from_numpy(batch["face_rows"]), torch.from_numpy(batch["face_labels"])
    v_rows, v_labels = torch.from_numpy(batch["voice_rows"]), torch.from_numpy(batch["voice_labels"])
    pairs = torch.from_numpy(batch["pairs"])
    virtual_f, virtual_v = torch.from_numpy(batch["virtual_faces"]), torch.from_numpy(batch["virtual_voices"])
    f_in = torch.cat([faces[f_rows], virtual_f])
    v_in = torch.cat([voices[v_rows], virtual_v])
    f_labels = torch.cat([f_labels, torch.full((len(virtual_f),), UNNAMED)])
    v_labels = torch.cat([v_labels, torch.full((len(virtual_v),), UNNAMED)])

    # Presentations: faces alone, voices alone, and both together (a named person's sampled face with their
    # sampled voice, and unnamed pairs). Targets for the absent modality are known for named people and pairs.
    named_f = {int(p): i for i, p in enumerate(batch["face_labels"]) if p != UNNAMED}
    named_v = {int(p): i for i, p in enumerate(batch["voice_labels"]) if p != UNNAMED}
    both_people = sorted(set(named_f) & set(named_v))
    both_f = torch.cat([f_in[[named_f[p] for p in both_people]], faces[pairs[:, 0]]])
    both_v = torch.cat([v_in[[named_v[p] for p in both_people]], voices[pairs[:, 1]]])
    both_labels = torch.cat([torch.tensor(both_people, dtype=torch.int64),
                             torch.full((len(pairs),), UNNAMED, dtype=torch.int64)])

    n_f, n_v, n_b = len(f_in), len(v_in), len(both_f)
    face_in = torch.cat([f_in, torch.zeros(n_v, spec.face_dim), both_f])
    voice_in = torch.cat([torch.zeros(n_f, spec.voice_dim), v_in, both_v])
    face_flag = torch.cat([torch.ones(n_f), torch.zeros(n_v), torch.ones(n_b)])
    voice_flag = torch.cat([torch.zeros(n_f), torch.ones(n_v), torch.ones(n_b)])
    z, face_out, voice_out = model(face_in, voice_in, face_flag, voice_flag)
    z_f, z_v, z_b = z[:n_f], z[n_f:n_f + n_v], z[n_f + n_v:]

    # Reconstruction targets: the input itself, else the person's mean of the other modality.
    face_target, face_known = face_in.clone(), face_flag.clone()
    voice_target, voice_known = voice_in.clone(), voice_flag.clone()
    for i, p in enumerate(batch["face_labels"]):
        if p != UNNAMED and batcher.voice_mean[p] is not None:
            voice_target[i], voice_known[i] = torch.from_numpy(batcher.voice_mean[p]), 1.0
    for i, p in enumerate(batch["voice_labels"]):
        if p != UNNAMED and batcher.face_mean[p] is not None:
            face_target[n_f + i], face_known[n_f + i] = torch.from_numpy(batcher.face_mean[p]), 1.0
    face_err = (1 - (face_out * face_target).sum(-1)) * face_known
    voice_err = (1 - (voice_out * voice_target).sum(-1)) * voice_known
    reconstruction = face_err.sum() / face_known.sum().clamp(min=1) + voice_err.sum() / voice_known.sum().clamp(min=1)

    # Alignment: z(face alone) against z(voice alone) of the same person or pair.
    align_f = torch.cat([z_f[[named_f[p] for p in both_people]],
                         model.code(faces[pairs[:, 0]], torch.zeros(len(pairs), spec.voice_dim),
                                    torch.ones(len(pairs)), torch.zeros(len(pairs)))])
    align_v = torch.cat([z_v[[named_v[p] for p in both_people]],
                         model.code(torch.zeros(len(pairs), spec.face_dim), voices[pairs[:, 1]],
                                    torch.zeros(len(pairs)), torch.ones(len(pairs)))])
    alignment = _info_nce(align_f, align_v, float(cfg.temperature))

    identity = _cosface(torch.cat([z_f, z_v, z_b]), torch.cat([f_labels, v_labels, both_labels]), class_weights,
                        float(cfg.scale), float(cfg.margin))
    c_face, c_voice = (float(c) for c in model.impostor_centre)
    face_sim, voice_sim = centred(f_in @ f_in.T, c_face), centred(v_in @ v_in.T, c_voice)
    both_sim = (centred(both_f @ both_f.T, c_face) + centred(both_v @ both_v.T, c_voice)) / 2
    structure = _structure_loss(z_f, face_sim) + _structure_loss(z_v, voice_sim) + _structure_loss(z_b, both_sim)
    return {"reconstruction": reconstruction, "alignment": alignment, "identity": identity, "structure": structure}


PROTOTYPE_SPACES = ("z", "z_face", "z_voice")


def person_prototypes(model: BimodalAutoencoder, data: TrainingData) -> dict[str, dict[int, np.ndarray]]:
    """Each named person's prototypes in z, from all their observations: ``z_face`` is the code of their mean
    face alone, ``z_voice`` of their mean voice alone, and ``z`` of both together (or of the one they have).

    A query is matched against the prototype of its own presentation: a face against ``z_face``, a voice against
    ``z_voice``, a face with a voice against ``z``. (One prototype for all would mix a person's face and voice
    codes, which training aligns only partly, and blur single-modality matching.)
    """
    prototypes: dict[str, dict[int, np.ndarray]] = {space: {} for space in PROTOTYPE_SPACES}
    for p in range(data.n_people):
        face = unit_mean(data.faces[data.face_person == p])
        voice = unit_mean(data.voices[data.voice_person == p])
        if face is None and voice is None:
            continue
        if face is not None:
            prototypes["z_face"][p] = model.encode(face=face)
        if voice is not None:
            prototypes["z_voice"][p] = model.encode(voice=voice)
        prototypes["z"][p] = model.encode(face=face, voice=voice)
    return prototypes
