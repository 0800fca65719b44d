"""The shared model of a gallery: trained on its observations, loaded from it, and the z prototypes refreshed for
people enrolled, added to or merged since training (without retraining)."""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import numpy as np

from .. import __version__
from ..config import Config, load_config
from ..errors import AvidError, ConfigError, ModelError
from .shared import model as shared_model
from .shared.train import PROTOTYPE_SPACES, UNNAMED, TrainingData, TrainReport, person_prototypes, train_model
from .store import Gallery, Observation


# ---------------------------------------------------------------------------------------------- the shared model
def encoder_spec(gallery: Gallery, cfg: Config) -> shared_model.ModelSpec:
    """Encoders of the gallery's embeddings (or the configured ones for a modality it has none of) + model sizes."""
    from ..faces.embed import ENCODERS
    from ..voice.embed import VOICE_ENCODERS

    have = gallery.encoders()
    backend = cfg.faces.encoder.backend
    if "face" not in have and backend not in ENCODERS:
        raise ConfigError(f"unknown faces.encoder.backend {backend!r}")
    face = have["face"] if "face" in have else (backend, ENCODERS[backend].dim)
    voice_backend = cfg.voice.encoder.backend
    if "voice" not in have and voice_backend not in VOICE_ENCODERS:
        raise ConfigError(f"unknown voice.encoder.backend {voice_backend!r}")
    voice = have["voice"] if "voice" in have else (voice_backend, VOICE_ENCODERS[voice_backend].dim)
    # z is at least as wide as either embedding, so that each encoder can start as an exact isometry.
    z_dim = max(int(cfg.shared.z_dim), int(face[1]), int(voice[1]))
    return shared_model.ModelSpec(face_backend=face[0], face_dim=int(face[1]), voice_backend=voice[0],
                                  voice_dim=int(voice[1]), z_dim=z_dim, hidden_dim=int(cfg.shared.hidden_dim))


def load_model(gallery: Gallery) -> Optional[tuple[shared_model.BimodalAutoencoder, dict]]:
    """The gallery's trained model and its metadata, or None; ModelError if it is damaged or for other encoders."""
    stored = gallery.load_model()
    if stored is None:
        return None
    checkpoint, _ = stored
    model, metadata = shared_model.from_bytes(checkpoint, source=f"{gallery.path} (shared model)")
    have = gallery.encoders()
    for modality, (backend, dim) in have.items():
        if (getattr(model.spec, f"{modality}_backend"), getattr(model.spec, f"{modality}_dim")) != (backend, dim):
            raise ModelError(f"the stored shared model was trained on other {modality} embeddings than the "
                             f"gallery holds; run `avid train`", gallery.path)
    return model, metadata


def training_data(observations: list[Observation], spec: shared_model.ModelSpec) -> tuple[TrainingData, list[int]]:
    """Observations -> arrays for training; returns the data and the person id of each label 0..n-1."""
    person_ids = sorted({o.person_id for o in observations if o.person_id is not None})
    label_of = {pid: i for i, pid in enumerate(person_ids)}
    faces = [o for o in observations if o.modality == "face"]
    voices = [o for o in observations if o.modality == "voice"]
    face_row = {o.id: i for i, o in enumerate(faces)}
    # Unnamed observations known to belong together (a voice heard with a face track) are pairs for alignment.
    pairs = [(face_row[o.paired_with], i) for i, o in enumerate(voices)
             if o.person_id is None and o.paired_with in face_row and faces[face_row[o.paired_with]].person_id is None]
    data = TrainingData(
        faces=np.array([o.embedding for o in faces], np.float32).reshape(len(faces), spec.face_dim),
        face_person=np.array([label_of.get(o.person_id, UNNAMED) for o in faces], np.int64),
        voices=np.array([o.embedding for o in voices], np.float32).reshape(len(voices), spec.voice_dim),
        voice_person=np.array([label_of.get(o.person_id, UNNAMED) for o in voices], np.int64),
        pairs=np.array(pairs, np.int64).reshape(-1, 2), n_people=len(person_ids))
    return data, person_ids


def train(gallery: Gallery, cfg: Optional[Config] = None,
          progress: Optional[Callable[[int, int], None]] = None) -> TrainReport:
    """Train the shared model on every observation in the gallery; store it with fresh z prototypes."""
    cfg = cfg or load_config()
    observations = gallery.observations()
    if not any(o.person_id is not None for o in observations):
        raise AvidError("nothing to train on: enrol someone first (avid enroll NAME --image/--audio/--video)",
                        gallery.path)
    spec = encoder_spec(gallery, cfg)
    data, person_ids = training_data(observations, spec)
    model, report = train_model(data, spec, cfg.shared.train, progress)
    prototypes = {space: {person_ids[label]: vector for label, vector in vectors.items()}
                  for space, vectors in person_prototypes(model, data).items()}
    metadata = {"avid_version": __version__, "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config_hash": shared_model.config_hash(cfg.shared.to_dict()), "seed": int(cfg.shared.train.seed),
                "people": len(person_ids), "face_observations": int(len(data.faces)),
                "voice_observations": int(len(data.voices)), "steps": report.steps,
                "seconds": round(report.seconds, 2), "losses": {k: round(v, 5) for k, v in report.losses.items()}}
    gallery.save_model(model.to_bytes(metadata), metadata, prototypes)
    return report


def refresh_z_prototypes(gallery: Gallery, person_ids: Optional[Sequence[int]] = None) -> None:
    """Recompute z prototypes with the stored model, for ``person_ids`` (all people when None): people enrolled,
    added to or merged since training get prototypes without retraining."""
    loaded = load_model(gallery)
    if loaded is None:
        return
    model = loaded[0]
    with gallery.transaction():
        fresh = {p.id: person_prototypes(model, training_data(gallery.observations(person=p.id), model.spec)[0])
                 for p in gallery.people() if person_ids is None or p.id in person_ids}
        for space in PROTOTYPE_SPACES:
            people, matrix = gallery.prototypes(space)
            vectors = {p.id: v for p, v in zip(people, matrix) if p.id not in fresh}
            vectors.update({pid: v for pid, spaces in fresh.items() for v in spaces[space].values()})
            gallery.set_prototypes(space, vectors)

