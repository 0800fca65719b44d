"""Benchmark `avid label` against plain decoding, on the 60 s 720p benchmark video.

The video is the one scripts/bench_ingest.py makes (two people taking turns to speak, 1280x720, 25 fps, H.264 +
AAC; its generator is reused, and so is the cached file in bench_out/). For each video it measures:

- decode: PyAV decoding every video frame, nothing else (wall and CPU seconds);
- label: `avid label VIDEO --out DIR --format json,rttm,srt,vtt,png` as a child process: wall and CPU seconds, and
  peak RSS (CPU seconds are the steadier figure where other work shares the machine);
- label+mp4: the same with the annotated MP4 as well (it decodes and re-encodes every frame), unless --no-mp4;
- the real-time factor (media seconds per labelling second) and the ratio to decode time; RTF(CPU/2) is media
  seconds over half the CPU seconds: the real-time factor with both cores to itself and busy (an upper bound).

A 1-second clip is labelled first to measure the fixed start-up cost (Python, imports, models), reported separately.

    python scripts/bench_label.py                      # 60 s video, cached in bench_out/ (git-ignored)
    python scripts/bench_label.py --durations 60 240   # also a 240 s video: peak RSS must not grow
    python scripts/bench_label.py --check              # exit 1 unless >= 3x real time (issue 4)

Exit status: 0 done (or --check passed), 1 --check failed, 2 `avid label` failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import decode_seconds, make_video, print_stages, read_stages, stage_env  # noqa: E402

# (the same generator, decode floor and per-stage table)
from avid.io import media  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIN_REALTIME_FACTOR = 3.0     # issue 4: `avid label` on the 60 s 720p video at >= 3x real time
FORMATS = "json,rttm,srt,vtt,png"


class LabelFailed(Exception):
    pass


def run_label(path: Path, out_dir: Path, formats: str, config: str | None,
              extra: tuple[str, ...] = ()) -> tuple[float, float, float, dict, dict]:
    """Run `avid label` in a child; (wall seconds, CPU seconds, peak RSS MB of the child, its JSON output, its
    seconds per stage: avid.stages)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.iterdir():
        old.unlink()
    command = [sys.executable, "-m", "avid", "--quiet"]
    if config:
        command += ["--config", config]
    command += ["label", str(path), "--out", str(out_dir), "--format", formats, *extra]
    env, stage_file = stage_env(out_dir)
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(child.pid, 0)     # this child's own rusage
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            raise LabelFailed(f"`{' '.join(command[3:])}` failed:\n{stderr.read().decode(errors='replace')[-2000:]}")
    times = read_stages(stage_file)
    result = json.loads(next(out_dir.glob("*.json")).read_text(encoding="utf-8"))
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, result, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark `avid label` against plain decoding.")
    parser.add_argument("--work", type=Path, default=ROOT / "bench_out", help="folder for videos and outputs")
    parser.add_argument("--durations", type=float, nargs="+", default=[60.0], help="video lengths (default 60)")
    parser.add_argument("--no-mp4", action="store_true", help="skip the run that also writes the annotated MP4")
    parser.add_argument("--transcribe", action="store_true",
                        help="also a run with --transcribe (the named transcript), and transcription's own RTF")
    parser.add_argument("--config", help="avid config file passed to `avid label`")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the acceptance figure is met")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)

    print(f"generating videos in {args.work} (reused when present) ...", flush=True)
    startup_clip = make_video(args.work / "bench_1s.mp4", 1.0, size=(640, 360))
    videos = {f"{d:g}s_720p": make_video(args.work / f"bench_{d:g}s.mp4", d) for d in args.durations}
    runs = [("label", FORMATS, ())] + ([] if args.no_mp4 else [("label+mp4", FORMATS + ",mp4", ())])
    if args.transcribe:
        runs.append(("label+words", FORMATS + ",txt", ("--transcribe",)))
    rows = []
    try:
        startup, startup_cpu, _, _, startup_stages = run_label(startup_clip, args.work / "label_startup", FORMATS, args.config)
        for name, path in videos.items():
            seconds = media.probe(path).duration
            decode, decode_cpu = decode_seconds(path)
            for run_name, formats, extra in runs:
                print(f"{run_name} {name} ...", flush=True)
                elapsed, cpu, rss, result, times = run_label(path, args.work / f"label_{name}_{run_name}", formats,
                                                      args.config, extra)
                people = {p["name"]: round(p["speech_seconds"], 1) for p in result["people"]}
                rows.append({"video": name, "run": run_name, "media_s": round(seconds, 2),
                             "decode_s": round(decode, 2), "decode_cpu_s": round(decode_cpu, 2),
                             "label_s": round(elapsed, 2), "label_cpu_s": round(cpu, 2),
                             "ratio": round(elapsed / decode, 2), "cpu_ratio": round(cpu / decode_cpu, 2),
                             "rtf": round(seconds / elapsed, 2),
                             "rtf_minus_startup": round(seconds / max(elapsed - startup, 1e-6), 2),
                             "rtf_cpu_2cores": round(seconds / (cpu / 2), 2),
                             "peak_rss_mb": round(rss), "turns": len(result["turns"]), "people": people,
                             "stages": times})
    except LabelFailed as err:
        print(f"bench_label: {err}", file=sys.stderr)
        return 2

    header = f"{'video':<11}{'run':<11}{'media s':>8}{'decode s':>9}{'label s':>9}{'ratio':>7}{'CPU s':>8}" \
             f"{'CPU ratio':>10}{'RTF':>7}{'RTF-startup':>12}{'RTF(CPU/2)':>11}{'RSS MB':>8}{'turns':>7}  people"
    print(f"start-up (1 s clip): {startup:.2f} s wall, {startup_cpu:.2f} s CPU")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['video']:<11}{r['run']:<11}{r['media_s']:>8.1f}{r['decode_s']:>9.2f}{r['label_s']:>9.2f}"
              f"{r['ratio']:>7.1f}{r['label_cpu_s']:>8.1f}{r['cpu_ratio']:>10.1f}{r['rtf']:>7.2f}"
              f"{r['rtf_minus_startup']:>12.2f}{r['rtf_cpu_2cores']:>11.2f}{r['peak_rss_mb']:>8}{r['turns']:>7}  "
              f"{r['people']}")
    for row in rows:
        print_stages(f"{row['video']} {row['run']}", row["stages"], row["label_s"], row["label_cpu_s"])
    print("\nstart-up run (1 s clip): " + ", ".join(f"{name} {t['cpu_s']:.2f}" for name, t in
                                                   sorted(startup_stages.items(), key=lambda i: -i[1]["cpu_s"])[:4])
          + f" s CPU of {startup_cpu:.2f}")
    for words in (r for r in rows if r["run"] == "label+words"):
        plain = next(r for r in rows if r["run"] == "label" and r["video"] == words["video"])
        extra = words["label_s"] - plain["label_s"]
        print(f"{words['video']}: transcription adds {extra:.2f} s wall ({words['label_cpu_s'] - plain['label_cpu_s']:.1f}"
              f" s CPU): {words['media_s'] / max(extra, 1e-6):.1f}x real time on its own; `avid label --transcribe` "
              f"{words['rtf']:.2f}x real time (target 2.5)")
    first = next((r for r in rows if r["run"] == "label" and r["video"] == f"{min(args.durations):g}s_720p"), None)
    ok = first is not None and first["rtf"] >= MIN_REALTIME_FACTOR
    if first is not None:
        print(f"{'PASS' if ok else 'FAIL'}  {first['video']}: `avid label` real-time factor {first['rtf']:.2f} "
              f">= {MIN_REALTIME_FACTOR}")
    print(json.dumps({"cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                      "startup_s": round(startup, 2), "startup_cpu_s": round(startup_cpu, 2), "rows": rows}))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
