"""Mosec serving the same bundle: the client sends the 46 raw features inline; one worker with dynamic
batching (up to 64 requests, waiting at most 1 ms) scales, runs the network, calibrates and tiers.

Run: python -m bench.peers.mosec_server --address 127.0.0.1 --port PORT   (Mosec parses the arguments)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mosec import Server, Worker

from bench.peers.model import PeerModel


class Score(Worker):
    def __init__(self) -> None:
        super().__init__()
        self.model = PeerModel()
        self.version = self.model.version

    def forward(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raw = np.array([item["features"] for item in data], dtype=np.float64)
        scores = self.model.score(raw)
        return [
            {"model_version": self.version, "user_id": item["user_id"], **score}
            for item, score in zip(data, scores, strict=True)
        ]


if __name__ == "__main__":
    server = Server()
    server.append_worker(Score, num=1, max_batch_size=64, max_wait_time=1)
    server.run()
