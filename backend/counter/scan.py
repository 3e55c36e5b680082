"""What a scanned QR token is, and what this clerk may do with it: each domain registers a resolver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from backend.identity.service import StaffPrincipal

# kind ("appointment", "case", "certificate", ...) -> async (object_id, staff) -> card dict.
# A resolver checks the object's hall against the clerk's grants and raises DomainError itself.
Resolver = Callable[[int, StaffPrincipal], Awaitable[dict[str, Any]]]
RESOLVERS: dict[str, Resolver] = {}


def resolver(kind: str) -> Callable[[Resolver], Resolver]:
    def register(fn: Resolver) -> Resolver:
        RESOLVERS[kind] = fn
        return fn

    return register
