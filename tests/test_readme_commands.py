"""README's shell examples run for real (issue 12: every README code example runs in a test).

Every command line of every ```bash block of README.md is handled here, in README order, in one folder of
generated media named as README names them (talk.mp4, ada.jpg, videos/, "more/*.mkv", ...), with the gallery and
the library one file, library.db: the gallery commands use it through AVID_DB and the library ones through
``--db library.db``, so that `avid search --person "Ada Lovelace" --db library.db` finds the Ada that `avid enroll`
made. The usage notation is expanded (``[--speakers N | --min-speakers N --max-speakers M]``: without, and each
alternative; ``list | show NAME | ...``: each action) with real values for the placeholders, and every form runs:
`avid ...` in this process through avid.cli.main (no interpreter start-up each time), shell pipelines and scripts
in bash. Each run checks the documented exit code and what the command is for. A line nobody handles, a handled
line README no longer has, a run that is not an instance of its line or an option README names that the command
line does not have, each fails a test.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_FILTERS = {"grep", "cut", "head", "tail", "sort", "wc"}     # `avid ... | cut -f2`: a pipeline, not notation
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(:[A-Z]+)?")            # N, NAME, OLD, HOST:PORT ...
SAMPLE_VALUES = {"N": "2", "M": "3", "ID": "1", "HOST:PORT": "127.0.0.1:6379"}     # for parsing only


# ------------------------------------------------------------------------------------------ reading README

def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)


def strip_comment(line: str) -> str:
    """The line without its shell comment: a `#` that starts a word outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands() -> list[str]:
    """Every command line of README's bash blocks, in order, without comments."""
    lines = (strip_comment(line) for block in readme_blocks("bash") for line in block.splitlines())
    return [line.strip() for line in lines if line.strip()]


def words(line: str) -> list[str]:
    """Shell words, with the notation's `[`, `]` and `|` as words of their own (quoted ones stay inside words)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="[]|")
    lexer.whitespace_split = True
    return list(lexer)


def _split(tokens: list[str]) -> list[list[str]]:
    """Split at the `|` outside brackets."""
    parts: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        depth += {"[": 1, "]": -1}.get(token, 0)
        if token == "|" and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def is_pipeline(line: str) -> bool:
    return any(part and part[0] in SHELL_FILTERS for part in _split(words(line))[1:])


def expansions(line: str) -> list[list[str]]:
    """The concrete forms README's usage notation stands for. ``[...]`` is optional: left out, or one of its
    alternatives (an alternative that is a bare value, as in ``[--address HOST:PORT | auto]``, takes the previous
    one's option). ``a | b X | c`` at the top level: the words before the first `|` but its last, then one of the
    alternatives (``avid people list | show NAME``)."""
    alternatives = _split(words(line))
    if len(alternatives) > 1:
        prefix = alternatives[0][:-1]
        alternatives = [alternatives[0]] + [prefix + alternative for alternative in alternatives[1:]]
    forms = []
    for tokens in alternatives:
        choices: list[list[list[str]]] = []
        i = 0
        while i < len(tokens):
            if tokens[i] != "[":
                choices.append([[tokens[i]]])
                i += 1
                continue
            end = tokens.index("]", i)
            group = _split(tokens[i + 1:end])
            assert "[" not in tokens[i + 1:end], f"nested brackets in README: {line}"
            for k in range(1, len(group)):
                if not group[k][0].startswith("-"):
                    group[k] = group[k - 1][:-1] + group[k]
            choices.append([[]] + group)
            i = end + 1
        forms += [sum(combo, []) for combo in itertools.product(*choices)]
    return forms


def instance_of(form: list[str], argv: list[str], placeholders: set[str]) -> bool:
    """Whether ``argv`` is ``form`` with its placeholders filled (a template's ``{key}`` fills only those)."""
    def fits(word: str, given: str) -> bool:
        if PLACEHOLDER.fullmatch(word) or word in placeholders:
            return True
        return word == given and not given.startswith("{")
    return len(form) == len(argv) and all(fits(w, g) for w, g in zip(form, argv))


# ------------------------------------------------------------------------------------ how each line is run

@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Run:
    """One run of a README line: ``command`` is the line with its notation expanded and its placeholders filled
    (``{key}``: a value an earlier check found, from ``state``); ``code`` the exit code README documents for it."""

    command: str
    code: int = 0
    check: Optional[Callable[[Result, Path, dict], None]] = None
    before: Optional[Callable[[Path], None]] = None      # sets up the situation the run is about
    stdin: Optional[str] = None      # typed at a terminal; None: not a terminal, nothing to read
    in_repo: bool = False            # runs in the source tree (scripts/), not in the media folder
    needs: Optional[str] = None      # a fixture that skips where it is missing (shared_data)


@dataclass
class Skip:
    reason: str


class Terminal(io.StringIO):
    """Standard input from someone at a terminal who types ``text``."""

    def isatty(self) -> bool:
        return True


def execute(run: Run, command: str, folder: Path, capsys, monkeypatch) -> Result:
    argv = words(command)
    if argv[0] == "avid" and not is_pipeline(command):
        from avid.cli import main

        monkeypatch.setattr(sys, "stdin", io.StringIO() if run.stdin is None else Terminal(run.stdin))
        capsys.readouterr()
        try:
            code = main(argv[1:])
        except SystemExit as exc:          # argparse: --help, a usage error
            code = exc.code
        out, err = capsys.readouterr()
        return Result(int(code or 0), out, err)
    # a pipeline or another program: bash, with `avid` and `python` this interpreter and this source tree
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, AVID_TEST_PYTHON=sys.executable)
    prelude = 'avid() { "$AVID_TEST_PYTHON" -m avid "$@"; }; python() { "$AVID_TEST_PYTHON" "$@"; }; '
    done = subprocess.run(["bash", "-o", "pipefail", "-c", prelude + command], cwd=REPO if run.in_repo else folder,
                          env=env, capture_output=True, text=True, timeout=300)
    return Result(done.returncode, done.stdout, done.stderr)


def rows(text: str) -> list[list[str]]:
    """The tab-separated rows of a command's output, '#' comments and the header row left out."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [line.split("\t") for line in lines[1:]]


def avid_json(*argv: str):
    """What `avid ARGV --json` prints, run here to look at what a README command did."""
    from avid.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


def gallery_people(folder: Path) -> dict:
    import avid

    return {person.name: person for person in avid.Gallery(folder / "library.db").people()}


# ----------------------------------------------------------------------------------------- the media folder

# What the generated people say. Ada Lovelace is the astronaut's face and voice, the person README enrols; Grace
# Hopper is in the meeting and in more/hopper.mkv and stays unnamed in the library (the unknown cluster README
# names "Charles Babbage"); the podcast guest is a third voice, unknown-1 once `label --enroll-unknown` has run.
ADA_MEETING = "Welcome to our meeting. Today we talk about the analytical engine."
GRACE_MEETING = "Thank you. I taught computers to understand English words."
ADA_TALK = "My name is Ada, and I write the programs for the engine."
ADA_CLIP = "Could I have a banana with my tea, please?"
ADA_ENGINE = ["This is the analytical engine.", "Could I have a banana with my tea, please?"]
ADA_PODCAST = "Welcome back to the podcast. My guest today builds calculating machines."
GUEST_PODCAST = "Thanks for having me. It is good to be here."
GUEST_CLIP = "I build calculating machines out of brass and steel."
GRACE_SHIP = "A ship in port is safe, but that is not what ships are built for."
GRACE_CLIP = "Humans are allergic to change."
SMALL = (640, 360)
LEAD, GAP = 0.5, 0.4        # write_talking_video's defaults: silence before the first segment, between segments


def _spoken(audio: np.ndarray, start: float, rate: int) -> tuple[float, float]:
    """Where the speech of a segment placed at ``start`` really is (eSpeak pads its output with silence)."""
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    return start + loud[0] / rate, start + (loud[-1] + 1) / rate


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory, synthetic, talking_video, astronaut_speech, grace_hopper_speech):
    """The files README's commands name, generated, in a folder the commands run in (AVID_DB: its library.db)."""
    folder = tmp_path_factory.mktemp("readme-commands")
    ada, grace = synthetic.astronaut(), synthetic.grace_hopper()
    rate = synthetic.SAMPLE_RATE

    def say(text: str, voice: str) -> np.ndarray:
        return synthetic.speak(text, voice)

    def talking(path: Path, lines: list[np.ndarray], person) -> None:
        path.parent.mkdir(exist_ok=True)
        synthetic.write_talking_video(path, [synthetic.Segment(a, speaker=0) for a in lines], [person], size=SMALL)

    def pause(seconds: float) -> np.ndarray:
        return synthetic.silence(seconds)

    shutil.copy(talking_video, folder / "talk.mp4")
    synthetic.write_wav(folder / "interview.wav", np.concatenate([pause(0.5), astronaut_speech, pause(0.6),
                                                                   grace_hopper_speech, pause(0.5)]))
    synthetic.write_image(folder / "photo.jpg", synthetic.grace_hopper_face())
    synthetic.write_image(folder / "ada.jpg", synthetic.astronaut_face()[10:-10, 10:-10].copy(), quality=85)
    synthetic.write_image(folder / "someone.jpg", synthetic.astronaut_face()[20:480, 30:500].copy(), quality=80)
    synthetic.write_image(folder / "grace.jpg", synthetic.grace_hopper_face()[30:, 20:-20].copy(), quality=75)
    synthetic.write_wav(folder / "ada_voice.wav", astronaut_speech)
    synthetic.write_wav(folder / "clip.wav", say(ADA_CLIP, ada.voice))
    synthetic.write_wav(folder / "grace_voice.wav", grace_hopper_speech)
    synthetic.write_wav(folder / "grace_clip.wav", say(GRACE_CLIP, grace.voice))
    synthetic.write_wav(folder / "guest.wav", say(GUEST_CLIP, synthetic.MALE_VOICE))
    synthetic.write_audio(folder / "podcast.mp3", np.concatenate([
        pause(0.5), say(ADA_PODCAST, ada.voice), pause(0.6), say(GUEST_PODCAST, synthetic.MALE_VOICE), pause(0.5)]))
    talking(folder / "ada_talk.mp4", [say(ADA_TALK, ada.voice)], ada)
    talking(folder / "talks" / "engine.mp4", [say(line, ada.voice) for line in ADA_ENGINE], ada)
    talking(folder / "more" / "hopper.mkv", [say(GRACE_SHIP, grace.voice)], grace)

    # the meeting: Ada, then Grace Hopper; the reference RTTM says who speaks when, by their real names
    ada_says, grace_says = say(ADA_MEETING, ada.voice), say(GRACE_MEETING, grace.voice)
    synthetic.write_talking_video(folder / "meeting.mp4", [synthetic.Segment(ada_says, speaker=0),
                                                           synthetic.Segment(grace_says, speaker=1)],
                                  [ada, grace], size=SMALL, lead_seconds=LEAD, gap_seconds=GAP)
    (folder / "videos").mkdir()
    shutil.copy(folder / "meeting.mp4", folder / "videos" / "meeting.mp4")
    turns = [("Ada_Lovelace", *_spoken(ada_says, LEAD, rate)),
             ("Grace_Hopper", *_spoken(grace_says, LEAD + ada_says.size / rate + GAP, rate))]
    (folder / "reference.rttm").write_text("".join(
        f"SPEAKER meeting 1 {start:.3f} {end - start:.3f} <NA> <NA> {name} <NA> <NA>\n" for name, start, end in turns))

    (folder / "manifest.csv").write_text(
        "person,modality,role,path\n"
        "Ada Lovelace,face,enrol,ada.jpg\nAda Lovelace,voice,enrol,ada_voice.wav\n"
        "Ada Lovelace,face,test,someone.jpg\nAda Lovelace,voice,test,clip.wav\n"
        "Grace Hopper,face,enrol,photo.jpg\nGrace Hopper,voice,enrol,grace_voice.wav\n"
        "Grace Hopper,face,test,grace.jpg\nGrace Hopper,voice,test,grace_clip.wav\n"
        "guest,voice,test,guest.wav\n")             # never enrolled: a stranger
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("AVID_DB", str(folder / "library.db"))      # the gallery commands' store: the library's
        yield folder


@pytest.fixture(scope="module")
def state() -> dict:
    """What earlier commands found that later ones use (a cluster id, an observation id)."""
    return {}


# --------------------------------------------------------------------------------- what each run must show

def _table(result: Result) -> dict[str, list[str]]:
    """Rows by their first column."""
    return {row[0]: row for row in rows(result.out)}


def check_help(r: Result, folder: Path, state: dict) -> None:
    for command in ("process", "enroll", "train", "query", "label", "search", "people", "eval", "serve"):
        assert re.search(rf"^\s+{command}\s", r.out, re.MULTILINE), f"`avid --help` does not list {command}"


def check_processed(r: Result, folder: Path, state: dict) -> None:
    table = _table(r)
    assert list(table) == ["talk.mp4", "interview.wav", "photo.jpg"]
    for name, row in table.items():
        assert row[1] == f"results/{Path(name).stem}.json" and (folder / row[1]).is_file()
        assert json.loads((folder / row[1]).read_text())["schema"] == "avid.ingest"
    faces, speech = {n: int(row[2]) for n, row in table.items()}, {n: int(row[3]) for n, row in table.items()}
    assert faces == {"talk.mp4": 1, "interview.wav": 0, "photo.jpg": 1} and speech["interview.wav"] >= 2


def check_enrolled(faces: int, voices: int, sources: set[str]) -> Callable:
    def check(r: Result, folder: Path, state: dict) -> None:
        assert f"# enrolled Ada Lovelace: now {faces} face and {voices} voice observations" in r.out
        assert {row[0] for row in rows(r.out)} == {"face", "voice"} and {row[3] for row in rows(r.out)} == sources
    return check


def check_trained(r: Result, folder: Path, state: dict) -> None:
    assert r.out.startswith("# trained the shared model on 1 people")


def check_answer(mode: str) -> Callable:
    """The query names Ada, accepted, and says which modalities it used."""
    def check(r: Result, folder: Path, state: dict) -> None:
        if r.out.lstrip().startswith("{"):
            found = json.loads(r.out)
            assert found["mode"] == mode and found["answer"]["name"] == "Ada Lovelace" and found["answer"]["accepted"]
            return
        lines = [line.split("\t") for line in r.out.splitlines()]
        assert lines[0][0] == f"# {mode} query, matched in shared code z, threshold 0", r.out
        assert lines[1][:2] == ["answer", "Ada Lovelace"] and lines[3][1:4:2] == ["Ada Lovelace", "accepted"], r.out
    return check


def check_labelled(speakers: tuple[int, int], formats: tuple[str, ...], video: bool = True) -> Callable:
    """Ada is named (and linked to her face); the speaker count is in range; every asked-for format is written."""
    def check(r: Result, folder: Path, state: dict) -> None:
        table = _table(r)
        assert speakers[0] <= len(table) <= speakers[1], r.out
        assert "Ada Lovelace" in table and (table["Ada Lovelace"][4] != "-") == video, r.out
        written = dict(re.findall(r"^# wrote (\w+): (.+)$", r.out, re.MULTILINE))
        assert set(written) == set(formats), r.out
        for path in written.values():
            assert (folder / path).stat().st_size > 0 and Path(path).parent == Path("labels")
    return check


def check_podcast(r: Result, folder: Path, state: dict) -> None:
    check_labelled((2, 2), ("json", "rttm", "srt", "vtt", "png"), video=False)(r, folder, state)   # the defaults
    assert set(_table(r)) == {"Ada Lovelace", "unknown-1"} and _table(r)["unknown-1"][4] == "-"
    guest = gallery_people(folder)["unknown-1"]                      # enrolled by voice
    assert (guest.n_face, guest.n_voice) == (0, 1)


def check_transcript(r: Result, folder: Path, state: dict) -> None:
    check_labelled((2, 2), ("json", "rttm", "srt", "vtt", "png", "txt"))(r, folder, state)
    text = (folder / "labels" / "meeting.txt").read_text()
    assert re.search(r"^\[00:00:0\d\] Ada Lovelace: .*welcome", text, re.IGNORECASE | re.MULTILINE), text


def check_stored(total: int) -> Callable:
    def check(r: Result, folder: Path, state: dict) -> None:
        assert re.search(rf"avid: {total} files: {total} processed .* 0 failed", r.err), r.err
    return check


def check_found(expected: dict[str, set[str]], person: str = "Ada Lovelace") -> Callable:
    """The search lists these files with these modalities (others may follow, lower), each hit named."""
    def check(r: Result, folder: Path, state: dict) -> None:
        found: dict[str, set[str]] = {}
        for score, modality, file, ranges, name in rows(r.out):
            found.setdefault(file, set()).add(modality)
            if file in expected:
                assert name == person and ranges, r.out
        for file, modalities in expected.items():
            assert modalities <= found.get(file, set()), r.out
    return check


def check_said(required: bool) -> Callable:
    """Where and how often it was said: each time in the transcribed talk, by Ada. Whisper tiny hears eSpeak's
    "analytical engine" but seldom its "banana" ("an honor"), so that one may be missing."""
    def check(r: Result, folder: Path, state: dict) -> None:
        said = re.match(r"# said (\d+) times?\n", r.out)
        if said is None:
            assert not required and r.out.startswith("# not found in the library's transcripts"), r.out
            assert not rows(r.out)
            return
        assert len(rows(r.out)) == int(said.group(1)), r.out
        assert {(row[0], row[3]) for row in rows(r.out)} == {("talks/engine.mp4", "Ada Lovelace")}, r.out
    return check


def check_unknown(r: Result, folder: Path, state: dict) -> None:
    """Grace Hopper, in two files, is the largest unnamed cluster, with a thumbnail of her face."""
    cluster, faces, voices, files, thumbnail = rows(r.out)[0]
    assert int(faces) >= 2 and int(voices) >= 1 and int(files) == 2, r.out
    assert Path(thumbnail).is_file()
    state["cluster"] = cluster


def check_named(r: Result, folder: Path, state: dict) -> None:
    assert re.fullmatch(rf"named \d+ observations of cluster {state['cluster']} as Charles Babbage\n", r.out), r.out
    babbage = gallery_people(folder)["Charles Babbage"]
    assert babbage.n_face >= 2 and babbage.n_voice >= 1
    state["babbage_voices"] = babbage.n_voice


def check_listed(r: Result, folder: Path, state: dict) -> None:
    assert {"Ada Lovelace", "unknown-1", "Charles Babbage"} <= set(_table(r)), r.out


def check_shown(r: Result, folder: Path, state: dict) -> None:
    """Ada's own observations, then what the library taught: her voice and face in the library's files."""
    own, learned = r.out.split("# learned from the library", 1)
    assert {row[6] for row in rows(own)} == {"ada.jpg", "ada_voice.wav", "ada_talk.mp4"}, r.out
    learned_rows = rows(learned)
    assert {row[6] for row in learned_rows} >= {"videos/meeting.mp4", "talks/engine.mp4"}, r.out
    state["learned"] = next(row[0] for row in learned_rows if row[1] == "voice")


def check_renamed(r: Result, folder: Path, state: dict) -> None:
    assert r.out == "renamed unknown-1 -> Luigi Menabrea\n"
    assert "Luigi Menabrea" in gallery_people(folder) and "unknown-1" not in gallery_people(folder)


def check_merged(r: Result, folder: Path, state: dict) -> None:
    people = gallery_people(folder)
    assert "Luigi Menabrea" not in people and people["Charles Babbage"].n_voice == state["babbage_voices"] + 1
    assert r.out.startswith("merged Luigi Menabrea into Charles Babbage: ")


def check_not_deleted(r: Result, folder: Path, state: dict) -> None:
    assert "deleting 'Charles Babbage' needs confirmation: add --yes" in r.err and r.err.count("\n") == 1
    assert "Charles Babbage" in gallery_people(folder)


def check_deleted(r: Result, folder: Path, state: dict) -> None:
    # the question, then (the answer typed is not echoed here) what was done
    assert re.match(r"delete Charles Babbage and all (\d+) observations\? \[y/N\] deleted Charles Babbage: \1 "
                    r"observations\n", r.out), r.out
    assert set(gallery_people(folder)) == {"Ada Lovelace"}


def check_learn(r: Result, folder: Path, state: dict) -> None:
    assert r.out.startswith(("learned ", "nothing new to learn", "not learned")), r.out


def check_forgot(r: Result, folder: Path, state: dict) -> None:
    assert r.out == "forgot 1 learned observations of Ada Lovelace; they will not be learned for them again\n"
    kept = avid_json("people", "show", "Ada Lovelace")["observations"]
    assert kept and int(state["learned"]) not in {o["id"] for o in kept}


def check_reembedded(dropped: int) -> Callable:
    def check(r: Result, folder: Path, state: dict) -> None:
        done = re.fullmatch(r"re-embedded (\d+) voices with campplus(, deleted (\d+) without a source file)?"
                            r"; run `avid train` to fit the shared model again\n", r.out)
        assert done and int(done.group(3) or 0) == dropped, r.out
        voices = sum(p.n_voice for p in gallery_people(folder).values())
        assert int(done.group(1)) >= voices      # every voice, the library's unnamed ones too
        if dropped:
            assert int(done.group(1)) == state["reembedded"] - dropped
        state["reembedded"] = int(done.group(1))
    return check


def lose_a_voice_source(folder: Path) -> None:
    """What --drop-missing is for: a stored voice whose file is gone (Ada's enrolment video)."""
    (folder / "ada_talk.mp4").unlink()


def check_scored(identification: bool) -> Callable:
    """Against the reference: the turns are right (DER), the names are not all (Grace Hopper is unknown-2 to
    avid), and --collar 0.5 is the default."""
    def check(r: Result, folder: Path, state: dict) -> None:
        table = _table(r)
        assert set(table) == {"meeting", "OVERALL"}, r.out
        rate = float(table["OVERALL"][1])
        key = "ier" if identification else "der"
        if key in state:
            assert rate == state[key]
        state[key] = rate
        if identification:
            assert r.out.startswith("file\tIER%") and rate >= 30
        else:
            assert r.out.startswith("file\tDER%") and rate <= 15
    return check


def check_ceilings(r: Result, folder: Path, state: dict) -> None:
    """The figures README's Measured results quote for this command are what it prints."""
    readme = README.read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if "eval_diarization.py --ceilings" in line and "corpus" in line)
    quoted = re.search(r"corpus ([\d.]+)% \(([\d.]+)%\), mean ([\d.]+)% \(([\d.]+)%\)", row).groups()
    for mode, corpus, mean in (("vad-only", quoted[0], quoted[2]), ("count-only", quoted[1], quoted[3])):
        assert re.search(rf"AMI \(9 files\), {mode} count, collar 0.0: corpus DER {re.escape(corpus)}% .*; "
                         rf"mean of per-file DER {re.escape(mean)}%", r.out), (mode, r.out[-3000:])


def check_identified(ablation: bool) -> Callable:
    """Both people found from each modality by the shared code, the guest's voice scored as not enrolled. (Which
    side of the threshold it falls is not checked: eSpeak's voices are closer to each other than people's.)"""
    def check(r: Result, folder: Path, state: dict) -> None:
        assert r.out.startswith("# manifest.csv: 2 enrolled people")
        table = {tuple(line[:23].split()): line[23:].split() for line in r.out.splitlines()[2:-1]}
        for mode in ("face", "voice", "both"):
            queries, top1, top1_open, eer, strangers, far = table[("shared", "code", "z", mode)]
            assert (queries, top1, top1_open, strangers) == ("2", "100.0%", "100.0%", "1" if mode == "voice" else "0")
        systems = {" ".join(key[:-1]) for key in table}
        assert systems == ({"shared code z", "raw face NN", "raw voice NN", "score fusion", "z cross-modal"}
                           if ablation else {"shared code z"}), r.out
    return check


def check_json_paths(r: Result, folder: Path, state: dict) -> None:
    assert r.out.splitlines() == ["json", "results/engine.json"], r.out
    assert json.loads((folder / "results" / "engine.json").read_text())["media"]["path"] == "talks/engine.mp4"


def check_her_files(r: Result, folder: Path, state: dict) -> None:
    lines = r.out.splitlines()
    assert lines[0] == "file" and set(lines[1:]) == {"videos/meeting.mp4", "talks/engine.mp4"}, r.out


def write_fast_yaml(keep_facenet: bool) -> Callable[[Path], None]:
    """README's fast.yaml as it is, or without the facenet line (what a user without those weights keeps)."""
    def write(folder: Path) -> None:
        block, = (b for b in readme_blocks("yaml") if b.startswith("# fast.yaml\n"))
        lines = [line for line in block.splitlines(keepends=True) if keep_facenet or "facenet" not in line]
        (folder / "fast.yaml").write_text("".join(lines))
    return write


def check_missing_weights(r: Result, folder: Path, state: dict) -> None:
    """A clear one-line error naming the weights file that is not there, and where to get it."""
    error, = r.err.splitlines()
    assert error.startswith("avid: error: /models/20180402-114759-vggface2.pt: facenet weights file not found"), error
    assert "download" in error and not (folder / "out" / "talk.json").exists()


def check_fewer_frames(r: Result, folder: Path, state: dict) -> None:
    """frame_rate 2.0 samples fewer frames than the default 5 (results/talk.json, the first command's)."""
    def detections(path: Path) -> int:
        return sum(track["num_detections"] for track in json.loads(path.read_text())["face_tracks"])
    fast, default = detections(folder / "out" / "talk.json"), detections(folder / "results" / "talk.json")
    assert 0 < fast < 0.6 * default, (fast, default)


# ------------------------------------------------------------------------- every README command, and how

LABEL_FORMATS = ("json", "rttm", "srt", "vtt", "png", "mp4")
INSTALLS = ("creates a virtual environment and installs from PyPI: tests/test_packaging.py builds avid's wheel and "
            "runs it from another folder, tests/test_dependencies.py checks the extras")
RAY = ("needs a Ray cluster: tests/test_ray_cluster.py starts a two-node cluster with token authentication and "
       "runs `avid process --engine ray --address` on it")
SERVE = ("serves until it is stopped: tests/test_serve.py starts it on a free port and checks the loopback address, "
         "the token URL and the pages, then stops it")
SEARCH_TEXT = 'avid search --text "banana" --person "Ada Lovelace" --db library.db'
PEOPLE = "avid people list | show NAME | rename OLD NEW | merge SRC DST | delete NAME"

# README's line (comment left out) -> its runs in README order, or why it does not run here.
HANDLED: dict[str, Skip | list[Run]] = {
    "make demo": Skip("sets up .venv and runs scripts/demo.sh in the source tree (minutes; writes samples/ and "
                      "out/demo/ there): its avid commands are of the kinds run below, and they parse "
                      "(test_demo_script_options_exist)"),
    "make test": Skip("runs the whole test suite, this file included"),
    "python3.11 -m venv .venv && . .venv/bin/activate": Skip(INSTALLS),
    'pip install -e ".[dev]"': Skip(INSTALLS),
    'pip install -e ".[serve]"': Skip(INSTALLS),
    "avid --help": [Run("avid --help", check=check_help)],
    # 1. what is in a file
    "avid process talk.mp4 interview.wav photo.jpg --out results/": [
        Run("avid process talk.mp4 interview.wav photo.jpg --out results/", check=check_processed)],
    # 2. enrol, train
    'avid enroll "Ada Lovelace" --image ada.jpg --audio ada_voice.wav': [
        Run('avid enroll "Ada Lovelace" --image ada.jpg --audio ada_voice.wav',
            check=check_enrolled(1, 1, {"ada.jpg", "ada_voice.wav"}))],
    'avid enroll "Ada Lovelace" --video ada_talk.mp4 --add': [
        Run('avid enroll "Ada Lovelace" --video ada_talk.mp4 --add', check=check_enrolled(2, 2, {"ada_talk.mp4"}))],
    "avid train": [Run("avid train", check=check_trained)],
    # 3. who is this
    "avid query --image someone.jpg": [Run("avid query --image someone.jpg", check=check_answer("face"))],
    "avid query --audio clip.wav --top-k 3 --json": [
        Run("avid query --audio clip.wav --top-k 3 --json", check=check_answer("voice"))],
    "avid query --image someone.jpg --audio clip.wav": [
        Run("avid query --image someone.jpg --audio clip.wav", check=check_answer("both"))],
    # 4. who speaks when
    "avid label meeting.mp4 --out labels/ --format json,rttm,srt,vtt,png,mp4 "
    "[--speakers N | --min-speakers N --max-speakers M]": [
        Run("avid label meeting.mp4 --out labels/ --format json,rttm,srt,vtt,png,mp4",
            check=check_labelled((2, 2), LABEL_FORMATS)),
        Run("avid label meeting.mp4 --out labels/ --format json,rttm,srt,vtt,png,mp4 --speakers 2",
            check=check_labelled((2, 2), LABEL_FORMATS)),
        Run("avid label meeting.mp4 --out labels/ --format json,rttm,srt,vtt,png,mp4 --min-speakers 1 "
            "--max-speakers 2", check=check_labelled((1, 2), LABEL_FORMATS))],
    "avid label podcast.mp3 --out labels/ --enroll-unknown": [
        Run("avid label podcast.mp3 --out labels/ --enroll-unknown", check=check_podcast)],
    "avid label meeting.mp4 --out labels/ --transcribe": [
        Run("avid label meeting.mp4 --out labels/ --transcribe", check=check_transcript)],
    # 5. a library
    'avid process videos/ "more/*.mkv" --db library.db --workers 2': [
        Run('avid process videos/ "more/*.mkv" --db library.db --workers 2', check=check_stored(2))],
    "avid process videos/ --db library.db --engine ray [--address HOST:PORT | auto] [--ship-media]": Skip(RAY),
    "avid search --image ada.jpg --db library.db": [
        Run("avid search --image ada.jpg --db library.db", check=check_found({"videos/meeting.mp4": {"face"}}))],
    "avid search --video ada_talk.mp4 --db library.db": [
        Run("avid search --video ada_talk.mp4 --db library.db",
            check=check_found({"videos/meeting.mp4": {"face", "voice"}}))],
    'avid search --person "Ada Lovelace" --db library.db': [
        Run('avid search --person "Ada Lovelace" --db library.db',
            check=check_found({"videos/meeting.mp4": {"face", "voice"}}))],
    "avid process talks/ --db library.db --transcribe": [
        Run("avid process talks/ --db library.db --transcribe", check=check_stored(1))],
    'avid search --text "analytical engine" --db library.db': [
        Run('avid search --text "analytical engine" --db library.db', check=check_said(True))],
    SEARCH_TEXT: [Run(SEARCH_TEXT, check=check_said(False))],
    "avid people unknown --db library.db": [Run("avid people unknown --db library.db", check=check_unknown)],
    # README's cluster 3 stands for one that exists: here the one `people unknown` listed first
    'avid people name 3 "Charles Babbage" --db library.db': [
        Run('avid people name {cluster} "Charles Babbage" --db library.db', check=check_named)],
    "avid serve --db library.db": Skip(SERVE),
    # the people in the gallery: each action, with the people the commands above made
    PEOPLE: [
        Run("avid people list", check=check_listed),
        Run('avid people show "Ada Lovelace"', check=check_shown),
        Run('avid people rename unknown-1 "Luigi Menabrea"', check=check_renamed),
        Run('avid people merge "Luigi Menabrea" "Charles Babbage"', check=check_merged),
        Run('avid people delete "Charles Babbage"', code=1, check=check_not_deleted),    # not a terminal
        Run('avid people delete "Charles Babbage"', stdin="y\n", check=check_deleted)],  # answered at one
    "avid people learn": [Run("avid people learn", check=check_learn)],
    "avid people forget NAME --observation ID": [
        Run('avid people forget "Ada Lovelace" --observation {learned}', check=check_forgot)],
    "avid people reembed [--drop-missing]": [
        Run("avid people reembed", check=check_reembedded(0)),
        Run("avid people reembed --drop-missing", before=lose_a_voice_source, check=check_reembedded(1))],
    # scoring
    "avid eval diar --ref reference.rttm --hyp labels/meeting.rttm [--collar 0.5] [--identification]": [
        Run("avid eval diar --ref reference.rttm --hyp labels/meeting.rttm", check=check_scored(False)),
        Run("avid eval diar --ref reference.rttm --hyp labels/meeting.rttm --identification",
            check=check_scored(True)),
        Run("avid eval diar --ref reference.rttm --hyp labels/meeting.rttm --collar 0.5", check=check_scored(False)),
        Run("avid eval diar --ref reference.rttm --hyp labels/meeting.rttm --collar 0.5 --identification",
            check=check_scored(True))],
    "python scripts/eval_diarization.py --ceilings": [
        Run("python scripts/eval_diarization.py --ceilings", in_repo=True, needs="shared_data",
            check=check_ceilings)],
    "avid eval ident manifest.csv [--ablation]": [
        Run("avid eval ident manifest.csv", check=check_identified(False)),
        Run("avid eval ident manifest.csv --ablation", check=check_identified(True))],
    # tab-separated output through a shell
    "avid process talks/ --out results/ | grep -v '^#' | cut -f2": [
        Run("avid process talks/ --out results/ | grep -v '^#' | cut -f2", check=check_json_paths)],
    'avid search --person "Ada Lovelace" --db library.db | cut -f3': [
        Run('avid search --person "Ada Lovelace" --db library.db | cut -f3', check=check_her_files)],
    # Web app, Running on a cluster
    "avid serve --db library.db [--host 127.0.0.1] [--port 8765]": Skip(SERVE),
    "ray start --head --port=6379": Skip(RAY),
    "ray get-auth-token": Skip(RAY),
    "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token> ray start --address=HEAD:6379": Skip(RAY),
    "avid process /data/videos --db library.db --engine ray --address HEAD:6379": Skip(RAY),
    # Configuration: fast.yaml as README gives it names facenet weights to download; without them, what a user sees
    "avid --config fast.yaml process talk.mp4 --out out": [
        Run("avid --config fast.yaml process talk.mp4 --out out", code=5, before=write_fast_yaml(True),
            check=check_missing_weights),
        Run("avid --config fast.yaml process talk.mp4 --out out", before=write_fast_yaml(False),
            check=check_fewer_frames)],
}
PLACEHOLDERS = {'avid people name 3 "Charles Babbage" --db library.db': {"3"}}    # words that stand for a value
COMMANDS = readme_commands()


def forms(line: str) -> list[list[str]]:
    return [words(line)] if is_pipeline(line) else expansions(line)


# -------------------------------------------------------------------------------------------------- tests

def test_every_readme_command_is_handled():
    unhandled = [line for line in COMMANDS if line not in HANDLED]
    gone = [line for line in HANDLED if line not in COMMANDS]
    assert not unhandled and not gone, (f"README commands that no test runs or skips (add them to HANDLED): "
                                        f"{unhandled}; HANDLED lines README no longer has: {gone}")
    assert [b.split("\n", 1)[0] for b in readme_blocks("yaml")] == ["# fast.yaml"], "a README YAML block to run"


def test_each_run_is_a_form_of_its_line_and_every_form_runs():
    for line, handling in HANDLED.items():
        if isinstance(handling, Skip):
            continue
        line_forms, ran = forms(line), set()
        for run in handling:
            fitting = {i for i, form in enumerate(line_forms)
                       if instance_of(form, words(run.command), PLACEHOLDERS.get(line, set()))}
            assert fitting, f"{run.command!r} is not a form of README's {line!r}"
            ran |= fitting
        left = [" ".join(line_forms[i]) for i in range(len(line_forms)) if i not in ran]
        assert not left, f"forms of README's {line!r} that nothing runs: {left}"


def strict_parser():
    """avid's argument parser, taking options by their full names only (README must not rely on abbreviations)."""
    import argparse

    from avid.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        current.allow_abbrev = False
        parsers += [choice for action in current._actions if isinstance(action, argparse._SubParsersAction)
                    for choice in action.choices.values()]
    return parser


def test_readme_options_exist(capsys):
    """Every form of every `avid` line of README parses, the skipped ones included."""
    parser = strict_parser()
    for line in COMMANDS:
        if line.startswith("python scripts/"):       # a script's options: declared in it (it may not run here)
            script, *options = words(line)[1:]
            source = (REPO / script).read_text()
            assert all(f'"{option}"' in source for option in options if option.startswith("-")), line
        for form in forms(line):
            argv = [SAMPLE_VALUES.get(word, word) for word in _split(form)[0]]
            if argv[0] != "avid":
                continue
            try:
                parser.parse_args(argv[1:])
            except SystemExit as exc:
                assert exc.code == 0, f"README's {line!r}: {' '.join(argv)}: {capsys.readouterr().err}"


def test_demo_script_options_exist(capsys):
    """`make demo` does not run here (see HANDLED), but the avid commands of scripts/demo.sh still parse."""
    parser = strict_parser()
    lines = [line for line in (REPO / "scripts" / "demo.sh").read_text().splitlines() if line.startswith("$avid ")]
    assert len(lines) >= 5
    for line in lines:
        try:
            argv = list(itertools.takewhile(lambda word: not word.startswith(">"), words(strip_comment(line))))
            parser.parse_args(argv[1:])
        except SystemExit as exc:
            assert exc.code == 0, f"scripts/demo.sh: {line}: {capsys.readouterr().err}"


def inline_commands() -> list[list[str]]:
    """The `avid ...` command lines in README's text and tables (code spans outside the code blocks)."""
    text = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    found = []
    for span in re.findall(r"`([^`\n]+)`", text):
        match = re.search(r"(?:^|[\s/])avid ((?:-|[a-z]).*)", span)
        if match:
            found.append(words(match.group(1)))
    return found


def test_inline_commands_name_real_options():
    import argparse

    from avid.cli import build_parser

    checked = 0
    for argv in inline_commands():
        parser = build_parser()
        for word in argv:
            commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if commands and word in commands[0].choices:
                parser = commands[0].choices[word]
            elif word.startswith("--"):
                assert word.split("=")[0] in parser._option_string_actions, f"README: `avid {' '.join(argv)}`"
                checked += 1
    assert checked >= 8             # the README names options in about ten inline commands


@pytest.mark.filterwarnings("ignore:'uem' was approximated")     # avid.cli's own filter, reset by pytest
@pytest.mark.parametrize("line", COMMANDS, ids=[line[:70] for line in COMMANDS])
def test_readme_command(line, state, capsys, monkeypatch, request):
    """README's line, run in README order in one folder (later lines use what earlier ones made)."""
    handling = HANDLED.get(line)
    if handling is None:
        pytest.fail(f"README command that no test runs or skips: {line!r} (add it to HANDLED)")
    if isinstance(handling, Skip):
        pytest.skip(handling.reason)
    folder = request.getfixturevalue("readme_folder")
    for run in handling:
        if run.needs:
            found = request.getfixturevalue(run.needs)
            if run.in_repo and found != REPO.parent / "shared" / "data":
                pytest.skip(f"README's command reads ../shared/data; the shared data is at {found}")
        command = run.command.format(**state)
        assert any(instance_of(form, words(command), PLACEHOLDERS.get(line, set())) for form in forms(line))
        if run.before:
            run.before(folder)
        result = execute(run, command, folder, capsys, monkeypatch)
        assert result.code == run.code, (f"`{command}` exited {result.code}, README says {run.code}\n"
                                         f"{result.out[-3000:]}\n{result.err[-3000:]}")
        if run.check:
            run.check(result, folder, state)
