"""A start-up indicator for the CLI: after a short delay, a spinner on a terminal or one "loading…" line otherwise.

Used as ``with Loading("loading the index"):`` around the slow part of ``byline ask``, ``chat`` and ``eval``
(imports, loading the index and models). Quick starts print nothing; it writes only to stderr, so the answer on
stdout stays clean for pipes.
"""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
# Read from the environment, not the settings object: the indicator must start before anything heavy is imported.
DELAY_S = float(os.environ.get("BYLINE_LOADING_DELAY_S", "0.5"))
FRAME_S = 0.1


class Loading:
    def __init__(self, message: str = "loading…", stream: TextIO | None = None, delay: float = DELAY_S) -> None:
        self.message = message
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.shown = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="byline-loading", daemon=True)

    def __enter__(self) -> Loading:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop (and on a terminal erase) the indicator; safe to call more than once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not break the command
            self._stop.set()

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        self.shown = True
        if not self._tty():
            self._write(f"{self.message}\n")
            return
        frame = 0
        while not self._stop.is_set():
            self._write(f"\r{FRAMES[frame % len(FRAMES)]} {self.message}")
            frame += 1
            self._stop.wait(FRAME_S)
        self._write("\r\033[K")
