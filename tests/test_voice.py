"""Voice front end: voice activity detection, the Resemblyzer encoder and the streaming analysis."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from avid import synthetic
from avid.config import load_config
from avid.errors import ConfigError, NoContentError
from avid.types import SpeechRegion
from avid.voice.embed import VoiceEncoder, analyse_audio, mel_spectrogram, normalize_volume, window_spans
from avid.voice.vad import SileroNetwork, SpeechDetector, _silero_network, detect_speech, speech_energy

SR = 16000
BACKENDS = ["silero", "webrtc"]


def vad_config(backend: str, **vad):
    return load_config(overrides={"voice": {"vad": {"backend": backend, **vad}}})


def trimmed(audio: np.ndarray) -> np.ndarray:
    """Synthetic speech without the silence eSpeak leaves at its ends."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0]:loud[-1] + 1]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return trimmed(synthetic.speak("The quick brown fox jumps over the lazy dog near the bank of the river."))


@pytest.fixture(scope="module")
def other_speech() -> np.ndarray:
    return trimmed(synthetic.speak("Seven silver ships sailed slowly south across the sea.", voice="en+f3",
                                   pitch=70))


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return VoiceEncoder(load_config())


# ------------------------------------------------------------------------------------------------- VAD

@pytest.mark.parametrize("backend", BACKENDS)
def test_silence_gives_no_regions(backend):
    assert detect_speech(np.zeros(5 * SR, dtype=np.float32), vad_config(backend)) == []


def test_noise_is_not_speech_for_silero():
    noise = (np.random.default_rng(0).standard_normal(5 * SR) * 0.05).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * SR) / SR)).astype(np.float32)
    cfg = vad_config("silero")
    assert detect_speech(noise, cfg) == []
    assert detect_speech(tone, cfg) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_speech_between_silences_is_one_region_with_the_right_bounds(backend, speech):
    audio = np.concatenate([synthetic.silence(2.0), speech, synthetic.silence(2.5)])
    cfg = vad_config(backend)
    regions = detect_speech(audio, cfg)
    assert len(regions) == 1
    start, end = 2.0, 2.0 + len(speech) / SR
    padding = cfg.voice.vad.padding_seconds
    assert regions[0].start == pytest.approx(start - padding, abs=0.2)
    assert regions[0].end == pytest.approx(end + padding, abs=0.3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_streaming_in_chunks_gives_the_same_regions(backend, speech, other_speech):
    audio = np.concatenate([synthetic.silence(1.0), speech, synthetic.silence(1.5), other_speech,
                            synthetic.silence(0.3), speech, synthetic.silence(2.0)])
    cfg = vad_config(backend)
    whole = [(r.start, r.end) for r in detect_speech(audio, cfg)]
    assert len(whole) >= 2
    for chunk in (7777, 16000, 1001):
        detector = SpeechDetector(cfg)
        streamed = []
        for i in range(0, len(audio), chunk):
            streamed += detector.feed(audio[i:i + chunk])
        streamed += detector.finish()
        assert [(r.start, r.end) for r in streamed] == whole


def test_regions_come_back_as_soon_as_they_are_over(speech):
    cfg = vad_config("silero")
    detector = SpeechDetector(cfg)
    first = detector.feed(np.concatenate([synthetic.silence(0.5), speech, synthetic.silence(2.0)]))
    assert len(first) == 1                      # over before the stream ends
    assert detector.feed(speech) == []          # still open
    assert len(detector.finish()) == 1
    assert detector.finish() == []


def test_short_pauses_are_bridged_and_blips_dropped(speech):
    cfg = vad_config("silero", min_silence_seconds=0.6, min_speech_seconds=0.25)
    bridged = detect_speech(np.concatenate([speech, synthetic.silence(0.3), speech]), cfg)
    assert len(bridged) == 1
    apart = detect_speech(np.concatenate([speech, synthetic.silence(1.5), speech]), cfg)
    assert len(apart) == 2
    assert apart[0].end <= apart[1].start       # padding never makes neighbours overlap
    blip = np.concatenate([synthetic.silence(1.0), speech[:int(0.12 * SR)], synthetic.silence(1.0)])
    assert detect_speech(blip, vad_config("webrtc", min_speech_seconds=0.3)) == []


def test_long_speech_is_cut_into_contiguous_regions(speech):
    cfg = vad_config("silero", max_region_seconds=2.0, min_silence_seconds=1.0)
    regions = detect_speech(np.concatenate([speech, synthetic.silence(0.2), speech]), cfg)
    assert len(regions) >= 3
    for before, after in zip(regions, regions[1:]):
        assert after.start >= before.end
    assert all(r.duration <= 2.0 + 2 * cfg.voice.vad.padding_seconds + 1e-6 for r in regions)


def test_bad_vad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        SpeechDetector(vad_config("nonsense"))
    with pytest.raises(ConfigError):
        SpeechDetector(vad_config("webrtc", frame_ms=25))
    with pytest.raises(ConfigError):
        SpeechDetector(vad_config("silero"), sample_rate=8000)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_silero_network_matches_the_bundled_model(speech):
    """Our batched network gives the probabilities of the silero-vad package's own model, frame by frame."""
    spec = importlib.util.find_spec("silero_vad")
    bundled = torch.jit.load(str(Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.jit"),
                             map_location="cpu")
    audio = np.concatenate([synthetic.silence(0.5), speech])
    n = len(audio) // SileroNetwork.FRAME
    with torch.inference_mode():
        expected = np.array([bundled(torch.from_numpy(audio[i * 512:(i + 1) * 512]).unsqueeze(0), SR).item()
                             for i in range(n)])
        padded = np.concatenate([np.zeros(SileroNetwork.CONTEXT, np.float32), audio[:n * 512]])
        frames = np.lib.stride_tricks.sliding_window_view(padded, 576)[::512][:n]
        ours, _ = _silero_network()(torch.from_numpy(np.ascontiguousarray(frames)))
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)
    assert expected.max() > 0.9                 # the comparison covers speech, not just silence


def test_speech_energy_is_rms_per_hop_and_chunkable():
    audio = np.concatenate([np.full(SR, 0.5, np.float32), np.zeros(SR, np.float32)])
    energy = speech_energy(audio, SR, hop_seconds=0.02)
    assert energy.shape == (100,)
    assert energy[:50] == pytest.approx(0.5) and energy[50:] == pytest.approx(0.0)
    halves = np.concatenate([speech_energy(audio[:SR], SR, 0.02), speech_energy(audio[SR:], SR, 0.02)])
    np.testing.assert_allclose(halves, energy)


# --------------------------------------------------------------------------------------------- encoder

def test_mel_spectrogram_equals_resemblyzers(speech):
    from resemblyzer.audio import wav_to_mel_spectrogram

    clip = speech[:SR * 2 + 77]
    np.testing.assert_allclose(mel_spectrogram(clip), wav_to_mel_spectrogram(clip), rtol=1e-4, atol=1e-7)


def test_volume_is_raised_never_lowered():
    quiet = np.full(SR, 0.001, np.float32)
    loud = np.full(SR, 0.5, np.float32)
    assert 20 * np.log10(np.sqrt(np.mean(normalize_volume(quiet) ** 2))) == pytest.approx(-30, abs=0.1)
    assert normalize_volume(loud) is loud


def test_window_spans_cover_the_span():
    spans = window_spans(0.0, 4.0, 1.5, 0.75, 0.5)
    assert spans[0] == (0.0, 1.5) and spans[-1] == (2.5, 4.0)
    assert all(e - s == pytest.approx(1.5) for s, e in spans)
    assert window_spans(1.0, 2.0, 1.5, 0.75, 0.5) == [(1.0, 2.0)]
    assert window_spans(1.0, 1.3, 1.5, 0.75, 0.5) == []


def test_utterance_embedding_is_a_unit_vector_close_to_resemblyzers(encoder, speech):
    from resemblyzer import VoiceEncoder as ResemblyzerEncoder, preprocess_wav

    embedding = encoder.embed_utterance(np.concatenate([synthetic.silence(1.0), speech]))
    assert embedding.shape == (256,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    reference = ResemblyzerEncoder("cpu", verbose=False).embed_utterance(preprocess_wav(speech))
    assert float(embedding @ reference) > 0.95


def test_a_clip_without_speech_has_no_voice_embedding(encoder):
    with pytest.raises(NoContentError):
        encoder.embed_utterance(synthetic.silence(2.0))
    assert encoder.embed_utterance(synthetic.silence(2.0), trim_silence=False).shape == (256,)


def test_same_voice_is_closer_than_another_voice(encoder, speech, other_speech):
    half = len(speech) // 2
    a1, a2 = encoder.embed_utterance(speech[:half]), encoder.embed_utterance(speech[half:])
    b = encoder.embed_utterance(other_speech)
    assert a1 @ a2 > a1 @ b + 0.05


def test_windows_lie_inside_regions_and_regions_get_embeddings(encoder, speech):
    audio = np.concatenate([synthetic.silence(1.0), speech, synthetic.silence(1.0)])
    regions = [SpeechRegion(1.0, 1.0 + len(speech) / SR), SpeechRegion(0.2, 0.5)]
    windows = encoder.embed_windows(audio, 0.0, regions)
    assert len(windows) >= 4
    for window in windows:
        assert regions[0].start - 1e-6 <= window.start < window.end <= regions[0].end + 1e-6
        assert window.end - window.start == pytest.approx(encoder.window_seconds, abs=0.011)
        assert np.linalg.norm(window.embedding) == pytest.approx(1.0, abs=1e-5)
    assert regions[0].embedding is not None and regions[0].embedding.shape == (256,)
    assert regions[1].embedding is None         # shorter than voice.embed.min_region_seconds


def test_analyse_audio_streams_regions_windows_and_embeddings(encoder, speech, other_speech):
    cfg = load_config()
    audio = np.concatenate([synthetic.silence(1.0), speech, synthetic.silence(2.0), other_speech,
                            synthetic.silence(1.0)])
    chunks = [audio[i:i + 20000] for i in range(0, len(audio), 20000)]
    regions, windows = analyse_audio(chunks, cfg, encoder)
    assert [(r.start, r.end) for r in regions] == [(r.start, r.end) for r in detect_speech(audio, cfg)]
    assert len(regions) == 2
    assert all(r.embedding is not None for r in regions)
    assert all(any(r.start <= w.start and w.end <= r.end for r in regions) for w in windows)
    assert regions[0].embedding @ regions[1].embedding < 0.9     # two different voices


class RecordingEncoder:
    """Stands in for the network to record how much audio analyse_audio holds when it embeds."""

    min_window_seconds = 0.5

    def __init__(self):
        self.buffer_seconds: list[float] = []

    def embed_windows(self, audio, offset, regions):
        self.buffer_seconds.append(len(audio) / SR)
        return []


def test_analyse_audio_memory_does_not_grow_with_the_stream(speech):
    cfg = load_config()
    piece = np.concatenate([speech, synthetic.silence(6.0)])
    n_pieces = 20                                # about 3.5 minutes
    chunk = int(30 * SR)
    stream = np.tile(piece, n_pieces)
    recorder = RecordingEncoder()
    regions, _ = analyse_audio((stream[i:i + chunk] for i in range(0, len(stream), chunk)), cfg, recorder)
    assert len(regions) == n_pieces
    # Held audio: at most one chunk plus the open region, never the whole stream.
    assert max(recorder.buffer_seconds) < 30 + len(speech) / SR + 1.0
