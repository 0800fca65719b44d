"""`avid process --db --engine ray`: the library's files processed by a pool of Ray actors, here or on a cluster.

Joining: ``address`` None starts a private Ray on this machine (never someone's ``ray start`` cluster);
``HOST:PORT``, ``auto`` (the cluster ``ray start`` began on this machine) or ``RAY_ADDRESS`` join a cluster. Ray
turns token authentication on by default, but a driver joining by address sends its token only when
``RAY_AUTH_MODE=token`` is set: when a token is where Ray documents it (``RAY_AUTH_TOKEN``, the file
``RAY_AUTH_TOKEN_PATH`` names, ``~/.ray/auth_token``), token mode is turned on here. Before ``ray.init`` (which
retries for 20 s or more and then says only "failed to connect") the address is tried once, so that an
unreachable address, a missing token and a wrong token are each one clear line.

Work: one actor per CPU slot (``num_cpus=1``: at most one file in flight per CPU the cluster offers), each a
worker process that loads its models once and keeps them for the run. Every file's outcome comes back to the
driver, the single writer of the store (avid.library.collection). An actor that dies (its node lost, killed, out of memory)
is replaced, and its file is tried again on the others, ``library.ray.file_attempts`` times in all, so a lost node
loses nothing and a file that kills every worker it meets fails alone.

Media: a worker reads an input by its path, which on a cluster needs storage every node mounts at the same path;
a worker that cannot see a file stops the run with a line naming the file and the node. Files up to
``library.ray.ship_media_max_bytes`` (all files with ``--ship-media``) are instead streamed to the worker: a
reader actor on the driver's node (``MediaSource``, no CPU of its own) hands out ``ship_chunk_bytes`` chunks, which
the worker asks for one ahead and writes to a private temporary file, deleted after; no file is ever whole in any
process's memory or in the object store.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import re
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from .. import __version__
from ..config import Config
from ..errors import AvidError, MediaError
from ..private import private_temp_file
from .collection import WORKER_DIED, FileOutcome, Job, _init_worker, _threads_per_worker, analyse_file

log = logging.getLogger("avid")

NO_TOKEN = ("token authentication is on there (Ray's default) and no token was found here: set RAY_AUTH_TOKEN to "
            "the cluster's token (`ray get-auth-token` on the head node prints it), or put it in ~/.ray/auth_token "
            "or in the file RAY_AUTH_TOKEN_PATH names")


def import_ray():
    try:
        import ray
    except ImportError:
        raise AvidError("--engine ray needs the ray package: pip install 'avid[ray]' (or 'ray>=2.9')") from None
    return ray


# ================================================================================================ joining


def cluster_address(address: Optional[str]) -> Optional[str]:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``; None (or "local") for a private Ray here."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def token_source() -> Optional[str]:
    """Where Ray will read this driver's token from (its documented places, in its order), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if path and Path(path).is_file():
            return path
    return None


def _use_token_if_there() -> None:
    """Token mode for this driver when a token is available and RAY_AUTH_MODE does not say otherwise (Ray does
    this itself only for ``auto``; a cluster without authentication accepts a driver that sends one)."""
    try:
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:          # a Ray before token authentication: nothing to turn on
        return
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)    # it warns "token authentication is enabled", which is no news to the user
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


def _resolve(address: str) -> str:
    """HOST:PORT of the cluster's head (``auto``: the one ``ray start`` began on this machine)."""
    from ray._private import services

    try:
        resolved = services.canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as exc:
        raise AvidError(f"cannot join Ray ({address}): {exc}") from None
    if resolved is None:
        raise AvidError(f"cannot join Ray ({address}): no cluster started with `ray start` on this machine")
    return resolved


def _check_head(address: str, given: str, timeout: float) -> None:
    """One quick try of the head's GCS: an address nobody answers at, and a missing or refused token, are said
    plainly here (ray.init would retry for a long time and then only say that it failed)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise AvidError(f"cannot join Ray ({given}): nothing answers at {address} ({exc.strerror or exc}); is the "
                        f"head node started (`ray start --head`) and its port open to this machine?") from None
    from ray import exceptions
    from ray._raylet import GcsClient

    try:
        with _native_stderr_quiet():
            GcsClient(address=address)
    except getattr(exceptions, "AuthenticationError", ()):
        source = token_source()
        mode = os.environ.get("RAY_AUTH_MODE")
        if mode and mode.lower() != "token":
            why = f"it needs a token and RAY_AUTH_MODE={mode} here turns tokens off"
        elif source is None:
            why = NO_TOKEN
        else:
            why = (f"it refused the token from {source}: not this cluster's token (`ray get-auth-token` on the head "
                   f"node prints the right one)")
        raise AvidError(f"cannot join Ray ({given}) at {address}: {why}") from None
    except Exception as exc:      # anything else: ray.init says it better, with its retries
        log.debug("probing the Ray head at %s: %s", address, exc)


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """Ray's C++ client logs a warning of its own to stderr (fd 2) when the head refuses it; the error we raise
    says it better, in one line."""
    import sys

    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def connect(address: Optional[str], workers: int, timeout: float) -> bool:
    """Start a private Ray (``address`` None) or join a cluster; True when this call did it (and must end it)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    on_term = signal.getsignal(signal.SIGTERM)
    try:
        if address is None:
            ray.init(address="local", num_cpus=workers, **options)   # "local": never a `ray start` cluster here
        elif address.startswith("ray://"):                           # Ray Client: it does its own checks
            ray.init(address=address, **options)
        else:
            target = _resolve(address)
            _use_token_if_there()
            _check_head(target, address, timeout)
            ray.init(address=target, **options)
    except AvidError:
        raise
    except Exception as exc:      # Ray raises plain Exception when its node does not come up in time
        raise AvidError(f"cannot start or join Ray ({address or 'local'}): {exc}") from None
    if on_term is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)   # Ray's handler dumps a stack and exits 1; ours stops as Ctrl-C
    return True


# ================================================================================================ the workers


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """A digest of this avid's source: two nodes that differ in it would not make the same store."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class _Unseen:
    """A worker's answer for a file it cannot read at the driver's path."""

    path: str
    node: str


class Worker:
    """A Ray actor: one worker process, its models loaded once and kept for every file of the run."""

    def __init__(self, cfg: Config, threads: int):
        _init_worker(cfg, threads)      # Ray's own daemons end its workers with the driver
        import ray

        self.node = ray.util.get_node_ip_address()

    def where(self) -> dict:
        return {"node": self.node, "pid": os.getpid(), "avid": __version__, "source": source_digest()}

    def analyse(self, path: str, digest: str, cfg: Config, source=None, size: int = 0, chunk: int = 0):
        """One file into a FileOutcome: read at ``path``, or, given ``source`` (the MediaSource on the driver's
        node), streamed from there ``chunk`` bytes at a time (the next chunk is asked for while one is written)."""
        if source is None:
            if not os.access(path, os.R_OK):
                return _Unseen(path, self.node)
            outcome = analyse_file(path, digest, cfg)
        else:
            import ray

            with private_temp_file(prefix="avid-shipped-", suffix=Path(path).suffix.lower()) as local:
                with open(local, "wb") as out:
                    offsets = iter(range(0, size, chunk))
                    pending = [source.read.remote(path, o, chunk) for o in itertools.islice(offsets, 2)]
                    while pending:
                        block = ray.get(pending.pop(0))
                        pending += [source.read.remote(path, o, chunk) for o in itertools.islice(offsets, 1)]
                        out.write(block)
                if os.path.getsize(local) != size:
                    return _Changed(path)
                outcome = analyse_file(str(local), digest, cfg)
        outcome.worker = f"{os.getpid()}@{self.node}"
        return outcome


class MediaSource:
    """A Ray actor on the driver's node (no CPU of its own): hands out the bytes of the driver's files, a chunk at a
    time, so that a file of any size streams to a worker without ever being whole in memory or the object store."""

    def read(self, path: str, offset: int, size: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)


@dataclass
class _Changed:
    """A worker's answer for a shipped file whose size changed on the driver's disk while it was sent."""

    path: str


def _start_failure(exc: Exception) -> Optional[str]:
    """What to say when a worker could not even be made because an import failed on its node, else None."""
    text = str(exc)
    missing = re.search(r"No module named '([\w.]+)'", text)
    if missing is None:
        return None
    node = re.search(r"\bip=([\w.:\[\]-]+)", text)
    where = f"Ray node {node.group(1)}" if node else "a node of the Ray cluster"
    module = missing.group(1)
    if module == "avid":
        return f"avid is not installed on {where} (its workers cannot import it): install the same avid on every node"
    if module.startswith("avid."):
        return (f"{where} runs another avid than this driver (it has no {module}): install the same avid on every "
                f"node")
    return f"{where} lacks {module}, which avid needs: install avid with its dependencies on every node"


def run(jobs: Iterable[Job], cfg: Config, workers: int, address: Optional[str],
        ship_media: bool = False) -> Iterator[FileOutcome]:
    """Outcomes of ``jobs`` from a pool of Ray actors (see the module docstring). ``workers`` 0 on a cluster: one
    actor per CPU it offers; more than that wait for CPUs (an autoscaling cluster adds nodes for them)."""
    ray = import_ray()
    rcfg = cfg.library.ray
    started_here = connect(address, workers, float(rcfg.connect_timeout_seconds))
    actors: dict = {}                  # live actor -> its node ("" until it answered)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise AvidError(f"the Ray cluster ({address or 'local'}) offers no CPU to run avid on")
        size = workers or cpus
        threads = 1 if address else _threads_per_worker(size)
        ship_below = float("inf") if ship_media else (int(rcfg.ship_media_max_bytes) if address else -1)
        yield from _drive(ray, iter(jobs), cfg, size, threads, ship_below, actors)
    finally:
        for actor in list(actors):
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started_here:
            ray.shutdown()


def _drive(ray, jobs: Iterator[Job], cfg: Config, size: int, threads: int, ship_below: float,
           actors: dict) -> Iterator[FileOutcome]:
    """The scheduling loop: each ready actor takes the next file; a dead actor's file goes back in the queue and
    a new actor is asked for in its place (it starts when the cluster has a CPU for it)."""
    rcfg = cfg.library.ray
    actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(Worker)
    here = (__version__, source_digest())
    starting: dict = {}               # ref of where() -> actor
    running: dict = {}                # ref of analyse() -> (actor, job, attempt)
    idle: deque = deque()
    queue: deque = deque()            # (job, attempt): files whose worker died first, then one looked ahead
    attempts = max(1, int(rcfg.file_attempts))
    stalled_since: Optional[float] = None     # since when no file has been running

    source = None
    if ship_below >= 0:           # a reader on the driver's node, for the files that are shipped
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here_node = ray.get_runtime_context().get_node_id()
        source = ray.remote(num_cpus=0, max_restarts=-1)(MediaSource).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here_node, soft=False)).remote()
        actors[source] = "driver"

    def start_actor() -> None:
        actor = actor_class.remote(cfg, threads)
        actors[actor] = ""
        starting[actor.where.remote()] = actor

    def has_job() -> bool:
        if not queue and (job := next(jobs, None)) is not None:
            queue.append((job, 1))
        return bool(queue)

    for _ in range(size):
        start_actor()
    while True:
        while idle and has_job():
            job, attempt = queue.popleft()
            try:
                nbytes = os.path.getsize(job[0])
            except OSError as exc:      # gone from the driver's disk since it was hashed: this file fails alone
                yield FileOutcome(path=job[0], content_hash=job[1], error=_unreadable(exc),
                                  exit_code=MediaError.exit_code)
                continue
            actor = idle.popleft()      # the worker gets an absolute path: its working folder is not ours
            shipping = dict(source=source, size=nbytes, chunk=int(rcfg.ship_chunk_bytes)) \
                if nbytes <= ship_below else {}
            running[actor.analyse.remote(os.path.abspath(job[0]), job[1], cfg, **shipping)] = (actor, job, attempt)
        if not running and not has_job():
            return
        if not running and not starting:
            raise AvidError("no Ray worker could be started; what was stored stays stored, run again")
        if running:
            stalled_since, timeout = None, None
        else:
            stalled_since = stalled_since or time.monotonic()
            timeout = max(0.1, float(rcfg.worker_start_timeout_seconds) - (time.monotonic() - stalled_since))
        ready, _ = ray.wait(list(running) + list(starting), num_returns=1, timeout=timeout)
        if not ready:
            raise AvidError(f"no Ray worker started within {rcfg.worker_start_timeout_seconds:g} s (are the "
                            f"cluster's CPUs taken by other jobs?); what was stored stays stored, run again")
        ref = ready[0]
        if ref in starting:
            actor = starting.pop(ref)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                actors.pop(actor, None)
                if (problem := _start_failure(exc)) is not None:
                    raise AvidError(problem) from None
                log.warning("a Ray worker did not start (%s)", exc.__class__.__name__)
                continue
            if (info["avid"], info["source"]) != here:
                raise AvidError(f"Ray node {info['node']} runs another avid (version {info['avid']}, source "
                                f"{info['source']}) than this driver ({here[0]}, {here[1]}): install the same avid "
                                f"on every node, or the store would mix the results of two versions")
            actors[actor] = info["node"]
            idle.append(actor)
            continue
        actor, job, attempt = running.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as exc:      # its process or node died: the file is tried elsewhere
            node = actors.pop(actor, None) or "a node"
            with contextlib.suppress(Exception):
                ray.kill(actor)
            start_actor()             # back to strength when the cluster has a CPU for it (pending until then)
            if attempt < attempts:
                log.warning("the Ray worker on %s died (%s) while processing %s; it is tried again",
                            node, exc.__class__.__name__, job[0])
                queue.appendleft((job, attempt + 1))
            else:
                yield FileOutcome(path=job[0], content_hash=job[1],
                                  error=f"{WORKER_DIED} [{exc.__class__.__name__}; tried {attempts} times]")
            continue
        except ray.exceptions.RayError as exc:           # the task itself failed (e.g. the file vanished mid-send)
            idle.append(actor)
            cause = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
            yield FileOutcome(path=job[0], content_hash=job[1],
                              error=f"the Ray worker failed on this file ({exc.__class__.__name__}: {cause})")
            continue
        idle.append(actor)
        if isinstance(outcome, _Changed):
            yield FileOutcome(path=job[0], content_hash=job[1], error="the file changed while it was being sent to "
                              "a Ray worker; run again to store its new content")
            continue
        if isinstance(outcome, _Unseen) and not os.access(job[0], os.R_OK):     # gone here too, meanwhile
            yield FileOutcome(path=job[0], content_hash=job[1], error="file not found",
                              exit_code=MediaError.exit_code)
            continue
        if isinstance(outcome, _Unseen):
            raise MediaError(f"the Ray worker on node {outcome.node} cannot read this file at this path: on a cluster "
                             f"every node must mount the inputs at the same path, or pass --ship-media to send "
                             f"them through Ray's object store", outcome.path)
        outcome.path = job[0]           # the path as the driver knows it, as the local engine stores it
        yield outcome


def _unreadable(exc: OSError) -> str:
    return "file not found" if isinstance(exc, FileNotFoundError) else f"cannot read ({exc.strerror or exc})"
