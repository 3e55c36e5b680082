"""Keep-alive HTTP/1.1 load generator on raw asyncio streams; reads a JSON plan, prints JSON."""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import importlib.util
import itertools
import json
import math
import resource
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Hard ceilings so that no loop here can run unbounded whatever the caller asks for.
MAX_REQUESTS_DEFAULT = 2_000_000
MAX_DURATION = 3600.0
MAX_CONCURRENCY = 4096
# After the deadline, requests still in flight get this long before they count as timeouts.
GRACE_SECONDS = 5.0
CONNECT_TIMEOUT = 5.0
# A refused or reset connection is retried after this pause, so a dead server does not
# turn the client into a busy loop that only counts errors.
RECONNECT_PAUSE = 0.05
MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNK_LINES = 100_000


@dataclass(frozen=True)
class Request:
    """One request to send; `expect` lists the statuses that count as success (empty: 2xx)."""

    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    expect: tuple[int, ...] = ()

    @classmethod
    def json(
        cls,
        method: str,
        path: str,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        expect: Sequence[int] = (),
    ) -> Request:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(method, path, tuple(hdrs.items()), body, tuple(expect))

    def to_wire(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": [list(h) for h in self.headers],
            "body_b64": base64.b64encode(self.body).decode(),
            "expect": list(self.expect),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Request:
        return cls(
            method=str(d.get("method", "GET")),
            path=str(d.get("path", "/")),
            headers=tuple((str(k), str(v)) for k, v in d.get("headers", [])),
            body=base64.b64decode(d.get("body_b64", "")),
            expect=tuple(int(s) for s in d.get("expect", [])),
        )

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1"]
        names = {k.lower() for k, _ in self.headers}
        if "host" not in names:
            lines.append(f"Host: {host}")
        if "content-length" not in names and (self.body or self.method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(self.body)}")
        lines.extend(f"{k}: {v}" for k, v in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def ok(self, status: int) -> bool:
        return status in self.expect if self.expect else 200 <= status < 300


@dataclass(frozen=True)
class Response:
    """What a generator plan receives back through `send()`; header names are lower case."""

    status: int
    headers: dict[str, str]
    body: bytes


# A plan factory is called once per connection as factory(conn_index, **factory_args). It
# returns an iterable of Request (the connection stops when it is exhausted) or a generator,
# which is then sent each Response so that it can use e.g. a token from a login answer.
PlanFactory = Callable[..., Iterable[Request]]


@dataclass
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    duration: float = 10.0
    concurrency: int = 32
    max_requests: int = MAX_REQUESTS_DEFAULT
    requests: list[Request] = field(default_factory=list)
    factory: str = ""
    factory_args: dict[str, Any] = field(default_factory=dict)
    # Count the `{"error": {"code": ...}}` of every answer with status >= 400 (the result
    # then has "error_codes"); off by default, since it parses bodies.
    error_codes: bool = False

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> LoadConfig:
        return cls(
            host=str(d.get("host", "127.0.0.1")),
            port=int(d["port"]),
            duration=min(float(d.get("duration", 10.0)), MAX_DURATION),
            concurrency=max(1, min(int(d.get("concurrency", 32)), MAX_CONCURRENCY)),
            max_requests=max(1, min(int(d.get("max_requests", MAX_REQUESTS_DEFAULT)),
                                    MAX_REQUESTS_DEFAULT)),
            requests=[Request.from_wire(r) for r in d.get("requests", [])],
            factory=str(d.get("factory", "")),
            factory_args=dict(d.get("factory_args", {})),
            error_codes=bool(d.get("error_codes", False)),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "duration": self.duration,
            "concurrency": self.concurrency,
            "max_requests": self.max_requests,
            "requests": [r.to_wire() for r in self.requests],
            "factory": self.factory,
            "factory_args": self.factory_args,
            "error_codes": self.error_codes,
        }


def resolve_factory(ref: str) -> PlanFactory:
    """`module:attr` or `/path/to/file.py:attr` (a script that is __main__ in the parent)."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise ValueError(f"factory reference must be 'module:name' or 'file.py:name', not {ref!r}")
    if target.endswith(".py"):
        # Loaded under another name so that the script's `if __name__ == "__main__"` stays idle.
        spec = importlib.util.spec_from_file_location("_bench_plan_" + Path(target).stem, target)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj  # type: ignore[no-any-return]


class Stats:
    """Counters shared by all connections of the one event loop (no locking needed)."""

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests
        self.started = 0
        self.completed = 0
        self.ok = 0
        self.latencies = array("d")
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def take_slot(self) -> bool:
        if self.started >= self.max_requests:
            return False
        self.started += 1
        return True


class ProtocolError(Exception):
    pass


def error_code(body: bytes) -> str:
    """The code of a `{"error": {"code": ...}}` body; a placeholder for any other body."""
    try:
        doc = json.loads(body)
    except ValueError:
        return "(not JSON)"
    err = doc.get("error") if isinstance(doc, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return str(code)[:80] if code else "(no error code)"


async def read_response(
    reader: asyncio.StreamReader, want_headers: bool
) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers (only when asked: building the dict costs), body, and keep-alive."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("header block too large") from exc
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError("header block too large")
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
        raise ProtocolError(f"bad status line {status_line[:40]!r}")
    status = int(status_line[9:12])
    length = -1
    chunked = False
    keep_alive = status_line[7:8] == b"1"  # HTTP/1.1 keeps alive unless told otherwise
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        value = value.strip()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lname == b"connection":
            lv = value.lower()
            keep_alive = b"close" not in lv and (keep_alive or b"keep-alive" in lv)
        if want_headers:
            headers[lname.decode("latin-1")] = value.decode("latin-1")
    if status in (204, 304) or 100 <= status < 200:
        body = b""
    elif chunked:
        parts: list[bytes] = []
        for _ in range(MAX_CHUNK_LINES):
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers, if any, end with an empty line; bounded like everything else.
                for _ in range(100):
                    if await reader.readuntil(b"\r\n") == b"\r\n":
                        break
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        else:
            raise ProtocolError("too many chunks")
        body = b"".join(parts)
    elif length >= 0:
        body = await reader.readexactly(length) if length else b""
    else:
        # Neither length nor chunked: the body runs until the server closes.
        body = await reader.read()
        keep_alive = False
    return status, headers, body, keep_alive


class Plan:
    """One connection's request source: a cycled list, an iterator, or a generator."""

    def __init__(self, source: Iterable[Request], host: str, cycled: bool) -> None:
        self.host = host
        self.cycled = cycled
        self._gen: Generator[Request, Response | None, Any] | None = None
        self._it: Iterator[Request]
        if isinstance(source, Generator):
            self._gen = source
        self._it = iter(source)
        self._primed = False
        self._cache: dict[int, bytes] = {}
        self.wants_responses = self._gen is not None

    def next(self, last: Response | None) -> tuple[Request, bytes] | None:
        try:
            if self._gen is not None and self._primed:
                req = self._gen.send(last)
            else:
                req = next(self._it)
            self._primed = True
        except StopIteration:
            return None
        if self.cycled:
            # The same few Request objects come round again and again: encode each once.
            key = id(req)
            data = self._cache.get(key)
            if data is None:
                data = self._cache[key] = req.encode(self.host)
            return req, data
        return req, req.encode(self.host)


async def connection(cfg: LoadConfig, plan: Plan, stats: Stats, deadline: float) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    last: Response | None = None
    perf = time.perf_counter
    lat = stats.latencies
    try:
        # Bounded by the deadline and by max_requests (take_slot), checked every iteration.
        while perf() < deadline and stats.take_slot():
            item = plan.next(last)
            if item is None:
                stats.started -= 1
                return
            req, data = item
            t0 = perf()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(cfg.host, cfg.port, limit=MAX_HEADER_BYTES),
                        CONNECT_TIMEOUT,
                    )
                    t0 = perf()  # connect time is not request latency
                assert reader is not None and writer is not None
                writer.write(data)
                status, headers, body, keep_alive = await read_response(
                    reader, plan.wants_responses)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ProtocolError,
                    ValueError) as exc:
                stats.completed += 1
                stats.errors[type(exc).__name__] += 1
                last = None
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            lat.append(perf() - t0)
            stats.completed += 1
            stats.statuses[status] += 1
            if cfg.error_codes and status >= 400:
                stats.codes[error_code(body)] += 1
            if req.ok(status):
                stats.ok += 1
            else:
                stats.errors[f"status {status}"] += 1
            if plan.wants_responses:
                last = Response(status, headers, body)
            if not keep_alive and writer is not None:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    # Nearest-rank: the value below which q of the samples lie; no interpolation games.
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def _make_plans(cfg: LoadConfig) -> list[Plan]:
    host = f"{cfg.host}:{cfg.port}"
    if cfg.factory:
        factory = resolve_factory(cfg.factory)
        return [Plan(factory(i, **cfg.factory_args), host, cycled=False)
                for i in range(cfg.concurrency)]
    if not cfg.requests:
        raise ValueError("the plan needs `requests` or a `factory`")
    return [Plan(itertools.cycle(cfg.requests), host, cycled=True) for _ in range(cfg.concurrency)]


async def run(cfg: LoadConfig) -> dict[str, Any]:
    stats = Stats(cfg.max_requests)
    plans = _make_plans(cfg)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.perf_counter()
    deadline = t_start + cfg.duration
    tasks = [asyncio.create_task(connection(cfg, plans[i], stats, deadline))
             for i in range(cfg.concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=cfg.duration + GRACE_SECONDS)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        # Each cancelled connection had at most one request in flight: it never answered.
        stats.errors["timeout"] += len(pending)
        stats.completed += len(pending)
    # The clock stops once the last answer is in, so a slow tail is not hidden.
    elapsed = time.perf_counter() - t_start
    for task in done:
        exc = task.exception()
        if exc is not None:
            stats.errors[f"client bug: {type(exc).__name__}: {exc}"] += 1
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lats = sorted(stats.latencies)
    result: dict[str, Any] = {
        "requests": stats.completed,
        "ok": stats.ok,
        "errors": sum(stats.errors.values()),
        "error_kinds": dict(stats.errors.most_common(10)),
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "duration": round(elapsed, 4),
        "requests_per_s": round(stats.ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_percentile(lats, 0.50) * 1000, 3),
        "p90_ms": round(_percentile(lats, 0.90) * 1000, 3),
        "p99_ms": round(_percentile(lats, 0.99) * 1000, 3),
        "max_ms": round(lats[-1] * 1000, 3) if lats else 0.0,
        "client_cpu": round(cpu / elapsed, 3) if elapsed > 0 else 0.0,
        "concurrency": cfg.concurrency,
    }
    if cfg.error_codes:
        result["error_codes"] = dict(stats.codes.most_common(50))
    return result


def run_sync(cfg: LoadConfig) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(cfg))
    # uvloop roughly doubles what one client process can push, which matters on 2 cores.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(cfg))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", help="JSON plan file, or '-' for stdin (overrides the flags)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--path", default="/api/v1/health")
    ap.add_argument("--method", default="GET")
    ap.add_argument("--body", default="", help="request body (UTF-8 text)")
    ap.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=MAX_REQUESTS_DEFAULT)
    ap.add_argument("--error-codes", action="store_true",
                    help='count the {"error": {"code": ...}} of answers with status >= 400')
    args = ap.parse_args(argv)
    if args.config:
        text = sys.stdin.read() if args.config == "-" else Path(args.config).read_text("utf-8")
        cfg = LoadConfig.from_wire(json.loads(text))
    else:
        if args.port is None:
            ap.error("--port or --config is required")
        pairs = (h.partition(":") for h in args.header)
        headers = tuple((k.strip(), v.strip()) for k, _, v in pairs)
        req = Request(args.method.upper(), args.path, headers, args.body.encode())
        cfg = LoadConfig.from_wire({
            "host": args.host, "port": args.port, "duration": args.duration,
            "concurrency": args.concurrency, "max_requests": args.max_requests,
            "requests": [req.to_wire()],
            "error_codes": args.error_codes,
        })
    if cfg.host not in ("127.0.0.1", "::1", "localhost"):
        # These benchmarks are for loopback only; pointing them elsewhere would be a load test.
        ap.error(f"refusing non-loopback host {cfg.host!r}")
    result = run_sync(cfg)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
