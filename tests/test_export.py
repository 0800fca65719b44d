"""The writers of a labelled recording: every format parses back to what was labelled."""
from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avid.config import load_config
from avid.errors import AvidError
from avid.io import media
from avid.io import writers as export
from avid.types import FaceDetection, FaceTrack, LabelResult, MediaInfo, SpeakerLabel, SpeechTurn

SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def short_video(synthetic, tmp_path_factory) -> Path:
    """A 3 s 320x240 video of the astronaut saying a few words, with AAC audio."""
    path = tmp_path_factory.mktemp("export") / "talk.mp4"
    speech = synthetic.speak("Hello there, how are you?")
    synthetic.write_talking_video(path, [synthetic.Segment(speech, 0)], [synthetic.astronaut()], size=(320, 240),
                                  fps=25, duration=3.0)
    return path


def _result(path: Path) -> LabelResult:
    info = media.probe(path)
    face = FaceTrack(id=7, detections=[FaceDetection(time=t, box=(100.0, 40.0, 220.0, 180.0), probability=0.99)
                                       for t in np.arange(0.0, 3.0, 0.2)])
    turns = [SpeechTurn(0.5, 1.4, "spk0", overlap=True, track_id=7, name="Eileen Collins", score=0.81),
             SpeechTurn(1.2, 1.9, "spk1", overlap=True, name="unknown 1"),
             SpeechTurn(1.9, 2.75, "spk0", track_id=7, name="Eileen Collins", score=0.81)]
    speakers = [SpeakerLabel("spk0", "Eileen Collins", person_id=3, score=0.81, modality="both", known=True,
                             track_ids=[7], speech_seconds=1.75, n_turns=2),
                SpeakerLabel("spk1", "unknown 1", speech_seconds=0.7, n_turns=1)]
    return LabelResult(media=info, turns=turns, face_tracks=[face], speakers=speakers,
                       track_names={7: "Eileen Collins"})


def _seconds(match: tuple[str, ...]) -> float:
    h, m, s, ms = (int(x) for x in match)
    return h * 3600 + m * 60 + s + ms / 1000


def test_timestamps_follow_each_format():
    assert export.format_timestamp(3725.0456, ",") == "01:02:05,046"
    assert export.format_timestamp(59.9996, ".") == "00:01:00.000"
    assert export.format_timestamp(-0.2, ",") == "00:00:00,000"


def test_json_schema(tmp_path, short_video):
    document = json.loads(export.write_json(_result(short_video), tmp_path / "a.json").read_text())
    assert document["schema"] == "avid.label" and document["version"] == export.JSON_SCHEMA_VERSION
    assert document["media"]["has_audio"] and document["media"]["duration"] == pytest.approx(3.0, abs=0.1)
    assert [t["start"] for t in document["turns"]] == [0.5, 1.2, 1.9]
    assert set(document["turns"][0]) == {"start", "end", "speaker", "name", "score", "track_id", "overlap", "lip_sync"}
    assert document["turns"][1]["overlap"] is True and document["turns"][1]["track_id"] is None
    people = {p["name"]: p for p in document["people"]}
    assert people["Eileen Collins"]["speech_seconds"] == pytest.approx(1.75)
    assert people["Eileen Collins"]["n_turns"] == 2 and people["Eileen Collins"]["track_ids"] == [7]
    assert people["unknown 1"]["known"] is False
    # Seen every sample from 0 to 2.8 s: on screen 0-3 s (the last sample stands for 0.2 s, up to the media's end).
    (track,) = document["face_tracks"]
    boxes = track.pop("boxes")
    assert track == {"id": 7, "start": 0.0, "end": 2.8, "visible": [[0.0, 3.0]], "visible_seconds": 3.0,
                     "n_detections": 15, "mean_probability": 0.99, "name": "Eileen Collins", "speaker": "spk0"}
    assert len(boxes) == 15 and boxes[1] == [0.2, 100.0, 40.0, 220.0, 180.0]   # each sampled time, to draw


def _track(times, track_id: int = 7) -> FaceTrack:
    return FaceTrack(id=track_id, detections=[FaceDetection(time=float(t), box=(100.0, 40.0, 220.0, 180.0),
                                                            probability=0.99) for t in times])


PERIOD = 0.2   # 5 fps, the default media.frame_rate
AWAY_AND_BACK = list(np.arange(0.0, 1.0, PERIOD)) + list(np.arange(3.0, 4.0, PERIOD))   # on 0-1 s and 3-4 s


def test_visible_intervals_split_where_the_face_left():
    assert _track(AWAY_AND_BACK).visible_intervals(PERIOD, 0.5) == [pytest.approx((0.0, 1.0)),
                                                                    pytest.approx((3.0, 4.0))]
    # Detection order does not matter; a larger allowed gap joins the two stretches.
    assert _track(AWAY_AND_BACK[::-1]).visible_intervals(PERIOD, 0.5) == [pytest.approx((0.0, 1.0)),
                                                                          pytest.approx((3.0, 4.0))]
    assert _track(AWAY_AND_BACK).visible_intervals(PERIOD, 2.0) == [pytest.approx((0.0, 4.0))]


def test_visible_intervals_join_missed_samples():
    # 0.4 s missing (one sample): 0.2 s unseen, joined; 0.6, 0.8 and 1.2 missing: 0.6 s unseen, split.
    times = [0.0, 0.2, 0.6, 0.8, 1.6, 1.8]
    assert _track(times).visible_intervals(PERIOD, 0.5) == [pytest.approx((0.0, 1.0)), pytest.approx((1.6, 2.0))]
    # Two missed samples (0.4 s unseen) at the default gap are still on screen: float error does not split them.
    assert _track([0.0, 0.6]).visible_intervals(PERIOD, 0.4) == [pytest.approx((0.0, 0.8))]
    assert _track([0.0, 0.6]).visible_intervals(PERIOD, 0.39) == [pytest.approx((0.0, 0.2)),
                                                                  pytest.approx((0.6, 0.8))]


def test_visible_intervals_of_one_detection_and_of_none():
    assert _track([2.4]).visible_intervals(PERIOD, 0.5) == [pytest.approx((2.4, 2.6))]
    assert _track([]).visible_intervals(PERIOD, 0.5) == []


def _away_and_back_result() -> LabelResult:
    """Ada speaks 0-5 s of a 5 s video; her face is on screen 0-1 s and 3-4 s (one track, merged on return)."""
    info = MediaInfo(path="away.mp4", kind="video", duration=5.0, width=640, height=360, fps=25.0, has_video=True,
                     has_audio=True)
    return LabelResult(media=info, turns=[SpeechTurn(0.0, 5.0, "spk0", track_id=7, name="Ada")],
                       face_tracks=[_track(AWAY_AND_BACK)],
                       speakers=[SpeakerLabel("spk0", "Ada", track_ids=[7], speech_seconds=5.0, n_turns=1)],
                       track_names={7: "Ada"})


def test_json_keeps_the_visible_intervals(cfg):
    (track,) = export.to_dict(_away_and_back_result(), cfg)["face_tracks"]
    assert (track["start"], track["end"]) == (0.0, 3.8)          # first and last detection, as before
    assert track["visible"] == [[0.0, 1.0], [3.0, 4.0]]
    assert track["visible_seconds"] == 2.0
    # The gap comes from the config, and the media's end cuts the last interval.
    wide = load_config(overrides={"export": {"visible_gap_seconds": 3.0}})
    result = _away_and_back_result()
    result.media.duration = 3.9
    (track,) = export.to_dict(result, wide)["face_tracks"]
    assert track["visible"] == [[0.0, 3.9]] and track["visible_seconds"] == 3.9


def test_rttm_has_ten_fields_and_names(tmp_path, short_video):
    from pyannote.database.util import load_rttm

    path = export.write_rttm(_result(short_video), tmp_path / "a.rttm")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    fields = [line.split() for line in lines]
    assert all(len(f) == 10 and f[0] == "SPEAKER" and f[1] == "talk" and f[2] == "1" for f in fields)
    assert [f[7] for f in fields] == ["Eileen_Collins", "unknown_1", "Eileen_Collins"]
    assert float(fields[2][3]) == pytest.approx(1.9) and float(fields[2][4]) == pytest.approx(0.85)
    annotation = load_rttm(path)["talk"]   # pyannote reads it back
    assert annotation.label_duration("Eileen_Collins") == pytest.approx(1.75)
    annotation = export.to_annotation(_result(short_video).turns, "talk", use_names=True)
    annotation = annotation.rename_labels({label: label.replace(" ", "_") for label in annotation.labels()})
    with open(tmp_path / "b.rttm", "w") as handle:     # pyannote writes the same lines
        annotation.write_rttm(handle)
    assert (tmp_path / "b.rttm").read_text() == path.read_text()


def test_srt_cues_parse_back_in_order(tmp_path, short_video):
    text = export.write_srt(_result(short_video), tmp_path / "a.srt").read_text(encoding="utf-8")
    blocks = text.strip().split("\n\n")
    starts = []
    for number, block in enumerate(blocks, start=1):
        index, timing, cue = block.split("\n")
        assert index == str(number)
        found = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", timing)
        assert found, timing
        start, end = _seconds(found.groups()[:4]), _seconds(found.groups()[4:])
        assert end > start
        starts.append(start)
    assert starts == sorted(starts) == [0.5, 1.2, 1.9]
    assert blocks[0].endswith("Eileen Collins (with unknown 1)")    # both names where two talk at once
    assert blocks[1].endswith("unknown 1 (with Eileen Collins)")
    assert blocks[2].endswith("\nEileen Collins")


def test_vtt_cues_parse_back_in_order(tmp_path, short_video):
    text = export.write_vtt(_result(short_video), tmp_path / "a.vtt").read_text(encoding="utf-8")
    header, *blocks = text.strip().split("\n\n")
    assert header == "WEBVTT"
    starts = []
    for block in blocks:
        _, timing, cue = block.split("\n")
        found = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", timing)
        assert found, timing
        starts.append(_seconds(found.groups()[:4]))
        assert _seconds(found.groups()[4:]) > starts[-1]
        assert re.fullmatch(r"<v ([^>]+)>\1( \(with [^)]+\))?</v>", cue), cue
    assert starts == sorted(starts) == [0.5, 1.2, 1.9]


def test_timeline_png(tmp_path, short_video, cfg):
    path = export.write_timeline_png(_result(short_video), tmp_path / "a.png", cfg)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == cfg.export.png.width_inches * cfg.export.png.dpi


def test_timeline_draws_the_face_only_where_it_is_on_screen(tmp_path, cfg):
    import matplotlib

    path = export.write_timeline_png(_away_and_back_result(), tmp_path / "away.png", cfg)
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert image.shape[1] == cfg.export.png.width_inches * cfg.export.png.dpi
    colour = np.array(matplotlib.colormaps["tab10"](0)[:3]) * 255     # the first row's colour
    ink = np.abs(image - colour).sum(axis=2) < 30
    # The speech bar is the widest band of the colour; it spans the whole 0-5 s axis, so it gives the time scale.
    counts = ink.sum(axis=1)
    bar_rows = np.flatnonzero(counts > 0.95 * counts.max())    # a face line never spans the whole axis here
    bar_columns = np.flatnonzero(ink[bar_rows[len(bar_rows) // 2]])
    x0, x1 = bar_columns.min(), bar_columns.max()
    # The face line: the thin band of the colour below the bar.
    line_rows = np.flatnonzero(ink.any(axis=1) & (np.arange(ink.shape[0]) > bar_rows.max()))
    assert 1 <= len(line_rows) <= 6
    line = ink[line_rows].any(axis=0)

    def drawn_at(t: float) -> bool:
        return bool(line[int(round(x0 + t / 5.0 * (x1 - x0)))])

    assert drawn_at(0.5) and drawn_at(3.5)                        # on screen
    assert not drawn_at(2.0) and not drawn_at(4.5)                # gone: not one bar from 0 to 3.8 s
    columns = np.flatnonzero(line)
    assert (columns.min() - x0) / (x1 - x0) * 5.0 == pytest.approx(0.0, abs=0.05)
    assert (columns.max() - x0) / (x1 - x0) * 5.0 == pytest.approx(4.0, abs=0.05)


def test_annotated_mp4_keeps_audio_and_duration(tmp_path, short_video, cfg):
    path = export.write_annotated_mp4(_result(short_video), tmp_path / "a.mp4", cfg)
    info = media.probe(path)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (320, 240)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 75
    # The original audio is there: the same speech energy as the source.
    original, written = media.load_audio(short_video), media.load_audio(path)
    n = min(original.size, written.size)
    assert abs(written.size - original.size) < 1600
    assert np.corrcoef(original[:n], written[:n])[0, 1] > 0.99
    # At 1.0 s the face is speaking: its box is drawn in the speaking colour.
    frame = next(f for f in media.iter_frames(path, fps=25) if f.time >= 1.0)
    b, g, r = cfg.export.mp4.speaking_colour
    edge = frame.image[110, 98:103].astype(int)   # the left edge of the box at x=100
    assert np.abs(edge - [r, g, b]).sum(axis=1).min() < 60


def _tag_pixels(name: str, cfg) -> np.ndarray:
    """A blank 720p frame with one face box named ``name`` drawn on it, cropped to the name tag above the box."""
    track = FaceTrack(id=1, detections=[FaceDetection(time=0.0, box=(100.0, 200.0, 400.0, 500.0), probability=1.0)])
    image = np.full((720, 1280, 3), 255, np.uint8)
    export._draw(image, 0.0, [export._TrackBoxes(track, 0.3)], {1: name}, set(), cfg.export.mp4)
    return image[100:200, 100:700]


def test_annotated_names_keep_their_accents_and_scripts(cfg):
    accented, folded = _tag_pixels("Zoë Ångström", cfg), _tag_pixels("Zoe Angstrom", cfg)
    assert (accented != folded).any()                        # the diacritics are drawn, not folded away
    cyrillic = _tag_pixels("Пётр Ильич", cfg)
    ink = (cyrillic.max(axis=2) < 60).sum()                  # black text on the light tag
    question_marks = (_tag_pixels("???? ?????", cfg).max(axis=2) < 60).sum()
    assert ink > 100 and ink != question_marks               # real glyphs, not a placeholder


def test_audio_only_input_skips_mp4_and_writes_the_rest(tmp_path, cfg, synthetic):
    audio_path = synthetic.write_wav(tmp_path / "voice.wav", synthetic.speak("Just a voice."))
    result = LabelResult(media=media.probe(audio_path),
                         turns=[SpeechTurn(0.1, 0.9, "spk0", name="unknown-1")])
    written = export.write_outputs(result, tmp_path / "out", ["json", "mp4", "rttm"], cfg)
    assert set(written) == {"json", "rttm"}
    assert "no annotated MP4" in " ".join(result.warnings)
    with pytest.raises(AvidError, match="no video stream"):
        export.write_annotated_mp4(result, tmp_path / "x.mp4", cfg)


def test_unknown_format_is_refused(tmp_path, short_video, cfg):
    with pytest.raises(AvidError, match="unknown output format"):
        export.write_outputs(_result(short_video), tmp_path, ["json", "docx"], cfg)


def test_outputs_are_private_and_never_written_through_a_planted_link(tmp_path, cfg):
    """Issue 13, items 3 and 4: label outputs are 0600 whatever the umask; a symlink at the output name is
    replaced, not followed; a writer that fails leaves nothing under the final name."""
    import os
    import stat

    from avid.private import private_output

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.srt").symlink_to(victim)
    result = LabelResult(media=MediaInfo(path="x.wav", kind="audio", duration=2.0),
                         turns=[SpeechTurn(0.0, 1.0, "spk0", name="Ada")])
    old = os.umask(0)
    try:
        written = export.write_outputs(result, out, ["json", "srt", "vtt", "rttm", "png"], cfg, stem="x")
    finally:
        os.umask(old)
    assert victim.read_text() == "precious" and not (out / "x.srt").is_symlink()
    for path in written.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with pytest.raises(KeyboardInterrupt):
        with private_output(out / "y.mp4") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written.values())
