"""How ``byline serve`` runs the app under uvicorn: timeouts, the connection limit and forwarded headers.

- **Request timeout.** uvicorn's h11 protocol times out only idle keep-alive connections *after* a response;
  a client that opens a connection and sends half a request line, half the headers or half the body is
  never closed. ``TimedH11Protocol`` arms a timer when a connection opens and whenever the first bytes of a
  new request arrive; unless the whole request (headers and body) has arrived within
  ``http_request_timeout_s``, the connection is closed (the app, if it was already reading the body, sees
  ``http.disconnect``). The timer is disarmed once the request is complete, so a slow answer or a long
  server-sent-events stream is never cut.
- **Keep-alive.** ``http_keepalive_timeout_s`` (uvicorn's ``timeout_keep_alive``).
- **Connection limit.** ``http_max_connections`` (uvicorn's ``limit_concurrency``): above it new requests
  get 503 at once.
- **Forwarded headers.** uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default, so any local client
  could pick its own address for the rate limits and the access log. Here they are believed only from the
  addresses in ``trusted_proxies`` (empty by default: never).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from index.settings import Settings


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for receiving each complete request."""

    request_timeout: float = 10.0
    _request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._receiving():
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _receiving(self) -> bool:
        """A request has started arriving (or the connection is new) and is not complete yet."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        return state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _arm(self) -> None:
        if self._request_timer is None and not self.transport.is_closing():
            self._request_timer = self.loop.call_later(self.request_timeout, self._on_request_timeout)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _on_request_timeout(self) -> None:
        self._request_timer = None
        state = self.conn.their_state
        idle_new = state is h11.IDLE and self.cycle is None  # opened, nothing (or part of a request line) sent
        if (idle_new or self._receiving()) and not self.transport.is_closing():
            self.logger.info("closing a connection whose request did not arrive within %g s", self.request_timeout)
            self.transport.close()


def timed_h11(request_timeout: float) -> type[TimedH11Protocol]:
    """The protocol class with its timeout (uvicorn instantiates the class it is given)."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"request_timeout": float(request_timeout)})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` from the settings."""
    trusted = list(settings.trusted_proxies)
    return {
        "http": timed_h11(settings.http_request_timeout_s),
        "timeout_keep_alive": settings.http_keepalive_timeout_s,
        "limit_concurrency": settings.http_max_connections,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted if trusted else "",
    }
