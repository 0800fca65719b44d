"""Enrol, train and query end to end, through the Python API and the CLI, on media generated here.

Faces: scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper. Voices: eSpeak NG voices, one
per person, that Resemblyzer tells apart (tests/media.py); synthetic voices are too alike for a fair test of
rejecting a stranger's voice, so that is checked on real speakers (the shared-data tests at the end, which
include issue 3's chimeric acceptance; scripts/eval_chimeric.py prints its full table).
"""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from avid.cli import main
from avid.config import load_config
from avid.errors import AvidError, NoContentError
from avid.identity import scoring, training
from avid.identity.store import Gallery
from avid.io.media import content_hash, load_audio, load_image
from avid.pipeline import identify
from avid.pipeline.ingest import process_file
from avid.pipeline.models import Models
from tests import media as synthetic
from tests.chimeric import identities, talking_photo

SENTENCES = ["The quick brown fox jumps over the lazy dog while the sun sets slowly behind the hills.",
             "Every morning she walks to the harbour and counts the boats that come back with fish.",
             "Numbers and letters were her tools, and the machines listened when she wrote to them."]


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def models(cfg):
    return Models(cfg)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("identify_media")
    astronaut, grace = synthetic.astronaut_face(), synthetic.grace_hopper_face()
    files = {
        "eileen": synthetic.write_image(d / "eileen.jpg", astronaut),
        # A second "photo": mirrored, zoomed in and smaller.
        "eileen_2": synthetic.write_image(d / "eileen_2.jpg", np.ascontiguousarray(astronaut[20:400:2, 60:440:2][:, ::-1])),
        "grace": synthetic.write_image(d / "grace.jpg", grace),
        "grace_2": synthetic.write_image(d / "grace 2.png", np.ascontiguousarray(grace[::2, ::-2])),
        "no_face": synthetic.write_image(d / "wall.png", np.full((240, 320, 3), 180, np.uint8)),
        "silence": synthetic.write_wav(d / "silence.wav", synthetic.silence(3.0)),
    }
    voices = {"eileen": synthetic.FEMALE_VOICE, "grace": synthetic.KLATT_VOICE}
    for who, voice in voices.items():
        for i in (0, 1):
            files[f"{who}_voice_{i}"] = synthetic.write_wav(d / f"{who}_{i}.wav", synthetic.speak(SENTENCES[i], voice))
    talk = [synthetic.Segment(synthetic.speak(SENTENCES[2], synthetic.FEMALE_VOICE), speaker=0)]
    files["eileen_video"] = d / "eileen_talks.mp4"
    synthetic.write_talking_video(files["eileen_video"], talk, [synthetic.astronaut()], size=(640, 360))
    files["two_people_video"] = d / "two_people.mp4"
    synthetic.write_talking_video(files["two_people_video"], talk, [synthetic.astronaut(), synthetic.grace_hopper()],
                                  size=(640, 360), both_on_screen=True)
    return {k: str(v) for k, v in files.items()}


@pytest.fixture
def cached_models(monkeypatch, models):
    """The CLI builds its own encoders per command; give it the module's, so the suite loads them once."""
    monkeypatch.setattr(identify, "Models", lambda cfg: models)
    monkeypatch.setattr("avid.evaluation.identification.Models", lambda cfg: models)
    return models


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip_from_a_fresh_database(tmp_path, media, capsys, cached_models):
    db = str(tmp_path / "fresh" / "gallery.db")
    assert run_cli(capsys, "enroll", "Eileen Collins", "--image", media["eileen"], "--db", db)[0] == 0
    code, out, _ = run_cli(capsys, "enroll", "Grace Hopper", "--image", media["grace"], "--audio",
                           media["grace_voice_0"], "--db", db)
    assert code == 0 and "1 face and 1 voice" in out
    # The same name again is refused (and nothing is added) unless --add.
    code, _, err = run_cli(capsys, "enroll", "Eileen Collins", "--audio", media["eileen_voice_0"], "--db", db)
    assert code != 0 and "already enrolled" in err and "--add" in err
    code, out, _ = run_cli(capsys, "enroll", "Eileen Collins", "--add", "--audio", media["eileen_voice_0"], "--db", db)
    assert code == 0 and "1 face and 1 voice" in out

    # Before training: raw matching, and the query says so.
    code, out, err = run_cli(capsys, "query", "--image", media["eileen_2"], "--db", db)
    assert code == 0 and "raw embeddings" in out and "avid train" in err
    assert out.splitlines()[1].split("\t")[:2] == ["answer", "Eileen Collins"]

    code, out, _ = run_cli(capsys, "train", "--db", db)
    assert code == 0 and "2 people" in out
    answers = {}
    for name, argv in {"face": ["--image", media["grace_2"]], "voice": ["--audio", media["grace_voice_1"]],
                       "both": ["--image", media["eileen_2"], "--audio", media["eileen_voice_1"]]}.items():
        code, out, _ = run_cli(capsys, "query", *argv, "--json", "--db", db)
        assert code == 0
        answers[name] = json.loads(out)
    assert all(a["space"] == "z" for a in answers.values())
    assert answers["face"]["answer"]["name"] == "Grace Hopper" and answers["face"]["mode"] == "face"
    assert answers["voice"]["answer"]["name"] == "Grace Hopper" and answers["voice"]["mode"] == "voice"
    assert answers["both"]["answer"]["name"] == "Eileen Collins" and answers["both"]["mode"] == "both"
    assert [m["rank"] for m in answers["face"]["matches"]] == [1, 2]

    code, out, _ = run_cli(capsys, "people", "list", "--db", db)
    rows = [line.split("\t")[:3] for line in out.splitlines()]
    assert rows == [["name", "faces", "voices"], ["Eileen Collins", "1", "1"], ["Grace Hopper", "1", "1"]]
    code, out, _ = run_cli(capsys, "people", "show", "Grace Hopper", "--db", db)
    assert code == 0 and media["grace_voice_0"] in out
    assert run_cli(capsys, "people", "rename", "Grace Hopper", "Grace B. Hopper", "--db", db)[0] == 0
    code, _, err = run_cli(capsys, "people", "delete", "Nobody", "--yes", "--db", db)
    assert code != 0 and "no person named 'Nobody'" in err
    code, out, _ = run_cli(capsys, "people", "delete", "Grace B. Hopper", "--yes", "--db", db)
    assert code == 0 and "avid train" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM observations o JOIN people p ON p.id = o.person_id "
                            "WHERE p.name LIKE 'Grace%'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM model").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM prototypes WHERE person_id NOT IN (SELECT id FROM people)"
                            ).fetchone()[0] == 0
    code, out, _ = run_cli(capsys, "query", "--image", media["grace_2"], "--db", db)
    assert out.splitlines()[1].split("\t")[1] == "unknown"


def test_video_enrolment_is_found_by_face_voice_or_both(tmp_path, media, cfg, models):
    with Gallery(tmp_path / "g.db") as gallery:
        enrolment = identify.enroll(gallery, "Eileen", videos=[media["eileen_video"]], cfg=cfg, models=models)
        assert {a["modality"] for a in enrolment.added} == {"face", "voice"}
        voice_obs = gallery.observations(person="Eileen", modality="voice")[0]
        face_obs = gallery.observations(person="Eileen", modality="face")[0]
        assert voice_obs.paired_with == face_obs.id and face_obs.track_id is not None
        assert face_obs.content_hash == voice_obs.content_hash == content_hash(media["eileen_video"])
        identify.enroll(gallery, "Grace", images=[media["grace"]], audios=[media["grace_voice_0"]], cfg=cfg,
                        models=models)
        training.train(gallery, cfg)
        for kwargs in ({"image": media["eileen_2"]}, {"audio": media["eileen_voice_1"]},
                       {"image": media["eileen"], "audio": media["eileen_voice_0"]}):
            result = identify.query(gallery, cfg=cfg, models=models, **kwargs)
            assert result.answer.name == "Eileen", kwargs
        # A modality added later joins the same person.
        identify.enroll(gallery, "Eileen", images=[media["eileen"]], add=True, cfg=cfg, models=models)
        assert (gallery.person("Eileen").n_face, gallery.person("Eileen").n_voice) == (2, 1)
        assert len(gallery.prototypes("z_face")[0]) == 2          # prototypes refreshed without retraining


def test_the_face_seen_talking_is_the_person_of_a_video(tmp_path, media, cfg, models):
    """Eileen talks and Grace sits beside her, still: the video is Eileen's, without --track."""
    with Gallery(tmp_path / "g.db") as gallery:
        enrolment = identify.enroll(gallery, "Eileen", videos=[media["two_people_video"]], cfg=cfg, models=models)
        face = gallery.observations(person="Eileen", modality="face")[0]
        photo = identify.evidence_from(media["eileen"], cfg, models).face
        grace = identify.evidence_from(media["grace"], cfg, models).face
        assert float(face.embedding @ photo) > float(face.embedding @ grace)
        assert any("seen talking" in note for note in enrolment.notes)
        evidence = identify.evidence_from(media["two_people_video"], cfg, models)
        assert evidence.choice["reason"] == "talking" and evidence.choice["track_id"] == face.track_id
        assert len(evidence.choice["candidates"]) == 2 and evidence.voice is not None


def test_track_overrides_the_choice(tmp_path, media, cfg, models):
    with Gallery(tmp_path / "g.db") as gallery:
        tracks = [t for t in process_file(media["two_people_video"], cfg, models).face_tracks
                  if t.embedding is not None]
        assert len(tracks) == 2
        with pytest.raises(AvidError, match="no face track 999"):
            identify.enroll(gallery, "Eileen", videos=[media["two_people_video"]], track=999, cfg=cfg, models=models)
        grace = identify.evidence_from(media["two_people_video"], cfg, models).choice["track_id"] ^ 1
        enrolment = identify.enroll(gallery, "Grace", videos=[media["two_people_video"]], track=grace,
                                    cfg=cfg, models=models)
        assert enrolment.added[0]["track_id"] == grace


@pytest.fixture(scope="module")
def awkward_videos(tmp_path_factory):
    """Videos whose person is unclear or whose voice is not the face's."""
    d = tmp_path_factory.mktemp("awkward_videos")
    grace = synthetic.grace_hopper_face()
    eileen = np.ascontiguousarray(synthetic.astronaut_face()[:300, 90:390])   # her face as large as Grace's
    speech = synthetic.speak(SENTENCES[2], synthetic.FEMALE_VOICE)
    small_grace = synthetic.BackgroundFace(grace, height=0.5)
    videos = {
        # Two still faces side by side, equally large: nobody is seen talking.
        "two_still_speech": ([synthetic.Segment(speech)], [eileen, grace], {"both_on_screen": True}),
        "two_still_silent": ([synthetic.Segment(synthetic.silence(3.0))], [eileen, grace], {"both_on_screen": True}),
        # A large still face and a small one: the large one dominates.
        "large_and_small": ([synthetic.Segment(synthetic.silence(3.0))], [eileen],
                            {"background_faces": [small_grace]}),
        # The voice comes from off screen: the face on screen never moves its mouth.
        "off_screen_voice": ([synthetic.Segment(speech, speaker=None)], [synthetic.astronaut()],
                             {"both_on_screen": True}),
        # The only face is a photo on the wall.
        "photo_on_the_wall": ([synthetic.Segment(speech, speaker=None)], [], {"background_faces": [small_grace]}),
        "no_audio": ([synthetic.Segment(speech)], [synthetic.astronaut()], {"with_audio": False}),
    }
    paths = {}
    for name, (segments, people, options) in videos.items():
        paths[name] = str(d / f"{name}.mp4")
        synthetic.write_talking_video(paths[name], segments, people, size=(640, 360), **options)
    return paths


def test_comparable_faces_nobody_seen_talking_are_refused_with_the_list(tmp_path, awkward_videos, cfg, models):
    with Gallery(tmp_path / "g.db") as gallery:
        for name, why in (("two_still_speech", "no face is seen talking"), ("two_still_silent", "there is no speech")):
            with pytest.raises(AvidError, match=rf"{why} and 2 different faces .* --track ID:\n  track \d: .*"
                                                rf"\n  track \d: "):
                identify.enroll(gallery, "Eileen", videos=[awkward_videos[name]], cfg=cfg, models=models)
        assert gallery.people() == []


def test_the_dominant_face_is_taken_when_nobody_talks(awkward_videos, cfg, models, media):
    evidence = identify.evidence_from(awkward_videos["large_and_small"], cfg, models)
    assert evidence.choice["reason"] == "dominant"
    photo = identify.evidence_from(media["eileen"], cfg, models).face
    assert float(evidence.face @ photo) >= scoring.raw_threshold(cfg, evidence.face_backend)


@pytest.mark.parametrize("name", ["off_screen_voice", "photo_on_the_wall"])
def test_a_voice_the_face_does_not_say_is_left_out(name, awkward_videos, cfg, models):
    evidence = identify.evidence_from(awkward_videos[name], cfg, models)
    assert evidence.face is not None and evidence.voice is None
    assert any("not seen talking" in note for note in evidence.notes)


def test_no_audio_gives_the_face_and_a_photo_is_not_a_video(tmp_path, awkward_videos, media, cfg, models):
    evidence = identify.evidence_from(awkward_videos["no_audio"], cfg, models, given_as="video")
    assert evidence.mode == "face" and any("no audio" in note or "no usable speech" in note
                                           for note in evidence.notes)
    with Gallery(tmp_path / "g.db") as gallery:
        with pytest.raises(AvidError, match=r"eileen.jpg: is a still image, not a video: give it with --image"):
            identify.enroll(gallery, "Eileen", videos=[media["eileen"]], cfg=cfg, models=models)
        # A video's sound track is a voice clip.
        enrolment = identify.enroll(gallery, "Eileen", audios=[media["eileen_video"]], cfg=cfg, models=models)
        assert [a["modality"] for a in enrolment.added] == ["voice"]


def test_bad_enrolments_store_nothing(tmp_path, media, cfg, models):
    with Gallery(tmp_path / "g.db") as gallery:
        with pytest.raises(NoContentError, match="no face"):
            identify.enroll(gallery, "Eileen", images=[media["eileen"], media["no_face"]], cfg=cfg, models=models)
        with pytest.raises(NoContentError, match="speech"):
            identify.enroll(gallery, "Eileen", images=[media["eileen"]], audios=[media["silence"]], cfg=cfg,
                            models=models)
        with pytest.raises(AvidError, match="nothing to enrol"):
            identify.enroll(gallery, "Eileen", cfg=cfg, models=models)
        assert gallery.people() == [] and gallery.observations() == []
        identify.enroll(gallery, "Eileen", images=[media["eileen"]], cfg=cfg, models=models)
        with pytest.raises(NoContentError, match="no face"):
            identify.query(gallery, image=media["no_face"], cfg=cfg, models=models)
        with pytest.raises(AvidError, match="already enrolled"):
            identify.enroll(gallery, "Eileen", images=[media["grace"]], cfg=cfg, models=models)
        assert gallery.person("Eileen").n_face == 1


def test_corrupt_model_is_reported(tmp_path, media, cfg, models):
    with Gallery(tmp_path / "g.db") as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen"]], cfg=cfg, models=models)
        training.train(gallery, cfg)
        gallery._db.execute("UPDATE model SET checkpoint = ?", (b"garbage" * 100,))
        with pytest.raises(AvidError, match="not a readable avid shared-model checkpoint"):
            identify.query(gallery, image=media["eileen_2"], cfg=cfg, models=models)


@pytest.mark.shared_data
def test_real_people_by_face_and_voice(shared_data, tmp_path, cfg, models):
    """Three real faces paired with three LibriSpeech speakers: enrol one photo and one utterance each, then
    identify other photos and other speakers' utterances as unknown."""
    faces = shared_data / "faces"
    voices = sorted((shared_data / "voices" / "librispeech_train-clean-100").glob("*.flac"))
    people = {"obama": ("barack_obama/obama.jpg", "barack_obama/obama2.jpg", voices[0]),
              "biden": ("joe_biden/biden.jpg", "joe_biden/biden2.jpg", voices[1]),
              "wozniak": ("steve_wozniak/steve_wozniak1.jpg", "steve_wozniak/test_steve_wozniak.jpg", voices[2])}
    with Gallery(tmp_path / "g.db") as gallery:
        for name, (enrol_photo, _, voice) in people.items():
            identify.enroll(gallery, name, images=[faces / enrol_photo], audios=[voice], cfg=cfg, models=models)
        training.train(gallery, cfg)
        for name, (_, test_photo, voice) in people.items():
            assert identify.query(gallery, image=faces / test_photo, cfg=cfg, models=models).answer.name == name
            assert identify.query(gallery, image=faces / test_photo, audio=voice, cfg=cfg,
                                  models=models).answer.name == name
        assert identify.query(gallery, image=faces / "_unknown" / "test_unknown_elon_musk.jpg", cfg=cfg,
                              models=models).answer.name == "unknown"
        strangers = [identify.query(gallery, audio=v, cfg=cfg, models=models).answer.name for v in voices[3:8]]
        assert strangers.count("unknown") >= 4


@pytest.mark.shared_data
def test_chimeric_acceptance(shared_data, tmp_path, cfg, cached_models):
    """Issue 3's chimeric people (scripts/eval_chimeric.py prints the full table): closed-set top-1 targets,
    non-enrolled people unknown, and the shared code at least as accurate as the raw baselines."""
    from avid.evaluation.identification import evaluate_manifest
    from tests.chimeric import chimeric_manifest

    report = evaluate_manifest(chimeric_manifest(shared_data, tmp_path, seed=0), cfg, ablation=True)
    z, systems = report["systems"]["z"], report["systems"]
    assert z["face"]["top1"] >= 0.95 and z["voice"]["top1"] >= 0.90 and z["both"]["top1"] >= 0.98
    assert z["both"]["top1_open"] >= 0.98
    strangers = z["face"]["non_enrolled"] + z["voice"]["non_enrolled"]
    accepted = z["face"]["far"] * z["face"]["non_enrolled"] + z["voice"]["far"] * z["voice"]["non_enrolled"]
    assert strangers == 51 and 1 - accepted / strangers >= 0.90
    assert z["face"]["top1"] >= systems["raw_face"]["face"]["top1"]
    assert z["voice"]["top1"] >= systems["raw_voice"]["voice"]["top1"]
    assert z["both"]["eer"] <= min(z["face"]["eer"], z["voice"]["eer"])


def test_people_named_after_training_are_matched_in_z(tmp_path, media, cfg, models):
    """Someone given observations outside enrol (the library naming a cluster) has no z prototype yet; queries in
    z still find them, from their raw prototypes."""
    with Gallery(tmp_path / "g.db") as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen"]], cfg=cfg, models=models)
        training.train(gallery, cfg)
        face = identify.evidence_from(media["grace"], cfg, models)
        observation = gallery.add_observation(None, "face", face.face, face.face_backend, media["grace"])
        gallery.add_person("Grace")
        gallery.assign([observation], "Grace")
        assert [p.name for p in gallery.prototypes("z_face")[0]] == ["Eileen"]
        result = identify.query(gallery, image=media["grace_2"], cfg=cfg, models=models)
        assert result.space == "z" and result.answer.name == "Grace"


def test_voices_of_another_encoder_are_refused_then_reembedded(tmp_path, media, cfg, models):
    """A gallery made with Resemblyzer: a CAM++ query is refused with a clear message; `reembed` swaps every
    stored voice for a CAM++ one from its source file, all or nothing."""
    old = load_config(overrides={"voice": {"encoder": {"backend": "resemblyzer"}}})
    old_models = Models(old)
    gone = tmp_path / "gone.wav"
    gone.write_bytes(open(media["grace_voice_0"], "rb").read())
    with Gallery(tmp_path / "g.db") as gallery:
        identify.enroll(gallery, "Eileen", audios=[media["eileen_voice_0"]], cfg=old, models=old_models)
        identify.enroll(gallery, "Grace", audios=[str(gone)], cfg=old, models=old_models)
        assert gallery.encoders()["voice"] == ("resemblyzer", 256)
        query = identify.evidence_from(media["eileen_voice_1"], cfg, models)
        with pytest.raises(AvidError, match="resemblyzer voice embeddings"):
            scoring.query_embeddings(gallery, query, cfg=cfg)
        gone.unlink()
        with pytest.raises(AvidError, match="no source file"):
            identify.reembed_voices(gallery, cfg, models)
        assert gallery.encoders()["voice"] == ("resemblyzer", 256)          # nothing changed
        counts = identify.reembed_voices(gallery, cfg, models, drop_missing=True)
        assert counts == {"reembedded": 1, "dropped": 1, "backend": "campplus"}
        assert gallery.encoders()["voice"] == ("campplus", 192)
        best = scoring.query_embeddings(gallery, query, cfg=cfg).matches[0]
        assert best.name == "Eileen" and best.accepted


@pytest.mark.shared_data
def test_a_short_cut_of_one_performer_moving_fast_enrols_as_one_person(shared_data, tmp_path, cfg, models):
    """Issue 10: 2 s of the Hamilton clip (Lin-Manuel Miranda, lost and re-found by the tracker) is one track."""
    clip = synthetic.write_cut(shared_data / "video" / "short_hamilton_clip.mp4", tmp_path / "cut.mp4", 0.0, 2.0)
    tracks = [t for t in process_file(str(clip), cfg, models).face_tracks if t.embedding is not None]
    assert len(tracks) == 1
    with Gallery(tmp_path / "g.db") as gallery:
        enrolment = identify.enroll(gallery, "Lin-Manuel Miranda", videos=[clip], cfg=cfg, models=models)
        assert [a["modality"] for a in enrolment.added] == ["face", "voice"]
        photo = shared_data / "faces" / "lin_manuel_miranda" / "lin-manuel-miranda.png"
        answer = identify.query(gallery, image=photo, cfg=cfg, models=models).answer
        assert answer.name == "Lin-Manuel Miranda" and answer.accepted


@pytest.mark.shared_data
@pytest.mark.parametrize("first, second", [("alex_lacamoire", "lin_manuel_miranda"),
                                           ("barack_obama", "lin_manuel_miranda")])
def test_a_cut_between_two_people_is_never_joined(first, second, shared_data, tmp_path, cfg, models):
    """The two most alike pairs of different people (scripts/calibrate_track_joins.py), cut back to back."""
    photos = [identities(shared_data)[who][0] for who in (first, second)]
    clip = tmp_path / "cut.mp4"
    pause = synthetic.silence(1.6)
    synthetic.write_talking_video(clip, [synthetic.Segment(pause), synthetic.Segment(pause, speaker=1)],
                                  [load_image(p) for p in photos], size=(640, 360), gap_seconds=0.0)
    tracks = [t for t in process_file(str(clip), cfg, models).face_tracks if t.embedding is not None]
    assert len(tracks) == 2 and tracks[0].end < tracks[1].start


@pytest.mark.shared_data
def test_a_talking_photo_with_someone_behind_is_the_speaker(shared_data, tmp_path, cfg, models):
    """Issue 10's eval ident video queries in small: Miranda talks, Obama's photo is in the background."""
    people = identities(shared_data)
    speech = str(sorted((shared_data / "voices" / "librispeech_train-clean-100").glob("*.flac"))[0])
    with Gallery(tmp_path / "g.db") as gallery:
        for who in ("barack_obama", "lin_manuel_miranda"):
            identify.enroll(gallery, who, images=[people[who][0]], cfg=cfg, models=models)
        portrait, _ = talking_photo(people["lin_manuel_miranda"][0], cfg)
        video = tmp_path / "talking.mp4"
        synthetic.write_talking_video(video, [synthetic.Segment(load_audio(speech, synthetic.SAMPLE_RATE))],
                                      [portrait], size=(960, 540), background_faces=[
                                          synthetic.BackgroundFace(load_image(people["barack_obama"][1]), 1.0)])
        result = identify.query(gallery, video=video, cfg=cfg, models=models)
        assert result.choice["reason"] == "talking" and len(result.choice["candidates"]) == 2
        assert result.answer.name == "lin_manuel_miranda"


def test_a_blurred_face_needs_more_similarity(tmp_path, media, cfg, models):
    """A blurred photo is measured as such, and its face is scored against a raised threshold."""
    import cv2

    sharp = identify.evidence_from(media["eileen_2"], cfg, models)
    blurred_path = synthetic.write_image(tmp_path / "blurred.png",
                                         cv2.GaussianBlur(load_image(media["eileen_2"]), (0, 0), 2.0))
    blurred = identify.evidence_from(blurred_path, cfg, models)
    assert sharp.face_sharpness >= cfg.identify.blur.sharp > blurred.face_sharpness
    base = scoring.raw_threshold(cfg, "dlib")
    assert scoring.face_threshold(cfg, "dlib", sharp.face_sharpness) == base
    assert base < scoring.face_threshold(cfg, "dlib", blurred.face_sharpness) <= base + cfg.identify.blur.max_raise
    with Gallery(tmp_path / "g.db") as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen"]], cfg=cfg, models=models)
        plain = scoring.score_people(gallery, blurred.face, None, cfg, use_model=False)[0][0][1]
        weighed = scoring.query_embeddings(gallery, blurred, cfg=cfg, use_model=False).matches[0].score
        assert weighed < plain - 0.05


def _voices_with_a_domain_direction(rng, people: int, dim: int = 192):
    """Enrolled voices, their second clips and strangers' clips, all recorded alike: each a speaker direction plus
    one direction every voice of the domain shares (what a speaker encoder gives for audio unlike its training)."""
    domain = rng.normal(size=dim)
    domain *= 2.0 / np.linalg.norm(domain)
    speakers = rng.normal(size=(2 * people, dim))
    speakers /= np.linalg.norm(speakers, axis=1, keepdims=True)
    clip = lambda: speakers + domain + 0.45 * rng.normal(size=speakers.shape) / np.sqrt(dim)
    first, second = clip(), clip()
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return unit(first[:people]), unit(second[:people]), unit(second[people:])


def test_voices_are_scored_relative_to_the_gallery_mean_once_it_is_large(cfg):
    rng = np.random.default_rng(0)
    enrolled, genuine, strangers = _voices_with_a_domain_direction(rng, 60)
    raw_best = np.array([(enrolled @ s).max() for s in strangers])
    centred = np.stack([scoring.voice_similarities(enrolled, q, cfg) for q in np.vstack([genuine, strangers])])
    threshold = scoring.raw_threshold(cfg, "campplus")
    # Raw cosine: the shared direction lifts every stranger over the threshold; centred, none passes, and each
    # genuine second clip is still its own speaker's, above it.
    assert (raw_best >= threshold).all()
    assert (centred[60:].max(axis=1) < threshold).all()
    assert (centred[:60].argmax(axis=1) == np.arange(60)).all()
    assert (centred[:60].max(axis=1) >= threshold).all()


def test_a_small_gallery_scores_voices_by_raw_cosine(cfg):
    enrolled, genuine, _ = _voices_with_a_domain_direction(np.random.default_rng(1), 10)
    least = cfg.identify.voice_centering.min_people
    assert len(enrolled) < least    # a mean of ten voices would be mostly those ten: no centring
    np.testing.assert_allclose(scoring.voice_similarities(enrolled, genuine[0], cfg), enrolled @ genuine[0], atol=1e-6)
