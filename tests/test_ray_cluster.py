"""`avid process --engine ray` on a real multi-node Ray cluster (issue 15): Ray's own test cluster
(``ray.cluster_utils.Cluster``: a head and a worker node on this machine, one CPU each) with token authentication
on, joined by address as a user would, from another process.

- the store equals the local engine's on the same generated media (rows, and vectors within 1e-4), while the
  worker node is removed in the middle of a file: that file is redone on the head and nothing is lost;
- files read by path (a shared mount) give the same store, joined through RAY_ADDRESS;
- a missing or wrong token, an address nobody answers at, and a file a worker cannot see are each one clear line.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from avid.config import load_config
from avid.errors import AvidError, MediaError
from avid.library.collection import compare_contents, library_contents, process_collection
from tests import media as synthetic

ray = pytest.importorskip("ray")
pytest.importorskip("skimage")
pytest.importorskip("espeakng_loader")
cluster_utils = pytest.importorskip("ray.cluster_utils")
try:
    from ray._raylet import AuthenticationTokenLoader
    from ray._raylet import Config as RayConfig
except ImportError:                     # a Ray before token authentication
    pytest.skip("this Ray has no token authentication", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Two photos, three speech clips and a short talking video: a few seconds of work per file."""
    folder = tmp_path_factory.mktemp("cluster") / "in"
    folder.mkdir()
    synthetic.write_image(folder / "a astronaut.jpg", synthetic.astronaut_face()[::2, ::2].copy())
    synthetic.write_image(folder / "b hopper.jpg", synthetic.grace_hopper_face()[::2, ::2].copy())
    for name, text, voice in [
            ("c male.wav", "The quick brown fox jumps over the lazy dog near the riverbank every morning, "
                           "while the old farmer counts his sheep twice.", synthetic.MALE_VOICE),
            ("d female.wav", "Bright lanterns were hung along the narrow streets before the festival began, "
                             "and the children sang until late.", synthetic.FEMALE_VOICE),
            ("e male.wav", "Several old sailors gathered at the harbour to repair their fishing nets before "
                           "the storm arrived from the west.", synthetic.MALE_VOICE)]:
        synthetic.write_wav(folder / name, synthetic.speak(text, voice))
    portrait = synthetic.astronaut()
    synthetic.write_talking_video(folder / "f talk.mp4", [synthetic.Segment(synthetic.speak(
        "Welcome aboard. Today we will look at the stars and the planets together.", portrait.voice))],
        [portrait], size=(640, 360), threads=1)
    return folder


@pytest.fixture(scope="module")
def local_store(collection, cfg, tmp_path_factory) -> dict:
    """What the local engine stores for the collection."""
    db = tmp_path_factory.mktemp("local") / "library.db"
    summary = process_collection([collection], db, cfg, workers=1, quiet=True)
    assert len(summary.processed) == 6 and summary.ok
    return library_contents(db)


@pytest.fixture(scope="module")
def cluster():
    """A head and one worker node, token authentication on (the token in RAY_AUTH_TOKEN of the nodes only)."""
    token = secrets.token_hex(32)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "PYTHONPATH")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
                      PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]])))  # workers: this avid
    RayConfig.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    temp_dir = tempfile.mkdtemp(prefix="avid-ray-", dir="/tmp")     # short: Ray's socket paths live under it
    system = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
    made = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "temp_dir": temp_dir, "include_dashboard": False, "_system_config": system})
    try:
        from ray._common.utils import reset_ray_address

        reset_ray_address()        # Cluster wrote /tmp/ray/ray_current_cluster: nobody else's ray.init() joins it
    except ImportError:
        pass
    try:
        worker = made.add_node(num_cpus=1)
        made.wait_for_nodes()
        yield made, worker, token
    finally:
        made.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        RayConfig.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def cli_env(home: Path, **extra: str) -> dict:
    """A user's shell on the driver machine: no token settings but what ``extra`` gives; ``home`` is HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               **extra)
    return env


def avid_process(collection: Path | str, db: Path, env: dict, *extra: str, config: Path | None = None,
                 cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "avid", *(["--config", str(config)] if config else []),
                             "process", str(collection), "--db", str(db),
                             "--engine", "ray", *extra], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def busy_workers(node) -> list[int]:
    """Ray worker processes of ``node`` that are processing a file now (their title while in the method)."""
    raylet = node.all_processes[ray._private.ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    busy = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == raylet and (entry / "cmdline").read_bytes().startswith(b"ray::Worker.analyse"):
                    busy.append(int(entry.name))
    return busy


def test_cluster_joined_by_address_with_a_token_file_gives_the_local_store_though_a_node_is_lost(
        cluster, collection, local_store, tmp_path):
    made, worker, token = cluster
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)        # the token where Ray documents it, nothing else set
    db = tmp_path / "library.db"
    proc = avid_process(collection, db, cli_env(home), "--address", made.address)
    try:
        deadline = time.monotonic() + 180
        while not busy_workers(worker):                      # the worker node is in the middle of a file
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the worker node never processed a file"
            time.sleep(0.05)
        made.remove_node(worker, allow_graceful=False)
        code = proc.wait(timeout=300)
        stderr = proc.stderr.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 0, stderr
    assert "tried again" in stderr, stderr                  # its file was lost with the node, then redone
    assert "Traceback" not in stderr
    assert compare_contents(library_contents(db), local_store) == []


def test_files_read_by_relative_path_through_ray_address_give_the_local_store(cluster, collection, local_store, tmp_path):
    made, _, _ = cluster
    config = tmp_path / "by-path.yaml"
    config.write_text("library: {ray: {ship_media_max_bytes: 0}}\n")     # every node sees these paths: no shipping
    db = tmp_path / "library.db"
    proc = avid_process(collection.name, db, cli_env(tmp_path / "home", RAY_ADDRESS=made.address,   # a relative
                        RAY_AUTH_TOKEN=cluster[2]), config=config, cwd=collection.parent)       # path, as typed
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, stderr
    assert compare_contents(library_contents(db), local_store) == []


def test_a_missing_or_wrong_token_and_a_dead_address_are_one_clear_line(cluster, collection, tmp_path):
    made, _, _ = cluster
    cases = [([], "no token was found here: set RAY_AUTH_TOKEN"),
             (["RAY_AUTH_TOKEN=" + secrets.token_hex(32)], "refused the token from RAY_AUTH_TOKEN"),
             (["RAY_AUTH_TOKEN=" + cluster[2], "ADDRESS=127.0.0.1:9"], "cannot join Ray (127.0.0.1:9): nothing answers at")]
    for settings, said in cases:
        extra = dict(s.split("=", 1) for s in settings)
        address = extra.pop("ADDRESS", made.address)
        started = time.monotonic()
        proc = avid_process(collection, tmp_path / "library.db", cli_env(tmp_path / "home", **extra),
                            "--address", address)
        stderr = proc.communicate(timeout=120)[1]
        lines = stderr.splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("avid: error:"), stderr
        assert said in lines[0], stderr
        assert time.monotonic() - started < 30               # said at once, not after Ray's own retries
        assert "Traceback" not in stderr
    assert not (tmp_path / "library.db").exists()


def test_a_node_with_another_avid_stops_the_run_naming_it(cluster, collection, tmp_path):
    """A node whose workers import an older avid (one without avid.library.ray_engine), as a node set up before an
    upgrade would: the run stops at once, naming the node, before anything is stored from it."""
    made, _, token = cluster
    stale = tmp_path / "stale" / "avid"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text('__version__ = "0.0.1"\n')
    saved = os.environ["PYTHONPATH"]
    os.environ["PYTHONPATH"] = str(stale.parent)            # the new node's workers find this avid first
    try:
        node = made.add_node(num_cpus=1)
    finally:
        os.environ["PYTHONPATH"] = saved
    try:
        made.wait_for_nodes()
        proc = avid_process(collection, tmp_path / "library.db", cli_env(tmp_path / "home", RAY_AUTH_TOKEN=token),
                            "--address", made.address, cwd=tmp_path)   # Ray puts the driver's folder on the
                                                                          # workers' path: not this avid's
        stderr = proc.communicate(timeout=180)[1]
    finally:
        made.remove_node(node, allow_graceful=False)
    assert proc.returncode == 1, stderr
    # Which check speaks first (the import of avid.library.ray_engine, or the version and source the actor reports)
    # depends on how the stale package and the driver's path meet on the node; either names the node.
    last = stderr.splitlines()[-1]
    assert f"Ray node {node.node_ip_address} runs another avid" in last and "than this driver" in last, stderr


def test_a_file_a_worker_cannot_see_stops_the_run_naming_file_and_node(cluster, collection, monkeypatch):
    """Read by path (no shipping), a file that only the driver's view of the disk holds: /proc/self/cwd is the
    driver's folder for the driver and the worker's own for a worker, as a local disk is for each node."""
    from avid.library import ray_engine

    made, _, token = cluster
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.chdir(collection)
    only_here = "/proc/self/cwd/c male.wav"
    by_path = load_config(overrides={"library": {"ray": {"ship_media_max_bytes": 0}}})
    with pytest.raises(MediaError) as caught:
        list(ray_engine.run([(only_here, "0" * 64)], by_path, 1, made.address))
    assert caught.value.path == only_here and "cannot read this file" in str(caught.value)
    assert f"node {made.head_node.node_ip_address}" in str(caught.value) and "--ship-media" in str(caught.value)
    assert not ray.is_initialized()                          # the run ended its own connection


def test_shipped_files_reach_one_worker_that_keeps_its_models_and_removes_its_copies(collection):
    """--ship-media through a private local Ray with one worker: every file is done by the same worker process
    (its models loaded once), from a private copy that is deleted after; the outcomes name the driver's paths."""
    from avid.library import ray_engine

    before = set(Path(tempfile.gettempdir()).glob("avid-shipped-*"))
    paths = [collection / name for name in ("c male.wav", "a astronaut.jpg", "d female.wav")]
    cfg = load_config(overrides={"library": {"ray": {"ship_chunk_bytes": 65536}}})     # several chunks a file
    outcomes = list(ray_engine.run([(str(p), f"h{i}") for i, p in enumerate(paths)], cfg, 1, None, ship_media=True))
    assert [o.path for o in outcomes] == [str(p) for p in paths] and all(o.error is None for o in outcomes)
    assert [sorted({r.modality for r in o.observations}) for o in outcomes] == [["voice"], ["face"], ["voice"]]
    assert len({o.worker for o in outcomes}) == 1
    assert set(Path(tempfile.gettempdir()).glob("avid-shipped-*")) == before


def test_unreachable_ray_is_refused_before_any_store_is_made(collection, tmp_path, cfg):
    with pytest.raises(AvidError, match="nothing answers"):
        process_collection([collection], tmp_path / "library.db", cfg, engine="ray", address="127.0.0.1:9")
    assert not (tmp_path / "library.db").exists()
