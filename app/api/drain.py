"""Graceful drain on SIGTERM: unready first, keep serving for a while, then let uvicorn stop.

Stopping at once breaks clients twice: the load balancer still believes /readyz and keeps sending, and
clients on kept-alive connections write into a socket that is closing. So on SIGTERM the service turns
unready, keeps serving for CHURN_DRAIN_S while answering with `Connection: close` (added in
answer_headers.py: each client's next request opens a new connection, which the balancer sends
elsewhere), and only then hands the signal to uvicorn, which stops accepting, finishes the requests in
flight and exits. A second SIGTERM, or SIGINT (Ctrl-C), stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

log = logging.getLogger("churn")


class Drain:
    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.draining = False

    def install(self) -> None:
        """Take SIGTERM over from the server (signals reach the main thread only: elsewhere, as in an
        embedded test server, nothing is installed)."""
        if self.drain_s <= 0 or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        server_handler = signal.getsignal(signal.SIGTERM)

        def hand_over() -> None:
            loop.remove_signal_handler(signal.SIGTERM)
            if callable(server_handler):
                server_handler(signal.SIGTERM, None)
            else:
                signal.raise_signal(signal.SIGTERM)

        def on_sigterm() -> None:
            if self.draining:  # asked twice: stop now
                hand_over()
                return
            self.draining = True
            log.info("SIGTERM: unready, serving for %.1f s more, then stopping", self.drain_s)
            loop.call_later(self.drain_s, hand_over)

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
