"""Labelling: active-speaker association, naming, the whole job on generated media, and on the shared dev data."""
from __future__ import annotations

import re

import numpy as np
import pytest

from avid.config import load_config
from avid.pipeline.associate import associate
from avid.pipeline.name import name_speakers
from avid.types import EnergyTrack, FaceDetection, FaceTrack, SpeechTurn, VoiceWindow

FPS = 5.0          # the default face sampling rate
HOP = 0.02


@pytest.fixture(scope="module")
def cfg():
    return load_config()


# ------------------------------------------------------------------------------------------- association, unit
def _syllables(times: np.ndarray, turns: list[tuple[float, float]], rng: np.random.Generator) -> np.ndarray:
    """A speech-like energy envelope: random syllable loudness at about 4 Hz inside the turns, 0 elsewhere."""
    syllable = rng.uniform(0.0, 1.0, size=int(times[-1] * 4) + 2)
    level = 0.02 + 0.1 * syllable[(times * 4).astype(int)]
    inside = np.zeros(times.shape, bool)
    for start, end in turns:
        inside |= (times >= start) & (times < end)
    return np.where(inside, level, 0.0005)


def _track(track_id: int, mouth, times: np.ndarray, x: float) -> FaceTrack:
    detections = [FaceDetection(time=float(t), box=(x, 50.0, x + 100, 170.0), probability=0.99) for t in times]
    return FaceTrack(id=track_id, detections=detections, mouth_openness=[float(m) for m in mouth])


@pytest.fixture()
def two_faces_one_narrator():
    """Face 1 speaks (spk0) with its mouth following the energy; face 2 is a still listener; spk1 is off screen."""
    rng = np.random.default_rng(0)
    spk0, spk1 = [(1.0, 4.0), (6.0, 9.0)], [(4.3, 5.8)]
    energy_times = np.arange(0, 10, HOP)
    energy = EnergyTrack(HOP, _syllables(energy_times, spk0 + spk1, rng))
    face_times = np.arange(0, 10, 1 / FPS)
    level = energy.around(face_times, 0.2)
    spk0_on = np.zeros(face_times.shape, bool)
    for start, end in spk0:
        spk0_on |= (face_times >= start) & (face_times < end)
    # Mouth opening follows the energy loosely (a lag of one sample and noise), as real lips do.
    talking = 0.05 + np.where(spk0_on, 1.5 * np.roll(level, 1) + rng.uniform(0, 0.06, face_times.size), 0.0)
    talking += rng.normal(0, 0.008, face_times.size)
    still = 0.05 + rng.normal(0, 0.008, face_times.size)
    tracks = [_track(1, talking, face_times, 50), _track(2, still, face_times, 300)]
    turns = [SpeechTurn(s, e, "spk0") for s, e in spk0] + [SpeechTurn(s, e, "spk1") for s, e in spk1]
    return turns, tracks, energy


def test_association_picks_the_moving_mouth_over_a_still_face(cfg, two_faces_one_narrator):
    turns, tracks, energy = two_faces_one_narrator
    found = associate(turns, tracks, energy, cfg)
    links, evidence = found.links, found.evidence
    assert links == {"spk0": [1], "spk1": []}
    assert [t.track_id for t in sorted(turns, key=lambda t: t.start)] == [1, None, 1]
    pairs = {(e.speaker, e.track_id): e for e in evidence}
    assert pairs["spk0", 1].correlation > 0.1 and pairs["spk0", 1].mouth_score > 0.5
    assert pairs["spk0", 2].mouth_score == 0.0 < pairs["spk0", 2].cooccurrence == 1.0
    # The off-screen narrator speaks while face 1 is still; face 1 moves at other times.
    assert pairs["spk1", 1].activity_elsewhere > 3 * pairs["spk1", 1].activity
    assert pairs["spk1", 1].mouth_score < cfg.association.min_mouth_score


def test_association_swapped_roles_follow_the_mouth(cfg, two_faces_one_narrator):
    turns, tracks, energy = two_faces_one_narrator
    tracks[0].id, tracks[1].id = 2, 1      # the talking face is now track 2, at the other place
    assert associate(turns, tracks, energy, cfg).links["spk0"] == [2]


def test_association_without_mouth_values_links_only_an_unambiguous_face(cfg, two_faces_one_narrator):
    turns, tracks, energy = two_faces_one_narrator
    for track in tracks:
        track.mouth_openness = []
    links = associate(turns, tracks, energy, cfg).links
    assert links == {"spk0": [], "spk1": []}           # two faces on screen: no way to tell who talks
    links = associate(turns, tracks[:1], energy, cfg).links
    assert set(links["spk0"] + links["spk1"]) == {1}   # one face: linked by co-occurrence, to one speaker only


def test_a_face_track_belongs_to_one_speaker(cfg, two_faces_one_narrator):
    turns, tracks, energy = two_faces_one_narrator
    links = associate(turns, tracks, energy, cfg).links
    linked = [t for ids in links.values() for t in ids]
    assert len(linked) == len(set(linked))


def test_two_voice_clusters_spoken_by_one_face_are_merged(cfg, two_faces_one_narrator):
    turns, tracks, energy = two_faces_one_narrator
    turns[1].speaker = "spk2"          # diarization split the talking face's speech into two clusters
    found = associate(turns, tracks, energy, cfg)
    assert found.merged == [("spk2", "spk0")]
    assert [t.speaker for t in turns] == ["spk0", "spk0", "spk1"]
    assert found.links == {"spk0": [1], "spk1": []}


# ------------------------------------------------------------------------------------------- naming, no gallery
def _windows(turns: list[SpeechTurn], voices: dict[str, np.ndarray]) -> dict[str, list[VoiceWindow]]:
    """Each speaker's voice windows, as diarization assigns them."""
    by_speaker: dict[str, list[VoiceWindow]] = {}
    for t in turns:
        by_speaker.setdefault(t.speaker, []).append(VoiceWindow(t.start, t.end, voices[t.speaker],
                                                                clean_seconds=t.end - t.start))
    return by_speaker


def test_unknown_labels_follow_first_speech_and_are_stable(cfg):
    rng = np.random.default_rng(1)
    voices = {s: (v := rng.normal(size=256).astype(np.float32)) / np.linalg.norm(v) for s in ("spk0", "spk1", "spk2")}

    def run():
        turns = [SpeechTurn(0.5, 2.0, "spk2"), SpeechTurn(2.5, 4.0, "spk0"), SpeechTurn(4.5, 6.0, "spk2"),
                 SpeechTurn(6.5, 8.0, "spk1")]
        speakers = name_speakers(turns, _windows(turns, voices), [], {}, cfg)
        return [(s.speaker, s.name) for s in speakers], [t.name for t in turns]

    first = run()
    assert first[0] == [("spk2", "unknown-1"), ("spk0", "unknown-2"), ("spk1", "unknown-3")]
    assert first[1] == ["unknown-1", "unknown-2", "unknown-1", "unknown-3"]
    assert run() == first


# ------------------------------------------------------------------------------------------- the whole job
@pytest.fixture(scope="module")
def models(cfg):
    from avid.pipeline.models import Models

    return Models(cfg)


def _halves(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split speech at its quietest 50 ms near the middle, so that no word is cut."""
    hop = 800
    middle = audio.size // 2
    search = np.arange(middle - 16000, middle + 16000 - hop, hop)
    quietest = min(search, key=lambda i: float(np.mean(audio[i:i + hop] ** 2)))
    return audio[:quietest + hop // 2], audio[quietest + hop // 2:]


def _speech_time_named(turns: list[SpeechTurn], truth: list[tuple[float, float, str]], attribute: str) -> float:
    """Share of the true speech time where a turn carrying the right value of ``attribute`` is active."""
    total = right = 0.0
    for start, end, expected in truth:
        total += end - start
        right += sum(max(0.0, min(end, t.end) - max(start, t.start)) for t in turns
                     if getattr(t, attribute) == expected)
    return right / total


def _truth(segments, sample_rate: int, lead: float = 0.5, gap: float = 0.4) -> list[tuple[float, float, int]]:
    """(start, end, speaker index) of each segment's audible speech as synthetic.write_talking_video places them:
    eSpeak ends a sentence with a fade to about -93 dBFS, which no one hears (and AAC turns to zeros)."""
    from avid.voice.vad import frame_db

    out, cursor, hop = [], lead, sample_rate // 100
    for segment in segments:
        levels = frame_db(segment.audio[:segment.audio.size // hop * hop].reshape(-1, hop))
        audible = np.flatnonzero(levels >= -70.0)
        first, last = (audible[0], audible[-1] + 1) if audible.size else (0, 0)
        out.append((cursor + first * hop / sample_rate, cursor + last * hop / sample_rate, segment.speaker))
        cursor += segment.audio.size / sample_rate + gap
    return out


@pytest.fixture(scope="module")
def pair_on_screen(synthetic, tmp_path_factory, astronaut_speech, grace_hopper_speech):
    """The astronaut (left) and Grace Hopper (right) on screen together, taking turns: only mouths tell who talks."""
    path = tmp_path_factory.mktemp("label") / "pair.mp4"
    a1, a2 = _halves(astronaut_speech)
    g1, g2 = _halves(grace_hopper_speech)
    segments = [synthetic.Segment(a1, 0), synthetic.Segment(g1, 1), synthetic.Segment(a2, 0),
                synthetic.Segment(g2, 1)]
    synthetic.write_talking_video(path, segments, [synthetic.astronaut(), synthetic.grace_hopper()],
                                  size=(640, 360), both_on_screen=True)
    return path, _truth(segments, synthetic.SAMPLE_RATE)


@pytest.fixture(scope="module")
def pair_ingest(pair_on_screen, cfg, models):
    from avid.pipeline.ingest import process_file

    return process_file(pair_on_screen[0], cfg, models=models)


def test_ingest_carries_the_energy_track_of_a_separate_decode(pair_on_screen, pair_ingest, cfg):
    from avid.io.media import iter_audio
    from avid.voice.vad import EnergyMeter

    carried = pair_ingest.energy
    meter = EnergyMeter(cfg)
    for chunk in iter_audio(pair_on_screen[0], cfg.media.audio_sample_rate, cfg.media.audio_chunk_seconds):
        meter.feed(chunk)
    decoded = meter.track()
    assert carried is not None and carried.hop == decoded.hop == cfg.voice.energy_hop_seconds
    assert len(carried.values) == len(decoded.values) > 0
    np.testing.assert_allclose(carried.values, decoded.values, rtol=1e-6)
    assert carried.values.max() > 10 * np.median(carried.values[carried.values > 0])   # speech stands out


def test_label_links_each_speaker_to_the_face_that_talks(pair_on_screen, pair_ingest, cfg):
    from avid.pipeline.label import label_recording

    path, truth = pair_on_screen
    result = label_recording(path, cfg, ingest=pair_ingest)
    assert len(result.speakers) == 2 and len(result.face_tracks) == 2
    # The track on the left is the astronaut (speaker index 0), on the right Grace Hopper.
    left, right = sorted(result.face_tracks, key=lambda t: t.detections[0].box[0])
    expected = [(start, end, (left.id, right.id)[who]) for start, end, who in truth]
    assert _speech_time_named(result.turns, expected, "track_id") >= 0.9
    assert {s.name for s in result.speakers} == {"unknown-1", "unknown-2"}
    assert result.speakers[0].track_ids == [left.id]      # the astronaut speaks first: unknown-1
    assert result.track_names == {left.id: "unknown-1", right.id: "unknown-2"}


def test_enrolled_unknowns_are_recognised_next_time(pair_on_screen, pair_ingest, cfg, tmp_path):
    from avid.identity.store import Gallery
    from avid.pipeline.label import label_recording

    path, _ = pair_on_screen
    with Gallery(tmp_path / "gallery.db") as gallery:
        first = label_recording(path, cfg, gallery=gallery, ingest=pair_ingest, enroll_unknown=True)
        assert sorted(p.name for p in gallery.people()) == ["unknown-1", "unknown-2"]
        assert all(p.n_face == 1 and p.n_voice == 1 for p in gallery.people())
        again = label_recording(path, cfg, gallery=gallery, ingest=pair_ingest, enroll_unknown=True)
        assert [(s.speaker, s.name, s.known) for s in again.speakers] == \
               [(s.speaker, s.name, True) for s in first.speakers]
        assert len(gallery.people()) == 2                # nobody enrolled twice


def test_audio_only_gives_voice_only_speakers(speech_wav, cfg, models):
    from avid.pipeline.label import label_recording

    result = label_recording(speech_wav, cfg, models=models)
    assert result.turns and not result.face_tracks
    assert all(t.track_id is None and t.name == "unknown-1" for t in result.turns)
    assert [s.track_ids for s in result.speakers] == [[]]


def test_video_without_audio_gives_faces_and_says_so(video_without_audio, cfg, models):
    from avid.pipeline.label import label_recording

    result = label_recording(video_without_audio, cfg, models=models)
    assert result.face_tracks and not result.turns and not result.speakers
    assert any("no audio stream" in w for w in result.warnings)


def test_silence_gives_no_turns_and_says_so(silent_video, silent_wav, cfg, models):
    from avid.errors import NoContentError
    from avid.pipeline.label import label_recording

    result = label_recording(silent_video, cfg, models=models)
    assert not result.turns and any("no speech" in w for w in result.warnings)
    with pytest.raises(NoContentError, match="no speech"):
        label_recording(silent_wav, cfg, models=models)


def test_cli_writes_outputs_and_prints_turns_per_person(speech_wav, tmp_path, capsys):
    import json

    from avid.cli import main

    out, db = tmp_path / "out", tmp_path / "db" / "gallery.db"
    code = main(["--quiet", "label", str(speech_wav), "--out", str(out), "--format", "json,srt,rttm",
                 "--db", str(db), "--enroll-unknown"])
    printed = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["speech.json", "speech.rttm", "speech.srt"]
    turns = len(json.loads((out / "speech.json").read_text())["turns"])    # one per sentence: eSpeak's pauses
    assert re.search(rf"^unknown-1\t{turns}\t[\d.]+\t", printed, re.MULTILINE), printed
    code = main(["--quiet", "label", str(speech_wav), "--out", str(out), "--format", "json", "--db", str(db)])
    assert code == 0
    people = json.loads((out / "speech.json").read_text())["people"]
    assert [(p["name"], p["known"]) for p in people] == [("unknown-1", True)]   # enrolled last time


def test_cli_refuses_bad_arguments(speech_wav, tmp_path, capsys):
    from avid.cli import main

    assert main(["label", str(speech_wav), "--db", str(tmp_path / "none.db")]) != 0
    assert "no gallery database here" in capsys.readouterr().err
    assert main(["label", str(speech_wav), "--min-speakers", "3", "--max-speakers", "2"]) != 0
    assert main(["label", str(speech_wav), "--format", "json,docx", "--out", str(tmp_path)]) != 0


# ------------------------------------------------------------------------------------------- shared dev data
def _enrol(gallery, name: str, cfg, models, photo=None, voice=None) -> None:
    """Enrol a person through the identify API from a photo and/or a voice clip file."""
    from avid.pipeline.identify import enroll

    enroll(gallery, name, images=[photo] if photo else [], audios=[voice] if voice else [], cfg=cfg, models=models)


def test_hamilton_clip_names_lin_manuel_miranda_from_his_photo(shared_data, cfg, models, tmp_path):
    from avid.identity.store import Gallery
    from avid.pipeline.label import label_recording

    photo = shared_data / "faces" / "lin_manuel_miranda" / "lin-manuel-miranda.png"
    with Gallery(tmp_path / "gallery.db") as gallery:
        _enrol(gallery, "Lin-Manuel Miranda", cfg, models, photo=photo)
        result = label_recording(shared_data / "video" / "short_hamilton_clip.mp4", cfg, gallery=gallery,
                                 models=models)
    speech = sum(t.end - t.start for t in result.turns)
    named = [t for t in result.turns if t.name == "Lin-Manuel Miranda"]
    assert sum(t.end - t.start for t in named) >= 0.8 * speech > 0
    # Linked to his face track: the track that looks most like his photo.
    from avid.pipeline.ingest import process_file

    photo_embedding = process_file(photo, cfg, models=models).face_tracks[0].embedding
    his_track = max(result.face_tracks, key=lambda t: float(t.embedding @ photo_embedding))
    lin = next(s for s in result.speakers if s.name == "Lin-Manuel Miranda")
    assert lin.track_ids == [his_track.id]
    assert all(t.track_id == his_track.id for t in named)
    assert result.track_names[his_track.id] == "Lin-Manuel Miranda"


LIBRISPEECH = "voices/librispeech_train-clean-100"
# Two people with a closed-mouth photo for the video and another photo to enrol with, and a LibriSpeech voice each.
TALKING_PHOTOS = [("Paul Allen", "paul_allen/paul_allen4.jpg", "paul_allen/paul_allen2.jpg", "3374-298025-0000.flac"),
                  ("Rose Leslie", "rose_leslie/img1.jpg", "rose_leslie/img2.jpg", "198-126831-0000.flac")]


def _portrait(path, synthetic):
    """A photo cropped around its face, 360 px tall, with its mouth located by dlib's 68 landmarks."""
    import cv2
    import dlib

    from avid.faces.dlib_files import dlib_shape_predictor
    from avid.io import media

    image = media.load_image(path)
    box = max(dlib.get_frontal_face_detector()(image, 1), key=lambda r: r.area())
    points = np.array([(p.x, p.y) for p in dlib_shape_predictor("shape_predictor_68_face_landmarks.dat")(
        image, box).parts()], dtype=float)
    size = max(box.width(), box.height())
    cx, cy = (box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2
    x0, y0 = int(max(0, cx - 1.3 * size)), int(max(0, cy - 1.45 * size))
    x1, y1 = int(min(image.shape[1], cx + 1.3 * size)), int(min(image.shape[0], cy + 1.55 * size))
    k = 360 / (y1 - y0)
    crop = cv2.resize(image[y0:y1, x0:x1], (round((x1 - x0) * k), 360), interpolation=cv2.INTER_AREA)
    mouth = (points[48, 0] - x0, points[60:68, 1].mean() - y0, points[54, 0] - x0, points[8, 1] - y0)
    return synthetic.Portrait(np.ascontiguousarray(crop), mouth=tuple(int(round(v * k)) for v in mouth))


def test_talking_photos_of_enrolled_people_are_named(shared_data, synthetic, cfg, models, tmp_path):
    from avid.identity.store import Gallery
    from avid.io import media
    from avid.pipeline.label import label_recording

    portraits, segments, names = [], [], []
    with Gallery(tmp_path / "gallery.db") as gallery:
        for who, (name, video_photo, enrol_photo, utterance) in enumerate(TALKING_PHOTOS):
            enrol_half, spoken = _halves(media.load_audio(shared_data / LIBRISPEECH / utterance))
            enrol_voice = synthetic.write_wav(tmp_path / f"{name} voice.wav", enrol_half)
            _enrol(gallery, name, cfg, models, photo=shared_data / "faces" / enrol_photo, voice=enrol_voice)
            portraits.append(_portrait(shared_data / "faces" / video_photo, synthetic))
            names.append(name)
            segments.append([synthetic.Segment(part, who) for part in np.array_split(spoken, 2)])
        alternating = [segments[who][part] for part in range(2) for who in range(2)]
        path = tmp_path / "talking photos.mp4"
        synthetic.write_talking_video(path, alternating, portraits, size=(640, 360), both_on_screen=True)
        result = label_recording(path, cfg, gallery=gallery, models=models)
    truth = [(start, end, names[who]) for start, end, who in _truth(alternating, synthetic.SAMPLE_RATE)]
    assert _speech_time_named(result.turns, truth, "name") >= 0.9
