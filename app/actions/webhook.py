"""Delivering warnings to a webhook: one signed POST per message, retried with backoff.

The consumer (app/actions/consumer.py) hands each message to `Webhook.deliver` and acknowledges it only
once delivery succeeded, so delivery is at least once: a receiver that fails every attempt leaves the
message pending, and the next run (or another consumer of the group) delivers it again. Receivers tell
a repeat by `warning_id` (also sent as the X-Churn-Warning-Id header).

Each request is signed: `X-Churn-Signature: sha256=<hex>`, the HMAC-SHA256, keyed with the shared
webhook secret, of `<X-Churn-Timestamp>.<body>`. A receiver recomputes it over the raw body and refuses
a mismatch, and refuses timestamps too far from its clock, so a captured request cannot be replayed
later (`verify` below is what a receiver in Python runs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Churn-Signature"
TIMESTAMP_HEADER: Final = "X-Churn-Timestamp"
# Answers worth another attempt: the receiver is busy or briefly broken. Any other 4xx is the
# receiver refusing this message: trying again would be refused again.
RETRIED_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


class DeliveryFailed(RuntimeError):
    """Every attempt failed, or the receiver refused the message: it stays unacknowledged."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes, timestamp: str, body: bytes, signed: str, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver checks: the signature over the raw body, and a timestamp close to its clock."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), signed)


@dataclass
class Webhook:
    url: str
    secret: bytes
    attempts: int = 6
    first_backoff_s: float = 0.5  # doubled after each failed attempt, with up to 50% jitter
    timeout_s: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"the webhook URL must start with http:// or https://, not {self.url!r}")
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must be at least 16 bytes")

    def deliver(self, message: dict[str, Any]) -> int:
        """POST the message until the receiver answers 2xx; the attempts it took. DeliveryFailed when
        the receiver refused it or every attempt failed."""
        body = json.dumps(message, separators=(",", ":")).encode()
        backoff = self.first_backoff_s
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(time.time()))
            request = urllib.request.Request(self.url, data=body, method="POST")
            request.add_header("Content-Type", "application/json")
            request.add_header(TIMESTAMP_HEADER, timestamp)
            request.add_header(SIGNATURE_HEADER, signature(self.secret, timestamp, body))
            request.add_header("X-Churn-Warning-Id", str(message.get("warning_id", "")))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    answer.read()
                return attempt
            except urllib.error.HTTPError as error:
                error.close()  # the answer's body: unread, but its connection is ours to close
                if error.code not in RETRIED_STATUSES:
                    raise DeliveryFailed(f"{self.url} refused the message: HTTP {error.code}") from None
                problem = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                problem = str(getattr(error, "reason", error))
            if attempt < self.attempts:
                log.warning("webhook attempt %d failed (%s); again in %.1f s", attempt, problem, backoff)
                self.sleep(backoff * (1 + random.random() / 2))
                backoff *= 2
        raise DeliveryFailed(f"{self.url}: {self.attempts} attempts failed, the last with {problem}")
