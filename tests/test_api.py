"""The Python API (avid.Pipeline, avid.Gallery, avid.Library): README's "Python API" examples run as written, on
generated media, and the API gives what the command line gives."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import avid

REPO = Path(__file__).resolve().parents[1]


def readme_examples(section: str = "Python API") -> list[str]:
    """The ```python blocks of one README section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.DOTALL)


def check_readme_results(folder: Path, scope: dict) -> None:
    """What the examples must have done, from the names they bind (``scope``) and the files they wrote."""
    from pyannote.core import Annotation

    assert isinstance(scope["annotation"], Annotation) and len(scope["annotation"].labels()) == 2
    for name in ("results/talk.json", "results/talk.npz", "interview.rttm", "interview.srt", "interview.vtt"):
        assert (folder / name).stat().st_size > 0, name
    assert json.loads((folder / "results/talk.json").read_text())["schema"] == "avid.ingest"
    assert (folder / "interview.vtt").read_text().startswith("WEBVTT")
    assert scope["found"].answer.name == "Grace Hopper" and json.loads(scope["found"].to_json())["answer"]["accepted"]
    assert {s.name for s in scope["labels"].speakers} == {"astronaut", "Grace Hopper"}
    assert sorted(scope["summary"].processed) == ["interview.mp4", "talk.mp4"] and not scope["summary"].failed
    assert any(hit.file.endswith("interview.mp4") for hit in scope["library"].search(image="grace.jpg"))
    said = {Path(hit.file).name for hit in scope["library"].search(text="welcome aboard")}
    assert said and said <= {"talk.mp4", "interview.mp4"}      # the astronaut says it in both (Whisper may miss one)
    assert not (folder / "default-gallery.db").exists(), "the examples name their store"


@pytest.fixture
def readme_folder(readme_media, monkeypatch) -> Path:
    """The examples run in the folder of the files they name, with AVID_DB pointing into it so that no user
    gallery is touched."""
    monkeypatch.chdir(readme_media)
    monkeypatch.setenv("AVID_DB", str(readme_media / "default-gallery.db"))
    return readme_media


@pytest.mark.slow
def test_readme_python_examples_run(readme_folder):
    blocks = readme_examples()
    assert len(blocks) == 3
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md (Python API)", "exec"), scope)     # the README's own code, as written
    check_readme_results(readme_folder, scope)


def test_overrides_are_checked_and_merged(tmp_path):
    pipeline = avid.Pipeline(media={"frame_rate": 2.0})
    assert pipeline.config.media.frame_rate == 2.0
    assert pipeline.config.faces == avid.load_config().faces          # the rest stays default
    config_file = tmp_path / "fast.yaml"
    config_file.write_text("media: {frame_rate: 3.0}\n")
    both = avid.Pipeline(str(config_file), label={"formats": ["json"]})
    assert both.config.media.frame_rate == 3.0 and both.config.label.formats == ["json"]
    assert avid.Pipeline(both.config, media={"frame_rate": 4.0}).config.label.formats == ["json"]
    with pytest.raises(avid.ConfigError, match="frame_rate"):
        avid.Pipeline(media={"frame_rate": 0})
    with pytest.raises(avid.ConfigError, match="nosuch"):
        avid.Pipeline(nosuch={"x": 1})


def test_models_load_once_per_pipeline_and_results_match_the_cli(speech_wav, tmp_path, capsys):
    from avid.cli import main

    pipeline = avid.Pipeline()
    assert pipeline._models is None                       # nothing loaded before it is needed
    first = pipeline.process(speech_wav)
    encoder = pipeline.models.voice_encoder
    second = pipeline.process(speech_wav)
    assert pipeline.models.voice_encoder is encoder
    assert first.to_dict()["speech_regions"] == second.to_dict()["speech_regions"]

    assert main(["-q", "process", str(speech_wav), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "speech.json").read_text())
    ours = json.loads(first.to_json())
    for key in ("schema", "media", "encoders", "speech_regions", "voice_windows", "face_tracks"):
        assert ours[key] == written[key], key


def test_a_missing_store_is_said(tmp_path, speech_wav):
    with pytest.raises(avid.StoreError, match="enrol someone first"):
        avid.Gallery(tmp_path / "none.db").people()
    with pytest.raises(avid.StoreError):
        avid.Pipeline().label(speech_wav, gallery=tmp_path / "none.db")
    with pytest.raises(ValueError, match="num_speakers"):
        avid.Pipeline().label(speech_wav, num_speakers=0)
    assert not (tmp_path / "none.db").exists()
