"""Redis for cache, locks, rate limits, nonces and pub/sub: a real server or an in-process fake."""

from __future__ import annotations

from redis.asyncio import Redis


def make_redis(url: str) -> Redis:
    if url:
        return Redis.from_url(url, decode_responses=False, health_check_interval=30)
    # The embedded default: same API (Lua scripts included, through lupa), this process only.
    from fakeredis import FakeAsyncRedis, FakeServer

    return FakeAsyncRedis(server=FakeServer(), decode_responses=False)
