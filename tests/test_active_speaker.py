"""Audio-visual diarization: the per-frame lip signal, and the turns and links it decides (avid.pipeline.active_speaker)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline

from avid.config import load_config
from avid.evaluation.diarization import score_der
from avid.io.writers import to_annotation
from avid.pipeline.active_speaker import LipSync, _rolling_correlation, crowded_speech, fuse, relink
from avid.types import FaceDetection, FaceTrack, SpeechRegion, SpeechTurn


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_rolling_correlation_is_pearson_over_the_window():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(60), rng.standard_normal(60)
    a[10:14] = np.nan                                      # not on screen for four frames
    r = _rolling_correlation(a, b, 11)
    for i in (5, 20, 30, 54):
        lo, hi = max(0, i - 5), min(60, i + 6)
        known = ~np.isnan(a[lo:hi])
        assert r[i] == pytest.approx(np.corrcoef(a[lo:hi][known], b[lo:hi][known])[0, 1])
    assert np.isnan(r[12]) and np.isnan(_rolling_correlation(np.ones(20), b[:20], 11)).all()   # unseen; flat


def _track(track_id: int, start: float, end: float, step: float = 0.2) -> FaceTrack:
    return FaceTrack(track_id, [FaceDetection(t, (0, 0, 10, 10), 0.99) for t in np.arange(start, end + 1e-9, step)])


def test_crowded_speech_is_speech_while_two_faces_share_the_screen(cfg):
    tracks = [_track(0, 0.0, 10.0), _track(1, 4.0, 8.0), _track(2, 12.0, 14.0)]
    regions = [SpeechRegion(1.0, 5.0), SpeechRegion(6.0, 13.0)]
    crowded = crowded_speech(tracks, regions, cfg)
    assert [(round(a, 1), round(b, 1)) for a, b in crowded] == [(4.0, 5.0), (6.0, 8.2)]
    assert crowded_speech(tracks[:1], regions, cfg) == []


def _sync(times, talking: dict[int, list[tuple[float, float]]]) -> LipSync:
    """A lip signal where each track's mouth is in sync (0.8) in the given stretches and not (0.0) elsewhere."""
    scores = {}
    for track, spans in talking.items():
        values = np.zeros(len(times))
        for a, b in spans:
            values[(times >= a) & (times < b)] = 0.8
        scores[track] = values
    return LipSync(times, scores)


def test_a_change_of_talking_mouth_splits_a_turn_and_links_the_faces(cfg):
    """The voices merged A's short reply into B's turn; the lips say who talked when."""
    times = np.arange(0.0, 10.0, 0.04)
    turns = [SpeechTurn(0.5, 6.0, "spk0"), SpeechTurn(6.5, 9.5, "spk1")]
    sync = _sync(times, {0: [(0.5, 3.0), (4.5, 6.0)], 1: [(3.0, 4.5), (6.5, 9.5)]})
    links = relink(turns, {"spk0": [1], "spk1": []}, sync, cfg)     # the sampled mouths had linked spk0 wrongly
    assert links == {"spk0": [0], "spk1": [1]}
    fused, links = fuse(turns, links, sync, cfg)
    reference = Annotation()
    for a, b, who in [(0.5, 3.0, "spk0"), (3.0, 4.5, "spk1"), (4.5, 6.0, "spk0"), (6.5, 9.5, "spk1")]:
        reference[Segment(a, b)] = who
    assert score_der(reference, to_annotation(fused), collar=0, duration=10)["error_rate"] < 0.02
    reply = [t for t in fused if t.speaker == "spk1"][0]
    assert (reply.start, reply.end) == (pytest.approx(3.0, abs=0.04), pytest.approx(4.5, abs=0.04))   # a frame


def test_a_face_talking_that_no_voice_was_given_becomes_a_speaker(cfg):
    times = np.arange(0.0, 8.0, 0.04)
    turns = [SpeechTurn(0.5, 7.5, "spk0")]
    sync = _sync(times, {0: [(0.5, 4.0)], 1: [(4.0, 7.5)]})
    fused, links = fuse(turns, {"spk0": [0]}, sync, cfg)
    assert links == {"spk0": [0], "spk1": [1]}
    assert [t.speaker for t in fused] == ["spk0", "spk1"]
    assert [(t.start, t.end) for t in fused] == [(0.5, pytest.approx(4.0, abs=0.04)), (pytest.approx(4.0, abs=0.04), 7.5)]


def test_a_talking_face_is_first_the_face_of_a_voice_without_one(cfg):
    """spk1 is a voice the sampled mouths linked to no face; the mouth of track 1 talks while spk1 alone is heard:
    it is spk1's face, not a speaker of its own (one person split in two)."""
    times = np.arange(0.0, 8.0, 0.04)
    turns = [SpeechTurn(0.5, 3.5, "spk0"), SpeechTurn(4.0, 7.5, "spk1")]
    sync = _sync(times, {0: [(0.5, 3.5)], 1: [(4.0, 7.5)]})
    fused, links = fuse(turns, {"spk0": [0], "spk1": []}, sync, cfg)
    assert links == {"spk0": [0], "spk1": [1]}
    assert [t.speaker for t in fused] == ["spk0", "spk1"]


def test_mouths_that_never_stand_out_leave_the_audio_turns(cfg):
    times = np.arange(0.0, 8.0, 0.04)
    turns = [SpeechTurn(0.5, 3.0, "spk0"), SpeechTurn(3.5, 7.5, "spk1")]
    flicker = _sync(times, {0: [(1.0, 1.2)], 1: []})                 # 0.2 s: shorter than min_run_seconds
    fused, links = fuse(turns, {"spk0": [0], "spk1": [1]}, flicker, cfg)
    assert [(t.speaker, t.start, t.end) for t in fused] == [(t.speaker, t.start, t.end) for t in turns]


def test_a_mouth_cut_to_a_sliver_by_an_overlap_splits_nothing(cfg):
    """spk1's mouth talks from 2.9 s, but the voices hear spk0 alone only until 2.95 s, where both talk: a
    0.05 s switch would break spk0's turn in two; it is shorter than min_run_seconds and left alone."""
    times = np.arange(0.0, 8.0, 0.04)
    turns = [SpeechTurn(0.5, 4.0, "spk0"), SpeechTurn(2.95, 6.0, "spk1")]
    sync = _sync(times, {0: [(0.5, 2.9)], 1: [(2.9, 6.0)]})
    fused, _ = fuse(turns, {"spk0": [0], "spk1": [1]}, sync, cfg)
    assert [(t.speaker, t.start, t.end) for t in fused] == [("spk0", 0.5, 4.0), ("spk1", 2.95, 6.0)]


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def split_screen(synthetic, tmp_path_factory):
    """Both people on screen all the time, both mouths moving all the time (each mouths their own words while
    the other is heard), turns of about a second and a half: (video, reference turns by person index)."""
    people = [synthetic.astronaut(), synthetic.grace_hopper()]
    lines = [["Hello there.", "We flew four times.", "The Earth is blue.", "Thank you all."],
             ["Good morning.", "Ships are built for sea.", "Computers learn words.", "Goodbye now."]]
    segments, reference, t = [], [], 0.5
    for k in range(8):
        who = k % 2
        heard = synthetic.speak(lines[who][k // 2], people[who].voice)
        mouthed = synthetic.speak(lines[1 - who][(k // 2 + 1) % 4], people[1 - who].voice)[:len(heard)]
        segments += [synthetic.Segment(heard, speaker=who, start=t),
                     synthetic.Segment(mouthed, speaker=1 - who, start=t, heard=False)]
        reference.append((t, t + len(heard) / synthetic.SAMPLE_RATE, who))
        t += len(heard) / synthetic.SAMPLE_RATE + 0.25
    path = tmp_path_factory.mktemp("split") / "split screen.mp4"
    synthetic.write_talking_video(path, segments, people, size=(960, 540), both_on_screen=True,
                                  duration=t + 0.3, threads=1)
    return path, reference


def test_in_a_split_screen_each_turn_goes_to_the_mouth_in_sync(split_screen, cfg, tmp_path):
    from avid.cli import main
    from avid.pipeline.ingest import process_file
    from avid.pipeline.label import label_recording
    from avid.pipeline.models import Models

    path, reference = split_screen
    models = Models(cfg)
    ingest = process_file(path, cfg, models=models)
    side = {tr.id: int(np.mean([(d.box[0] + d.box[2]) / 2 for d in tr.detections]) > ingest.media.width / 2)
            for tr in ingest.face_tracks}
    assert sorted(side.values()) == [0, 1]

    def credited(result):
        """Reference turns more than half covered by turns of the face on the speaker's side."""
        right = 0
        for a, b, who in reference:
            theirs = Timeline([Segment(t.start, t.end) for t in result.turns
                               if t.track_id is not None and side[t.track_id] == who])
            right += theirs.support().crop(Segment(a, b)).duration() > (b - a) / 2
        return right

    audio_only = label_recording(path, load_config(overrides={"active_speaker": {"enabled": False}}),
                                 ingest=ingest, models=models)
    both = label_recording(path, cfg, ingest=ingest, models=models)
    # The lips give every turn its face. Audio alone (the sampled mouths) gets some of these synthetic turns right
    # or wrong by chance: a pixel's change in the detection flips one. scripts/eval_av_diarization.py measures the
    # difference on real faces.
    assert credited(both) == len(reference) >= credited(audio_only)
    # Each long turn heard alone shows its mouth in sync (an overlapped one may be a voice the audio heard wrongly
    # over the other's: its low sync is the evidence of that).
    assert all(t.lip_sync is not None and t.lip_sync > 0.3 for t in both.turns
               if t.end - t.start > 1.0 and not t.overlap)
    # The JSON carries the evidence: each turn's face and how in sync its mouth was.
    assert main(["--quiet", "label", str(path), "--format", "json", "--out", str(tmp_path)]) == 0
    turns = json.loads((tmp_path / "split screen.json").read_text())["turns"]
    assert all("lip_sync" in turn and "track_id" in turn for turn in turns)
