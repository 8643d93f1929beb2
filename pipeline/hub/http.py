"""Bounded Hub requests: every request poet makes through ``huggingface_hub`` has connect and read timeouts.

``huggingface_hub`` sends its requests without a timeout, and some of its calls pass
``timeout=None`` explicitly, so an endpoint that accepts the connection and never answers
hangs ``poet publish`` forever. A request hook puts :data:`HUB_TIMEOUT` on every request;
with the library's own bounded retries (5, with backoff) a silent endpoint ends the command
in one line within about five minutes.
"""

from __future__ import annotations

import httpx2

HUB_TIMEOUT = httpx2.Timeout(45.0, connect=10.0)  # read, write and pool: 45 s; connect: 10 s


def bound_hub_requests() -> None:
    """Make ``huggingface_hub``'s shared HTTP client one whose every request times out (:data:`HUB_TIMEOUT`)."""
    from huggingface_hub import set_client_factory

    set_client_factory(_bounded_client)


def _bounded_client() -> httpx2.Client:
    return httpx2.Client(event_hooks={"request": [_bound]}, follow_redirects=True, timeout=HUB_TIMEOUT)


def _bound(request: httpx2.Request) -> None:
    request.extensions["timeout"] = HUB_TIMEOUT.as_dict()  # also over a call's explicit timeout=None
