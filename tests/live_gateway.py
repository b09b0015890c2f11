"""A live jobgate for tests that call it as outside callers do: over real HTTP, from anywhere.

`LiveGateway` runs the app under uvicorn on a free loopback port, with a real ARQ worker on
the default queue, in a background thread with its own event loop. Tests can then use
blocking clients (a Flask app, `JobgateClient`), async clients, or other processes (Node)
against `gateway.url`, while the test's own event loop stays free.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

import uvicorn

from gateway.app import create_app
from gateway.http_head import HeadLimits, bounded_http_protocol
from shared.settings import Settings
from worker.loop import WakeableWorker, stop_worker
from worker.settings import worker_options

START_TIMEOUT_SECONDS = 15.0
STOP_GRACE_SECONDS = 5.0


class LiveGateway:
    """Gateway (uvicorn) and one worker, running in a thread until `stop()`."""

    def __init__(self, settings: Settings, *, queue: str = "default") -> None:
        self.settings = settings
        self.queue = queue
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Bound here, before the thread starts: the port is known and cannot be taken meanwhile.
        self._socket.bind(("127.0.0.1", 0))
        host, port = self._socket.getsockname()
        self.url = f"http://{host}:{port}"
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-gateway", daemon=True)

    def start(self) -> None:
        """Start serving; return once the gateway accepts requests (its lifespan has run)."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_SECONDS) or self._failure is not None:
            self.stop()
            raise RuntimeError(f"the live gateway did not start: {self._failure!r}")

    def stop(self) -> None:
        """Stop taking requests, let the worker finish its jobs, end the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(START_TIMEOUT_SECONDS + STOP_GRACE_SECONDS)
        self._socket.close()
        if self._failure is not None:
            raise RuntimeError("the live gateway failed") from self._failure

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()/stop() in the test's thread
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings),
            http=bounded_http_protocol(HeadLimits.of(self.settings)),  # as `gateway.main` serves
            lifespan="on",
            access_log=False,
            log_config=None,  # leave the test run's logging as it is
            log_level="warning",
        )
        self._server = server = uvicorn.Server(config)
        worker = WakeableWorker(
            **worker_options(self.settings, queue=self.queue), handle_signals=False
        )
        worker_task = asyncio.create_task(worker.main())
        serving = asyncio.create_task(server.serve(sockets=[self._socket]))
        try:
            # uvicorn shows it is serving with a flag only, no event to await.
            while not server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if server.started:
                self._ready.set()
            await serving
        finally:
            await stop_worker(worker, worker_task, grace_seconds=STOP_GRACE_SECONDS)
        if not server.started:
            raise RuntimeError("uvicorn stopped before serving (see its log)")
