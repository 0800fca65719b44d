"""Tests of avid.io.media: probing, frame sampling, audio demuxing, images, audio formats and bad inputs.

The media are generated per session by tests/conftest.py (tests/media.py): small H.264 + AAC videos of the
astronaut speaking, a WAV of Grace Hopper's lines, and a set of broken files.
"""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from avid.errors import MediaError
from avid.io import media

SR = 16000


def _onset(audio: np.ndarray, level: float = 0.02) -> float:
    """Seconds to the first sample louder than ``level``."""
    return int(np.argmax(np.abs(audio) > level)) / SR


def _best_correlation(x: np.ndarray, y: np.ndarray, max_lag: int = 2000) -> float:
    """Peak normalised cross-correlation of two signals over lags up to ``max_lag`` samples (codec delays)."""
    n = 1 << int(np.ceil(np.log2(x.size + y.size)))
    corr = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(y, n)), n)
    peak = max(corr[:max_lag + 1].max(), corr[-max_lag:].max())
    return float(peak / np.sqrt(np.sum(x.astype(np.float64) ** 2) * np.sum(y.astype(np.float64) ** 2)))


# ----------------------------------------------------------------------------------------------------- probe

def test_probe_talking_video(talking_video, astronaut_speech):
    info = media.probe(talking_video)
    assert info.kind == "video" and info.has_video and info.has_audio
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(25.0)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.audio_sample_rate == 44100 and info.audio_channels == 1
    # 0.5 s lead-in + the speech + 0.5 s tail, rounded to whole frames.
    assert info.duration == pytest.approx(astronaut_speech.size / SR + 1.0, abs=0.05)


def test_probe_video_without_audio(video_without_audio):
    info = media.probe(video_without_audio)
    assert info.kind == "video" and info.has_video and not info.has_audio
    assert info.audio_codec is None
    assert info.duration == pytest.approx(3.0, abs=0.05)


def test_probe_wav(speech_wav, grace_hopper_speech):
    info = media.probe(speech_wav)
    assert info.kind == "audio" and info.has_audio and not info.has_video
    assert info.audio_sample_rate == SR and info.audio_channels == 1
    assert info.duration == pytest.approx(grace_hopper_speech.size / SR, abs=0.01)


def test_media_kind_by_extension(tmp_path):
    assert media.media_kind("a/b/CLIP.MP4") == "video"
    assert media.media_kind("x.m4a") == "audio"
    assert media.media_kind("x.webp") == "image"
    with pytest.raises(MediaError, match="unsupported format '.docx'"):
        media.media_kind(tmp_path / "report.docx")


# ----------------------------------------------------------------------------------------------- iter_frames

@pytest.mark.parametrize("fps", [1.0, 5.0, 25.0])
def test_iter_frames_times_follow_the_requested_rate(talking_video, fps):
    duration = media.probe(talking_video).duration
    frames = list(media.iter_frames(talking_video, fps))
    times = np.array([f.time for f in frames])
    assert [f.index for f in frames] == list(range(len(frames)))
    assert times[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(times) > 0), "timestamps must increase"
    # Sampled frames land on the native 25 fps grid, so each step is the period to within one native frame.
    assert np.all(np.abs(np.diff(times) - 1 / fps) <= 1 / 25 + 1e-6)
    assert abs(len(frames) - duration * fps) <= 1


def test_iter_frames_above_native_rate_gives_each_frame_once(talking_video):
    info = media.probe(talking_video)
    times = [f.time for f in media.iter_frames(talking_video, 60.0)]
    assert len(times) == round(info.duration * info.fps)
    assert len(set(times)) == len(times)


def test_iter_frames_scale_maps_back_to_original_pixels(talking_video):
    full = next(media.iter_frames(talking_video, 5.0))
    small = next(media.iter_frames(talking_video, 5.0, max_side=320))
    assert full.image.shape == (360, 640, 3) and full.image.dtype == np.uint8 and full.scale == 1.0
    assert small.image.shape == (180, 320, 3) and small.scale == pytest.approx(2.0)
    # The small frame is the full frame downscaled, not a crop: compare with a 2x2 block average.
    pooled = full.image.reshape(180, 2, 320, 2, 3).mean(axis=(1, 3))
    assert np.abs(pooled - small.image).mean() < 4.0


def test_iter_frames_are_rgb(talking_video):
    frame = next(media.iter_frames(talking_video, 5.0)).image.astype(int)
    corner = frame[:20, :20].reshape(-1, 3).mean(axis=0)       # the blue-grey studio background
    suit = frame[200:220, 200:260].reshape(-1, 3).mean(axis=0)  # the astronaut's orange suit
    assert corner[2] > corner[0] + 20
    assert suit[0] > suit[2] + 80


def test_iter_frames_within_stretches_gives_their_frames_as_a_full_read_would(talking_video):
    """Stretches far apart are reached by seeking: the frames (times and pixels) are those of reading everything."""
    within = [(0.5, 1.0), (1.1, 1.3), (5.0, 6.0), (7.9, 30.0)]
    read = list(media.iter_frames(talking_video, 25.0, gray=True, within=within))
    everything = [f for f in media.iter_frames(talking_video, 25.0, gray=True)
                  if any(a <= f.time < b for a, b in within)]
    assert [f.time for f in read] == [f.time for f in everything] and len(read) > 40
    assert all(np.array_equal(a.image, b.image) for a, b in zip(read, everything))


def test_abandoning_iter_frames_does_not_hang(talking_video):
    """Taking the first frame and dropping the generator, many times, in a child process that must finish."""
    code = ("import sys\nfrom avid.io import media\nfor _ in range(300):\n"
            "    next(media.iter_frames(sys.argv[1], 5.0))\nprint('ok')")
    try:
        run = subprocess.run([sys.executable, "-c", code, str(talking_video)], capture_output=True, text=True,
                             timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("iter_frames hung when a generator was dropped mid-stream (decoder-thread deadlock)")
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_iter_frames_without_video_stream(speech_wav):
    with pytest.raises(MediaError, match="no video stream") as err:
        next(media.iter_frames(speech_wav, 5.0))
    assert err.value.path == str(speech_wav)


# ------------------------------------------------------------------------------------------------ iter_audio

def test_iter_audio_wav_is_the_original_signal(speech_wav, grace_hopper_speech):
    audio = media.load_audio(speech_wav)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size == grace_hopper_speech.size
    assert np.abs(audio - grace_hopper_speech).max() < 2e-4     # 16-bit quantisation only


def test_load_audio_reads_a_stretch(speech_wav):
    whole = media.load_audio(speech_wav)
    stretch = media.load_audio(speech_wav, start=0.5, end=1.25)
    assert np.array_equal(stretch, whole[8000:20000])
    assert np.array_equal(media.load_audio(speech_wav, end=0.5), whole[:8000])
    assert np.array_equal(media.load_audio(speech_wav, start=1.0), whole[16000:])


@pytest.mark.parametrize("chunk_seconds", [0.5, 1.7])
def test_iter_audio_chunks_concatenate_to_one_read(talking_video, chunk_seconds):
    whole = list(media.iter_audio(talking_video, chunk_seconds=1000.0))
    chunks = list(media.iter_audio(talking_video, chunk_seconds=chunk_seconds))
    assert len(whole) == 1 and len(chunks) > 2
    size = int(round(chunk_seconds * SR))
    assert all(c.size == size and c.dtype == np.float32 and c.ndim == 1 for c in chunks[:-1])
    assert 0 < chunks[-1].size <= size
    np.testing.assert_array_equal(np.concatenate(chunks), whole[0])


def test_iter_audio_from_video_is_16k_mono_and_in_sync(talking_video, astronaut_speech):
    info = media.probe(talking_video)
    audio = media.load_audio(talking_video)
    assert abs(audio.size / SR - info.duration) < 0.1
    # The speech was placed 0.5 s into the video: the 44.1 kHz AAC track, resampled, starts speaking there.
    assert _onset(audio) == pytest.approx(0.5 + _onset(astronaut_speech), abs=0.03)
    lead_in = audio[: int(0.4 * SR)]
    assert np.abs(lead_in).max() < 0.01
    speech = audio[int(0.5 * SR): int(0.5 * SR) + astronaut_speech.size]
    assert _best_correlation(speech, astronaut_speech) > 0.95


def test_iter_audio_other_sample_rate(speech_wav, grace_hopper_speech):
    audio = media.load_audio(speech_wav, sample_rate=8000)
    assert abs(audio.size - grace_hopper_speech.size / 2) <= 2


def test_iter_audio_without_audio_stream(video_without_audio):
    with pytest.raises(MediaError, match="no audio stream") as err:
        next(media.iter_audio(video_without_audio))
    assert err.value.path == str(video_without_audio)


def test_silent_inputs_decode_to_silence(silent_video, silent_wav):
    for path in (silent_video, silent_wav):
        audio = media.load_audio(path)
        assert audio.size == pytest.approx(3.0 * SR, abs=0.05 * SR)
        assert np.abs(audio).max() < 1e-3


# -------------------------------------------------------------------------------------------- audio formats

@pytest.mark.parametrize("name, file_rate, channels", [
    ("voice.wav", 16000, 1), ("voice.flac", 44100, 2), ("voice.mp3", 44100, 2), ("voice.m4a", 48000, 1)])
def test_audio_formats(synthetic, tmp_path, astronaut_speech, name, file_rate, channels):
    path = synthetic.write_audio(tmp_path / name, astronaut_speech, file_rate=file_rate, channels=channels)
    info = media.probe(path)
    assert info.kind == "audio" and info.has_audio and not info.has_video
    assert info.audio_sample_rate == file_rate and info.audio_channels == channels
    audio = media.load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - astronaut_speech.size) < 0.1 * SR     # lossy codecs pad a little
    assert _best_correlation(audio, astronaut_speech) > 0.95


# --------------------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("suffix, max_mean_error", [(".png", 0.0), (".jpg", 3.0), (".webp", 3.0)])
def test_images(synthetic, tmp_path, suffix, max_mean_error):
    original = synthetic.astronaut_face()
    path = synthetic.write_image(tmp_path / f"astronaut{suffix}", original)
    image = media.load_image(path)
    assert image.dtype == np.uint8 and image.shape == original.shape
    assert np.abs(image.astype(int) - original).mean() <= max_mean_error
    info = media.probe(path)
    assert (info.kind, info.width, info.height) == ("image", 512, 512)


def test_image_modes_become_rgb(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((40, 60), 90, np.uint8)).save(tmp_path / "grey.png")
    assert media.load_image(tmp_path / "rgba.png")[0, 0].tolist() == [200, 0, 0]
    assert media.load_image(tmp_path / "grey.png").shape == (40, 60, 3)


def test_image_exif_orientation_is_applied(synthetic, tmp_path):
    photo = synthetic.grace_hopper_face()                 # 600 high, 512 wide
    exif = Image.Exif()
    exif[0x0112] = 6                                      # "rotate 90 degrees clockwise to display"
    Image.fromarray(photo).save(tmp_path / "rotated.jpg", exif=exif)
    assert media.load_image(tmp_path / "rotated.jpg").shape == (512, 600, 3)


# ----------------------------------------------------------------------------------------------- bad inputs

BAD = ["missing", "empty", "text_as_mp4", "truncated", "corrupt", "unsupported", "text_as_jpg", "text_as_wav"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_probe_names_the_file(bad_inputs, kind):
    path = bad_inputs[kind]
    with pytest.raises(MediaError) as err:
        media.probe(path)
    assert err.value.path == str(path)
    assert str(err.value).startswith(str(path)) and err.value.problem


@pytest.mark.parametrize("kind", ["missing", "empty", "text_as_mp4", "truncated", "corrupt"])
def test_bad_video_decoders_name_the_file(bad_inputs, kind):
    path = bad_inputs[kind]
    with pytest.raises(MediaError) as err:
        list(media.iter_frames(path, 5.0))
    assert err.value.path == str(path)
    with pytest.raises(MediaError) as err:
        list(media.iter_audio(path))
    assert err.value.path == str(path)


def test_bad_image_and_audio_loaders_name_the_file(bad_inputs):
    with pytest.raises(MediaError, match="not a readable image") as err:
        media.load_image(bad_inputs["text_as_jpg"])
    assert err.value.path == str(bad_inputs["text_as_jpg"])
    with pytest.raises(MediaError) as err:
        media.load_audio(bad_inputs["text_as_wav"])
    assert err.value.path == str(bad_inputs["text_as_wav"])


def test_truncated_faststart_video_is_reported(synthetic, tmp_path, astronaut_speech):
    whole = tmp_path / "web.mp4"
    synthetic.write_talking_video(whole, [synthetic.Segment(astronaut_speech[: 3 * SR])], [synthetic.astronaut()],
                                  size=(320, 180), faststart=True)
    cut = synthetic.write_truncated(whole, tmp_path / "web_cut.mp4")
    with pytest.raises(MediaError, match="truncated"):
        list(media.iter_frames(cut, 5.0))


def test_awkward_file_name_works(awkward_name_video, synthetic, tmp_path):
    info = media.probe(awkward_name_video)
    assert info.has_video and info.has_audio and " " in info.path and "ñ" in info.path
    assert len(list(media.iter_frames(awkward_name_video, 1.0))) >= 5
    assert media.load_audio(awkward_name_video).size > SR
    # And a broken file with such a name is still named correctly in the error.
    broken = synthetic.write_empty(tmp_path / "vidéo vide ñ.mp4")
    with pytest.raises(MediaError, match="vidéo vide ñ.mp4: file is empty"):
        media.probe(broken)


def test_image_beyond_the_pixel_limit_is_refused_unread(synthetic, tmp_path):
    bomb = synthetic.write_large_png(tmp_path / "bomb.png", 40000, 40000, rows=1)    # 4.8 GB once decoded
    for read in (media.probe, media.load_image):
        with pytest.raises(MediaError, match=r"40000 x 40000 pixels.*media.max_image_pixels") as err:
            read(bomb)
        assert err.value.path == str(bomb)


@pytest.mark.skipif(sys.platform != "linux", reason="peak memory is read from /proc")
def test_huge_photo_is_decoded_reduced_in_bounded_memory(synthetic, tmp_path):
    """12000 x 12000 (432 MB as RGB) took 3.4 GB: it is decoded once, reduced to what detection uses."""
    path = synthetic.write_large_png(tmp_path / "huge.png", 12000, 12000)
    # VmHWM: this process's own peak (ru_maxrss would count the forked copy of a large pytest process)
    code = ("import re, sys; from avid.io import media; p = sys.argv[1]; info = media.probe(p); "
            "image = media.load_image(p, max_side=1280); "
            "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
            "print(info.width, info.height, *image.shape[:2], peak)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    width, height, rows, cols, peak_kb = map(int, proc.stdout.split())
    assert (width, height) == (12000, 12000) and 1280 <= rows == cols < 2 * 1280
    assert peak_kb < 800_000, f"peak memory {peak_kb / 1e6:.2f} GB"


def test_reduced_jpeg_keeps_its_orientation(synthetic, tmp_path):
    photo = cv2.resize(synthetic.grace_hopper_face(), (2560, 3000))       # 3000 high, 2560 wide
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(tmp_path / "rotated.jpg", exif=exif)
    info = media.probe(tmp_path / "rotated.jpg")
    assert (info.width, info.height) == (3000, 2560)
    image = media.load_image(tmp_path / "rotated.jpg", max_side=1280)
    assert image.shape[:2] == (1280, 1500)
