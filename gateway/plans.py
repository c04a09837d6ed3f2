"""Plans: data, not code.

A plan names a request rate and a burst, how many usable API keys a tenant on it may
hold (``max_api_keys``) and how many catalog items (``max_items``); 0 means no limit.
The tenant and ingestion services enforce the two limits. The table lives in
``gateway/plans.toml`` (shipped with the package; operators may point ``load_plans`` at
their own file), and a tenant may carry a per-tenant rate override in
``tenants.settings["rate_limit"]`` — ``{"requests_per_second": 500, "burst": 1000}`` —
which wins over its plan. Unknown plan names fall back to ``free``: a typo in the
database must not lift every limit.

Two enforcement points read the same numbers (see docs in gateway/ratelimit.py):
Envoy's local token buckets per tenant (one per Envoy; built into the config from the
plan table, so overrides do not reach them) and the global limit on Redis (shared by
every Envoy: applied by the HTTP authz endpoint, or asked by Envoy over RLS with the
gRPC transport; gets the effective limit, override included, from the authz decision).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PLANS_FILE", "FALLBACK_PLAN", "Plan", "PlanTable", "load_plans"]

DEFAULT_PLANS_FILE = Path(__file__).with_name("plans.toml")
FALLBACK_PLAN = "free"


@dataclass(frozen=True)
class Plan:
    name: str
    requests_per_second: int
    burst: int
    max_api_keys: int = 0
    max_items: int = 0

    def __post_init__(self) -> None:
        if self.requests_per_second < 1 or self.burst < self.requests_per_second:
            raise ValueError(f"plan {self.name!r}: need requests_per_second >= 1 and burst >= it")
        if self.max_api_keys < 0 or self.max_items < 0:
            raise ValueError(f"plan {self.name!r}: limits must be >= 0 (0: no limit)")


@dataclass(frozen=True)
class PlanTable:
    plans: Mapping[str, Plan]

    def __post_init__(self) -> None:
        if FALLBACK_PLAN not in self.plans:
            raise ValueError(f"the plan table must define {FALLBACK_PLAN!r}")

    def get(self, name: str) -> Plan:
        return self.plans.get(name) or self.plans[FALLBACK_PLAN]

    def effective(self, plan_name: str, tenant_settings: Mapping[str, Any] | None) -> Plan:
        """The tenant's plan with its override (``settings["rate_limit"]``) applied."""
        plan = self.get(plan_name)
        override = (tenant_settings or {}).get("rate_limit")
        if not isinstance(override, Mapping):
            return plan
        try:
            rps = int(override.get("requests_per_second", plan.requests_per_second))
            burst = int(override.get("burst", max(plan.burst, rps)))
            return Plan(
                f"{plan.name}+override", rps, max(burst, rps), plan.max_api_keys, plan.max_items
            )
        except (TypeError, ValueError):
            return plan  # a malformed override is ignored, not a way to lift the limit


def load_plans(path: Path = DEFAULT_PLANS_FILE) -> PlanTable:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    plans = {
        name: Plan(
            name,
            int(spec["requests_per_second"]),
            int(spec["burst"]),
            int(spec.get("max_api_keys", 0)),
            int(spec.get("max_items", 0)),
        )
        for name, spec in data.get("plans", {}).items()
    }
    return PlanTable(plans)
