"""Bare Sanic baseline: the floor palmhall is measured against (same JSON, no middleware)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

# configure_logging off: warnings and errors still reach stderr, start-up chatter does not.
app = Sanic("bare_baseline", configure_logging=False)
app.config.ACCESS_LOG = False
# Sanic auto-loads sanic-ext when it is installed (it is, for palmhall); the baseline must not
# carry it, since what it adds per request is part of what palmhall costs.
app.config.AUTO_EXTEND = False


@app.get("/api/v1/health")
async def health(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


# Any other path and method gets the same tiny answer, so later benchmarks (POST with JSON,
# other routes) can still be set against "Sanic parses the request and answers" as a floor.
@app.route("/<rest:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def anything(request: Request, rest: str) -> HTTPResponse:
    return json({"status": "ok"})


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    app.run(host=args.host, port=args.port, single_process=True, access_log=False, motd=False,
            workers=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
