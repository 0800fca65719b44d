"""The configuration schema (avid/configs/schema.yaml): every value is checked at load, with its key and file named."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import avid
from avid.cli import main
from avid.config import DEFAULT_CONFIG_PATH, SCHEMA_PATH, load_config
from avid.errors import ConfigError


def leaves(tree: dict, where: str = ""):
    for key, value in tree.items():
        path = f"{where}.{key}" if where else key
        if isinstance(value, dict):
            yield from leaves(value, path)
        else:
            yield path, value


def test_every_number_and_choice_of_the_defaults_has_a_rule_and_the_defaults_pass_it():
    defaults = dict(leaves(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())))
    rules = dict(leaves(yaml.safe_load(SCHEMA_PATH.read_text())))
    assert set(rules) <= set(defaults), f"rules for keys that do not exist: {set(rules) - set(defaults)}"
    numeric = {k for k, v in defaults.items() if not isinstance(v, bool) and (
        isinstance(v, (int, float)) or isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))}
    assert numeric - set(rules) == set(), "numeric keys without a range"
    assert {k for k, v in defaults.items() if v is None} - set(rules) == set(), "null keys take anything"
    load_config(overrides={"media": {"frame_rate": 5.0}})      # the defaults themselves pass the check


def test_every_default_key_is_named_in_avids_code():
    """A key whose name appears nowhere in avid's code (as ``.key`` or ``"key"``) is read by nothing: a setting that
    does nothing, as output.embedding_dtype was. A floor, not a proof: a name that is also used for something else
    passes (each key was checked by reading when this test came)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in Path(avid.__file__).parent.rglob("*.py"))
    unread = []
    for path, _ in leaves(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())):
        key = path.rsplit(".", 1)[-1]
        if not re.search(rf"\.{key}\b|[\"']{key}[\"']", source):
            unread.append(path)
    assert not unread, f"default config keys read by nothing: {unread}"


@pytest.mark.parametrize("text, key", [
    ("media: {frame_rate: 0}", "media.frame_rate"),
    ("media: {frame_rate: -5}", "media.frame_rate"),
    ("media: {frame_rate: .inf}", "media.frame_rate"),
    ("media: {frame_rate: null}", "media.frame_rate"),
    ("identify: {threshold: .nan}", "identify.threshold"),
    ("identify: {top_k: 0}", "identify.top_k"),
    ("library: {workers: -1}", "library.workers"),
    ("faces: {detector: {batch_size: 2.5}}", "faces.detector.batch_size"),
    ("faces: {detector: {thresholds: [0.6, 0.7, 7]}}", "faces.detector.thresholds"),
    ("voice: {vad: {frame_ms: 25}}", "voice.vad.frame_ms"),
    ("device: gpu", "device"),
    ("index: {type: lsh}", "index.type"),
    ("label: {formats: [json, pdf]}", "label.formats"),
    ("voice: {segmentation: {overlap_threshold: high}}", "voice.segmentation.overlap_threshold"),
    ("transcribe: {model: {path: x}}", "transcribe.model"),
])
def test_out_of_range_value_is_refused_naming_the_key_and_the_file(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert key in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_values_in_range_and_meaningful_nulls_load(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text("media: {frame_rate: 120}\nvoice: {segmentation: {overlap_threshold: 0.5}}\n"
                    "transcribe: {sha256: null}\nidentify: {threshold: -0.5}\n")
    cfg = load_config(path)
    assert cfg.media.frame_rate == 120 and cfg.transcribe.sha256 is None


def test_cli_refuses_a_bad_config_with_the_config_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("media: {frame_rate: 0}\n")
    assert main(["--config", str(path), "people", "list", "--db", str(tmp_path / "g.db")]) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "media.frame_rate" in err and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["process", "x.wav", "--db", "DB", "--workers", "-1"],
                                  ["query", "--image", "x.jpg", "--db", "DB", "--top-k", "0"],
                                  ["search", "--person", "x", "--db", "DB", "--top-k", "-1"],
                                  ["eval", "diar", "--ref", "r", "--hyp", "h", "--collar", "nan"],
                                  ["eval", "diar", "--ref", "r", "--hyp", "h", "--collar", "-1"]])
def test_cli_refuses_a_count_or_a_duration_out_of_range_as_a_usage_error(argv, tmp_path, capsys):
    argv = [str(tmp_path / "g.db") if a == "DB" else a for a in argv]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert argv[-2] in err and "Traceback" not in err
    assert not (tmp_path / "g.db").exists()


def test_workers_above_the_cores_are_capped_with_a_warning(monkeypatch, caplog):
    from avid.library import collection as library

    monkeypatch.setattr(library, "_cores", lambda: 2)
    assert library._worker_count(0, 4) == 2
    assert library._worker_count(1, 4) == 1 and not caplog.records
    assert library._worker_count(64, 4) == 2
    assert "more than the 2 CPU cores" in caplog.text
    assert library._worker_count(64, 4, on_this_machine=False) == 64     # a Ray cluster has cores of its own
