"""Command-line conventions (issue 12): the global options before or after the command, --json on every command
that prints results, tab-separated text with a header, and the same exit codes for `process --out` and `--db`."""
from __future__ import annotations

import json

import pytest

from avid.cli import EXIT_ALL_FAILED, EXIT_PARTIAL, _commands, build_parser, main
from avid.errors import MediaError, StoreError
from tests import media as synthetic

PARSER = build_parser()
COMMANDS = {command.prog.removeprefix("avid "): command for command in _commands(PARSER)}
NEEDS = {"process": ["x.mp4", "--out", "o"], "label": ["x.wav"], "enroll": ["Ann"], "people show": ["Ann"],
         "people rename": ["A", "B"], "people merge": ["A", "B"], "people delete": ["A"], "people name": ["1", "A"],
         "people forget": ["A", "--all-learned"], "eval diar": ["--ref", "r", "--hyp", "h"],
         "eval ident": ["m.csv"]}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_command_is_covered():
    assert {"process", "label", "enroll", "query", "search", "train", "serve", "people list", "people unknown",
            "eval diar"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_global_options_before_or_after_the_command(command):
    argv = command.split() + NEEDS.get(command, [])
    after = PARSER.parse_args(argv + ["--quiet", "--verbose", "--config", "after.yaml"])
    assert (after.quiet, after.verbose, after.config) == (True, True, "after.yaml")
    before = PARSER.parse_args(["-q", "--config", "before.yaml", *argv])
    assert (before.quiet, before.verbose, before.config) == (True, False, "before.yaml"), \
        "a value given before the command must not be reset by the command's own copy of the option"
    plain = PARSER.parse_args(argv)
    assert (plain.quiet, plain.verbose, plain.config, plain.db) == (False, False, None, None)


@pytest.mark.parametrize("command", sorted(c for c in COMMANDS if not c.startswith("eval")))
def test_db_before_or_after_every_store_command(command):
    argv = command.split() + NEEDS.get(command, [])
    argv = [a for a in argv if a not in ("--out", "o")]
    assert PARSER.parse_args(["--db", "before.db", *argv]).db == "before.db"
    assert PARSER.parse_args([*argv, "--db", "after.db"]).db == "after.db"


@pytest.mark.parametrize("command", sorted(c for c in COMMANDS if c != "serve"))
def test_every_command_that_prints_results_has_json(command):
    assert "json" in {action.dest for action in COMMANDS[command]._actions}


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_options_after_the_command_are_used(where, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("media: {frame_rate: 0}\n")
    missing = tmp_path / "none.db"
    options = ["--quiet", "--config", str(bad)]
    argv = options + ["people", "list"] if where == "before" else ["people", "list"] + options
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and str(bad) in err and "frame_rate" in err
    argv = ["--db", str(missing), "people", "list"] if where == "before" else ["people", "list", "--db", str(missing)]
    code, _, err = run_cli(capsys, *argv)
    assert code == StoreError.exit_code and str(missing) in err


def test_process_needs_exactly_one_of_out_and_db(speech_wav, tmp_path, capsys):
    code, _, err = run_cli(capsys, "process", str(speech_wav))
    assert code == 2 and "--out" in err and "--db" in err
    code, _, err = run_cli(capsys, "--db", str(tmp_path / "l.db"), "process", str(speech_wav), "--out", "o")
    assert code == 2 and "one of them" in err
    assert not (tmp_path / "l.db").exists()


def test_process_prints_a_header_and_rows_or_json(speech_wav, tmp_path, capsys):
    code, out, err = run_cli(capsys, "-q", "process", str(speech_wav), "--out", str(tmp_path / "o"))
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split("\t") == ["input", "json", "face_tracks", "speech_regions"]
    fields = row.split("\t")
    assert fields[0] == str(speech_wav) and int(fields[2]) == 0 and int(fields[3]) >= 1
    code, out, _ = run_cli(capsys, "-q", "process", str(speech_wav), "--out", str(tmp_path / "o"), "--json")
    [result] = json.loads(out)
    assert result["input"] == str(speech_wav) and result["speech_regions"] == int(fields[3])
    assert json.loads(open(result["json"]).read())["schema"] == "avid.ingest"


@pytest.mark.slow
def test_process_exit_codes_are_the_same_for_out_and_db(speech_wav, tmp_path, capsys):
    empty = synthetic.write_empty(tmp_path / "empty.mp4")
    text = synthetic.write_text_as(tmp_path / "notes.wav")
    cases = {(str(empty),): MediaError.exit_code, (str(empty), str(text)): EXIT_ALL_FAILED,
             (str(empty), str(speech_wav)): EXIT_PARTIAL}
    for n, (inputs, expected) in enumerate(cases.items()):
        out_code = run_cli(capsys, "-q", "process", *inputs, "--out", str(tmp_path / f"o{n}"))[0]
        db_code, out, _ = run_cli(capsys, "-q", "process", *inputs, "--db", str(tmp_path / f"l{n}.db"), "--json")
        assert out_code == db_code == expected, inputs
        summary = json.loads(out)
        assert {f["path"] for f in summary["failed"]} == {str(empty), str(text)} & set(inputs)
        assert all(f["exit_code"] == MediaError.exit_code for f in summary["failed"])


def test_eval_diar_prints_tab_separated_rates_or_json(tmp_path, capsys):
    ref, hyp = tmp_path / "ref.rttm", tmp_path / "hyp.rttm"
    ref.write_text("SPEAKER talk 1 0.00 10.00 <NA> <NA> ann <NA> <NA>\n"
                   "SPEAKER talk 1 10.00 10.00 <NA> <NA> bob <NA> <NA>\n")
    hyp.write_text("SPEAKER talk 1 0.00 15.00 <NA> <NA> s1 <NA> <NA>\n"
                   "SPEAKER talk 1 15.00 5.00 <NA> <NA> s2 <NA> <NA>\n")
    code, out, _ = run_cli(capsys, "eval", "diar", "--ref", str(ref), "--hyp", str(hyp), "--collar", "0")
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0] == ["file", "DER%", "missed%", "false_alarm%", "confusion%", "speech_s"]
    assert [r[0] for r in rows[1:]] == ["talk", "OVERALL"]
    assert float(rows[1][1]) == pytest.approx(25.0) and float(rows[1][5]) == pytest.approx(20.0)
    code, out, _ = run_cli(capsys, "eval", "diar", "--ref", str(ref), "--hyp", str(hyp), "--collar", "0", "--json")
    assert json.loads(out)["overall"]["error_rate"] == pytest.approx(0.25)


def test_the_command_runs_every_exit_handler_and_keeps_its_output_and_code(speech_wav, tmp_path):
    """`python -m avid` (and the `avid` script) end with os._exit to skip the interpreter's teardown, but only once
    every exit handler has run: the stage times (written by one) are there, the JSON is whole, the code is kept."""
    import os
    import subprocess
    import sys

    stages = tmp_path / "stages.json"
    env = dict(os.environ, AVID_STAGE_TIMES=str(stages))
    run = subprocess.run([sys.executable, "-m", "avid", "-q", "process", str(speech_wav), "--out", str(tmp_path / "o"),
                          "--json"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    [result] = json.loads(run.stdout)
    assert result["speech_regions"] >= 1
    assert json.loads(stages.read_text())["voice embed"]["calls"] >= 1
    empty = synthetic.write_empty(tmp_path / "empty.mp4")
    run = subprocess.run([sys.executable, "-m", "avid", "-q", "process", str(empty), "--out", str(tmp_path / "e")],
                         capture_output=True, text=True)
    assert run.returncode == MediaError.exit_code and "empty.mp4" in run.stderr
