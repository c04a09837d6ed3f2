"""Contract checks: generated code is current, buf lint passes, and the REST surface
(the google.api.http rules Envoy transcodes) matches what customers already call.

The descriptor set envoy/embrec.pb is read into its own DescriptorPool, so most checks
need neither Envoy nor the generated modules on sys.path.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from services.devtools import codegen

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = REPO_ROOT / codegen.DESCRIPTOR_SET

# Services whose names end like this are service-to-service only: no REST binding,
# and the gateway must not route them.
INTERNAL_SUFFIX = "InternalService"

# FileDescriptorProto field numbers used in SourceCodeInfo paths.
_SERVICE_FIELD = 6
_METHOD_FIELD = 2

_STATUS_CODES = (
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "DATA_LOSS",
    "OK",
)


def _load_set() -> descriptor_pb2.FileDescriptorSet:
    # Importing annotations_pb2 (above) registers the google.api.http extension,
    # so MethodOptions parse it instead of keeping it as unknown bytes.
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTOR_SET.read_bytes())
    return fds


@pytest.fixture(scope="module")
def fds() -> descriptor_pb2.FileDescriptorSet:
    return _load_set()


@pytest.fixture(scope="module")
def pool(fds: descriptor_pb2.FileDescriptorSet) -> descriptor_pool.DescriptorPool:
    built = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:
        built.Add(file_proto)
    return built


def _own_files(
    fds: descriptor_pb2.FileDescriptorSet,
) -> Iterator[descriptor_pb2.FileDescriptorProto]:
    return (f for f in fds.file if f.package.startswith("embrec."))


def _methods(
    fds: descriptor_pb2.FileDescriptorSet,
) -> Iterator[tuple[str, descriptor_pb2.MethodDescriptorProto, str]]:
    """Yield (full service name, method, leading comment) for every embrec RPC."""
    for file_proto in _own_files(fds):
        comments = {
            tuple(loc.path): loc.leading_comments for loc in file_proto.source_code_info.location
        }
        for si, service in enumerate(file_proto.service):
            for mi, method in enumerate(service.method):
                comment = comments.get((_SERVICE_FIELD, si, _METHOD_FIELD, mi), "")
                yield f"{file_proto.package}.{service.name}", method, comment


def _http_rule(method: descriptor_pb2.MethodDescriptorProto) -> http_pb2.HttpRule | None:
    if not method.options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
    return rule


def _bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    """Yield (VERB, path template, body) for a rule and its additional bindings."""
    for r in (rule, *rule.additional_bindings):
        kind = r.WhichOneof("pattern")
        assert kind is not None and kind != "custom", r
        yield kind.upper(), getattr(r, kind), r.body


def _rest_table(fds: descriptor_pb2.FileDescriptorSet) -> dict[tuple[str, str], tuple[str, str]]:
    """(VERB, path) -> ("/pkg.Service/Method", body) for every binding."""
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for service, method, _ in _methods(fds):
        rule = _http_rule(method)
        if rule is None:
            continue
        for verb, path, body in _bindings(rule):
            key = (verb, path)
            assert key not in table, f"{verb} {path} bound twice"
            table[key] = (f"/{service}/{method.name}", body)
    return table


# --- generated code -------------------------------------------------------------------


def _generated(root: pathlib.Path) -> dict[str, bytes]:
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in (root / "protos").rglob("*")
        if p.is_file() and p.suffix != ".proto" and "__pycache__" not in p.parts
    }
    files[codegen.DESCRIPTOR_SET.as_posix()] = (root / codegen.DESCRIPTOR_SET).read_bytes()
    return files


def test_generated_code_matches_protos(tmp_path: pathlib.Path) -> None:
    """Regenerating from the committed .proto files changes no byte (CI drift check)."""
    shutil.copytree(
        REPO_ROOT / "protos",
        tmp_path / "protos",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    codegen.generate(tmp_path)
    fresh = _generated(tmp_path)
    committed = _generated(REPO_ROOT)
    assert sorted(fresh) == sorted(committed), "generated file set differs: run codegen"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"out of date, regenerate: {stale}"


def test_generated_modules_import_by_proto_package() -> None:
    """pyproject maps `embrec` to protos/embrec, so stubs import by proto package."""
    for name in (
        "embrec.platform.v1.platform_service_pb2_grpc",
        "embrec.tenant.v1.tenant_service_pb2_grpc",
        "embrec.ingestion.v1.ingestion_service_pb2_grpc",
        "embrec.training.v1.training_service_pb2_grpc",
        "embrec.retrieval.v1.retrieval_service_pb2_grpc",
        "embrec.audit.v1.audit_service_pb2_grpc",
        "embrec.events.v1.events_pb2",
    ):
        module = importlib.import_module(name)
        assert pathlib.Path(str(module.__file__)).is_relative_to(REPO_ROOT / "protos")


# --- buf ------------------------------------------------------------------------------


def _buf() -> str:
    found = shutil.which("buf") or shutil.which("buf", path=str(pathlib.Path(sys.prefix) / "bin"))
    if found is None:
        pytest.fail("buf not found: install the dev extra (buf-bin)")
    return found


def test_buf_lint_passes() -> None:
    result = subprocess.run(
        [_buf(), "lint"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_build_passes(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [_buf(), "build", "-o", str(tmp_path / "image.binpb")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- REST surface ---------------------------------------------------------------------


def test_every_external_rpc_has_an_http_rule(fds: descriptor_pb2.FileDescriptorSet) -> None:
    missing = [
        f"{service}.{method.name}"
        for service, method, _ in _methods(fds)
        if not service.endswith(INTERNAL_SUFFIX) and _http_rule(method) is None
    ]
    assert not missing, f"external RPCs without google.api.http: {missing}"


def test_internal_rpcs_are_documented_and_not_transcoded(
    fds: descriptor_pb2.FileDescriptorSet,
) -> None:
    internal = [(s, m, c) for s, m, c in _methods(fds) if s.endswith(INTERNAL_SUFFIX)]
    assert internal, "expected the retrieval and audit internal services"
    for service, method, comment in internal:
        assert _http_rule(method) is None, f"{service}.{method.name} must not be on REST"
        assert comment.strip().startswith("Internal."), f"{service}.{method.name}"


def test_every_rpc_comment_names_its_errors(fds: descriptor_pb2.FileDescriptorSet) -> None:
    undocumented = [
        f"{service}.{method.name}"
        for service, method, comment in _methods(fds)
        if "Returns " not in comment or not any(code in comment for code in _STATUS_CODES)
    ]
    assert not undocumented, f"RPC comments must name their error codes: {undocumented}"


def test_rest_paths_use_the_agreed_prefixes(fds: descriptor_pb2.FileDescriptorSet) -> None:
    for verb, path in _rest_table(fds):
        assert path == "/health" or path.startswith(("/api/v1/", "/api/admin/")), (verb, path)


def test_list_methods_paginate(
    fds: descriptor_pb2.FileDescriptorSet, pool: descriptor_pool.DescriptorPool
) -> None:
    """AIP-158: every List/Search has page_size, page_token and next_page_token."""
    for service, method, _ in _methods(fds):
        if not method.name.startswith(("List", "Search")):
            continue
        request = pool.FindMessageTypeByName(method.input_type.lstrip("."))
        response = pool.FindMessageTypeByName(method.output_type.lstrip("."))
        where = f"{service}.{method.name}"
        page_size = request.fields_by_name["page_size"]
        assert page_size.type == descriptor_pb2.FieldDescriptorProto.TYPE_INT32, where
        assert "page_token" in request.fields_by_name, where
        assert "next_page_token" in response.fields_by_name, where


# The seed guide's calls, exactly as customers send them today.
SEED_CALLS = [
    ("GET", "/health", "/embrec.platform.v1.PlatformService/GetHealth", None),
    (
        "POST",
        "/api/admin/tenants",
        "/embrec.tenant.v1.TenantService/CreateTenant",
        {"name": "Demo E-commerce", "slug": "demo-ecommerce", "email": "admin@demo-ecommerce.com"},
    ),
    (
        "POST",
        "/api/v1/auth/login",
        "/embrec.tenant.v1.AuthService/Login",
        {"email": "admin@demo-ecommerce.com", "password": "changeme"},
    ),
    (
        "POST",
        "/api/v1/recommendations",
        "/embrec.retrieval.v1.RetrievalService/Recommend",
        {"user_id": "user_123", "count": 5, "filters": {"category": "smartphones"}},
    ),
    (
        "POST",
        "/api/admin/train",
        "/embrec.training.v1.TrainingService/StartTrainingJob",
        {"tenant_id": "techgadgets"},
    ),
]


def _message(pool: descriptor_pool.DescriptorPool, full_name: str) -> Message:
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
    return cls()


@pytest.mark.parametrize(("verb", "path", "grpc_path", "body"), SEED_CALLS)
def test_seed_rest_call_maps_to_method(
    fds: descriptor_pb2.FileDescriptorSet,
    pool: descriptor_pool.DescriptorPool,
    verb: str,
    path: str,
    grpc_path: str,
    body: dict[str, object] | None,
) -> None:
    """The seed's JSON body parses into the message the transcoder fills."""
    table = _rest_table(fds)
    assert (verb, path) in table, f"{verb} {path} is not bound"
    bound_method, body_field = table[(verb, path)]
    assert bound_method == grpc_path
    if body is None:
        return
    service_name, method_name = grpc_path.strip("/").split("/")
    method = pool.FindServiceByName(service_name).methods_by_name[method_name]
    target = method.input_type
    if body_field != "*":
        target = target.fields_by_name[body_field].message_type
    message = _message(pool, target.full_name)
    # ignore_unknown_fields=False: a key the contract lacks fails here, as in Envoy.
    json_format.Parse(json.dumps(body), message)
    assert json_format.MessageToDict(message, preserving_proto_field_name=True) == body


def test_health_response_is_exactly_status(pool: descriptor_pool.DescriptorPool) -> None:
    response = pool.FindMessageTypeByName("embrec.platform.v1.GetHealthResponse")
    assert [(f.name, f.number, f.type) for f in response.fields] == [
        ("status", 1, descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    ]


def test_seed_responses_have_expected_fields(pool: descriptor_pool.DescriptorPool) -> None:
    expected = {
        "embrec.tenant.v1.Tenant": {"id", "name", "slug", "email", "status", "plan"},
        "embrec.tenant.v1.LoginResponse": {
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
        },
        "embrec.retrieval.v1.RecommendResponse": {
            "items",
            "model_version",
            "recommendation_id",
            "fallback",
            "fallback_reason",
        },
        "embrec.retrieval.v1.RecommendedItem": {
            "item_id",
            "score",
            "title",
            "category",
            "price",
            "image_url",
        },
        "embrec.training.v1.TrainingJob": {"id", "tenant_id", "state"},
    }
    for name, fields in expected.items():
        have = set(pool.FindMessageTypeByName(name).fields_by_name)
        assert fields <= have, (name, fields - have)


def test_login_expires_in_is_a_json_number(pool: descriptor_pool.DescriptorPool) -> None:
    """expires_in is int32 (int64 would render as a JSON string), as OAuth clients expect."""
    login = _message(pool, "embrec.tenant.v1.LoginResponse")
    json_format.ParseDict({"access_token": "a", "expires_in": 900}, login)
    rendered = json_format.MessageToDict(login, preserving_proto_field_name=True)
    assert rendered["expires_in"] == 900
