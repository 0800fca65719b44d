"""Tests of tests/media.py, the synthetic media: the eSpeak speech is speech, its voices are different speakers,
the videos hold the streams, duration, faces and mouth motion asked for, the bad-input helpers make what they say,
and scripts/make_sample.py writes the demo inputs."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from avid.io import media

REPO = Path(__file__).resolve().parents[1]
SR = 16000
SENTENCES = ["The quick brown fox jumps over the lazy dog near the river bank.",
             "Yesterday we travelled to the mountains and watched the sunrise together.",
             "Please remember to bring your notebook to the meeting on Thursday morning."]


def _speech_fraction(audio: np.ndarray) -> float:
    """Share of 30 ms frames that WebRTC's voice activity detector calls speech."""
    import webrtcvad

    vad = webrtcvad.Vad(2)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    step = int(0.03 * SR)
    frames = [pcm[i:i + step].tobytes() for i in range(0, pcm.size - step + 1, step)]
    return sum(vad.is_speech(f, SR) for f in frames) / len(frames)


# ------------------------------------------------------------------------------------------------------ speech

def test_speak_gives_speech(synthetic):
    audio = synthetic.speak(SENTENCES[0])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 2.0 < audio.size / SR < 6.0                     # 13 words at 160 words per minute
    assert 0.1 < np.abs(audio).max() <= 1.0
    assert _speech_fraction(audio) > 0.6
    assert _speech_fraction(synthetic.silence(2.0)) == 0.0
    # Speech energy sits in the speech band, not in hum or hiss.
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SR)
    assert power[(freqs > 80) & (freqs < 4000)].sum() > 0.9 * power.sum()


def test_speak_rate_and_sample_rate(synthetic):
    normal = synthetic.speak(SENTENCES[1], synthetic.KLATT_VOICE)
    fast = synthetic.speak(SENTENCES[1], synthetic.KLATT_VOICE, rate_wpm=260)
    assert fast.size < 0.8 * normal.size
    at_22k = synthetic.speak(SENTENCES[1], synthetic.KLATT_VOICE, sample_rate=22050)
    assert at_22k.size == pytest.approx(normal.size * 22050 / SR, rel=0.01)


def test_speak_handles_utf8_and_rejects_unknown_voices(synthetic):
    assert synthetic.speak("Crème brûlée, señor, naïve café.").size > SR
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        synthetic.speak("hello", voice="no-such-voice")


def test_speak_is_repeatable_across_processes():
    code = ("import hashlib; from tests import media as s; "
            "print(hashlib.sha1(s.speak('Hello there, how are you?', s.FEMALE_VOICE).tobytes()).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].strip()) == 40


def test_speak_is_thread_safe(synthetic):
    # Each thread says a different sentence; with the lock, each gets its own sentence back, whole.
    expected = [synthetic.speak(text).size for text in SENTENCES]
    results: dict[int, np.ndarray] = {}

    def say(i: int) -> None:
        results[i] = synthetic.speak(SENTENCES[i])

    threads = [threading.Thread(target=say, args=(i,)) for i in range(len(SENTENCES))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, size in enumerate(expected):
        assert results[i].size == pytest.approx(size, rel=0.01)
        assert _speech_fraction(results[i]) > 0.6


@pytest.fixture(scope="module")
def voice_embeddings(synthetic) -> dict[str, np.ndarray]:
    """Resemblyzer embeddings of each SENTENCE said by each of the module's voices."""
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    return {name: np.array([encoder.embed_utterance(synthetic.speak(text, getattr(synthetic, name)))
                            for text in SENTENCES])
            for name in ("FEMALE_VOICE", "MALE_VOICE", "KLATT_VOICE")}


@pytest.mark.parametrize("pair", [("FEMALE_VOICE", "MALE_VOICE"), ("FEMALE_VOICE", "KLATT_VOICE"),
                                  ("MALE_VOICE", "KLATT_VOICE")])
def test_voices_are_different_speakers_to_resemblyzer(voice_embeddings, pair):
    """Two voices saying different sentences: every same-voice cosine is clearly above every cross-voice one."""
    first, second = (voice_embeddings[name] for name in pair)
    upper = np.triu_indices(len(SENTENCES), 1)
    same = np.concatenate([(first @ first.T)[upper], (second @ second.T)[upper]])
    cross = (first @ second.T).ravel()
    assert same.min() > cross.max() + 0.1, f"same-voice min {same.min():.3f}, cross-voice max {cross.max():.3f}"


def test_demo_people_have_different_voices(synthetic):
    assert synthetic.astronaut().voice != synthetic.grace_hopper().voice


# ------------------------------------------------------------------------------------------------------- faces

def test_photos_are_rgb(synthetic):
    astronaut, hopper = synthetic.astronaut_face(), synthetic.grace_hopper_face()
    assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.uint8
    assert hopper.shape == (600, 512, 3) and hopper.dtype == np.uint8


def test_mouth_opens_inside_the_mouth_only(synthetic):
    portrait = synthetic.astronaut()
    animator = synthetic._MouthAnimator(portrait)
    np.testing.assert_array_equal(animator.render(0.0), portrait.image)
    opened = animator.render(1.0).astype(int)
    changed = np.argwhere(np.abs(opened - portrait.image).sum(axis=2) > 0)
    x1, lip, x2, chin = portrait.mouth
    assert changed[:, 1].min() >= x1 - 4 and changed[:, 1].max() <= x2 + 4
    assert changed[:, 0].min() >= lip - 2 and changed[:, 0].max() <= chin + (chin - lip)
    # The opening between the lips is dark, as an open mouth is.
    gap = (slice(lip + 2, lip + 8), slice((x1 + x2) // 2 - 5, (x1 + x2) // 2 + 5))
    assert opened[gap].mean() < 0.6 * portrait.image[gap].mean()


def test_speech_envelope_follows_the_audio(synthetic, astronaut_speech):
    audio = np.concatenate([synthetic.silence(1.0), astronaut_speech])
    envelope = synthetic._speech_envelope(audio, SR, 25)
    assert envelope.size == int(np.ceil(audio.size / (SR / 25)))
    assert envelope[:25].max() == 0.0                     # the second of silence: mouth closed
    assert envelope[25:].mean() > 0.3 and envelope.max() == 1.0


# ------------------------------------------------------------------------------------------------------- video

def _count_video_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_talking_video_has_the_streams_and_duration_asked(synthetic, tmp_path, astronaut_speech):
    path = tmp_path / "talk.mp4"
    duration = synthetic.write_talking_video(path, [synthetic.Segment(astronaut_speech[: 2 * SR])],
                                             [synthetic.astronaut()], size=(320, 240), fps=20, duration=3.0)
    info = media.probe(path)
    assert duration == 3.0
    assert (info.width, info.height, info.fps) == (320, 240, 20.0)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert _count_video_frames(path) == 60
    assert media.load_audio(path).size == pytest.approx(3.0 * SR, abs=0.05 * SR)


def test_video_without_audio_stream(video_without_audio):
    info = media.probe(video_without_audio)
    assert info.has_video and not info.has_audio
    assert _count_video_frames(video_without_audio) == 75


def test_odd_frame_size_and_unknown_speaker_are_rejected(synthetic, tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        synthetic.write_talking_video(tmp_path / "x.mp4", [], [], size=(321, 240))
    with pytest.raises(ValueError, match="speaker 1"):
        synthetic.write_talking_video(tmp_path / "x.mp4", [synthetic.Segment(synthetic.silence(1), speaker=1)],
                                      [synthetic.astronaut()])


def _faces_at(path, times: list[float]) -> list[int]:
    """dlib HOG face count in the frames nearest to ``times`` (an independent check of what is on screen)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    frames = {round(f.time, 1): f.image for f in media.iter_frames(path, 1.0)}
    return [len(detector(frames[t], 1)) for t in times]


def _orange_share(image: np.ndarray) -> float:
    """Share of pixels with the astronaut's suit colour."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return float(np.mean((r > 180) & (g > 60) & (g < 170) & (b < 90)))


def test_who_is_on_screen(two_speaker_video, no_face_video, synthetic, tmp_path, astronaut_speech,
                          grace_hopper_speech):
    # Speaker layout: the astronaut while she speaks (0.5-8.7 s), then Grace Hopper alone.
    frames = {round(f.time): f.image for f in media.iter_frames(two_speaker_video, 1.0)}
    assert _orange_share(frames[3]) > 0.04 and _orange_share(frames[14]) < 0.02
    assert min(_faces_at(two_speaker_video, [3.0, 14.0])) >= 1
    # Both on screen: both people throughout.
    both = tmp_path / "both.mp4"
    synthetic.write_talking_video(both, [synthetic.Segment(astronaut_speech[: 2 * SR], 0),
                                         synthetic.Segment(grace_hopper_speech[: 2 * SR], 1)],
                                  [synthetic.astronaut(), synthetic.grace_hopper()], size=(640, 360),
                                  both_on_screen=True)
    assert min(_faces_at(both, [1.0, 3.0])) >= 2
    # No face: nobody at all.
    assert _faces_at(no_face_video, [1.0, 4.0, 7.0]) == [0, 0, 0]


# -------------------------------------------------------------------------------------------------- bad inputs

def test_bad_input_helpers(synthetic, tmp_path, talking_video):
    assert synthetic.write_empty(tmp_path / "e.mp4").stat().st_size == 0
    assert b"not a video" in synthetic.write_text_as(tmp_path / "t.mp4").read_bytes()
    cut = synthetic.write_truncated(talking_video, tmp_path / "cut.mp4")
    assert cut.stat().st_size == talking_video.stat().st_size // 2
    assert cut.read_bytes() == talking_video.read_bytes()[: cut.stat().st_size]
    corrupt = synthetic.write_corrupt(tmp_path / "c.mp4", size=1000).read_bytes()
    assert corrupt[4:8] == b"ftyp" and len(corrupt) == 1024
    with pytest.raises(ValueError, match="no audio codec"):
        synthetic.write_audio(tmp_path / "x.aiff", synthetic.silence(1))


# ------------------------------------------------------------------------------------------------- the sample

def test_make_sample_writes_the_demo_inputs(synthetic, tmp_path):
    script = REPO / "scripts" / "make_sample.py"
    run = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--size", "320x180"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    names = {"interview.mp4", "astronaut.jpg", "grace_hopper.jpg", "astronaut_voice.wav", "grace_hopper_voice.wav"}
    assert {p.name for p in tmp_path.iterdir()} == names
    assert all(f"wrote {tmp_path / name}" in run.stdout for name in names)
    video = media.probe(tmp_path / "interview.mp4")
    assert video.has_audio and (video.width, video.height) == (320, 180) and 15.0 <= video.duration <= 20.0
    for name in ("astronaut_voice.wav", "grace_hopper_voice.wav"):
        assert _speech_fraction(media.load_audio(tmp_path / name)) > 0.6
    assert media.load_image(tmp_path / "grace_hopper.jpg").shape == (600, 512, 3)
