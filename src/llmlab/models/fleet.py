"""Several servers behind one remote model name, and a rate limit on what is sent to them.

    openai/smollm2@http://10.0.0.1:8080/v1,http://10.0.0.2:8080/v1

Each request goes to one server of the pool, chosen by ``balance``:

    least-busy    the server with the fewest requests in flight from this process (ties: in turn)
    round-robin   each server in turn

A server that drops a connection, refuses one or answers 429/5xx is set aside for ``cooldown``
seconds (doubling while it keeps failing) and the request goes at once to another; only when every
server is set aside does a request wait, with the backoff of ``remote.py``. So a server killed in the
middle of a run costs the requests it held, which are sent again elsewhere; when it comes back it
is used again after its cooldown.

The rate limit (``rpm`` requests and ``tpm`` tokens per minute, over a moving window, by the
``limits`` library) is shared by every thread using the model; a request's tokens are estimated
before it is sent, as providers count them against a limit: its text at four characters a token,
plus the tokens it asks for at most (``max_tokens``).

What it gives up: the pool knows only its own requests, not other clients' load on the servers;
a server's health is learnt from failures, not probed.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass

from ..errors import ConfigError

BALANCE = ("least-busy", "round-robin")


@dataclass(eq=False)
class Server:
    url: str
    http: object          # its httpx.Client
    busy: int = 0         # requests in flight
    down_until: float = 0.0
    failures: int = 0     # in a row
    sent: int = 0

    @property
    def root(self) -> str:
        """The server itself, without the API's path (an OpenAI base URL's ``/v1``)."""
        return self.url.removesuffix("/v1")


class Pool:
    """The servers of one model name; thread-safe."""

    def __init__(self, servers: list[Server], balance: str = "least-busy", cooldown: float = 5.0):
        if balance not in BALANCE:
            raise ConfigError(f"balance must be one of {', '.join(BALANCE)}, got {balance!r}")
        self.servers, self.balance, self.cooldown = servers, balance, float(cooldown)
        self._lock = threading.Lock()
        self._turn = itertools.count()

    def pick(self, force: bool = False) -> Server | None:
        """The server for the next request, or None while every one is set aside (with ``force``,
        the one set aside the shortest)."""
        now = time.monotonic()
        with self._lock:
            up = [s for s in self.servers if s.down_until <= now]
            if not up and force:
                up = [min(self.servers, key=lambda s: s.down_until)]
            if not up:
                return None
            start = next(self._turn) % len(up)
            ordered = up[start:] + up[:start]
            server = min(ordered, key=lambda s: s.busy) if self.balance == "least-busy" else ordered[0]
            server.busy += 1
            server.sent += 1
            return server

    def done(self, server: Server, ok: bool) -> None:
        with self._lock:
            server.busy -= 1
            if ok:
                server.failures, server.down_until = 0, 0.0
            else:
                server.failures += 1
                pause = min(self.cooldown * 2 ** (server.failures - 1), 60.0)
                server.down_until = time.monotonic() + pause

    def release(self, server: Server) -> None:
        """A request that never reached ``server`` (a stale kept-alive connection): it is no longer
        in flight, and says nothing of the server's health."""
        with self._lock:
            server.busy -= 1

    def any_up(self, besides: Server | None = None) -> bool:
        """Whether a server (other than ``besides``) is not set aside."""
        now = time.monotonic()
        with self._lock:
            return any(s.down_until <= now for s in self.servers if s is not besides)

    @property
    def urls(self) -> str:
        return ", ".join(s.url for s in self.servers)

    def close(self) -> None:
        for s in self.servers:
            s.http.close()


class RateLimit:
    """Requests and tokens per minute over a moving window, shared by threads."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, window: int = 60):
        from limits import RateLimitItemPerSecond, storage, strategies

        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        self.limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        # per ``window`` seconds: a minute, but tests shrink it
        self.rpm = RateLimitItemPerSecond(rpm, window) if rpm else None
        self.tpm = RateLimitItemPerSecond(tpm, window) if tpm else None
        self._lock = threading.Lock()

    def wait(self, tokens: int, cancel: threading.Event | None = None) -> float:
        """Block until one more request of ``tokens`` fits; the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                fits = all(self.limiter.test(item, "x", cost=cost) for item, cost in self._costs(tokens))
                if fits:
                    for item, cost in self._costs(tokens):
                        self.limiter.hit(item, "x", cost=cost)
                    return waited
                stats = [self.limiter.get_window_stats(item, "x") for item, _ in self._costs(tokens)]
                reset = max(s.reset_time for s in stats)
            pause = min(max(reset - time.time(), 0.05), 5.0)
            if cancel is not None and cancel.wait(pause):
                raise KeyboardInterrupt
            if cancel is None:
                time.sleep(pause)
            waited += pause

    def _costs(self, tokens: int):
        if self.rpm is not None:
            yield self.rpm, 1
        if self.tpm is not None:
            yield self.tpm, max(1, min(tokens, self.tpm.amount))


def estimate_tokens(body) -> int:
    """A request's tokens as a rate limit counts them: text / 4 + the most it may generate."""
    if not isinstance(body, dict):
        return 1
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    most = body.get("max_tokens") or body.get("max_completion_tokens") or options.get("num_predict") or 0
    return len(json.dumps(body, ensure_ascii=False)) // 4 + max(int(most), 0)
