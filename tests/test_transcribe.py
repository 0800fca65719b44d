"""Who said what: the transcription stage, words under names, transcript outputs and text search (issue 11).

The demo sample's script is known (scripts/make_sample.py), so its named transcript is checked line by line; the
shared-data tests score sample.wav against sample.stm (WER, cpWER) and search a transcribed library for phrases.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from avid.cli import main
from avid.config import load_config
from avid.errors import ConfigError, ModelError
from avid.identity.store import Gallery
from avid.io.writers import turn_texts, write_srt, write_txt, write_vtt
from avid.library.collection import process_collection
from avid.library.search import search_text
from avid.library.unknown import unknown_clusters
from avid.pipeline import identify
from avid.pipeline.label import label_recording
from avid.pipeline.models import Models
from avid.text.transcribe import WHISPER_TEMPERATURES, SpeechTape, Transcriber, attach_words, stretches
from avid.types import LabelResult, MediaInfo, SpeechRegion, SpeechTurn, Word

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def models(cfg):
    return Models(cfg)


# ---------------------------------------------------------------------------------------------- the parts
def test_stretches_gather_regions_up_to_the_window():
    regions = [SpeechRegion(0, 5), SpeechRegion(6, 20), SpeechRegion(21, 40), SpeechRegion(41, 42)]
    assert stretches(regions, 28.0) == [(0, 20), (21, 42)]
    assert stretches([SpeechRegion(0, 70)], 28.0) == [(0, 28), (28, 56), (56, 70)]


def test_words_go_to_the_turn_that_covers_them_most_or_the_nearest_close_one():
    turns = [SpeechTurn(0.0, 2.0, "spk0", name="Ada"), SpeechTurn(1.8, 4.0, "spk1", name="Bob", overlap=True)]
    words = [Word(0.5, 0.9, " hello"), Word(1.7, 2.0, " both"), Word(1.9, 2.6, " mostly"), Word(4.3, 4.5, " late"),
             Word(9.0, 9.5, " far")]
    attach_words(words, turns, max_gap=0.5)
    assert [(w.speaker, w.name) for w in words] == [("spk0", "Ada"), ("spk0", "Ada"), ("spk1", "Bob"),
                                                    ("spk1", "Bob"), (None, None)]
    assert turn_texts(words, turns) == ["hello both", "mostly"]


def test_every_time_a_phrase_is_said_is_a_hit():
    from avid.library.search import _phrase_spans

    words = [[0.0, 0.4, " A"], [0.4, 0.9, " banana,"], [1.0, 1.5, " then"], [1.6, 2.0, " Banana!"]]
    assert _phrase_spans(words, "banana") == [(0.4, 0.9), (1.6, 2.0)]
    assert _phrase_spans(words, "then banana") == [(1.0, 2.0)]
    assert _phrase_spans(words, "bananas") == [(0.0, 2.0)]      # FTS5 matched it otherwise: the whole turn


def test_a_repetition_loop_is_decoded_again_and_dropped_if_it_stays(cfg):
    """Whisper ending a stretch in "meh meh meh meh": the stretch is decoded again at the retry temperature; a loop
    left after that is dropped as unsure, like one its compression test catches."""
    from types import SimpleNamespace as Seg

    def segment(*words):
        return Seg(start=0.0, end=2.0, compression_ratio=1.5, avg_logprob=-0.3, no_speech_prob=0.1,
                   words=[Seg(start=0.2 * i, end=0.2 * i + 0.2, word=f" {w}", probability=0.9)
                          for i, w in enumerate(words)])

    class Whisper:    # answers in turn, and records the temperature of each call
        def __init__(self, *answers):
            self.answers, self.temperatures = list(answers), []

        def transcribe(self, audio, temperature, **options):
            self.temperatures.append(temperature)
            return iter(self.answers.pop(0)), Seg(language="en")

    transcriber = Transcriber.__new__(Transcriber)
    transcriber.opts, transcriber.folder = cfg.transcribe, Path(".")
    with SpeechTape(16000) as tape:
        tape.feed(np.zeros(3 * 16000, np.float32))
        loop = [segment("and", "meh", "meh", "meh", "meh.")]
        transcriber.model = Whisper(loop, [segment("and", "very", "blue.")])
        transcriber.model.model = Seg(is_multilingual=False)
        words = transcriber.transcribe(tape, [SpeechRegion(0.0, 2.0)]).words
        assert [w.text.strip() for w in words] == ["and", "very", "blue."]
        assert transcriber.model.temperatures == [WHISPER_TEMPERATURES, float(cfg.transcribe.retry_temperature)]
        transcriber.model = Whisper(loop, loop)
        transcriber.model.model = Seg(is_multilingual=False)
        transcript = transcriber.transcribe(tape, [SpeechRegion(0.0, 2.0)])
        assert transcript.words == [] and transcript.dropped_seconds == pytest.approx(2.0)
        transcriber.model = Whisper([segment("very", "very", "very", "good.")])   # three times is speech
        transcriber.model.model = Seg(is_multilingual=False)
        assert len(transcriber.transcribe(tape, [SpeechRegion(0.0, 2.0)]).words) == 4
        assert transcriber.model.temperatures == [WHISPER_TEMPERATURES]


def test_the_tape_is_private_reads_back_stretches_and_is_removed():
    with SpeechTape(16000) as tape:
        tone = np.sin(np.arange(32000) / 10).astype(np.float32) * 0.5
        tape.feed(tone[:16000])
        tape.feed(tone[16000:])
        assert stat.S_IMODE(os.stat(tape.path).st_mode) == 0o600
        back = tape.read(0.5, 1.5)
        assert back.size == 16000 and np.abs(back - tone[8000:24000]).max() < 1e-3
        path = tape.path
    assert not Path(path).exists()


def test_names_cannot_forge_subtitle_cues(tmp_path, cfg):
    result = LabelResult(media=MediaInfo(path="x.wav", kind="audio", duration=3.0),
                         turns=[SpeechTurn(0.0, 1.0, "spk0", name="Eve\n\n2\n00:00:00,000 --> 00:00:09,000\n<b>x"),
                                SpeechTurn(1.5, 2.5, "spk1", name="Bob")])
    srt = write_srt(result, tmp_path / "a.srt", cfg).read_text()
    assert srt.count("-->") == 2 and "\n\n2\n00:00:00,000" not in srt
    vtt = write_vtt(result, tmp_path / "a.vtt", cfg).read_text()
    assert "<b>" not in vtt and "&lt;b&gt;" in vtt and vtt.count("-->") == 2
    result.words = [Word(0.1, 0.5, " hi", speaker="spk0", name=result.turns[0].name),
                    Word(1.6, 2.0, " there", speaker="spk1", name="Bob")]
    txt = write_txt(result, tmp_path / "a.txt").read_text().splitlines()
    assert len(txt) == 2 and txt[1] == "[00:00:01] Bob: there"


def test_a_damaged_model_folder_and_a_language_the_model_lacks_are_refused(tmp_path, models):
    folder = tmp_path / "whisper"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="lacks config.json, tokenizer.json"):
        Transcriber(load_config(overrides={"transcribe": {"model": str(folder), "sha256": None}}))
    with pytest.raises(ModelError, match="fail their checksum"):
        Transcriber(load_config(overrides={"transcribe": {"model": str(folder)}}))
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    with pytest.raises(ModelError, match="cannot load the Whisper model"):
        Transcriber(load_config(overrides={"transcribe": {"model": str(folder), "sha256": None}}))
    with pytest.raises(ConfigError, match="English-only"):
        models.transcriber.transcribe(SpeechTape(16000), [SpeechRegion(0, 1)], language="fr")


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    pytest.importorskip("espeakng_loader")
    out = tmp_path_factory.mktemp("sample")
    return load_script("make_sample"), out, load_script("make_sample").make_sample(out, (640, 360))


def test_the_demo_sample_has_a_named_transcript(sample, tmp_path, cfg, models, capsys, monkeypatch):
    """Every line of the sample's script under the right name, and WER <= 20% against the script. A line is held
    to WER <= 60%: Whisper tiny.en (CTranslate2, int8) hears the Earth line differently from one run to another,
    fresh process or not: "new looks come and very blue" (33%), "... and mehmin blue" (44%), "... and mehrin loo"
    (56%, in a clean-clone CI run); a repetition loop ("... meh meh meh meh", 78%) is what the bound must catch."""
    import jiwer

    maker, folder, _ = sample
    normalise = load_script("eval_transcript").normalise
    with Gallery(tmp_path / "g.db") as gallery:
        for name in ("astronaut", "grace_hopper"):
            identify.enroll(gallery, name, images=[folder / f"{name}.jpg"], audios=[folder / f"{name}_voice.wav"],
                            cfg=cfg, models=models)
        result = label_recording(folder / "interview.mp4", cfg, gallery=gallery, models=models, transcribe=True)
    said: list[tuple[str, str]] = []
    for word in sorted(result.words, key=lambda w: w.start):
        if said and said[-1][0] == word.name:
            said[-1] = (word.name, said[-1][1] + word.text)
        else:
            said.append((word.name, word.text))
    assert [who for who, _ in said] == [who for who, _ in maker.DIALOGUE]
    for (who, text), (_, heard) in zip(maker.DIALOGUE, said):
        assert jiwer.wer(normalise(text), normalise(heard)) <= 0.6, (who, heard)
    script = normalise(" ".join(text for _, text in maker.DIALOGUE))
    assert jiwer.wer(script, normalise("".join(w.text for w in result.words))) <= 0.20
    # The CLI writes it as the txt format too.
    monkeypatch.setattr(identify, "Models", lambda cfg: models)
    code = main(["--quiet", "label", str(folder / "interview.mp4"), "--transcribe", "--format", "txt,json",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    lines = (tmp_path / "out" / "interview.txt").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("[00:00:0")


def test_txt_needs_transcribe(sample, capsys):
    _, folder, _ = sample
    assert main(["--quiet", "label", str(folder / "interview.mp4"), "--format", "txt"]) == 1
    assert "add --transcribe" in capsys.readouterr().err


@pytest.mark.shared_data
def test_sample_wav_wer_and_cpwer(shared_data, cfg, models):
    evaluate = load_script("eval_transcript")
    audio = shared_data / "diarization" / "sample.wav"
    result = label_recording(audio, cfg, models=models, transcribe=True)
    figures = evaluate.scores(evaluate.read_stm(shared_data / "diarization" / "sample.stm"), result.words)
    assert figures["WER"] <= 0.20 and figures["cpWER"] <= 0.30, figures


@pytest.mark.shared_data
def test_text_search_finds_what_was_said_when_and_by_whom(shared_data, tmp_path, cfg):
    """sample.stm: Sheila says "Neither did I" (9.84-10.78 s) and "originally from Chicago" (14.44-17.77 s);
    Diane "originally from Chicago also" (17.79-20.11 s). Found at those times, Sheila's two under one voice."""
    db = tmp_path / "lib.db"
    transcribing = load_config(overrides={"library": {"transcribe": True}})
    process_collection([shared_data / "diarization" / "sample.wav"], db, transcribing, workers=1, quiet=True)
    unknown_clusters(db, cfg)
    neither = search_text(db, "neither did I", cfg=cfg)
    assert len(neither) == 1 and 9.3 <= neither[0].start and neither[0].end <= 11.3
    chicago = sorted(search_text(db, "originally from Chicago", cfg=cfg), key=lambda h: h.start)
    assert len(chicago) == 2
    sheila, diane = chicago
    assert 14.4 <= sheila.start <= 17.8 and 17.7 <= diane.start <= 20.2
    assert sheila.speaker == neither[0].speaker != diane.speaker
    assert sheila.speaker.startswith("unknown cluster")
    assert search_text(db, "a phrase nobody said here", cfg=cfg) == []
