"""The bimodal autoencoder: shapes, presence flags, determinism, checkpoints, and what training buys."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from avid.config import load_config
from avid.errors import ModelError
from avid.identity.shared.model import BimodalAutoencoder, ModelSpec, from_bytes, load
from avid.identity.shared.train import TrainingData, person_prototypes, train_model
from tests.chimeric import synthetic_people

SPEC = ModelSpec("dlib", 128, "resemblyzer", 256, z_dim=64, hidden_dim=32)


def unit_rows(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def train_cfg():
    return load_config(overrides={"shared": {"train": {"steps": 40, "virtual_per_batch": 32}}}).shared.train


@pytest.fixture(scope="module")
def small_data():
    """6 people, 2 faces and 2 voices each, plus 4 unnamed faces; cluster geometry like dlib / Resemblyzer."""
    people = synthetic_people(6, 2, seed=3)
    faces = np.concatenate([people.faces.reshape(-1, 128), people.stranger_faces[:4]])
    labels = np.concatenate([np.repeat(np.arange(6), 2), -np.ones(4, int)])
    return TrainingData(faces, labels, people.voices.reshape(-1, 256), np.repeat(np.arange(6), 2))


def test_encode_shapes_and_unit_length():
    rng = np.random.default_rng(0)
    model = BimodalAutoencoder(SPEC)
    f, v = unit_rows(rng, 5, 128), unit_rows(rng, 5, 256)
    assert model.encode(face=f[0]).shape == (64,)
    assert model.encode(voice=v).shape == (5, 64)
    z = model.encode(face=f, voice=v)
    assert z.shape == (5, 64) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    z_, face_out, voice_out = model(torch.from_numpy(f), torch.from_numpy(v), torch.ones(5), torch.ones(5))
    assert face_out.shape == (5, 128) and voice_out.shape == (5, 256)
    with pytest.raises(ValueError):
        model.encode()
    with pytest.raises(ModelError, match="expects 128-D face"):
        model.encode(face=unit_rows(rng, 2, 512))


def test_untrained_model_preserves_raw_similarities():
    """Each encoder starts as an isometry: z(face) similarities equal raw face similarities exactly."""
    rng = np.random.default_rng(1)
    model = BimodalAutoencoder(ModelSpec("dlib", 128, "resemblyzer", 256, z_dim=256, hidden_dim=32))
    f, v = unit_rows(rng, 6, 128), unit_rows(rng, 6, 256)
    zf, zv = model.encode(face=f), model.encode(voice=v)
    np.testing.assert_allclose(zf @ zf.T, f @ f.T, atol=1e-5)
    np.testing.assert_allclose(zv @ zv.T, v @ v.T, atol=1e-5)


def test_missing_modality_is_zeroed_by_its_flag():
    rng = np.random.default_rng(2)
    model = BimodalAutoencoder(SPEC)
    with torch.no_grad():
        model.pattern_offset.normal_()   # as after training: each presence pattern has its own offset
    f, v = torch.from_numpy(unit_rows(rng, 3, 128)), torch.from_numpy(unit_rows(rng, 3, 256))
    absent, present = torch.zeros(3), torch.ones(3)
    voice_only = model.code(f, v, absent, present)
    garbage_face = model.code(f * 100 + 7, v, absent, present)     # whatever sits in the absent slot
    torch.testing.assert_close(voice_only, garbage_face)
    np.testing.assert_allclose(voice_only.detach().numpy(), model.encode(voice=v.numpy()), atol=1e-6)
    both = model.code(f, v, present, present)
    assert not torch.allclose(both, voice_only)
    with pytest.raises(ValueError, match="at least one modality"):
        model.code(f, v, absent, absent)


def test_training_is_deterministic(small_data, train_cfg):
    first, _ = train_model(small_data, SPEC, train_cfg)
    second, _ = train_model(small_data, SPEC, train_cfg)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    other_cfg = load_config(overrides={"shared": {"train": {"steps": 40, "virtual_per_batch": 32, "seed": 1}}})
    third, _ = train_model(small_data, SPEC, other_cfg.shared.train)
    assert not torch.equal(first.face_encoder.linear.weight, third.face_encoder.linear.weight)


def test_checkpoint_round_trip(tmp_path, small_data, train_cfg):
    model, _ = train_model(small_data, SPEC, train_cfg)
    path = tmp_path / "shared.pt"
    model.save(path, {"config_hash": "abc"})
    loaded, metadata = load(path, expect=ModelSpec("dlib", 128, "resemblyzer", 256, 64, 32))
    assert metadata == {"config_hash": "abc"}
    f = small_data.faces[:3]
    np.testing.assert_array_equal(loaded.encode(face=f), model.encode(face=f))
    np.testing.assert_array_equal(loaded.impostor_centre.numpy(), model.impostor_centre.numpy())


def test_checkpoint_refusals(tmp_path):
    data = BimodalAutoencoder(SPEC).to_bytes()
    with pytest.raises(ModelError, match="trained on dlib 128-D face embeddings, but these are facenet 512-D"):
        from_bytes(data, expect=ModelSpec("facenet", 512, "resemblyzer", 256))
    with pytest.raises(ModelError, match="trained on resemblyzer 256-D voice"):
        from_bytes(data, expect=ModelSpec("dlib", 128, "ecapa", 192))
    with pytest.raises(ModelError, match="not a readable"):
        from_bytes(data[: len(data) // 2])                     # truncated
    with pytest.raises(ModelError, match="not a readable"):
        from_bytes(b"PK\x03\x04 definitely not a checkpoint")
    foreign = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ModelError, match="not an avid shared-model checkpoint"):
        from_bytes(foreign.getvalue())
    hostile = io.BytesIO()
    torch.save({"format": "avid.shared.BimodalAutoencoder", "payload": Exception("code")}, hostile)
    with pytest.raises(ModelError, match="not a readable"):   # weights_only refuses arbitrary objects
        from_bytes(hostile.getvalue())
    with pytest.raises(ModelError, match="cannot read"):
        load(tmp_path / "missing.pt")


def test_training_keeps_unseen_people_where_raw_puts_them():
    """After training on a gallery, z similarities of people it never saw are the raw ones, centred."""
    people = synthetic_people(12, 2, seed=5, strangers=20)
    data = TrainingData(people.faces.reshape(-1, 128), np.repeat(np.arange(12), 2),
                        people.voices.reshape(-1, 256), np.repeat(np.arange(12), 2))
    cfg = load_config(overrides={"shared": {"train": {"steps": 150}}}).shared.train
    model, report = train_model(data, ModelSpec("dlib", 128, "resemblyzer", 256), cfg)
    c_face, c_voice = model.impostor_centre.numpy()
    assert 0.75 < c_face < 0.9 and 0.45 < c_voice < 0.7          # the generator's 0.83 / 0.57
    for strangers, centre, modality in ((people.stranger_faces, c_face, "face"),
                                        (people.stranger_voices, c_voice, "voice")):
        z = model.encode(**{modality: strangers})
        raw = (strangers @ strangers.T - centre) / (1 - centre)
        off = ~np.eye(len(strangers), dtype=bool)
        # Not exact: the centre is estimated from 12 people, which leaves a bias of about 1/(12+1) for strangers.
        assert np.abs(z @ z.T - raw)[off].mean() < 0.15, modality
        assert np.corrcoef((z @ z.T)[off], raw[off])[0, 1] > 0.9, modality


def test_prototypes_per_presentation(small_data, train_cfg):
    model, _ = train_model(small_data, SPEC, train_cfg)
    prototypes = person_prototypes(model, small_data)
    assert set(prototypes) == {"z", "z_face", "z_voice"}
    for space, vectors in prototypes.items():
        assert sorted(vectors) == list(range(6)), space
        for vector in vectors.values():
            assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-5
    face_mean = small_data.faces[small_data.face_person == 0].mean(axis=0)
    np.testing.assert_allclose(prototypes["z_face"][0], model.encode(face=face_mean / np.linalg.norm(face_mean)),
                               atol=1e-6)
