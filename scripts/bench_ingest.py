"""Benchmark `avid process` against plain decoding, on videos it generates itself.

Generates a 60 s and a 240 s 1280x720 25 fps H.264 + AAC video of two people taking turns to speak
(tests/media.py: eSpeak speech, the astronaut and Grace Hopper photos), and uses
../shared/data/video/short_hamilton_clip.mp4 too where it exists. For each video it measures:

- decode: PyAV decoding every video frame, nothing else (the floor any video pipeline pays);
- process: `avid process VIDEO --out DIR` as a child process, wall time and peak RSS (from wait4);
- ratio process/decode, and the real-time factor (media seconds per processing second);
- CPU seconds (user + system) of both, whose ratio holds up better than wall time on a shared, busy machine.

A 1-second clip is processed first to measure the fixed start-up cost (Python, imports, models), reported
separately, and the real-time factor is given with and without it. Prints a table and one JSON line.

    python scripts/bench_ingest.py                 # videos cached in bench_out/ (git-ignored)
    python scripts/bench_ingest.py --check         # exit 1 unless the issue's acceptance figures are met

Exit status: 0 done (or --check passed), 1 --check failed, 2 `avid process` failed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid import stages  # noqa: E402
from avid.errors import MediaError  # noqa: E402
from avid.io import media  # noqa: E402
from tests import media as synthetic  # noqa: E402

SHARED_DATA = Path(os.environ.get("AVID_SHARED_DATA", ROOT.parent / "shared" / "data"))
HAMILTON = SHARED_DATA / "video" / "short_hamilton_clip.mp4"

# Acceptance (issue 2): >= 4x real time on the 60 s video, peak RSS < 2 GB and within 10% from 60 s to 240 s.
MIN_REALTIME_FACTOR = 4.0
MAX_RSS_MB = 2048
MAX_RSS_GROWTH = 0.10

LINES = [
    "Welcome back. Today we are talking about how computers learned to listen.",
    "The first programs were written by hand, one instruction at a time.",
    "From orbit, the Earth looks calm and very blue, and the cities glow at night.",
    "A compiler translates the words we write into instructions a machine can follow.",
    "Every launch begins months earlier, with checklists and long days in the simulator.",
    "The most dangerous phrase in the language is: we have always done it this way.",
    "When the engines start, the whole cabin shakes, and then it is suddenly quiet.",
    "Nanoseconds are easier to understand when you can hold one in your hand.",
]


@dataclass
class Row:
    name: str
    media_seconds: float
    decode_seconds: float
    process_seconds: float
    decode_cpu_seconds: float
    process_cpu_seconds: float
    peak_rss_mb: float
    face_tracks: int
    speech_regions: int
    stages: dict = field(default_factory=dict)    # seconds per stage (avid.stages)

    @property
    def ratio(self) -> float:
        return self.process_seconds / self.decode_seconds

    @property
    def realtime_factor(self) -> float:
        return self.media_seconds / self.process_seconds

    @property
    def cpu_ratio(self) -> float:
        return self.process_cpu_seconds / self.decode_cpu_seconds


class ProcessFailed(Exception):
    pass


def make_video(path: Path, seconds: float, size=(1280, 720), fps: int = 25) -> Path:
    """Two people taking turns, sentences cycling, cut to exactly ``seconds``; reused when already there."""
    if path.exists():
        try:
            if abs(media.probe(path).duration - seconds) < 0.1:
                return path
        except MediaError:           # unreadable: make it again
            pass
    people = [synthetic.astronaut(), synthetic.grace_hopper()]
    speech = {(who, line): synthetic.speak(line, people[who].voice) for who in range(2) for line in LINES}
    segments, total, turn = [], 0.5, 0
    while total < seconds:
        who, line = turn % 2, LINES[turn % len(LINES)]
        segments.append(synthetic.Segment(speech[(who, line)], speaker=who))
        total += speech[(who, line)].size / synthetic.SAMPLE_RATE + 0.4
        turn += 1
    partial = path.with_suffix(".partial.mp4")
    synthetic.write_talking_video(partial, segments, people, size=size, fps=fps, duration=seconds)
    partial.replace(path)
    return path


def decode_seconds(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds to decode every video frame with PyAV (threaded as avid.io.media does), converting nothing."""
    started, cpu_started = time.perf_counter(), _cpu_seconds(resource.RUSAGE_SELF)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - started, _cpu_seconds(resource.RUSAGE_SELF) - cpu_started


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def stage_env(out_dir: Path) -> tuple[dict, Path]:
    """The environment that makes a child `avid` write its seconds per stage (avid.stages), and the file."""
    stage_file = out_dir / "stages.json"
    return dict(os.environ, **{stages.ENV: str(stage_file)}), stage_file


def read_stages(stage_file: Path) -> dict:
    times = json.loads(stage_file.read_text())
    stage_file.unlink()
    return times


def print_stages(title: str, times: dict, wall: float, cpu: float) -> None:
    """One run's seconds per stage, and the share of both cores it kept busy."""
    print(f"\n{title}: seconds per stage (exclusive; wall overlaps across the decode, audio and main threads)")
    print(f"{'stage':<16}{'wall s':>8}{'CPU s':>8}{'calls':>7}")
    for name, t in sorted(times.items(), key=lambda item: -item[1]["cpu_s"]):
        print(f"{name:<16}{t['wall_s']:>8.2f}{t['cpu_s']:>8.2f}{t['calls']:>7}")
    rest = cpu - sum(t["cpu_s"] for t in times.values())
    print(f"{'other':<16}{'':>8}{rest:>8.2f}{'':>7}   (start-up imports, FFmpeg's own threads, glue)")
    print(f"{'total':<16}{wall:>8.2f}{cpu:>8.2f}{'':>7}   both cores busy {100 * cpu / (2 * wall):.0f}% of the wall "
          f"time")


def run_process(path: Path, out_dir: Path, config: str | None) -> tuple[float, float, float, dict, dict]:
    """Run `avid process` in a child; (wall seconds, CPU seconds, peak RSS MB of the child, its JSON output, its
    seconds per stage)."""
    command = [sys.executable, "-m", "avid", "--quiet"]
    if config:
        command += ["--config", config]
    command += ["process", str(path), "--out", str(out_dir)]
    env, stage_file = stage_env(out_dir)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(child.pid, 0)     # this child's own rusage, not all children's
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace").strip()[-2000:]
            raise ProcessFailed(f"`avid {shlex.join(command[3:])}` exited with {child.returncode}:\n{message}")
    times = read_stages(stage_file)
    outputs = sorted(out_dir.glob("*.json"))
    if not outputs:
        raise ProcessFailed(f"`avid process {path}` wrote no JSON into {out_dir}")
    result = json.loads(outputs[0].read_text(encoding="utf-8"))
    peak_rss_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    return elapsed, usage.ru_utime + usage.ru_stime, peak_rss_mb, result, times


def bench(name: str, path: Path, work: Path, config: str | None) -> Row:
    media_seconds = media.probe(path).duration
    decode, decode_cpu = decode_seconds(path)
    out_dir = work / f"out_{name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.iterdir():
        old.unlink()
    elapsed, cpu, rss, result, times = run_process(path, out_dir, config)
    return Row(name, media_seconds, decode, elapsed, decode_cpu, cpu, rss, len(result.get("face_tracks", [])),
               len(result.get("speech_regions", [])), times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark `avid process` against plain decoding.")
    parser.add_argument("--work", type=Path, default=ROOT / "bench_out", help="folder for the generated videos "
                        "and outputs (default bench_out/, git-ignored)")
    parser.add_argument("--durations", type=float, nargs="+", default=[60.0, 240.0],
                        help="lengths of the generated videos in seconds (default 60 240)")
    parser.add_argument("--config", help="avid config file passed to `avid process`")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the acceptance figures are met")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)

    print(f"generating videos in {args.work} (reused when present) ...", flush=True)
    started = time.perf_counter()
    startup_clip = make_video(args.work / "startup_1s_360p.mp4", 1.0, size=(640, 360))
    videos = {f"{d:g}s_720p": make_video(args.work / f"bench_{d:g}s.mp4", d) for d in args.durations}
    if HAMILTON.exists():
        videos["hamilton_10s"] = HAMILTON
    else:
        print(f"skipping the Hamilton clip: {HAMILTON} not found")
    print(f"  ready in {time.perf_counter() - started:.1f} s", flush=True)

    try:
        startup = bench("startup_1s", startup_clip, args.work, args.config)
        rows = []
        for name, path in videos.items():
            print(f"benchmarking {name} ...", flush=True)
            rows.append(bench(name, path, args.work, args.config))
    except ProcessFailed as err:
        print(f"bench_ingest: avid process failed: {err}", file=sys.stderr)
        return 2

    header = (f"{'video':<14}{'media s':>9}{'decode s':>10}{'process s':>11}{'ratio':>8}{'RTF':>8}"
              f"{'RTF-startup':>13}{'CPU dec/proc s':>16}{'CPU ratio':>11}{'peak RSS MB':>13}{'tracks':>8}"
              f"{'speech':>8}")
    print(header)
    print("-" * len(header))
    for row in [startup] + rows:
        net = row.process_seconds - startup.process_seconds
        rtf_net = f"{row.media_seconds / net:.2f}" if row is not startup and net > 0 else "-"
        print(f"{row.name:<14}{row.media_seconds:>9.1f}{row.decode_seconds:>10.2f}{row.process_seconds:>11.2f}"
              f"{row.ratio:>8.1f}{row.realtime_factor:>8.2f}{rtf_net:>13}"
              f"{f'{row.decode_cpu_seconds:.1f}/{row.process_cpu_seconds:.1f}':>16}{row.cpu_ratio:>11.1f}"
              f"{row.peak_rss_mb:>13.0f}"
              f"{row.face_tracks:>8}{row.speech_regions:>8}")

    for row in rows:
        print_stages(row.name, row.stages, row.process_seconds, row.process_cpu_seconds)
    checks = _acceptance(rows, args.durations)
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(json.dumps({"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                      "startup": _record(startup),
                      "videos": [_record(row) for row in rows],
                      "acceptance": {text: ok for text, ok in checks}}))
    return 1 if args.check and not all(ok for _, ok in checks) else 0


def _record(row: Row) -> dict:
    record = asdict(row)
    record.update(ratio=row.ratio, realtime_factor=row.realtime_factor, cpu_ratio=row.cpu_ratio)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}


def _acceptance(rows: list[Row], durations: list[float]) -> list[tuple[str, bool]]:
    by_name = {row.name: row for row in rows}
    short, long = by_name.get(f"{min(durations):g}s_720p"), by_name.get(f"{max(durations):g}s_720p")
    checks = []
    if short is not None:
        checks.append((f"{short.name}: real-time factor {short.realtime_factor:.2f} >= {MIN_REALTIME_FACTOR}",
                       short.realtime_factor >= MIN_REALTIME_FACTOR))
    for row in rows:
        checks.append((f"{row.name}: peak RSS {row.peak_rss_mb:.0f} MB < {MAX_RSS_MB} MB", row.peak_rss_mb < MAX_RSS_MB))
    if short is not None and long is not None and long is not short:
        growth = long.peak_rss_mb / short.peak_rss_mb - 1
        checks.append((f"peak RSS {long.name} vs {short.name}: {growth:+.1%} (within {MAX_RSS_GROWTH:.0%})",
                       abs(growth) <= MAX_RSS_GROWTH))
    return checks


if __name__ == "__main__":
    sys.exit(main())
