"""Diarization: clustering window embeddings into speaker turns, RTTM files and error rates."""
from __future__ import annotations

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from avid.config import load_config
from avid.errors import AvidError
from avid.evaluation.diarization import (diarize_file, load_reference, oracle_labels, read_rttm, score_der,
                                         score_identification, write_rttm)
from avid.media import load_audio, probe
from avid.types import SpeechRegion, SpeechTurn, VoiceWindow
from avid.voice.diarize import diarize, to_annotation
from avid.voice.embed import VoiceEncoder, analyse_audio

SR = 16000


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def voice(seed: int) -> np.ndarray:
    """A random unit direction standing for one speaker's voice."""
    v = np.random.default_rng(seed).standard_normal(256) ** 2      # non-negative like Resemblyzer's, cosine ~0.35
    return v / np.linalg.norm(v)


def windows_for(script: list[tuple[float, float, np.ndarray]], hop=0.75, length=1.5, noise=0.15, seed=0):
    """Sliding windows over speech segments (start, end, voice) with noisy embeddings, as the encoder makes them."""
    rng = np.random.default_rng(seed)
    windows = []
    for start, end, direction in script:
        t = start
        while t + length <= end + 1e-9:
            e = direction + noise * np.abs(rng.standard_normal(256)) / 16
            windows.append(VoiceWindow(t, t + length, (e / np.linalg.norm(e)).astype(np.float32)))
            t += hop
    return windows


# ------------------------------------------------------------------------------------ turns from windows

def test_two_alternating_voices_become_two_speakers_in_order(cfg):
    a, b = voice(1), voice(2)
    script = [(0, 6, a), (6, 12, b), (12, 18, a), (18, 24, b)]
    turns = diarize(windows_for(script), cfg, regions=[SpeechRegion(0, 24)])
    assert {t.speaker for t in turns} == {"spk0", "spk1"}
    assert turns[0].speaker == "spk0" and turns[0].start == 0.0
    reference = Annotation()
    for i, (s, e, _) in enumerate(script):
        reference[Segment(s, e)] = "A" if i % 2 == 0 else "B"
    assert score_der(reference, to_annotation(turns), collar=0.5, duration=24.0)["error_rate"] < 0.05
    assert not any(t.overlap for t in turns)


def test_one_voice_is_one_speaker(cfg):
    turns = diarize(windows_for([(0, 10, voice(3)), (11, 20, voice(3))]), cfg)
    assert {t.speaker for t in turns} == {"spk0"}


def test_speaker_count_can_be_fixed_or_bounded(cfg):
    a, b, c = voice(4), voice(5), voice(6)
    windows = windows_for([(0, 8, a), (8, 16, b), (16, 24, c)])
    assert len({t.speaker for t in diarize(windows, cfg)}) == 3
    assert len({t.speaker for t in diarize(windows, cfg, num_speakers=2)}) == 2
    assert len({t.speaker for t in diarize(windows, cfg, max_speakers=2)}) == 2
    single = windows_for([(0, 24, a)])
    assert len({t.speaker for t in diarize(single, cfg, min_speakers=2)}) == 2


def test_long_inputs_cluster_a_sample_of_windows_with_the_same_result(cfg):
    voices = [voice(4), voice(5), voice(6)]
    windows = windows_for([(8 * i, 8 * i + 8, voices[i % 3]) for i in range(30)])
    sampled = load_config(overrides={"diarization": {"max_cluster_windows": 40}})
    assert len(windows) > 200
    full = [(t.start, t.end, t.speaker) for t in diarize(windows, cfg)]
    assert [(t.start, t.end, t.speaker) for t in diarize(windows, sampled)] == full
    assert len({speaker for _, _, speaker in full}) == 3


def test_in_a_long_recording_a_tiny_share_of_odd_windows_is_not_a_speaker(cfg):
    """An hour of two people taking turns, plus 12 s of odd windows (laughter, noise, windows across a change of
    speaker) that cluster apart: enough windows for min_speaker_seconds, too few for min_speaker_share."""
    a, b, odd = voice(9), voice(10), voice(11)
    script = [(10 * i, 10 * i + 10, (a, b)[i % 2]) for i in range(360)]
    windows = windows_for(script) + windows_for([(1000, 1013.5, odd)], seed=1)
    windows.sort(key=lambda w: w.start)
    regions = [SpeechRegion(0, 3600)]
    assert len({t.speaker for t in diarize(windows, cfg, regions=regions)}) == 2
    no_share = load_config(overrides={"diarization": {"min_speaker_share": 0.0}})
    assert len({t.speaker for t in diarize(windows, no_share, regions=regions)}) == 3   # what the share prevents


def test_bad_speaker_counts_are_refused(cfg):
    windows = windows_for([(0, 5, voice(1))])
    with pytest.raises(AvidError):
        diarize(windows, cfg, num_speakers=0)
    with pytest.raises(AvidError):
        diarize(windows, cfg, min_speakers=3, max_speakers=2)


def test_no_windows_no_turns(cfg):
    assert diarize([], cfg) == []
    assert diarize([], cfg, regions=[SpeechRegion(0, 0.3)]) == []


def test_short_regions_without_windows_take_the_nearest_speaker(cfg):
    a, b = voice(7), voice(8)
    windows = windows_for([(0, 6, a), (8, 14, b)])
    regions = [SpeechRegion(0, 6), SpeechRegion(6.3, 6.6), SpeechRegion(8, 14)]
    turns = diarize(windows, cfg, regions=regions)
    covering = [t for t in turns if t.start <= 6.4 and t.end >= 6.5]
    assert covering and covering[0].speaker == turns[0].speaker


def test_overlapped_speech_is_reported():
    """Windows over two voices score about equally against both speakers: both are reported, flagged."""
    a, b = voice(9), voice(10)
    mixed = a + b
    windows = windows_for([(0, 12, a), (12, 14.5, mixed / np.linalg.norm(mixed)), (14.5, 26, b)])
    regions = [SpeechRegion(0, 26)]
    off = diarize(windows, load_config(overrides={"diarization": {"overlap_margin": None}}), regions=regions)
    assert len({t.speaker for t in off}) == 2 and not any(t.overlap for t in off)
    cfg = load_config(overrides={"diarization": {"overlap_margin": 0.06}})
    turns = diarize(windows, cfg, regions=regions)
    assert len({t.speaker for t in turns}) == 2
    flagged = [t for t in turns if t.overlap]
    assert len({t.speaker for t in flagged}) == 2
    # The flagged turns really share time, around the mixed stretch.
    first, second = sorted(flagged, key=lambda t: t.start)[:2]
    shared = min(first.end, second.end) - max(first.start, second.start)
    assert shared >= 1.0 and 11 <= max(first.start, second.start) <= 14


# -------------------------------------------------------------------------------------- RTTM and scores

def test_rttm_round_trip(tmp_path):
    turns = [SpeechTurn(0.5, 2.25, "spk0"), SpeechTurn(2.0, 4.0, "spk1", overlap=True),
             SpeechTurn(5.0, 6.5, "spk0", name="Zoë Ünal")]
    path = tmp_path / "out.rttm"
    write_rttm(turns, path, uri="meeting")
    back = load_reference(path)
    assert back.uri == "meeting"
    assert sorted((round(s.start, 3), round(s.end, 3), label) for s, _, label in back.itertracks(yield_label=True)) \
        == [(0.5, 2.25, "spk0"), (2.0, 4.0, "spk1"), (5.0, 6.5, "spk0")]
    write_rttm(turns, path, uri="team meeting", use_names=True)
    assert set(read_rttm(path)["team_meeting"].labels()) == {"spk0", "spk1", "Zoë_Ünal"}


def test_rttm_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(AvidError, match="not found"):
        read_rttm(tmp_path / "missing.rttm")
    bad = tmp_path / "bad.rttm"
    bad.write_text("SPEAKER f 1 0.0 1.0 <NA> <NA> A <NA> <NA>\nSPEAKER f 1 zero 1.0 <NA> <NA> B <NA> <NA>\n")
    with pytest.raises(AvidError, match="line 2"):
        read_rttm(bad)
    two = tmp_path / "two.rttm"
    two.write_text("SPEAKER f 1 0.0 1.0 <NA> <NA> A <NA> <NA>\nSPEAKER g 1 0.0 1.0 <NA> <NA> B <NA> <NA>\n")
    with pytest.raises(AvidError, match="2 file ids"):
        load_reference(two)
    assert load_reference(two, "g").labels() == ["B"]


def test_der_parts_and_identification_mode():
    reference = Annotation()
    reference[Segment(0, 10)] = "alice"
    reference[Segment(10, 20)] = "bob"
    renamed = Annotation()
    renamed[Segment(0, 10)] = "spk1"
    renamed[Segment(10, 20)] = "spk0"
    assert score_der(reference, renamed, collar=0.0, duration=20.0)["error_rate"] == 0.0
    assert score_identification(reference, renamed, collar=0.0, duration=20.0)["error_rate"] == pytest.approx(1.0)
    named = Annotation()
    named[Segment(0, 10)] = "alice"
    named[Segment(12, 20)] = "bob"
    named[Segment(20, 25)] = "bob"
    parts = score_identification(reference, named, collar=0.0, duration=25.0)
    assert parts["missed"] == pytest.approx(2.0) and parts["false_alarm"] == pytest.approx(5.0)
    assert parts["confusion"] == 0.0 and parts["error_rate"] == pytest.approx(7.0 / 20.0)
    forgiving = score_der(reference, named, collar=0.5, duration=25.0)
    assert forgiving["missed"] < parts["missed"]


# ---------------------------------------------------------------------------------- real voices (shared)

@pytest.fixture(scope="module")
def encoder():
    return VoiceEncoder(load_config())


def test_oracle_labels_split_the_error_by_cause():
    from pyannote.core import Timeline

    reference = Annotation(uri="f")
    reference[Segment(0, 10)] = "A"
    reference[Segment(6, 14)] = "B"            # 4 s of overlap, 18 s of speech in all
    speech = Timeline([Segment(2, 12)])        # a detector that found 10 s of it
    perfect = oracle_labels(reference, speech)
    assert score_der(reference, perfect, collar=0, duration=20)["missed"] == pytest.approx(4.0)   # A 0-2, B 12-14
    single = oracle_labels(reference, speech, overlap=False)
    assert single.label_timeline("A").support().duration() == pytest.approx(8.0, abs=0.02)   # A began first
    assert single.label_timeline("B").support().duration() == pytest.approx(2.0, abs=0.02)   # 10-12 only
    assert score_der(reference, single, collar=0, duration=20)["missed"] == pytest.approx(8.0, abs=0.05)   # + B's 6-10
    assert len(oracle_labels(reference, Timeline([Segment(20, 25)]))) == 0


def test_two_librispeech_speakers_are_told_apart(shared_data, cfg, encoder):
    folder = shared_data / "voices" / "librispeech_train-clean-100"
    a = load_audio(folder / "198-126831-0000.flac")      # a woman
    b = load_audio(folder / "1594-135914-0000.flac")     # a man
    pieces, reference, t = [], Annotation(uri="conversation"), 0.0
    for i in range(6):
        source, label = (a, "A") if i % 2 == 0 else (b, "B")
        piece = source[(i // 2) * 4 * SR:((i // 2) + 1) * 4 * SR]
        pieces += [piece, np.zeros(int(0.7 * SR), np.float32)]
        reference[Segment(t, t + len(piece) / SR)] = label
        t += len(piece) / SR + 0.7
    audio = np.concatenate(pieces)
    regions, windows = analyse_audio([audio], cfg, encoder)
    turns = diarize(windows, cfg, regions=regions)
    assert len({turn.speaker for turn in turns}) == 2
    assert score_der(reference, to_annotation(turns), collar=0.5, duration=t)["error_rate"] < 0.10


def test_sample_conversation_der_is_under_the_bound(shared_data, cfg, encoder):
    folder = shared_data / "diarization"
    turns = diarize_file(folder / "sample.wav", cfg, encoder=encoder)
    reference = load_reference(folder / "sample.rttm", "sample")
    score = score_der(reference, to_annotation(turns, "sample"), collar=0.5,
                      duration=probe(folder / "sample.wav").duration)
    assert score["error_rate"] <= 0.20
