"""Shared test fixtures.

Tests that need the real media in ../shared/data use the ``shared_data`` fixture, which skips them with a clear
reason where it is absent (a user's machine does not have it). Everything else generates its own media: small
files made once per test session with tests/media.py (eSpeak speech, the astronaut and Grace Hopper photos).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("AVID_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

SMALL = (640, 360)
ASTRONAUT_LINES = ["Hello, and welcome aboard. I have flown on the space shuttle four times.",
                   "From orbit, the Earth looks calm and very blue."]
GRACE_HOPPER_LINES = ["Thank you. I taught computers to understand English words.",
                      "A ship in port is safe, but that is not what ships are built for."]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"shared dev data not found at {SHARED_DATA} (set AVID_SHARED_DATA to its folder)")
    return SHARED_DATA


# ------------------------------------------------------------------------------------------- generated media

@pytest.fixture(scope="session")
def synthetic():
    """tests/media.py, the synthetic media maker, skipping where its optional dependencies (the dev extra) are
    missing."""
    pytest.importorskip("espeakng_loader", reason="needs espeakng-loader (pip install -e '.[dev]')")
    pytest.importorskip("skimage", reason="needs scikit-image (pip install -e '.[dev]')")
    from tests import media

    return media


@pytest.fixture(scope="session")
def astronaut_speech(synthetic) -> np.ndarray:
    """The astronaut's lines (female eSpeak voice), 16 kHz float32."""
    return synthetic.speak(" ".join(ASTRONAUT_LINES), synthetic.astronaut().voice)


@pytest.fixture(scope="session")
def grace_hopper_speech(synthetic) -> np.ndarray:
    """Grace Hopper's lines (eSpeak's Klatt voice), 16 kHz float32."""
    return synthetic.speak(" ".join(GRACE_HOPPER_LINES), synthetic.grace_hopper().voice)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def talking_video(synthetic, media_dir, astronaut_speech) -> Path:
    """640x360, 25 fps, H.264 + AAC: the astronaut on screen saying her lines (about 8 s)."""
    path = media_dir / "talking.mp4"
    synthetic.write_talking_video(path, [synthetic.Segment(astronaut_speech, speaker=0)], [synthetic.astronaut()],
                                  size=SMALL)
    return path


@pytest.fixture(scope="session")
def two_speaker_video(synthetic, media_dir, astronaut_speech, grace_hopper_speech) -> Path:
    """640x360: the astronaut speaks (0.5 s -> ~8.4 s on screen alone), then Grace Hopper (alone, after a 0.4 s gap)."""
    path = media_dir / "two speakers.mp4"
    segments = [synthetic.Segment(astronaut_speech, speaker=0), synthetic.Segment(grace_hopper_speech, speaker=1)]
    synthetic.write_talking_video(path, segments, [synthetic.astronaut(), synthetic.grace_hopper()], size=SMALL)
    return path


@pytest.fixture(scope="session")
def speech_wav(synthetic, media_dir, grace_hopper_speech) -> Path:
    """Audio only: Grace Hopper's lines as a 16 kHz mono WAV."""
    return synthetic.write_wav(media_dir / "speech.wav", grace_hopper_speech)


@pytest.fixture(scope="session")
def video_without_audio(synthetic, media_dir, astronaut_speech) -> Path:
    """The talking astronaut with no audio stream at all (3 s)."""
    path = media_dir / "no_audio.mp4"
    synthetic.write_talking_video(path, [synthetic.Segment(astronaut_speech, speaker=0)], [synthetic.astronaut()],
                                  size=SMALL, with_audio=False, duration=3.0)
    return path


@pytest.fixture(scope="session")
def silent_video(synthetic, media_dir) -> Path:
    """The astronaut on screen, an audio stream of pure silence (3 s)."""
    path = media_dir / "silent.mp4"
    synthetic.write_talking_video(path, [synthetic.Segment(synthetic.silence(2.0), speaker=0)],
                                  [synthetic.astronaut()], size=SMALL, duration=3.0)
    return path


@pytest.fixture(scope="session")
def silent_wav(synthetic, media_dir) -> Path:
    """3 s of digital silence as a WAV."""
    return synthetic.write_wav(media_dir / "silence.wav", synthetic.silence(3.0))


@pytest.fixture(scope="session")
def no_face_video(synthetic, media_dir, astronaut_speech) -> Path:
    """Speech over a plain background: nobody on screen."""
    path = media_dir / "no_face.mp4"
    synthetic.write_talking_video(path, [synthetic.Segment(astronaut_speech, speaker=None)], [], size=SMALL)
    return path


@pytest.fixture(scope="session")
def awkward_name_video(synthetic, media_dir, talking_video) -> Path:
    """A valid talking video whose file name has spaces and non-ASCII characters."""
    path = media_dir / synthetic.AWKWARD_NAME
    path.write_bytes(talking_video.read_bytes())
    return path


@pytest.fixture(scope="session")
def bad_inputs(synthetic, media_dir, talking_video) -> dict[str, Path]:
    """Files that must each be rejected with a MediaError naming them, by kind of problem."""
    folder = media_dir / "bad"
    folder.mkdir()
    return {
        "missing": folder / "does_not_exist.mp4",
        "empty": synthetic.write_empty(folder / "empty.mp4"),
        "text_as_mp4": synthetic.write_text_as(folder / "notes.mp4"),
        "truncated": synthetic.write_truncated(talking_video, folder / "truncated.mp4"),
        "corrupt": synthetic.write_corrupt(folder / "corrupt.mp4"),
        "unsupported": synthetic.write_text_as(folder / "notes.txt"),
        "text_as_jpg": synthetic.write_text_as(folder / "photo.jpg"),
        "text_as_wav": synthetic.write_text_as(folder / "voice.wav"),
    }


@pytest.fixture
def readme_media(tmp_path, synthetic, talking_video, two_speaker_video, speech_wav) -> Path:
    """A folder holding the files README's Python API examples name, made from the generated media."""
    import shutil

    shutil.copy(talking_video, tmp_path / "talk.mp4")                  # the astronaut, talking
    shutil.copy(two_speaker_video, tmp_path / "interview.mp4")         # the astronaut, then Grace Hopper
    shutil.copy(speech_wav, tmp_path / "grace_voice.wav")               # Grace Hopper's voice
    face = synthetic.grace_hopper_face()
    synthetic.write_image(tmp_path / "grace.jpg", face[10:-10, 10:-10].copy(), quality=85)
    synthetic.write_image(tmp_path / "someone.jpg", face[30:, 20:-20].copy(), quality=75)   # another view of her
    return tmp_path


@pytest.fixture(scope="session")
def served_library(tmp_path_factory, synthetic, talking_video, two_speaker_video):
    """A small library for `avid serve`: the two-person interview and the astronaut's talk (transcribed), a photo
    of Grace Hopper; Grace Hopper enrolled by another photo, the astronaut left unknown and clustered. Returns
    {"db", "interview", "talk", "photo", "astronaut_query", "folder"}; tests that change it work on a copy."""
    from avid.cli import main
    from avid.config import load_config
    from avid.library.collection import process_collection
    from avid.library.unknown import unknown_clusters

    root = tmp_path_factory.mktemp("served")
    folder = root / "recordings"
    folder.mkdir()
    interview = folder / "interview.mp4"
    interview.write_bytes(two_speaker_video.read_bytes())
    talk = folder / "astronaut talk.mp4"
    talk.write_bytes(talking_video.read_bytes())
    photo = synthetic.write_image(folder / "hopper.jpg", synthetic.grace_hopper_face())
    enrol = synthetic.write_image(root / "hopper enrol.jpg", synthetic.grace_hopper_face()[10:-10, 10:-10].copy(),
                                  quality=85)
    query = synthetic.write_image(root / "astronaut query.jpg", synthetic.astronaut_face()[20:480, 30:500].copy(),
                                  quality=80)
    db = root / "library.db"
    cfg = load_config(overrides={"library": {"transcribe": True}})
    summary = process_collection([folder], db, cfg, workers=1, quiet=True)
    assert summary.ok and len(summary.processed) == 3, summary.lines()
    assert main(["--quiet", "enroll", "Grace Hopper", "--image", str(enrol), "--db", str(db)]) == 0
    unknown_clusters(db, cfg)
    return {"db": db, "interview": interview, "talk": talk, "photo": photo, "astronaut_query": query,
            "folder": folder}
