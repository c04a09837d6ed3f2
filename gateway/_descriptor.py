"""Read the gRPC services that the gateway must expose from a protobuf descriptor set.

The descriptor set (``protoc --include_imports --descriptor_set_out``) is the single
source of truth for the services: the transcoder loads the same file, so routes and
transcoded services cannot disagree with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

__all__ = ["INTERNAL_SUFFIX", "GrpcService", "domain_of", "message_types", "read_services"]

# The contracts' convention: services for other services only, never routed by the
# gateway (no REST binding either); reachable only inside the deployment.
INTERNAL_SUFFIX = "InternalService"

# Packages pulled in by --include_imports (google.api.http, google.rpc.Status, ...) are
# dependencies, not services this platform serves.
_FOREIGN_PACKAGE_PREFIXES = ("google.",)


@dataclass(frozen=True, order=True)
class GrpcService:
    """One service from the descriptor set, with the methods routing needs to tell apart."""

    package: str
    name: str
    streaming_methods: tuple[str, ...]
    """Methods with a client- or server-streaming side: they get routes without a deadline."""

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.name}"

    @property
    def path_prefix(self) -> str:
        """The gRPC path prefix (``/pkg.Service/``) every method of the service shares."""
        return f"/{self.full_name}/"

    @property
    def domain(self) -> str:
        return domain_of(self.package)

    @property
    def internal(self) -> bool:
        return self.name.endswith(INTERNAL_SUFFIX)


def domain_of(package: str) -> str:
    """Map ``embrec.<domain>.v1`` to ``<domain>``, the upstream cluster's name.

    Anything else is rejected: a package outside the naming scheme would otherwise land
    on a cluster no one configured.
    """
    parts = package.split(".")
    if len(parts) != 3 or parts[0] != "embrec" or not parts[2].startswith("v"):
        raise ValueError(f"package {package!r} is not of the form embrec.<domain>.v<N>")
    return parts[1]


def _load(descriptor_path: Path) -> descriptor_pb2.FileDescriptorSet:
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    descriptor_set.ParseFromString(descriptor_path.read_bytes())
    return descriptor_set


def message_types(descriptor_path: Path) -> set[str]:
    """Fully-qualified names of the top-level messages in the descriptor set."""
    return {
        f"{proto_file.package}.{message.name}"
        for proto_file in _load(descriptor_path).file
        for message in proto_file.message_type
    }


def read_services(descriptor_path: Path) -> list[GrpcService]:
    """Return every non-google service in the descriptor set, sorted by full name."""
    descriptor_set = _load(descriptor_path)
    services: list[GrpcService] = []
    for proto_file in descriptor_set.file:
        if proto_file.package.startswith(_FOREIGN_PACKAGE_PREFIXES):
            continue
        for service in proto_file.service:
            streaming = tuple(
                sorted(
                    method.name
                    for method in service.method
                    if method.client_streaming or method.server_streaming
                )
            )
            services.append(GrpcService(proto_file.package, service.name, streaming))
    return sorted(services)
