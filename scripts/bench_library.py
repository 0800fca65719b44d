"""Throughput of `avid process --db` (files per minute): the local engine with 1 and 2 workers and the Ray engine
on a cluster of 1 and 2 nodes of one CPU each, on the same generated set, in one run (issue 15).

The set (generated once into bench_out/library_set/, git-ignored): photos, speech clips and short talking videos
(tests/media.py: the astronaut and Grace Hopper photos, eSpeak NG voices), every file different content. Each
configuration is one `avid -q process SET --db NEW_STORE` child process, timed from launch to exit (Python start-up,
imports and each worker's model loading included); the Ray runs join a `ray.cluster_utils.Cluster` on this machine
(token authentication on, as `ray start` has it) started before the clock starts, as a long-lived cluster would be.
Every store must equal the first one (files, observations, vectors within 1e-4).

    python scripts/bench_library.py                    # prints a table and one JSON line
    python scripts/bench_library.py --photos 16 --clips 16 --videos 16 --repeat 3

Exit status: 0 done, 1 a store differed, 2 a run failed.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avid.library.collection import compare_contents, library_contents  # noqa: E402
from tests import media as synthetic  # noqa: E402

LINES = [
    "Welcome back. Today we are talking about how computers learned to listen to people.",
    "The first programs were written by hand, one instruction at a time, on long paper sheets.",
    "From orbit, the Earth looks calm and very blue, and the cities glow at night.",
    "A compiler translates the words we write into instructions a machine can follow.",
    "Every launch begins months earlier, with checklists and long days in the simulator.",
    "The most dangerous phrase in the language is: we have always done it this way.",
    "When the engines start, the whole cabin shakes, and then it is suddenly quiet.",
    "Nanoseconds are easier to understand when you can hold one in your hand.",
]


def make_set(folder: Path, photos: int, clips: int, videos: int) -> list[Path]:
    """The benchmark's inputs (kept between runs: same names, same content)."""
    folder.mkdir(parents=True, exist_ok=True)
    faces = [synthetic.astronaut_face(), synthetic.grace_hopper_face()]
    voices = [synthetic.MALE_VOICE, synthetic.FEMALE_VOICE]
    made = []
    for i in range(photos):
        path = folder / f"photo{i:02d}.jpg"
        if not path.exists():
            face = faces[i % 2]
            step = 1 + (i // 2) % 2                         # full size and half size, then mirrored ones
            image = face[::step, ::step] if (i // 4) % 2 == 0 else face[::step, ::-step]
            synthetic.write_image(path, image.copy(), quality=90 - i)
        made.append(path)
    for i in range(clips):
        path = folder / f"clip{i:02d}.wav"
        if not path.exists():
            text = " ".join(LINES[(i + k) % len(LINES)] for k in range(3))     # about 15 s of speech
            synthetic.write_wav(path, synthetic.speak(text, voices[i % 2]))
        made.append(path)
    portraits = [synthetic.astronaut(), synthetic.grace_hopper()]
    for i in range(videos):
        path = folder / f"video{i:02d}.mp4"
        if not path.exists():
            who = portraits[i % 2]
            said = [synthetic.Segment(synthetic.speak(LINES[(i + k) % len(LINES)], who.voice)) for k in range(3)]
            synthetic.write_talking_video(path, said, [who], size=(640, 360), threads=1)     # about 15 s
        made.append(path)
    return made


def timed_run(folder: Path, db: Path, env: dict, *args: str) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "avid", "-q", "process", str(folder), "--db", str(db), *args],
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        print(f"avid process {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}", file=sys.stderr)
        sys.exit(2)
    return seconds


def start_cluster(nodes: int):
    """A Ray test cluster of ``nodes`` nodes of one CPU each, token authentication on; (cluster, token)."""
    from ray._raylet import AuthenticationTokenLoader
    from ray._raylet import Config as RayConfig
    from ray.cluster_utils import Cluster

    token = secrets.token_hex(32)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    RayConfig.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "temp_dir": tempfile.mkdtemp(prefix="avid-ray-", dir="/tmp")})
    try:
        from ray._common.utils import reset_ray_address

        reset_ray_address()             # nobody else's plain ray.init() on this machine joins it
    except ImportError:
        pass
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster, token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the four runs; the median of each is kept "
                        "(a shared, busy machine)")
    parser.add_argument("--set", type=Path, default=ROOT / "bench_out" / "library_set")
    args = parser.parse_args()
    files = make_set(args.set, args.photos, args.clips, args.videos)
    load = os.getloadavg()[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]        # the Ray nodes' workers run this avid too
    work = Path(tempfile.mkdtemp(prefix="avid-bench-library-"))
    times: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.repeat):
        for workers in (1, 2):
            db = work / f"local{workers}-{round_}.db"
            times.setdefault(("local", workers), []).append(timed_run(args.set, db, env, "--workers", str(workers)))
        for nodes in (1, 2):
            cluster, token = start_cluster(nodes)
            try:
                db = work / f"ray{nodes}-{round_}.db"
                driver_env = {k: v for k, v in env.items() if not k.startswith("RAY_")} | {"RAY_AUTH_TOKEN": token}
                times.setdefault(("ray", nodes), []).append(timed_run(args.set, db, driver_env, "--engine", "ray",
                                                                      "--address", cluster.address))
            finally:
                cluster.shutdown()
    results = [(engine, k, statistics.median(seconds), work / f"{engine}{k}-0.db")
               for (engine, k), seconds in times.items()]
    reference = library_contents(results[0][3])
    same = {f"{engine}{n}": compare_contents(library_contents(db), reference) == [] for engine, n, _, db in results}
    n = len(files)
    rate = {f"{engine}{k}": 60.0 * n / seconds for engine, k, seconds, _ in results}
    print(f"{n} files ({args.photos} photos, {args.clips} speech clips of ~15 s, {args.videos} talking videos "
          f"of ~15 s, 640x360), start-up included, median of {args.repeat} run(s) each; load average before: "
          f"{load:.1f} on {os.cpu_count()} cores\n")
    print(f"{'engine':28s} {'seconds':>8s} {'files/min':>10s} {'same store':>11s}")
    for engine, k, seconds, _ in results:
        what = f"local, {k} worker{'s' * (k > 1)}" if engine == "local" else f"ray, {k} node{'s' * (k > 1)} x 1 CPU"
        print(f"{what:28s} {seconds:8.1f} {rate[f'{engine}{k}']:10.1f} {str(same[f'{engine}{k}']):>11s}")
    overhead = {k: rate[f"local{k}"] / rate[f"ray{k}"] - 1.0 for k in (1, 2)}
    print(f"\nRay's overhead over the local engine with as many CPUs: {100 * overhead[1]:+.0f}% (1 CPU), "
          f"{100 * overhead[2]:+.0f}% (2 CPUs); per node of this machine's kind: "
          f"{60 * rate['local2']:.0f} files/hour local, {60 * rate['ray2']:.0f} with Ray")
    print(json.dumps({"files": n, "files_per_minute": {k: round(v, 2) for k, v in rate.items()},
                      "ray_overhead": {f"{k}cpu": round(v, 3) for k, v in overhead.items()}, "same_store": same,
                      "seconds": {f"{e}{k}": [round(t, 1) for t in v] for (e, k), v in times.items()}}))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
