"""Benchmark GET /api/v1/health: palmhall against a bare Sanic app under the same load."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import harness


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    ap.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    ap.add_argument("--database-url", default=None,
                    help="palmhall DATABASE_URL (default: a scratch SQLite file)")
    ap.add_argument("--redis-url", default=None,
                    help="palmhall REDIS_URL (default: the in-process fake Redis)")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 3600 or not 1 <= args.concurrency <= 4096:
        ap.error("--duration must be in (0, 3600] and --concurrency in [1, 4096]")
    harness.install_signal_handlers()
    try:
        harness.compare(harness.HEALTH_PATH, args.duration, args.concurrency,
                        database_url=args.database_url, redis_url=args.redis_url)
    except KeyboardInterrupt:
        print("interrupted; servers and load generator stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
