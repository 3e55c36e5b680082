"""Where the development fakes keep what they were told: one JSON file each, replaced atomically, so restarting
`make run` does not make the main hall or the payment platforms forget every case, trade and refund."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("palmhall.fakes")


def load(path: str | Path | None) -> dict[str, Any] | None:
    """The state saved at `path`; None when there is none (first start) or it cannot be read."""
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        # A fake starting empty is better than a server that does not start; say so.
        log.warning("fake state unreadable, starting empty", extra={"path": str(path), "error": str(exc)})
        return None
    return data if isinstance(data, dict) else None


def save(path: str | Path | None, data: dict[str, Any]) -> None:
    """Write `data` beside `path` and rename it over: a reader (or a crash) sees the old state or the new one."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
