"""The per-stage clock the benchmarks read (avid.stages): exclusive times, per thread, written by a child at exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from avid import stages


def test_stages_are_off_unless_asked_for():
    if os.environ.get(stages.ENV):
        return     # a benchmark run of the suite: the clock is on
    assert stages._clock is None
    with stages.stage("anything"):
        pass
    assert list(stages.timed_iter("decode", [1, 2])) == [1, 2]


def test_a_child_writes_exclusive_stage_times_at_exit(tmp_path):
    """An outer stage that only waits on an inner one has (almost) no time of its own; the decode thread's items
    count as its stage; calls are counted."""
    out = tmp_path / "stages.json"
    script = textwrap.dedent("""
        import threading, time
        from avid.stages import stage, timed_iter

        def slow_items():
            for i in range(3):
                time.sleep(0.05)
                yield i

        def decode():
            assert list(timed_iter("decode", slow_items())) == [0, 1, 2]

        worker = threading.Thread(target=decode)
        worker.start()
        with stage("outer"):
            for _ in range(2):
                with stage("inner"):
                    time.sleep(0.1)
        worker.join()
    """)
    env = dict(os.environ, **{stages.ENV: str(out)})
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
    times = json.loads(out.read_text())
    assert times["inner"]["calls"] == 2 and times["outer"]["calls"] == 1 and times["decode"]["calls"] == 4
    assert times["inner"]["wall_s"] >= 0.2 and times["decode"]["wall_s"] >= 0.15
    assert times["outer"]["wall_s"] < 0.05 < times["inner"]["wall_s"]      # the inner stages are not the outer's
    assert all(times[name]["cpu_s"] < times[name]["wall_s"] for name in ("inner", "decode"))   # sleeping is no CPU
