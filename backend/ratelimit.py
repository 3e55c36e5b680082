"""Rate limits in Redis shared by every process: fixed windows counted atomically in Lua."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from redis.asyncio import Redis

from backend.errors import DomainError

_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int

    @classmethod
    def parse(cls, spec: str) -> Limit:
        """"20/60" means 20 requests per 60 seconds."""
        m = _SPEC.match(spec)
        if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
            raise ValueError(f"rate limit must look like COUNT/SECONDS, got {spec!r}")
        return cls(int(m.group(1)), int(m.group(2)))


async def hit(redis: Redis, key: str, limit: Limit) -> tuple[bool, int]:
    """Count one request; returns (allowed, seconds until the window resets)."""
    n, ttl_ms = await redis.eval(_SCRIPT, 1, f"palmhall:rl:{key}", limit.seconds * 1000)
    return int(n) <= limit.count, max(1, math.ceil(int(ttl_ms) / 1000))


async def enforce(redis: Redis, key: str, limit: Limit) -> None:
    """Raise `rate_limited` (429 with Retry-After) when over the limit."""
    allowed, retry_after = await hit(redis, key, limit)
    if not allowed:
        raise DomainError("rate_limited", details={"retry_after": retry_after},
                          headers={"Retry-After": str(retry_after)})
