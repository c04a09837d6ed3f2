"""The back office's judgements, kept free of NiceGUI and gRPC calls so they are
tested on their own: tenant health scores (``/admin/support``) and the platform's
active alerts (``/admin``).

Health score: four parts, each 0-100, and the tenant's score is their mean (rounded).
Each part falls linearly between the point where it earns full marks and the point
where it earns none:

=================  ===========================  ==========================
part               full marks (100)             no marks (0)
=================  ===========================  ==========================
data freshness     newest interaction ≤ 1 day   ≥ 30 days, or none at all
error rate         0 % server errors (24 h)     ≥ 5 %
model age          serving model ≤ 7 days old   ≥ 60 days, or none serving
offline quality    NDCG@10 ≥ 0.30               0, or no model serving
=================  ===========================  ==========================

No API calls in the last 24 hours means nothing failed: full marks for the error rate
(freshness already says whether the tenant is active). Missing data is never an
error here: it is a low part with the reason said.

Alerts (evaluated by the console, not by the services):

* a component reported not serving by GetHealth (critical; a warning when the
  platform serves without it), or the health check itself failing;
* platform server-error rate above 5 % over the last hour, with at least 20 calls;
* a method whose p99 latency is above 500 ms (its bound is 2500 ms or beyond) over the
  last hour, with at least 20 calls. The histogram cannot tell 150 ms from 450 ms, so
  the rule waits until the p99 is surely above 500 ms rather than firing from ~100 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from embrec.platform.v1 import platform_service_pb2 as platform_pb

__all__ = [
    "ALERT_ERROR_RATE",
    "ALERT_MIN_CALLS",
    "ALERT_P99_MS",
    "Alert",
    "HealthScore",
    "Part",
    "TenantFacts",
    "health_report",
    "platform_alerts",
    "score_tenant",
]

FRESH_FULL_DAYS = 1.0
FRESH_ZERO_DAYS = 30.0
ERROR_ZERO_RATE = 0.05
MODEL_FULL_DAYS = 7.0
MODEL_ZERO_DAYS = 60.0
QUALITY_FULL_NDCG = 0.30

ALERT_ERROR_RATE = 0.05
#: Below this many calls an hour one failure is already 5 %: too noisy to page anyone.
ALERT_MIN_CALLS = 20
ALERT_P99_MS = 500.0
#: GetUsage's latency histogram bounds (see MethodUsage in platform_service.proto): a
#: percentile reported as 500 lies between 100 and 500 ms.
LATENCY_BOUNDS_MS = (1, 5, 25, 100, 500, 2500)

_DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Part:
    """One part of a health score: 0-100 and why."""

    name: str
    score: int
    reason: str


@dataclass(frozen=True)
class HealthScore:
    score: int
    parts: tuple[Part, ...]

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


@dataclass(frozen=True)
class TenantFacts:
    """What the console fetched about one tenant; None or "" where there is none."""

    last_interaction: datetime | None
    api_calls: int
    server_errors: int
    model_version: str = ""
    model_created: datetime | None = None
    ndcg_at_10: float | None = None


def _falling(value: float, full: float, zero: float) -> int:
    """100 up to ``full``, 0 from ``zero``, a straight line between."""
    if value <= full:
        return 100
    if value >= zero:
        return 0
    return round(100 * (zero - value) / (zero - full))


def _age(days: float) -> str:
    if days < 1:
        hours = max(0, int(days * 24))
        return f"{hours} h" if hours else "under an hour"
    return f"{days:.0f} day" + ("" if round(days) == 1 else "s")


def _freshness(facts: TenantFacts, now: datetime) -> Part:
    if facts.last_interaction is None:
        return Part("freshness", 0, "No interactions yet: upload or track some")
    days = max(0.0, (now - facts.last_interaction).total_seconds() / _DAY_SECONDS)
    return Part(
        "freshness",
        _falling(days, FRESH_FULL_DAYS, FRESH_ZERO_DAYS),
        f"Newest interaction {_age(days)} ago",
    )


def _errors(facts: TenantFacts) -> Part:
    if facts.api_calls <= 0:
        return Part("errors", 100, "No API calls in the last 24 h")
    rate = facts.server_errors / facts.api_calls
    return Part(
        "errors",
        _falling(rate, 0.0, ERROR_ZERO_RATE),
        f"{rate * 100:.1f} % server errors in {_calls(facts.api_calls)} (24 h)",
    )


def _model_age(facts: TenantFacts, now: datetime) -> Part:
    if not facts.model_version or facts.model_created is None:
        return Part("model_age", 0, "No model deployed: train and deploy one")
    days = max(0.0, (now - facts.model_created).total_seconds() / _DAY_SECONDS)
    return Part(
        "model_age",
        _falling(days, MODEL_FULL_DAYS, MODEL_ZERO_DAYS),
        f"{facts.model_version} trained {_age(days)} ago",
    )


def _quality(facts: TenantFacts) -> Part:
    if not facts.model_version:
        return Part("quality", 0, "No model deployed")
    if facts.ndcg_at_10 is None:
        return Part("quality", 0, f"{facts.model_version} has no NDCG@10 metric")
    ndcg = max(0.0, facts.ndcg_at_10)
    score = 100 if ndcg >= QUALITY_FULL_NDCG else round(100 * ndcg / QUALITY_FULL_NDCG)
    return Part("quality", score, f"NDCG@10 {ndcg:.3f} ({facts.model_version})")


def score_tenant(facts: TenantFacts, now: datetime) -> HealthScore:
    """The tenant's 0-100 health score and its four parts (see the module docstring)."""
    parts = (_freshness(facts, now), _errors(facts), _model_age(facts, now), _quality(facts))
    return HealthScore(round(sum(p.score for p in parts) / len(parts)), parts)


@dataclass(frozen=True)
class Alert:
    severity: str  # "critical" or "warning"
    title: str
    detail: str


def _bucket(bound_ms: float, over: bool) -> str:
    """A percentile bound said as the range it stands for: 'between 100 and 500 ms'."""
    if over:
        return f"above {LATENCY_BOUNDS_MS[-1]} ms"
    lower = max((b for b in LATENCY_BOUNDS_MS if b < bound_ms), default=0)
    return f"between {lower} and {bound_ms:.0f} ms"


def _calls(count: int) -> str:
    return f"{count:,} call" + ("" if count == 1 else "s")


def health_report(details: Sequence[Any]) -> platform_pb.HealthReport | None:
    """The HealthReport packed in GetHealth's UNAVAILABLE status, if there is one."""
    for detail in details:
        if detail.Is(platform_pb.HealthReport.DESCRIPTOR):
            report = platform_pb.HealthReport()
            detail.Unpack(report)
            return report
    return None


def platform_alerts(
    *,
    health_status: str,
    health_error: str = "",
    components: Sequence[platform_pb.ComponentHealth] = (),
    last_hour: platform_pb.Usage | None = None,
) -> list[Alert]:
    """Active alerts from GetHealth's answer and the last hour's platform usage.

    ``health_status`` is GetHealth's status ("healthy", "degraded"), or "" when it
    failed (then ``health_error`` says why and ``components`` holds its report).
    """
    alerts: list[Alert] = []
    down = [c for c in components if c.state == platform_pb.COMPONENT_STATE_NOT_SERVING]
    for component in down:
        cause = component.message or "did not answer"
        if component.optional:
            alerts.append(
                Alert(
                    "warning",
                    f"{component.component} is not serving",
                    f"{cause}; the platform serves without it, more slowly",
                )
            )
        else:
            alerts.append(Alert("critical", f"{component.component} is not serving", cause))
    if not health_status and not down:
        alerts.append(
            Alert("critical", "Platform health unknown", health_error or "GetHealth failed")
        )
    elif health_status == "degraded" and not down:
        # A degraded answer carries no report: the services only say an optional part is down.
        alerts.append(
            Alert(
                "warning",
                "Platform degraded",
                "An optional component (cache or broker) is down; serving continues",
            )
        )
    if last_hour is not None:
        totals = last_hour.totals
        if totals.api_calls >= ALERT_MIN_CALLS and totals.error_rate > ALERT_ERROR_RATE:
            alerts.append(
                Alert(
                    "critical",
                    "High server-error rate",
                    f"{totals.error_rate * 100:.1f} % of {_calls(totals.api_calls)} failed "
                    "on the platform's side in the last hour",
                )
            )
        for method in last_hour.methods:
            slow = method.latency_over_last_bound or method.p99_latency_ms > ALERT_P99_MS
            if method.counts.api_calls >= ALERT_MIN_CALLS and slow:
                bound = _bucket(method.p99_latency_ms, method.latency_over_last_bound)
                alerts.append(
                    Alert(
                        "warning",
                        f"Slow method {method.method}",
                        f"{method.service}.{method.method}: p99 {bound} over "
                        f"{_calls(method.counts.api_calls)} in the last hour",
                    )
                )
    return alerts
