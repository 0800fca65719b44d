"""`avid process` end to end: the output schema, partial media, and every kind of bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from avid.cli import EXIT_PARTIAL, main
from avid.config import load_config
from avid.errors import ConfigError, MediaError, NoContentError
from avid.io import results
from avid.pipeline import ingest
from avid.pipeline.models import Models


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_talking_video_gives_a_face_track_and_speech(talking_video, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--quiet", "process", str(talking_video), "--out", str(tmp_path))
    assert code == 0, err
    document, arrays = results.read_result(tmp_path / "talking.json")
    assert document["schema"] == "avid.ingest" and document["schema_version"] == results.SCHEMA_VERSION
    assert document["media"]["kind"] == "video" and document["media"]["has_audio"]
    # One person on screen the whole time is one track, not one per frame.
    assert len(document["face_tracks"]) == 1
    track = document["face_tracks"][0]
    assert track["num_detections"] >= 0.8 * document["media"]["duration"] * load_config().media.frame_rate
    assert track["end"] - track["start"] > 0.8 * document["media"]["duration"]
    assert len(document["speech_regions"]) >= 1 and len(document["voice_windows"]) >= 1
    for window in document["voice_windows"]:   # one speaker's speech in one segmentation window
        assert 0 <= window["start"] < window["end"] <= document["media"]["duration"] + 1e-3
        assert window["local_speaker"] in (0, 1, 2) and window["window"] >= 0
    # Every embedding reference points at a unit-length row of the right array.
    for item in document["face_tracks"] + document["speech_regions"] + document["voice_windows"]:
        ref = item["embedding"]
        if ref is not None:
            assert np.isclose(np.linalg.norm(arrays[ref["array"]][ref["row"]]), 1.0, atol=1e-3)
    assert arrays["face_tracks"].shape[1] == document["encoders"]["face"]["dim"]
    for written in tmp_path.iterdir():   # biometric data: private to the user
        assert written.stat().st_mode & 0o077 == 0, written
    assert arrays["voice_windows"].shape[1] == document["encoders"]["voice"]["dim"]


def test_video_without_audio_is_processed_for_its_faces(video_without_audio, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--quiet", "process", str(video_without_audio), "--out", str(tmp_path))
    assert code == 0
    assert "no audio stream" in err and str(video_without_audio) in err
    document, _ = results.read_result(tmp_path / "no_audio.json")
    assert document["face_tracks"] and not document["speech_regions"]


def test_speech_without_a_face_is_processed_for_its_voice(no_face_video, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--quiet", "process", str(no_face_video), "--out", str(tmp_path))
    assert code == 0
    assert "no face found" in err
    document, _ = results.read_result(tmp_path / "no_face.json")
    assert document["speech_regions"] and not document["face_tracks"]


def test_silence_only_is_refused(silent_wav, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--quiet", "process", str(silent_wav), "--out", str(tmp_path))
    assert code == NoContentError.exit_code
    assert str(silent_wav) in err and "no speech" in err
    assert not (tmp_path / "silence.json").exists()


def test_image_without_a_face_is_refused(synthetic, tmp_path, capsys):
    blank = synthetic.write_image(tmp_path / "wall.png", np.full((240, 320, 3), 128, np.uint8))
    code, out, err = run_cli(capsys, "--quiet", "process", str(blank), "--out", str(tmp_path / "out"))
    assert code == NoContentError.exit_code and "no face found" in err


@pytest.mark.parametrize("kind", ["missing", "empty", "text_as_mp4", "truncated", "corrupt", "unsupported",
                                  "text_as_jpg", "text_as_wav"])
def test_bad_input_is_one_line_naming_the_file(bad_inputs, kind, tmp_path, capsys):
    path = bad_inputs[kind]
    code, out, err = run_cli(capsys, "--quiet", "process", str(path), "--out", str(tmp_path))
    assert code == MediaError.exit_code
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"avid: error: {path}: ")
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.json"))


def test_one_bad_file_does_not_stop_the_others(bad_inputs, talking_video, speech_wav, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--quiet", "process", str(talking_video), str(bad_inputs["corrupt"]),
                             str(speech_wav), "--out", str(tmp_path))
    assert code == EXIT_PARTIAL
    assert (tmp_path / "talking.json").exists() and (tmp_path / "speech.json").exists()
    assert str(bad_inputs["corrupt"]) in err and "1 of 3 inputs failed" in err


def test_odd_file_names_work(awkward_name_video, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--quiet", "process", str(awkward_name_video), "--out", str(tmp_path))
    assert code == 0, err
    stem = awkward_name_video.stem
    document = json.loads((tmp_path / f"{stem}.json").read_text(encoding="utf-8"))
    assert document["media"]["path"] == str(awkward_name_video) and (tmp_path / f"{stem}.npz").exists()


def test_folder_input_and_empty_folder(media_dir, speech_wav, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    code, out, err = run_cli(capsys, "--quiet", "process", str(folder), "--out", str(tmp_path / "out"))
    assert code == MediaError.exit_code and "no supported media" in err
    (folder / "a.wav").write_bytes(speech_wav.read_bytes())
    (folder / "readme.txt").write_text("not media")
    code, out, err = run_cli(capsys, "--quiet", "process", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0 and (tmp_path / "out" / "a.json").exists()


def test_same_name_in_two_folders_gets_two_outputs(speech_wav, tmp_path, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "clip.wav").write_bytes(speech_wav.read_bytes())
    code, *_ = run_cli(capsys, "--quiet", "process", str(tmp_path / "x" / "clip.wav"),
                       str(tmp_path / "y" / "clip.wav"), "--out", str(tmp_path / "out"))
    assert code == 0
    assert (tmp_path / "out" / "clip.json").exists() and (tmp_path / "out" / "clip-2.json").exists()


def test_newer_schema_is_refused(speech_wav, tmp_path, capsys):
    run_cli(capsys, "--quiet", "process", str(speech_wav), "--out", str(tmp_path))
    path = tmp_path / "speech.json"
    document = json.loads(path.read_text())
    document["schema_version"] = results.SCHEMA_VERSION + 1
    path.write_text(json.dumps(document))
    with pytest.raises(Exception, match="newer"):
        results.read_result(path)


def test_config_override_and_typos(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("media: {frame_rate: 2.5}\n")
    assert load_config(good).media.frame_rate == 2.5
    typo = tmp_path / "typo.yaml"
    typo.write_text("media: {frame_rat: 2.5}\n")
    with pytest.raises(ConfigError, match="media.frame_rat"):
        load_config(typo)
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("media: {frame_rate: fast}\n")
    with pytest.raises(ConfigError, match="media.frame_rate"):
        load_config(wrong_type)


def test_entry_point_exit_code_and_no_traceback(bad_inputs, tmp_path):
    """The installed command, as a shell sees it."""
    proc = subprocess.run([sys.executable, "-m", "avid", "--quiet", "process", str(bad_inputs["text_as_mp4"]),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == MediaError.exit_code
    assert "Traceback" not in proc.stderr and str(bad_inputs["text_as_mp4"]) in proc.stderr


@pytest.mark.parametrize("command", ["process", "enroll", "query", "search"])
def test_decompression_bomb_is_one_line_naming_the_file_in_every_command(synthetic, command, tmp_path, capsys):
    from avid.identity.store import Gallery

    bomb = synthetic.write_large_png(tmp_path / "bomb.png", 40000, 40000, rows=1)
    db = tmp_path / "g.db"
    with Gallery(db) as gallery:
        gallery.add_person("Ann")        # a query of an empty gallery is refused before the file is read
    argv = {"process": ["process", str(bomb), "--out", str(tmp_path / "out")],
            "enroll": ["enroll", "Bob", "--image", str(bomb), "--db", str(db)],
            "query": ["query", "--image", str(bomb), "--db", str(db)],
            "search": ["search", "--image", str(bomb), "--db", str(db)]}[command]
    code, _, err = run_cli(capsys, "--quiet", *argv)
    assert code == MediaError.exit_code
    assert err.count("\n") == 1 and str(bomb) in err and "40000 x 40000 pixels" in err


def test_a_photo_decoded_reduced_gives_boxes_in_its_own_pixels(synthetic, tmp_path):
    small = synthetic.astronaut_face()                                   # 512 x 512
    big = np.kron(small, np.ones((6, 6, 1), np.uint8))                   # 3072 x 3072: decoded at 1/2
    cfg = load_config()
    models = Models(cfg)
    boxes = [ingest.process_file(synthetic.write_image(tmp_path / f"{name}.png", image), cfg, models)
             .face_tracks[0].detections[0].box for name, image in (("small", small), ("big", big))]
    assert np.allclose(np.array(boxes[1]) / 6, boxes[0], atol=6)


def test_a_missing_voice_model_fails_the_video_with_its_path(talking_video, tmp_path):
    """The voice models load in the audio thread, beside the face work: their error still ends the input."""
    from avid.errors import ModelError

    missing = tmp_path / "no_such_campplus.pt"
    cfg = load_config(overrides={"voice": {"encoder": {"campplus_weights": str(missing)}}})
    with pytest.raises(ModelError) as error:
        ingest.process_file(talking_video, cfg, models=Models(cfg))
    assert str(missing) in str(error.value)
