"""Enrol by one modality, recognise by the other: what the library teaches avid about enrolled people (issue 18).

Eileen (scikit-image's astronaut, an eSpeak female voice) and Grace (matplotlib's Grace Hopper, eSpeak's Klatt
voice) are enrolled by one modality; talking videos of them go into the library (``process_collection`` into the
same store); then the other modality must find them. The bad cases (a voice off screen, two enrolled people on
screen, a dubbed video, a stranger) must teach nothing, and the person's observations are checked after each.
"""
from __future__ import annotations

import pytest

from avid.cli import main
from avid.config import load_config
from avid.identity.learning import learn_from_library
from avid.identity.store import Gallery
from avid.library.collection import process_collection
from avid.pipeline import identify
from avid.pipeline.models import Models
from tests import media as synthetic

pytest.importorskip("skimage")
pytest.importorskip("espeakng_loader")

SAYS = ["The quick brown fox jumps over the lazy dog while the sun sets slowly behind the hills.",
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
    d = tmp_path_factory.mktemp("learning_media")
    eileen, grace = synthetic.astronaut(), synthetic.grace_hopper()
    speech = {who: [synthetic.speak(text, voice) for text in SAYS]
              for who, voice in (("eileen", eileen.voice), ("grace", grace.voice))}
    files = {"eileen_photo": synthetic.write_image(d / "eileen.jpg", eileen.image),
             "grace_photo": synthetic.write_image(d / "grace.jpg", grace.image),
             "eileen_voice": synthetic.write_wav(d / "eileen.wav", speech["eileen"][0]),
             "eileen_voice_2": synthetic.write_wav(d / "eileen 2.wav", speech["eileen"][1]),
             "grace_voice": synthetic.write_wav(d / "grace.wav", speech["grace"][0])}
    videos = {
        "eileen_talks": ([synthetic.Segment(speech["eileen"][2])], [eileen], {}),
        "grace_talks": ([synthetic.Segment(speech["grace"][2])], [grace], {}),
        # Eileen on screen, her mouth still, while Grace speaks off screen.
        "off_screen": ([synthetic.Segment(speech["grace"][2], speaker=None)], [eileen], {"both_on_screen": True}),
        # Both on screen, only Eileen talks.
        "two_enrolled": ([synthetic.Segment(speech["eileen"][2], speaker=0)], [eileen, grace],
                         {"both_on_screen": True}),
        # Eileen's face talks with Grace's voice.
        "dubbed": ([synthetic.Segment(speech["grace"][2], speaker=0)], [eileen], {}),
    }
    for name, (segments, people, options) in videos.items():
        (d / name).mkdir()
        files[name] = d / name / f"{name}.mp4"
        synthetic.write_talking_video(files[name], segments, people, size=(640, 360), **options)
    return files


def learned(gallery: Gallery, name: str) -> dict[str, int]:
    observations = gallery.observations(person=name)
    return {m: sum(o.modality == m and o.learned is not None for o in observations) for m in ("face", "voice")}


def test_enrolled_by_photo_recognised_by_voice(tmp_path, media, cfg, models):
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen_photo"]], cfg=cfg, models=models)
        assert identify.query(gallery, audio=media["eileen_voice"], cfg=cfg, models=models).answer.name == "unknown"
    summary = process_collection([media["eileen_talks"].parent], db, cfg, workers=1, quiet=True)
    assert summary.learned == {"Eileen": 2}
    with Gallery(db) as gallery:
        assert learned(gallery, "Eileen") == {"face": 1, "voice": 1}
        voice = [o for o in gallery.observations(person="Eileen", modality="voice")][0]
        assert voice.learned["vouched_by"] == "face" and voice.learned["scores"]["face"] >= 0.92
        answer = identify.query(gallery, audio=media["eileen_voice_2"], cfg=cfg, models=models).answer
        assert answer.name == "Eileen" and answer.accepted
        assert learn_from_library(gallery, cfg).total == 0            # nothing new: running again changes nothing


def test_enrolled_by_voice_recognised_by_face(tmp_path, media, cfg, models):
    db = tmp_path / "g.db"
    process_collection([media["grace_talks"].parent], db, cfg, workers=1, quiet=True)
    with Gallery(db) as gallery:
        # Enrolling later learns from what the library already holds.
        enrolment = identify.enroll(gallery, "Grace", audios=[media["grace_voice"]], cfg=cfg, models=models)
        assert any("learned from the library" in note for note in enrolment.notes)
        counts = learned(gallery, "Grace")      # her face, and her voice of each turn (a turn a sentence)
        assert counts["face"] == 1 and counts["voice"] >= 1
        answer = identify.query(gallery, image=media["grace_photo"], cfg=cfg, models=models).answer
        assert answer.name == "Grace" and answer.accepted


@pytest.mark.parametrize("video", ["off_screen", "dubbed", "grace_talks"])
def test_nothing_wrong_is_learned(video, tmp_path, media, cfg, models):
    """A voice off screen, a dubbed voice, a stranger's video: Eileen (face and voice enrolled) learns nothing."""
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen_photo"]], audios=[media["eileen_voice"]], cfg=cfg,
                        models=models)
    summary = process_collection([media[video].parent], db, cfg, workers=1, quiet=True)
    assert summary.processed and summary.learned == {}
    with Gallery(db) as gallery:
        assert learned(gallery, "Eileen") == {"face": 0, "voice": 0}
        assert gallery.person("Eileen").n_voice == 1


def test_two_enrolled_people_on_screen_only_the_speaker_learns(tmp_path, media, cfg, models):
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen_photo"]], cfg=cfg, models=models)
        identify.enroll(gallery, "Grace", images=[media["grace_photo"]], cfg=cfg, models=models)
    process_collection([media["two_enrolled"].parent], db, cfg, workers=1, quiet=True)
    with Gallery(db) as gallery:
        assert learned(gallery, "Eileen")["voice"] == 1
        assert learned(gallery, "Grace") == {"face": 0, "voice": 0}


def test_forget_rejects_for_good_and_delete_removes_learned(tmp_path, media, cfg, models, capsys, monkeypatch):
    monkeypatch.setattr(identify, "Models", lambda cfg: models)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen_photo"]], cfg=cfg, models=models)
    process_collection([media["eileen_talks"].parent], db, cfg, workers=1, quiet=True)
    assert main(["--quiet", "people", "show", "Eileen", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "learned from the library (2" in shown and "eileen_talks.mp4" in shown
    with Gallery(db) as gallery:
        voice_id = gallery.observations(person="Eileen", modality="voice")[0].id
    assert main(["--quiet", "people", "forget", "Eileen", "--observation", str(voice_id), "--db", str(db)]) == 0
    with Gallery(db) as gallery:
        assert learned(gallery, "Eileen") == {"face": 1, "voice": 0}
    assert main(["--quiet", "people", "forget", "Eileen", "--all-learned", "--db", str(db)]) == 0
    assert main(["--quiet", "people", "learn", "--db", str(db)]) == 0
    assert "not learned (1 pairs): rejected by the user" in capsys.readouterr().out
    with Gallery(db) as gallery:
        assert learned(gallery, "Eileen") == {"face": 0, "voice": 0}
        assert voice_id in gallery.rejected("Eileen")
        process_collection([media["eileen_talks"].parent], db, cfg, workers=1, quiet=True)
    with Gallery(db) as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen_photo"]], add=True, cfg=cfg, models=models)
        assert learned(gallery, "Eileen") == {"face": 0, "voice": 0}     # still rejected
        gallery.forget("Eileen", [])                                     # nothing asked: nothing changes
        gallery.delete("Eileen")
        assert all(o.person_id is None and o.learned is None for o in gallery.observations())
        assert voice_id in {o.id for o in gallery.observations()}        # the library's own, unnamed again


def test_deleting_a_person_deletes_what_was_learned_of_them(tmp_path, media, cfg, models):
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        identify.enroll(gallery, "Eileen", images=[media["eileen_photo"]], cfg=cfg, models=models)
    process_collection([media["eileen_talks"].parent], db, cfg, workers=1, quiet=True)
    with Gallery(db) as gallery:
        learned_ids = {o.id for o in gallery.observations(person="Eileen") if o.learned is not None}
        assert len(learned_ids) == 2
        gallery.delete("Eileen")
        assert not learned_ids & {o.id for o in gallery.observations()}
