"""Platform tests run the real stack (tests/services) and retrieval's test shops."""

from tests.services.conftest import captured_logs, envoy_for, stack, stack_factory

__all__ = ["captured_logs", "envoy_for", "stack", "stack_factory"]
