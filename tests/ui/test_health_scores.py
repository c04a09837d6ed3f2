"""The back office's pure rules: tenant health scores and platform alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.any_pb2 import Any as AnyMessage
from google.rpc import error_details_pb2

from embrec.platform.v1 import platform_service_pb2 as pb
from ui.health import (
    ALERT_MIN_CALLS,
    TenantFacts,
    health_report,
    platform_alerts,
    score_tenant,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def healthy_facts(**changes: object) -> TenantFacts:
    values: dict[str, object] = {
        "last_interaction": ago(0.5),
        "api_calls": 1000,
        "server_errors": 0,
        "model_version": "v3",
        "model_created": ago(2),
        "ndcg_at_10": 0.35,
    }
    values.update(changes)
    return TenantFacts(**values)  # type: ignore[arg-type]


def test_a_healthy_tenant_scores_full_marks() -> None:
    health = score_tenant(healthy_facts(), NOW)
    assert health.score == 100
    assert [p.name for p in health.parts] == ["freshness", "errors", "model_age", "quality"]
    assert health.part("quality").reason == "NDCG@10 0.350 (v3)"
    assert health.part("model_age").reason == "v3 trained 2 days ago"


def test_a_tenant_without_data_or_model_scores_low_with_reasons() -> None:
    health = score_tenant(TenantFacts(last_interaction=None, api_calls=0, server_errors=0), NOW)
    assert health.part("freshness").score == 0
    assert "No interactions yet" in health.part("freshness").reason
    assert health.part("model_age").score == 0
    assert "No model deployed" in health.part("model_age").reason
    assert health.part("quality").score == 0
    # No calls means nothing failed: the error part is full, and says why.
    assert health.part("errors").score == 100
    assert health.part("errors").reason == "No API calls in the last 24 h"
    assert health.score == 25


def test_freshness_falls_linearly_from_one_day_to_thirty() -> None:
    def freshness(days: float) -> int:
        return score_tenant(healthy_facts(last_interaction=ago(days)), NOW).part("freshness").score

    assert freshness(1) == 100
    assert freshness(15.5) == 50
    assert freshness(30) == 0
    assert freshness(90) == 0
    assert freshness(-1) == 100  # a clock slightly ahead is not "fresher than fresh"


def test_error_rate_falls_to_zero_at_five_percent() -> None:
    def errors(server_errors: int) -> int:
        return score_tenant(healthy_facts(server_errors=server_errors), NOW).part("errors").score

    assert errors(0) == 100
    assert errors(25) == 50  # 2.5 % of 1,000
    assert errors(50) == 0
    assert errors(400) == 0
    reason = score_tenant(healthy_facts(server_errors=25), NOW).part("errors").reason
    assert reason == "2.5 % server errors in 1,000 calls (24 h)"
    one = score_tenant(healthy_facts(api_calls=1), NOW).part("errors").reason
    assert one == "0.0 % server errors in 1 call (24 h)"


def test_model_age_falls_from_seven_days_to_sixty() -> None:
    def age(days: float) -> int:
        return score_tenant(healthy_facts(model_created=ago(days)), NOW).part("model_age").score

    assert age(7) == 100
    assert age(33.5) == 50
    assert age(60) == 0


def test_quality_scales_ndcg_up_to_point_three() -> None:
    def quality(ndcg: float | None) -> int:
        return score_tenant(healthy_facts(ndcg_at_10=ndcg), NOW).part("quality").score

    assert quality(0.30) == 100
    assert quality(0.45) == 100
    assert quality(0.15) == 50
    assert quality(0.0) == 0
    assert quality(None) == 0
    missing = score_tenant(healthy_facts(ndcg_at_10=None), NOW).part("quality")
    assert missing.reason == "v3 has no NDCG@10 metric"


def test_the_score_is_the_rounded_mean_of_the_parts() -> None:
    # freshness 50, errors 100, model age 100, quality 50 → 75
    health = score_tenant(healthy_facts(last_interaction=ago(15.5), ndcg_at_10=0.15), NOW)
    assert health.score == 75


def usage(calls: int, server_errors: int, *methods: pb.MethodUsage) -> pb.Usage:
    return pb.Usage(
        totals=pb.UsageCounts(
            api_calls=calls,
            server_errors=server_errors,
            error_rate=server_errors / calls if calls else 0.0,
        ),
        methods=list(methods),
    )


def method(name: str, calls: int, p99: float, over: bool = False) -> pb.MethodUsage:
    return pb.MethodUsage(
        service="embrec.retrieval.v1.RetrievalService",
        method=name,
        counts=pb.UsageCounts(api_calls=calls),
        p99_latency_ms=p99,
        latency_over_last_bound=over,
    )


def test_a_healthy_quiet_platform_has_no_alerts() -> None:
    assert platform_alerts(health_status="healthy", last_hour=usage(100, 0)) == []


def test_server_error_rate_alerts_above_five_percent_with_enough_calls() -> None:
    (alert,) = platform_alerts(health_status="healthy", last_hour=usage(100, 6))
    assert alert.severity == "critical"
    assert alert.title == "High server-error rate"
    assert "6.0 % of 100 calls" in alert.detail
    assert platform_alerts(health_status="healthy", last_hour=usage(100, 5)) == []  # not above
    # Too few calls to judge: 2 of 10 is noise, not an incident.
    assert platform_alerts(health_status="healthy", last_hour=usage(10, 2)) == []


def test_slow_methods_alert_once_the_p99_is_surely_above_500_ms() -> None:
    alerts = platform_alerts(
        health_status="healthy",
        last_hour=usage(
            200,
            0,
            method("Recommend", 100, 2500),
            method("Search", 100, 500),  # between 100 and 500 ms: not surely slow
            method("ImportItems", 40, 2500, over=True),
            method("GetItem", 50, 100),
            method("Rare", ALERT_MIN_CALLS - 1, 2500, over=True),
        ),
    )
    assert [a.title for a in alerts] == ["Slow method Recommend", "Slow method ImportItems"]
    # A bound of 2500 ms means the p99 lies between the bounds 500 and 2500.
    assert "p99 between 500 and 2500 ms over 100 calls" in alerts[0].detail
    assert "p99 above 2500 ms" in alerts[1].detail


def test_components_not_serving_alert_by_how_much_they_matter() -> None:
    components = [
        pb.ComponentHealth(component="tenant", state=pb.COMPONENT_STATE_SERVING),
        pb.ComponentHealth(
            component="postgres",
            state=pb.COMPONENT_STATE_NOT_SERVING,
            message="connection refused",
        ),
        pb.ComponentHealth(component="redis", state=pb.COMPONENT_STATE_NOT_SERVING, optional=True),
    ]
    alerts = platform_alerts(
        health_status="", health_error="Unhealthy: postgres", components=components
    )
    assert [(a.severity, a.title) for a in alerts] == [
        ("critical", "postgres is not serving"),
        ("warning", "redis is not serving"),
    ]
    assert alerts[0].detail == "connection refused"


def test_an_unreachable_or_degraded_platform_alerts_without_a_report() -> None:
    (unknown,) = platform_alerts(health_status="", health_error="not reachable")
    assert (unknown.title, unknown.detail) == ("Platform health unknown", "not reachable")
    (degraded,) = platform_alerts(health_status="degraded")
    assert degraded.severity == "warning"


def test_health_report_is_read_from_the_status_details() -> None:
    report = pb.HealthReport(components=[pb.ComponentHealth(component="kafka")])
    packed_report, packed_info = AnyMessage(), AnyMessage()
    packed_report.Pack(report)
    packed_info.Pack(error_details_pb2.ErrorInfo(reason="PLATFORM_UNHEALTHY"))
    assert health_report([packed_info, packed_report]) == report
    assert health_report([packed_info]) is None
