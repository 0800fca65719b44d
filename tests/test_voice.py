"""Voice front end: voice activity detection, the voice encoders and the streaming segmentation analysis."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from avid.config import load_config
from avid.errors import ConfigError, NoContentError
from avid.voice.embed import CamPlusPlusEncoder, VoiceEncoder, mel_spectrogram, normalize_volume, window_spans
from avid.voice.speech import LocalSpeakerAnalyzer, analyse_speech, window_starts
from avid.voice.vad import SileroNetwork, SpeechDetector, _silero_network, detect_speech, speech_energy
from tests import media as synthetic

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
    from resemblyzer import VoiceEncoder as ResemblyzerEncoder
    from resemblyzer import preprocess_wav

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


# ----------------------------------------------------------------------- segmentation-3.0 speech analysis

@pytest.fixture(scope="module")
def campplus():
    return CamPlusPlusEncoder(load_config())


def test_campplus_voice_of_a_clip_is_a_unit_vector_and_tells_voices_apart(campplus, speech, other_speech):
    a1 = campplus.embed_utterance(speech[: len(speech) // 2])
    a2 = campplus.embed_utterance(speech[len(speech) // 2:])
    b = campplus.embed_utterance(other_speech)
    assert a1.shape == (192,) and np.linalg.norm(a1) == pytest.approx(1.0, abs=1e-5)
    assert a1 @ a2 > a1 @ b + 0.1
    with pytest.raises(NoContentError):
        campplus.embed_utterance(synthetic.silence(2.0))


def test_speech_regions_are_tight_and_streaming_gives_the_same_result(campplus, speech, other_speech):
    cfg = load_config()
    audio = np.concatenate([synthetic.silence(1.0), speech, synthetic.silence(2.0), other_speech,
                            synthetic.silence(1.0)])
    regions, analysis = analyse_speech([audio], cfg, campplus)
    first_end = 1.0 + len(speech) / SR
    second = (first_end + 2.0, first_end + 2.0 + len(other_speech) / SR)
    assert len(regions) >= 2
    # No padding: regions start and end with the speech (eSpeak's pauses between words may split a region).
    assert regions[0].start == pytest.approx(1.0, abs=0.15)
    assert max(r.end for r in regions if r.end < second[0]) == pytest.approx(first_end, abs=0.25)
    assert min(r.start for r in regions if r.start > first_end) == pytest.approx(second[0], abs=0.15)
    assert regions[-1].end == pytest.approx(second[1], abs=0.25)
    assert all(r.embedding is not None for r in regions if r.duration >= 0.5)
    chunks = [audio[i:i + 20000] for i in range(0, len(audio), 20000)]
    streamed, streamed_analysis = analyse_speech(chunks, cfg, campplus)
    assert [(r.start, r.end) for r in streamed] == [(r.start, r.end) for r in regions]
    assert np.array_equal(streamed_analysis.segmentation.activity, analysis.segmentation.activity)
    assert len(streamed_analysis.windows) == len(analysis.windows)


def test_a_pause_of_digital_silence_between_two_voices_is_silence(campplus, speech, other_speech):
    """segmentation-3.0 bridges a quarter second of zeros between two speakers; voice.segmentation.silence_db
    makes it silence (a gap in the regions and no speaker in its frames), and streaming measures the same."""
    pause = 0.25
    audio = np.concatenate([synthetic.silence(0.5), speech, np.zeros(int(pause * SR), np.float32), other_speech,
                            synthetic.silence(0.5)])
    gap = (0.5 + len(speech) / SR, 0.5 + len(speech) / SR + pause)
    regions, analysis = analyse_speech([audio], load_config(), campplus)
    segmentation = analysis.segmentation
    times = segmentation.time_of(np.arange(segmentation.num_frames))
    inside = (times > gap[0] + 0.03) & (times < gap[1] - 0.03)
    assert segmentation.speaker_count(2, 0.5, 0.5)[inside].max() >= 1          # the network alone hears speech
    assert segmentation.counts(load_config())[inside].max() == 0
    assert not any(r.start < gap[0] + 0.03 and r.end > gap[1] - 0.03 for r in regions)
    off = load_config(overrides={"voice": {"segmentation": {"silence_db": None}}})
    assert segmentation.counts(off)[inside].max() >= 1
    _, streamed = analyse_speech([audio[i:i + 7777] for i in range(0, len(audio), 7777)], load_config(), campplus)
    assert np.array_equal(streamed.segmentation.loudness, segmentation.loudness)


def test_silence_gives_no_speech_and_no_voices(campplus):
    regions, analysis = analyse_speech([synthetic.silence(25.0)], load_config(), campplus)
    assert regions == [] and analysis.windows == []
    assert analysis.segmentation.speaker_count().max() == 0


def test_a_clip_shorter_than_a_window_is_analysed(campplus, speech):
    regions, analysis = analyse_speech([speech], load_config(), campplus)
    assert len(analysis.segmentation.starts) == 1 and regions
    assert analysis.windows and analysis.windows[0].chunk == 0


class RecordingEncoder:
    """Stands in for the voice encoder to record how much audio the analyzer holds when it embeds."""

    def __init__(self, analyzer_ref):
        self.analyzer_ref = analyzer_ref
        self.held: list[float] = []

    def embed_local(self, audios, masks, frame_times):
        self.held.append(len(self.analyzer_ref[0]._buffer) / SR)
        return [None] * len(audios)


def test_memory_does_not_grow_with_the_stream(speech):
    cfg = load_config()
    piece = np.concatenate([speech, synthetic.silence(6.0)])
    stream = np.tile(piece, 20)                                 # about 3.5 minutes
    chunk = int(30 * SR)
    ref: list = []
    recorder = RecordingEncoder(ref)
    analyzer = LocalSpeakerAnalyzer(cfg, recorder)
    ref.append(analyzer)
    for i in range(0, len(stream), chunk):
        analyzer.feed(stream[i:i + chunk])
    analysis = analyzer.finish()
    settings = cfg.voice.segmentation
    step = settings.step_seconds
    assert len(analysis.segmentation.starts) == len(window_starts(len(stream) / SR, 10.0, step))
    # Held audio: at most one chunk plus the windows of a batch, never the whole stream.
    assert max(recorder.held) < 30 + 10 + settings.batch_size * step + 1.0
