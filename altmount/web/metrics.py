"""`/metrics`: the Prometheus text exposition, behind the same auth as `/api`."""

from __future__ import annotations

from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from altmount.ops.metrics import CONTENT_TYPE
from altmount.web.auth import Verdict, refusal_json
from altmount.web.opsapi import OpsRoutes

__all__ = ["MetricsResource"]


class MetricsResource(Resource):
    """GET → every metric of `ops.metrics`; credentials as for the API (`routes.verdict`)."""

    isLeaf = True

    def __init__(self, ops, routes: OpsRoutes) -> None:
        super().__init__()
        self._ops = ops
        self._routes = routes
        self.auth = routes.auth

    def render_GET(self, request: Request) -> int:
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        checking = defer.ensureDeferred(self._routes.verdict(request))
        checking.addCallback(self._answer, request, finished)
        return NOT_DONE_YET

    def _answer(self, verdict: Verdict, request: Request, finished: list[bool]) -> None:
        if finished[0]:
            return
        if verdict.allowed:
            body = self._ops.metrics.render()
            request.setHeader(b"Content-Type", CONTENT_TYPE.encode())
        else:
            body = refusal_json(request, verdict)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)
        request.finish()
