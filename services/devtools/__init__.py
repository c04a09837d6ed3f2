"""Developer tooling: code generation from the .proto contracts."""

from services.devtools.codegen import generate

__all__ = ["generate"]
