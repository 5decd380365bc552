"""The request log: one JSON line per request, written by a thread so the event loop never
waits on stderr.

`RequestLog.write` only puts the line in a bounded queue (`observe.log_queue`); when the
writer falls that far behind (stderr piped into something slow) new lines are dropped and
counted, rather than the router slowing down or growing without bound.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from typing import IO

from prometheus_client import Counter


class RequestLog:
    def __init__(self, max_queued: int, dropped: Counter, stream: IO[bytes] | None = None) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_queued)
        self._dropped = dropped
        self._stream = stream
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_lines, name="semrouter-request-log", daemon=True
            )
            self._thread.start()

    def write(self, line: bytes) -> None:
        """Queue one line (its newline is added); dropped, and counted, when the queue is full."""
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self._dropped.inc()

    def close(self) -> None:
        """Write what is queued (the thread starts for it, if it never did), then stop."""
        self.start()
        assert self._thread is not None
        with contextlib.suppress(queue.Full):  # the writer is stuck: stop waiting for it
            self._queue.put(None, timeout=5)
        self._thread.join(timeout=5)
        self._thread = None

    def _write_lines(self) -> None:
        stream = self._stream or sys.stderr.buffer
        while True:
            lines = [self._queue.get()]
            while len(lines) < 256:  # whatever else is waiting goes out in the same write
                try:
                    lines.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in lines
            text = b"".join(line + b"\n" for line in lines if line is not None)
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # stderr closed: nothing left to log to
                return
            if stop:
                return
