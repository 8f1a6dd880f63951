"""The per-app service state: engine, chat service, conversation store, limiter, metrics and index reloader."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from index.settings import Settings
from service.answering.chat import ChatService
from service.answering.conversations import ConversationStore, open_store
from service.answering.engine import Engine
from service.web.metrics import Metrics
from service.web.ratelimit import RateLimiter

log = logging.getLogger("byline.service")


class ServiceState:
    """The engine, the chat service and the conversation store of one app, plus its background reloader."""

    def __init__(self, settings: Settings, engine: Engine | None) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.chat: ChatService | None = None
        self.store: ConversationStore | None = None
        self.error: str | None = None
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.metrics = Metrics(index_size=self.index_size, ready=lambda: self.engine is not None)
        self._lock = threading.Lock()
        if engine is not None:
            self.attach(engine)

    def attach(self, engine: Engine) -> None:
        with self._lock:
            if self.store is None:
                self.store = open_store(self.settings, engine.root)  # SQLite beside the index, or PostgreSQL
            self.chat = ChatService(engine, self.store, settings=self.settings)
            self.engine = engine
            self.error = None

    def load(self) -> None:
        """Build the engine from the settings (blocking: loads the encoder and the index). A configured conversation
        store (PostgreSQL) opens first, so that while it cannot each retry costs a connection attempt, not a load;
        the default one, beside the index, waits for the index."""
        with self._lock:
            if self.store is None and self.settings.conversation_store.strip():
                self.store = open_store(self.settings, Path(self.settings.index_dir))
        self.attach(Engine(settings=self.settings))
        # the reader's NER pipeline loads in seconds: do it now, beside the first requests, not inside one
        threading.Thread(target=self.engine.warm_reader, name="warm-reader", daemon=True).start()
        log.info(
            "serving index version %s from %s",
            self.engine.index.version if self.engine else "?",
            self.settings.index_dir,
        )

    def index_size(self) -> tuple[int, int]:
        engine = self.engine
        if engine is None:
            return 0, 0
        index = engine.index
        return len(index.articles), len(index.chunks)

    async def run(self) -> None:
        """Load the engine if needed, then look for newly published index versions every ``reload_check_s``."""
        while True:
            try:
                if self.engine is None:
                    await run_in_threadpool(self.load)
                elif await run_in_threadpool(self.engine.reload_if_changed):
                    self.metrics.reloads.inc()
                    log.info("now serving index version %s", self.engine.index.version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving (or keep retrying) whatever happens
                message = f"{type(exc).__name__}: {exc}"
                if message != self.error:
                    log.error("index not loaded: %s", message)
                self.error = message
            await asyncio.sleep(self.settings.reload_check_s)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
