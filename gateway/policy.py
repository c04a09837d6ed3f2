"""Which caller may call which method, and which tenant a request names.

Envoy's ext_authz runs *before* the gRPC-JSON transcoder (FACTS: the transcoder
re-matches the route afterwards), so for a REST call the authz service sees
``POST /api/v1/recommendations``, not ``/embrec.retrieval.v1.RetrievalService/Recommend``.
This module therefore resolves both forms to the RPC itself, from the same
``google.api.http`` rules the transcoder uses (read from the generated descriptors),
and every decision is made per RPC, never per route.

Rules (``RULES``) fail closed: an RPC missing from the table (a new method, an
internal service) is for platform admins and services only, and a test checks the
table covers every method of the descriptor set.
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf.descriptor import Descriptor, MethodDescriptor

__all__ = [
    "Access",
    "MethodPolicy",
    "ResolvedCall",
    "Rule",
    "build_policy",
    "scan_proto_string_field",
]


class Access(enum.Enum):
    PUBLIC = "public"  # no credential needed
    TENANT = "tenant"  # any authenticated principal with the rule's scope
    ADMIN = "admin"  # platform admins and service credentials only


@dataclass(frozen=True)
class Rule:
    access: Access
    scope: str = ""


_PUBLIC = Rule(Access.PUBLIC)
_ADMIN = Rule(Access.ADMIN)


def _t(scope: str = "") -> Rule:
    return Rule(Access.TENANT, scope)


#: Per RPC. Methods bound only under /api/admin are ADMIN; those also bound under
#: /api/v1 are tenant methods whose service scopes them to the caller's tenant.
RULES: dict[str, Rule] = {
    "embrec.platform.v1.PlatformService/GetHealth": _PUBLIC,
    "embrec.platform.v1.PlatformService/GetUsage": _t("analytics:read"),
    "embrec.platform.v1.PlatformService/GetPlatformStatus": _ADMIN,
    "embrec.tenant.v1.AuthService/SignUp": _PUBLIC,
    "embrec.tenant.v1.AuthService/Login": _PUBLIC,
    "embrec.tenant.v1.AuthService/RefreshToken": _PUBLIC,
    "embrec.tenant.v1.AuthService/Logout": _t(),
    # Any signed-in user; the service refuses API keys and impersonations (NOT_A_USER,
    # IMPERSONATION_NOT_ALLOWED), as it does for Logout's API keys.
    "embrec.tenant.v1.AuthService/ChangePassword": _t(),
    "embrec.tenant.v1.AuthService/CreateInvitation": _t("tenant:manage"),
    "embrec.tenant.v1.AuthService/Impersonate": _ADMIN,
    "embrec.tenant.v1.TenantService/CreateTenant": _ADMIN,
    "embrec.tenant.v1.TenantService/GetTenant": _t(),
    "embrec.tenant.v1.TenantService/ListTenants": _ADMIN,
    "embrec.tenant.v1.TenantService/UpdateTenant": _t("tenant:manage"),
    "embrec.tenant.v1.TenantService/SuspendTenant": _ADMIN,
    "embrec.tenant.v1.TenantService/ReactivateTenant": _ADMIN,
    "embrec.tenant.v1.TenantService/DeleteTenant": _ADMIN,
    "embrec.tenant.v1.TenantService/UndeleteTenant": _ADMIN,
    "embrec.tenant.v1.ApiKeyService/CreateApiKey": _t("keys:manage"),
    "embrec.tenant.v1.ApiKeyService/ListApiKeys": _t("keys:manage"),
    "embrec.tenant.v1.ApiKeyService/RevokeApiKey": _t("keys:manage"),
    "embrec.audit.v1.AuditService/SearchAuditEvents": _t("audit:read"),
    "embrec.audit.v1.AuditService/ExportAuditEvents": _t("audit:read"),
    "embrec.audit.v1.AuditService/VerifyChain": _ADMIN,
    "embrec.ingestion.v1.IngestionService/ImportItems": _t("data:write"),
    "embrec.ingestion.v1.IngestionService/ImportInteractions": _t("data:write"),
    "embrec.ingestion.v1.IngestionService/ImportItemsCsv": _t("data:write"),
    "embrec.ingestion.v1.IngestionService/ImportInteractionsCsv": _t("data:write"),
    "embrec.ingestion.v1.IngestionService/GetUpload": _t("data:read"),
    "embrec.ingestion.v1.IngestionService/ListUploads": _t("data:read"),
    "embrec.ingestion.v1.IngestionService/GetUploadReport": _t("data:read"),
    "embrec.ingestion.v1.IngestionService/TrackEvents": _t("events:write"),
    "embrec.ingestion.v1.IngestionService/GetDataStats": _t("data:read"),
    "embrec.ingestion.v1.IngestionService/GetAnalytics": _t("analytics:read"),
    "embrec.ingestion.v1.IngestionService/GetItem": _t("data:read"),
    "embrec.ingestion.v1.IngestionService/ListItems": _t("data:read"),
    "embrec.retrieval.v1.RetrievalService/Recommend": _t("recommend:read"),
    "embrec.retrieval.v1.RetrievalService/SimilarItems": _t("recommend:read"),
    "embrec.retrieval.v1.RetrievalService/PopularItems": _t("recommend:read"),
    "embrec.training.v1.TrainingService/StartTrainingJob": _t("models:write"),
    "embrec.training.v1.TrainingService/GetTrainingJob": _t("models:read"),
    "embrec.training.v1.TrainingService/ListTrainingJobs": _t("models:read"),
    "embrec.training.v1.TrainingService/CancelTrainingJob": _t("models:write"),
    "embrec.training.v1.TrainingService/WatchTrainingJob": _t("models:read"),
    "embrec.training.v1.TrainingService/ListModels": _t("models:read"),
    "embrec.training.v1.TrainingService/GetModel": _t("models:read"),
    "embrec.training.v1.TrainingService/DeployModel": _t("models:write"),
    "embrec.training.v1.TrainingService/Rollback": _t("models:write"),
    "embrec.training.v1.TrainingService/ListDeployments": _t("models:read"),
    "embrec.training.v1.TrainingService/CreateSchedule": _t("models:write"),
    "embrec.training.v1.TrainingService/ListSchedules": _t("models:read"),
    "embrec.training.v1.TrainingService/DeleteSchedule": _t("models:write"),
    "embrec.training.v1.TrainingService/RunDataQualityCheck": _t("models:read"),
}

#: Standard services every server registers. Health is public (probes, load balancers);
#: reflection only describes the published contracts (grpcurl and ghz need it before
#: they can form a request), so it is public too.
PUBLIC_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)

#: REST paths under this prefix are the platform admins' API.
ADMIN_PATH_PREFIX = "/api/admin/"
#: Request fields that name a tenant (an id or a slug).
TENANT_FIELDS = ("tenant_id",)
#: REST path variables that name a tenant.
_TENANT_PATH_VARS = ("tenant_id", "tenant.id")
_JSON_TENANT = re.compile(rb'"(?:tenant_id|tenantId)"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ResolvedCall:
    """The RPC a request is for, and every tenant it names."""

    method: str  # "pkg.Service/Method", or "" when no RPC matches
    rule: Rule
    named_tenants: tuple[str, ...] = ()


@dataclass
class _Binding:
    verb: str
    pattern: re.Pattern[str]
    method: str
    literal_length: int
    admin_only: bool


@dataclass
class _MethodInfo:
    full: str
    tenant_field_number: int | None
    client_streaming: bool


@dataclass
class MethodPolicy:
    """Resolves a request (gRPC or REST) to its RPC, its rule and the tenants it names."""

    methods: dict[str, _MethodInfo] = field(default_factory=dict)
    bindings: list[_Binding] = field(default_factory=list)
    rules: Mapping[str, Rule] = field(default_factory=lambda: RULES)

    def rule_for(self, method: str) -> Rule:
        service = method.partition("/")[0]
        if service in PUBLIC_SERVICES:
            return _PUBLIC
        return self.rules.get(method, _ADMIN)

    def resolve(self, http_method: str, path: str, content_type: str, body: bytes) -> ResolvedCall:
        path_only, _, query = path.partition("?")
        if content_type.startswith("application/grpc"):
            method = path_only.lstrip("/")
            info = self.methods.get(method)
            tenants: list[str] = []
            if info is not None and info.tenant_field_number is not None:
                tenants += _grpc_frame_tenants(body, info.tenant_field_number)
            return ResolvedCall(method, self.rule_for(method), tuple(tenants))
        for binding in self.bindings:
            if binding.verb != http_method.upper():
                continue
            match = binding.pattern.fullmatch(path_only)
            if match is None:
                continue
            tenants = [
                unquote(value)
                for name, value in match.groupdict().items()
                if _var_name(name) in _TENANT_PATH_VARS and value
            ]
            tenants += [v for k, v in parse_qsl(query) if k in ("tenant_id", "tenantId")]
            tenants += [_json_unescape(m) for m in _JSON_TENANT.findall(body)]
            # Everything under /api/admin is for platform staff, whatever the RPC's rule
            # (GetTenant is also a tenant method, through /api/v1/tenant).
            rule = _ADMIN if binding.admin_only else self.rule_for(binding.method)
            return ResolvedCall(binding.method, rule, tuple(tenants))
        # No RPC: Envoy answers 404 after us. Such a request still needs a credential,
        # so probing paths without one learns nothing.
        return ResolvedCall("", _t())


def _var_name(group: str) -> str:
    return group.replace("__", ".")


def _json_unescape(raw: bytes) -> str:
    import json

    try:
        return str(json.loads(b'"' + raw + b'"'))
    except ValueError:
        return raw.decode(errors="replace")


def _template_regex(template: str) -> tuple[re.Pattern[str], int]:
    """``/api/v1/apiKeys/{api_key_id}:revoke`` → a regex with named groups."""
    parts: list[str] = []
    literal = 0
    position = 0
    for match in re.finditer(r"\{([a-zA-Z0-9_.]+)(?:=[^}]*)?\}", template):
        text = template[position : match.start()]
        parts.append(re.escape(text))
        literal += len(text)
        parts.append(f"(?P<{match.group(1).replace('.', '__')}>[^/]+?)")
        position = match.end()
    tail = template[position:]
    parts.append(re.escape(tail))
    literal += len(tail)
    return re.compile("".join(parts)), literal


def _rule_bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str]]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        yield rule.custom.kind.upper(), rule.custom.path
    elif kind is not None:
        yield kind.upper(), getattr(rule, kind)
    for extra in rule.additional_bindings:
        yield from _rule_bindings(extra)


def _tenant_field_number(message: Descriptor) -> int | None:
    for name in TENANT_FIELDS:
        found = message.fields_by_name.get(name)
        if found is not None and found.type == found.TYPE_STRING:
            return int(found.number)
    return None


def _service_methods() -> Iterable[MethodDescriptor]:
    import embrec

    for module_info in pkgutil.walk_packages(embrec.__path__, "embrec."):
        if not module_info.name.endswith("_pb2") or module_info.ispkg:
            continue
        module = importlib.import_module(module_info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def build_policy(rules: Mapping[str, Rule] = RULES) -> MethodPolicy:
    """The policy for every RPC of the generated contracts (``embrec.*``)."""
    policy = MethodPolicy(rules=rules)
    for method in _service_methods():
        full = f"{method.containing_service.full_name}/{method.name}"
        policy.methods[full] = _MethodInfo(
            full, _tenant_field_number(method.input_type), method.client_streaming
        )
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        for verb, template in _rule_bindings(options.Extensions[annotations_pb2.http]):
            pattern, literal = _template_regex(template)
            admin_only = template.startswith(ADMIN_PATH_PREFIX)
            policy.bindings.append(_Binding(verb, pattern, full, literal, admin_only))
    # The most literal template first, so ``/tenants/{id}:suspend`` wins over ``/tenants/{id}``.
    policy.bindings.sort(key=lambda b: -b.literal_length)
    return policy


# --- reading a tenant id out of a (possibly truncated) gRPC request body ----------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise IndexError
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def scan_proto_string_field(message: bytes, number: int) -> list[str]:
    """Values of top-level string field ``number`` in serialized ``message``.

    A wire-format walk rather than a parse, so it works on a message Envoy truncated
    (ext_authz forwards at most a buffer's worth of body): it returns what it could
    read before the data ran out.
    """
    found: list[str] = []
    pos = 0
    try:
        while pos < len(message):
            tag, pos = _varint(message, pos)
            wire = tag & 7
            if wire == 0:
                _, pos = _varint(message, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = _varint(message, pos)
                if tag >> 3 == number and pos + length <= len(message):
                    found.append(message[pos : pos + length].decode(errors="replace"))
                pos += length
            else:
                break
    except IndexError:
        pass
    return found


def _grpc_frame_tenants(body: bytes, number: int) -> list[str]:
    """Tenant ids in every gRPC length-prefixed message present in ``body``."""
    found: list[str] = []
    pos = 0
    while pos + 5 <= len(body):
        length = int.from_bytes(body[pos + 1 : pos + 5], "big")
        found += scan_proto_string_field(body[pos + 5 : pos + 5 + length], number)
        pos += 5 + length
    return found
