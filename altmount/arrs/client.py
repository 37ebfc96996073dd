"""Runs a repair plan against one Sonarr/Radarr instance over HTTP (Twisted's Agent).

The agent and the clock are injected. Each call carries `X-Api-Key` (the v3
documents' header scheme), JSON in and out, and a deadline; a transient failure
(connection refused or lost, deadline passed, 5xx, 429) is asked again after
RETRY_DELAYS, at most len(RETRY_DELAYS) times more; anything else ends the plan
with an `ArrRequestError` naming the instance, the call and the answer.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer, task
from twisted.internet.error import ConnectError, ConnectionLost, TimeoutError
from twisted.web.client import ResponseFailed, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from altmount.arrs.plan import ArrRequest, ArrResponse, Plan, RepairOutcome
from altmount.errors import ArrRequestError

__all__ = ["ArrClient", "run_plan", "RETRY_DELAYS", "MAX_ANSWER_BYTES"]

#: Seconds before the second and third try of a call that failed transiently.
RETRY_DELAYS = (2.0, 8.0)
#: Largest answer read (a library of thousands of series is a few MB of JSON).
MAX_ANSWER_BYTES = 64 << 20


class ArrClient:
    """Sends `ArrRequest`s to one instance: `base_url` (no trailing /api), its API key."""

    def __init__(
        self,
        agent: Any,
        clock: Any,
        name: str,
        base_url: str,
        api_key: str,
        timeout: float,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self._agent = agent
        self._clock = clock
        self.name = name
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._delays = retry_delays

    @defer.inlineCallbacks
    def send(self, call: ArrRequest):
        """One try of `call`; fires with an ArrResponse or fails with ArrRequestError."""
        url = self._base + call.path + (f"?{urlencode(call.query)}" if call.query else "")
        headers = Headers({b"X-Api-Key": [self._key.encode()], b"Accept": [b"application/json"]})
        body = None
        if call.body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
            body = _Body(json.dumps(call.body).encode())
        where = f"{self.name}: {call.describe()}"
        try:
            pending = self._agent.request(call.method.encode(), url.encode(), headers, body)
            pending.addTimeout(self._timeout, self._clock)
            response = yield pending
            reading = readBody(response)
            reading.addTimeout(self._timeout, self._clock)
            raw = yield reading
        except (
            ConnectError,
            ConnectionLost,
            ResponseFailed,
            TimeoutError,
            defer.TimeoutError,
        ) as exc:
            raise ArrRequestError(f"{where}: {_reason(exc)}", transient=True) from None
        status = response.code
        if not 200 <= status < 300:
            text = raw[:200].decode("utf-8", "replace").strip()
            raise ArrRequestError(
                f"{where}: HTTP {status}"
                + (f" {text}" if text else "")
                + (" (check the api_key)" if status == 401 else ""),
                transient=status >= 500 or status == 429,
            )
        if len(raw) > MAX_ANSWER_BYTES:
            raise ArrRequestError(f"{where}: answer over {MAX_ANSWER_BYTES} bytes")
        try:
            data = json.loads(raw) if raw.strip() else None
        except ValueError:
            raise ArrRequestError(f"{where}: the answer is not JSON") from None
        return ArrResponse(status, data)

    @defer.inlineCallbacks
    def call(self, call: ArrRequest):
        """`call` with the bounded retries of transient failures."""
        for delay in (*self._delays, None):
            try:
                response = yield self.send(call)
            except ArrRequestError as exc:
                if not exc.transient or delay is None:
                    raise
                yield task.deferLater(self._clock, delay, lambda: None)
                continue
            return response


def _reason(exc: BaseException) -> str:
    if isinstance(exc, defer.TimeoutError | TimeoutError):
        return "no answer in time"
    if isinstance(exc, ResponseFailed):
        return "connection lost mid-answer"
    return str(exc) or type(exc).__name__


@implementer(IBodyProducer)
class _Body:
    """A small JSON request body, written in one go."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred:
        consumer.write(self._data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body is written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


@defer.inlineCallbacks
def run_plan(client: ArrClient, plan: Plan):
    """Drive `plan` through `client`; fires with its RepairOutcome (or its ArrError)."""
    try:
        call = next(plan)
        while True:
            response = yield client.call(call)
            call = plan.send(response)
    except StopIteration as done:
        outcome: RepairOutcome = done.value
        return outcome
