"""Running the app: uvicorn, with a deadline for request headers and a graceful stop.

Two things uvicorn does not do on its own:

- **A header deadline.** A connection that opens and never finishes its request headers would be held
  forever (one slowloris client per socket). ``HeaderDeadlineH11`` closes a connection whose
  request has not started within ``header_timeout`` seconds of the connection opening or of the
  previous response ending.
- **A stop that loses nothing.** On SIGTERM or Ctrl-C uvicorn stops accepting and waits for open
  requests, then cancels them mid-response, and the worker threads die with the process before
  they log. ``Server`` gives in-flight requests ``grace`` seconds to finish; then every request
  still running or queued ends with an error event in its API's format (a stream gets it before
  ``[DONE]``), its generation stops, and ``ServedModels.close`` waits for the workers, so every
  call reaches the call log, complete or interrupted.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .models import ServedModels, ShuttingDown


class HeaderDeadlineH11(H11Protocol):
    header_timeout = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = None
        self._arm()

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._waiting_after = self.cycle  # a new cycle means the next request's headers are in
        self._deadline = self.loop.call_later(self.header_timeout, self._too_late)

    def _too_late(self) -> None:
        self._deadline = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._waiting_after:
            self._deadline.cancel()
            self._deadline = None

    def on_response_complete(self) -> None:
        self._arm()  # before the next pipelined request may start in the call below
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, models: ServedModels, grace: float):
        super().__init__(config)
        self.models = models
        self.grace = grace

    async def shutdown(self, sockets=None) -> None:
        loop = asyncio.get_running_loop()
        ending = loop.call_later(self.grace, self.models.end_all,
                                 ShuttingDown("the server is shutting down; the request was stopped"))
        try:
            await super().shutdown(sockets)
        finally:
            ending.cancel()
        # uvicorn re-raises the signal when this returns: the workers must have logged by then
        await loop.run_in_executor(None, self.models.stop)


def run(app, models: ServedModels, *, host: str, port: int, grace: float = 10.0,
        header_timeout: float = 10.0, quiet: bool = False) -> None:
    # llmlab's own notes (a clamped token limit, a failed request) go to stderr beside uvicorn's
    log = logging.getLogger("llmlab.serve")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("llmlab: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    protocol = type("Deadline", (HeaderDeadlineH11,), {"header_timeout": header_timeout})
    config = uvicorn.Config(app, host=host, port=port, http=protocol,
                            lifespan=getattr(app, "lifespan", "off"),
                            log_level="warning" if quiet else "info", access_log=not quiet,
                            timeout_graceful_shutdown=grace + 3)  # room to send the error events
    Server(config, models, grace).run()
