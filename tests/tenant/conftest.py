"""The tenant tests run on the real runtime fixtures of tests/services."""

from tests.services.conftest import (  # noqa: F401 - re-exported fixtures
    captured_logs,
    envoy_for,
    stack,
    stack_factory,
)
