"""Benchmark plumbing: start palmhall or the bare Sanic app, drive them with load.py, compare."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load import GRACE_SECONDS, MAX_REQUESTS_DEFAULT, LoadConfig, Request

BENCH_DIR = Path(__file__).resolve().parent
HEALTH_PATH = "/api/v1/health"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
WARMUP_SECONDS = 1.0
_IN_LOAD_CHILD = "PALMHALL_BENCH_LOAD_CHILD"

# Every child we start, so that an exit by any route (exception, Ctrl-C, SIGTERM) reaps them.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it; a tiny race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path | None,
           stdin: int | None = None, stdout: int | None = None) -> subprocess.Popen[bytes]:
    # A new session keeps Ctrl-C away from the children: we stop them ourselves, in order,
    # instead of racing their own SIGINT handling. It also makes a process group to kill.
    out: Any = stdout
    if log is not None:
        out = log.open("ab")
    try:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=stdin, stdout=out,
            stderr=subprocess.STDOUT if log is not None else None, start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()
    _LIVE[proc.pid] = proc
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM the child, wait, then SIGKILL its whole process group; returns the exit code."""
    try:
        if proc.poll() is None:
            # The leader only, as a supervisor would: Sanic's manager then stops its workers.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
    finally:
        # Whatever the leader left behind in its group (workers, trackers) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        _LIVE.pop(proc.pid, None)
    return proc.returncode


@atexit.register
def _reap_all() -> None:
    for proc in list(_LIVE.values()):
        stop_process(proc, timeout=3.0)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks stop the children."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def report_log_trouble(name: str, log: Path) -> None:
    """The logs live in a scratch dir that is about to go: show anything that went wrong."""
    try:
        text = log.read_text("utf-8", errors="replace")
    except OSError:
        return
    if any(mark in text for mark in ("Traceback", "ERROR", "CRITICAL")):
        print(f"--- {name} logged errors (last lines of its log) ---\n{_tail(log)}",
              file=sys.stderr, flush=True)


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path,
                 timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering:\n"
                               + _tail(log))
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=1.0)
        try:
            conn.request("GET", HEALTH_PATH)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not healthy after {timeout:.0f} s:\n" + _tail(log))


def group_cpu_seconds(pgid: int) -> float | None:
    """utime+stime summed over a process group, from /proc (Linux); None elsewhere.

    A group, not a pid: `palmhall serve --workers 1` still runs Sanic's manager with the
    worker in a child process, so the serving CPU is not in the pid we started.
    """
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return None
    ticks = 0
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        # stat(5) fields 5 (pgrp), 14 (utime) and 15 (stime), counted after the ")".
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    description: str = ""
    # The environment the server was started with (DATABASE_URL, REDIS_URL, secrets...), so
    # a benchmark can run its own set-up or check-up processes against the same stores.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def _palmhall_cmd() -> list[str]:
    # Prefer the entry point of the interpreter we run under (.venv/bin/palmhall with
    # `make bench`), so that a different palmhall earlier on PATH cannot be measured instead.
    sibling = Path(sys.executable).parent / "palmhall"
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("palmhall")
    return [found] if found else [sys.executable, "-m", "backend.cli"]


def _base_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        # Keep generated secrets and metric files in the scratch dir, not in the tree's var/.
        "SECRETS_FILE": str(workdir / "secrets.json"),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        "PALMHALL_ENV": "development",
    })
    return env


def run_step(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path,
             timeout: float = MIGRATE_TIMEOUT, what: str = "") -> None:
    """Run one set-up command to the end (output to `log`); RuntimeError if it fails."""
    proc = _spawn(argv, env=env, cwd=cwd, log=log, stdin=subprocess.DEVNULL)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        stop_process(proc)
    if rc != 0:
        raise RuntimeError(f"{what or argv[0]} failed ({rc}):\n" + _tail(log))


@contextlib.contextmanager
def palmhall_server(database_url: str | None = None, redis_url: str | None = None,
                    port: int | None = None, *, env: Mapping[str, str] | None = None,
                    before_serve: Callable[[dict[str, str], Path], None] | None = None,
                    ) -> Iterator[Server]:
    """`palmhall migrate` then `palmhall serve --workers 1`; a scratch SQLite unless told.

    `env` adds to (or overrides) the servers' environment, e.g. secrets or rate limits.
    `before_serve(env, workdir)` runs after the migration and before the server starts:
    the place to fill the database (see `run_step`).
    """
    with tempfile.TemporaryDirectory(prefix="palmhall-bench-") as tmp:
        workdir = Path(tmp)
        env_ = _base_env(workdir)
        env_["DATABASE_URL"] = database_url or f"sqlite://{workdir / 'bench.sqlite3'}"
        # An empty REDIS_URL is palmhall's switch for the in-process fake Redis.
        env_["REDIS_URL"] = redis_url or ""
        env_.update(env or {})
        env = env_
        log = workdir / "palmhall.log"
        cmd = _palmhall_cmd()
        migrate = _spawn([*cmd, "migrate"], env=env, cwd=workdir, log=log)
        try:
            rc = migrate.wait(MIGRATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            stop_process(migrate)
        if rc != 0:
            raise RuntimeError(f"palmhall migrate failed ({rc}):\n" + _tail(log))
        if before_serve is not None:
            before_serve(env, workdir)
        port = port or free_port()
        proc = _spawn([*cmd, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", "1"],
                      env=env, cwd=workdir, log=log)
        try:
            wait_healthy(proc, port, log)
            db = env["DATABASE_URL"].split("://", 1)[0]
            yield Server("palmhall", proc, port, log,
                         f"{db} + {'Redis server' if env['REDIS_URL'] else 'in-process Redis'}",
                         env=env)
        finally:
            stop_process(proc)
            report_log_trouble("palmhall", log)


@contextlib.contextmanager
def bare_server(port: int | None = None) -> Iterator[Server]:
    """bench/bare_app.py: Sanic alone, one process, the same health JSON."""
    with tempfile.TemporaryDirectory(prefix="palmhall-bench-bare-") as tmp:
        workdir = Path(tmp)
        log = workdir / "bare.log"
        port = port or free_port()
        proc = _spawn([sys.executable, str(BENCH_DIR / "bare_app.py"), "--host", LOOPBACK,
                       "--port", str(port)], env=_base_env(workdir), cwd=workdir, log=log)
        try:
            wait_healthy(proc, port, log)
            yield Server("bare", proc, port, log, "Sanic only")
        finally:
            stop_process(proc)
            report_log_trouble("bare", log)


def _callable_ref(fn: Callable[..., Any]) -> str:
    """An import reference load.py can resolve in its own process."""
    qual = getattr(fn, "__qualname__", "")
    if not qual or "<" in qual:
        raise TypeError("a plan factory must be a module-level function (no lambda or closure)"
                        "; it is imported again in the load process")
    module = fn.__module__
    if module in ("__main__", "__mp_main__"):
        path = getattr(sys.modules[module], "__file__", None)
        if not path:
            raise TypeError("a plan factory defined interactively cannot be imported")
        return f"{Path(path).resolve()}:{qual}"
    return f"{module}:{qual}"


RequestPlan = Request | Sequence[Request] | Callable[..., Iterable[Request]] | str


def run_load(port: int, plan: RequestPlan, *, duration: float, concurrency: int,
             max_requests: int = MAX_REQUESTS_DEFAULT,
             factory_args: Mapping[str, Any] | None = None,
             error_codes: bool = False) -> dict[str, Any]:
    """Drive 127.0.0.1:port from a separate `python bench/load.py` process; its JSON result.

    `plan` is one Request, a list of them (every connection cycles through it), or a factory
    (a module-level callable or a 'module:name' string) called in the load process as
    factory(conn_index, **factory_args) for each connection's own sequence of requests.
    `error_codes` counts the JSON error codes of answers >= 400 (result["error_codes"]).
    """
    if os.environ.get(_IN_LOAD_CHILD):
        # A factory's module imported in the load process must not start load of its own.
        raise RuntimeError("run_load called inside the load generator; guard the script's "
                           "top level with `if __name__ == '__main__':`")
    cfg = LoadConfig(host=LOOPBACK, port=port, duration=duration, concurrency=concurrency,
                     max_requests=max_requests, factory_args=dict(factory_args or {}),
                     error_codes=error_codes)
    if isinstance(plan, Request):
        cfg.requests = [plan]
    elif isinstance(plan, str):
        cfg.factory = plan
    elif callable(plan):
        cfg.factory = _callable_ref(plan)
    else:
        cfg.requests = list(plan)
    with tempfile.TemporaryDirectory(prefix="palmhall-bench-load-") as tmp:
        workdir = Path(tmp)
        out = workdir / "load.json"
        cfg_file = workdir / "plan.json"
        cfg_file.write_text(json.dumps(cfg.to_wire()), "utf-8")
        env = dict(os.environ)
        env[_IN_LOAD_CHILD] = "1"
        # The project root too, so that factories in e.g. `bench.plans` or `tests` import.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), str(BENCH_DIR.parent), env.get("PYTHONPATH", "")) if p)
        with out.open("wb") as fh:
            proc = _spawn([sys.executable, str(BENCH_DIR / "load.py"), "--config", str(cfg_file)],
                          env=env, cwd=workdir, log=None, stdin=subprocess.DEVNULL,
                          stdout=fh.fileno())
        try:
            # The client stops itself at duration + grace; this is only the backstop.
            rc = proc.wait(duration + GRACE_SECONDS + 30.0)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            stop_process(proc)
        text = out.read_text("utf-8").strip()
        if rc != 0 or not text:
            raise RuntimeError(f"load generator failed ({rc}):\n{text}")
        return json.loads(text.splitlines()[-1])  # type: ignore[no-any-return]


def measure(server: Server, plan: RequestPlan, *, duration: float, concurrency: int,
            warmup: float = WARMUP_SECONDS, **load_kwargs: Any) -> dict[str, Any]:
    """Warm up (results dropped), then one measured run; adds the server's CPU use."""
    if warmup > 0:
        run_load(server.port, plan, duration=warmup, concurrency=concurrency, **load_kwargs)
    cpu0 = group_cpu_seconds(server.proc.pid)
    result = run_load(server.port, plan, duration=duration, concurrency=concurrency,
                      **load_kwargs)
    cpu1 = group_cpu_seconds(server.proc.pid)
    if cpu0 is not None and cpu1 is not None and result["duration"] > 0:
        result["server_cpu"] = round((cpu1 - cpu0) / result["duration"], 3)
    result["server"] = server.name
    result["setup"] = server.description
    return result


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def format_table(title: str, rows: Sequence[dict[str, Any]]) -> str:
    head = (f"{'server':<15}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
            f"{'requests':>10}{'srv cpu':>9}{'cli cpu':>9}  setup")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        srv = f"{r['server_cpu']:.0%}" if "server_cpu" in r else "?"
        lines.append(
            f"{r['server']:<15}{r['requests_per_s']:>12,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['errors']:>8}{r['requests']:>10,}{srv:>9}{r['client_cpu']:>9.0%}  {r['setup']}")
    if len(rows) == 2:
        base, ours = rows
        label = f"{ours['server']}/{base['server']}"
        rps = _ratio(ours["requests_per_s"], base["requests_per_s"])
        p50 = _ratio(ours["p50_ms"], base["p50_ms"])
        p99 = _ratio(ours["p99_ms"], base["p99_ms"])
        lines.append(f"{label:<15}{rps:>12}{p50:>9}{p99:>9}")
    for r in rows:
        if r["errors"]:
            lines.append(f"  {r['server']} errors: {r['error_kinds']}")
        if r.get("server_cpu", 1.0) < 0.9:
            lines.append(f"  note: {r['server']} used {r['server_cpu']:.0%} of a core, so it was "
                         "not the bottleneck (it waited on a store, the client or other work on "
                         "this machine); such numbers are noisy")
    return "\n".join(lines)


def compare(target_url_path: str = HEALTH_PATH, duration: float = 10.0, concurrency: int = 32,
            *, plan: RequestPlan | None = None, database_url: str | None = None,
            redis_url: str | None = None, bare_plan: RequestPlan | None = None,
            **load_kwargs: Any) -> list[dict[str, Any]]:
    """Bare Sanic, then palmhall, each alone on the machine: same load, same duration.

    Prints the table and returns the two result dicts. `plan` defaults to GET target_url_path;
    `bare_plan` (default: the same plan) lets the baseline get requests it can answer.
    """
    plan = plan if plan is not None else Request("GET", target_url_path)
    bare_plan = bare_plan if bare_plan is not None else plan
    results: list[dict[str, Any]] = []
    # One after the other and never side by side: on 2 cores the servers would share CPU.
    with bare_server() as bare:
        results.append(measure(bare, bare_plan, duration=duration, concurrency=concurrency,
                               **load_kwargs))
    with palmhall_server(database_url=database_url, redis_url=redis_url) as palmhall:
        results.append(measure(palmhall, plan, duration=duration, concurrency=concurrency,
                               **load_kwargs))
    title = (f"{target_url_path}: {duration:g} s per server, {concurrency} keep-alive "
             f"connections, 1 worker process each, loopback, {os.cpu_count()} CPUs")
    print(format_table(title, results), flush=True)
    return results
