"""Not spamming: quiet hours, per-channel token buckets shared in Redis, a daily cap per resident."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime

from redis.asyncio import Redis

from backend.clock import SHANGHAI
from backend.ratelimit import Limit

_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    start: dtime
    end: dtime

    @classmethod
    def parse(cls, spec: str) -> QuietHours | None:
        if not spec.strip():
            return None
        m = _HOURS.match(spec)
        if not m:
            raise ValueError(f"quiet hours must look like HH:MM-HH:MM, got {spec!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        return cls(dtime(h1, m1), dtime(h2, m2))

    def release_at(self, moment: datetime) -> datetime | None:
        """When a message held at `moment` may go: None when `moment` is outside quiet hours."""
        local = moment.astimezone(SHANGHAI)
        t = local.time()
        if self.start <= self.end:
            inside = self.start <= t < self.end
        else:  # across midnight, 22:00-08:00
            inside = t >= self.start or t < self.end
        if not inside:
            return None
        release = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if release <= local:
            release += timedelta(days=1)
        return release


# A token bucket in one Lua call, so every worker process draws from the same bucket. State is
# (tokens, last refill ms); the caller passes its wall-clock ms (workers share a clock via NTP).
_BUCKET = """
local cap = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then tokens = cap; at = now end
if now > at then
  tokens = math.min(cap, tokens + (now - at) * per_ms)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / per_ms) + 60000)
return wait
"""


class TokenBucket:
    """COUNT messages per SECONDS on one channel, for all workers together; bursts up to COUNT."""

    def __init__(self, redis: Redis, name: str, limit: Limit) -> None:
        self._redis = redis
        self._key = f"palmhall:notify:bucket:{name}"
        self._cap = limit.count
        self._per_ms = limit.count / (limit.seconds * 1000)

    async def try_take(self) -> int:
        """0 when a token was taken, else how many ms until one will be there."""
        now = time.time_ns() // 1_000_000  # real time: throughput is about real seconds, not the test clock
        return int(await self._redis.eval(_BUCKET, 1, self._key, self._cap, repr(self._per_ms), now))

    async def take(self, *, max_wait: float = 30.0) -> None:
        """Wait for a token; raises TimeoutError after `max_wait` seconds (the outbox then retries)."""
        waited = 0.0
        while True:
            wait_ms = await self.try_take()
            if wait_ms == 0:
                return
            if waited >= max_wait:
                raise TimeoutError("notification rate limit: no token")
            delay = min(wait_ms / 1000, 1.0)
            waited += delay
            await asyncio.sleep(delay)


_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 172800) end
if n > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]); return 0 end
return 1
"""


async def within_daily_cap(redis: Redis, *, resident_id: int, moment: datetime, cap: int) -> bool:
    """Count one pushed message for the resident's Shanghai day; False (and not counted) when over."""
    day = moment.astimezone(SHANGHAI).strftime("%Y%m%d")
    return bool(int(await redis.eval(_COUNT, 1, f"palmhall:notify:daily:{resident_id}:{day}", cap)))
