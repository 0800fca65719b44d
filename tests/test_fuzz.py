"""Fuzzing names, configuration values and command lines (issue 13): whatever is typed, avid answers with one of
its documented exit codes (README.md, "Exit codes") and never a traceback.

Bounded and repeatable: Hypothesis runs a fixed number of derandomized examples, in this process through
``avid.cli.main`` (no subprocess per example); the files given are ones that fail before any model is loaded.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avid.cli import EXIT_ALL_FAILED, EXIT_INTERRUPTED, EXIT_PARTIAL, main
from avid.config import DEFAULT_CONFIG_PATH, load_config
from avid.errors import AvidError, ConfigError, StoreError
from avid.identity.store import Gallery, clean_name, name_key, remove_store
from tests import media as synthetic

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, EXIT_PARTIAL, EXIT_ALL_FAILED, EXIT_INTERRUPTED}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> dict[str, Path]:
    """A gallery of two people, a cheap configuration, and files that each fail early (missing, text, empty).
    The tests run inside it: a relative path drawn (such as '' for the current folder) stays in it, not in the
    checkout, whose .venv holds thousands of media files."""
    root = tmp_path_factory.mktemp("fuzz")
    previous = os.getcwd()
    os.chdir(root)
    rng = np.random.default_rng(0)
    with Gallery(root / "template.db") as gallery:
        for name in ("Ann", "Bob"):
            gallery.add_person(name)
            for _ in range(2):
                gallery.add_observation(name, "face", rng.standard_normal(128).astype(np.float32), "dlib", "x.jpg")
    (root / "cheap.yaml").write_text("shared: {train: {steps: 1}}\n")
    (root / "folder").mkdir()
    yield {"root": root, "template": root / "template.db", "cheap": root / "cheap.yaml",
           "missing": root / "missing.jpg", "text": synthetic.write_text_as(root / "notes.jpg"),
           "text_wav": synthetic.write_text_as(root / "notes.wav"),
           "empty": synthetic.write_empty(root / "empty.mp4"), "folder": root / "folder"}
    os.chdir(previous)


def run(argv: list[str]) -> tuple[int, str]:
    """main(argv)'s exit code (argparse's too) and everything it wrote."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as exit_:          # argparse: --help (0) or a usage error (2)
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, out.getvalue()


def assert_documented(argv: list[str], code: int, said: str) -> None:
    assert code in DOCUMENTED, f"{argv}: undocumented exit code {code}\n{said}"
    assert "Traceback" not in said, f"{argv}:\n{said}"


# ------------------------------------------------------------------------------------------------ names

names = st.text(max_size=250) | st.sampled_from(["", " ", "Ann", "ann", "ANN ", "Bo\u0301b", "A\nB", "A\u200bB",
                                                  "\u2028", "-x", "--yes", "x" * 201, "Jos\u00e9", "Jose\u0301"])


@FUZZ
@given(name=names)
def test_any_name_is_stored_clean_or_refused_as_a_store_error(name, tmp_path):
    db = tmp_path / "names.db"
    try:
        with Gallery(db) as gallery:
            try:
                person = gallery.add_person(name)
            except StoreError:
                return
            assert person.name == clean_name(name) and "\n" not in person.name
            assert gallery.person(name).id == person.id                # found again as it was typed
            assert name_key(person.name) == name_key(name)
    finally:
        remove_store(db)


@FUZZ
@given(old=names, new=names, command=st.sampled_from(["show", "rename", "merge", "delete", "enroll"]))
def test_any_name_on_the_command_line_gives_a_documented_exit(place, old, new, command, tmp_path_factory):
    db = Path(shutil.copy(place["template"], tmp_path_factory.mktemp("db") / "g.db"))
    argv = {"show": ["people", "show", old], "rename": ["people", "rename", old, new],
            "merge": ["people", "merge", old, new], "delete": ["people", "delete", old, "--yes"],
            "enroll": ["enroll", old, "--image", str(place["text"])]}[command] + ["--db", str(db)]
    code, said = run(["--quiet", *argv])
    assert_documented(argv, code, said)


# ------------------------------------------------------------------------------------------------ config values

def _leaves(tree: dict, where: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, where + (key,))
        else:
            yield where + (key,)


KEYS = sorted(_leaves(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())))
scalars = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10 ** 20, 10 ** 20) | st.booleans()
           | st.none() | st.text(max_size=20) | st.sampled_from([0, -1, -5, 1e308, 1e-308, ".nan", "0"]))
values = scalars | st.lists(scalars, max_size=4) | st.dictionaries(st.text(max_size=5), scalars, max_size=2)


def nest(path: tuple, value) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


@FUZZ
@given(path=st.sampled_from(KEYS), value=values)
def test_any_config_value_is_accepted_within_its_schema_or_refused_naming_its_key(place, path, value, tmp_path):
    try:
        cfg = load_config(overrides=nest(path, value))
    except ConfigError as err:
        assert ".".join(path) in str(err) and "\n" not in str(err)
        return
    got = cfg
    for key in path:
        got = got[key]
    assert got == value or got is value                     # accepted as given...
    for item in got if isinstance(got, list) else [got]:    # ... and only a finite number, where a number
        assert not isinstance(item, float) or np.isfinite(item)


@FUZZ
@given(text=st.text(max_size=200) | st.builds(lambda p, v: yaml.safe_dump(nest(p, v)), st.sampled_from(KEYS),
                                               values))
def test_any_config_file_gives_a_documented_exit(place, text, tmp_path):
    config = tmp_path / "fuzz.yaml"
    config.write_text(text, encoding="utf-8")
    argv = ["--quiet", "--config", str(config), "people", "list", "--db", str(place["template"])]
    code, said = run(argv)
    assert code in (0, ConfigError.exit_code)
    assert_documented(argv, code, said)


# ------------------------------------------------------------------------------------------------ command lines

FILE, TEXT, INT, FLOAT, DB, OUT = "FILE", "TEXT", "INT", "FLOAT", "DB", "OUT"
TEMPLATES = [
    ["process", FILE, "--out", OUT], ["process", FILE, FILE, "--db", DB, "--workers", INT],
    ["enroll", TEXT, "--image", FILE, "--db", DB], ["enroll", TEXT, "--audio", FILE, "--track", INT, "--db", DB],
    ["query", "--image", FILE, "--top-k", INT, "--db", DB], ["query", "--video", FILE, "--track", INT, "--db", DB],
    ["search", "--person", TEXT, "--top-k", INT, "--db", DB], ["search", "--text", TEXT, "--db", DB],
    ["search", "--audio", FILE, "--db", DB], ["label", FILE, "--out", OUT, "--speakers", INT, "--format", TEXT],
    ["people", "list", "--db", FILE], ["people", "name", INT, TEXT, "--db", DB],
    ["people", "forget", TEXT, "--observation", INT, "--db", DB], ["people", "unknown", "--db", DB],
    ["people", "learn", "--db", DB], ["train", "--db", DB], ["eval", "ident", FILE],
    ["eval", "diar", "--ref", FILE, "--hyp", FILE, "--collar", FLOAT],
]
numbers = st.integers(-3, 5).map(str) | st.sampled_from(["0", "-1", "99999999999999999999", "1.5", "x", "", "nan"])
floats = st.floats(allow_nan=True, allow_infinity=True).map(str) | st.sampled_from(["-1", "x", "1e400"])


@st.composite
def command_lines(draw, place: dict) -> list[str]:
    files = st.sampled_from([str(place[k]) for k in ("missing", "text", "text_wav", "empty", "folder")])
    argv = []
    for token in draw(st.sampled_from(TEMPLATES)):
        argv.append({FILE: lambda: draw(files), TEXT: lambda: draw(names), INT: lambda: draw(numbers),
                     FLOAT: lambda: draw(floats), DB: lambda: "DB", OUT: lambda: "OUT"}.get(token, lambda: token)())
    if draw(st.booleans()):                                  # a token lost, or one too many
        index = draw(st.integers(0, len(argv)))
        argv = argv[:index] + argv[index + 1:] if draw(st.booleans()) else \
            argv[:index] + [draw(names | files | numbers)] + argv[index:]
    return argv


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_any_command_line_gives_a_documented_exit(place, data, tmp_path_factory):
    where = tmp_path_factory.mktemp("cli")
    db = Path(shutil.copy(place["template"], where / "g.db"))
    argv = [str(db) if a == "DB" else str(where / "out") if a == "OUT" else a
            for a in data.draw(command_lines(place))]
    code, said = run(["--quiet", "--config", str(place["cheap"]), *argv])
    assert_documented(argv, code, said)


def test_the_documented_codes_are_the_errors_codes():
    import avid.errors as errors

    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, AvidError)}
    assert codes | {0, EXIT_PARTIAL, EXIT_ALL_FAILED, EXIT_INTERRUPTED} == DOCUMENTED
