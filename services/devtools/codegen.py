"""Generate Python modules and Envoy's descriptor set from protos/.

One function, :func:`generate`, is the only way generated code comes to exist, so
CI can regenerate and compare bytes (tests/contracts) and nobody hand-edits output.

Layout it produces (committed, drift-checked):

- ``protos/embrec/<domain>/v1/<file>_pb2.py``, ``_pb2.pyi``, ``_pb2_grpc.py`` beside
  each ``.proto``. pyproject maps the import package ``embrec`` to ``protos/embrec``,
  so every service imports ``embrec.tenant.v1.tenant_service_pb2`` from this one
  tree (never a per-service copy).
- ``__init__.py`` in every package directory under ``protos/embrec``, because
  setuptools' package-dir mapping only discovers regular packages.
- ``envoy/embrec.pb``: a FileDescriptorSet with imports and source info, which
  Envoy's grpc_json_transcoder needs to map REST paths to RPCs.

protoc runs in-process (``grpc_tools.protoc.main``): no PATH lookup, and the
protoc version is exactly the pinned grpcio-tools one.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import pathlib

# grpcio-tools ships no type information; protoc.main(list[str]) -> int.
from grpc_tools import protoc  # type: ignore[import-untyped]

__all__ = ["DESCRIPTOR_SET", "PROTO_ROOT", "generate"]

# Relative to the repository root.
PROTO_ROOT = pathlib.PurePosixPath("protos")
DESCRIPTOR_SET = pathlib.PurePosixPath("envoy/embrec.pb")
#: Imported by no embrec proto but needed in the descriptor set (see generate()).
DESCRIPTOR_EXTRAS = ("google/rpc/error_details.proto",)

# Suffixes protoc writes for each input; used to list (and clean) outputs.
_GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# Short, stable package docstring so regenerated trees are byte-identical.
_INIT_TEXT = '"""Generated package (services/devtools/codegen.py). Do not edit."""\n'


class CodegenError(RuntimeError):
    """protoc reported an error; its message went to stderr."""


def _googleapis_include() -> pathlib.Path:
    """Directory holding google/api/*.proto, shipped by googleapis-common-protos.

    Using the installed package (not third_party/) keeps the descriptors compiled
    into our modules identical to the google.api modules imported at runtime.
    """
    spec = importlib.util.find_spec("google.api")
    if spec is None or not spec.submodule_search_locations:
        raise CodegenError("googleapis-common-protos is not installed (no google.api)")
    package_dir = pathlib.Path(next(iter(spec.submodule_search_locations)))
    return package_dir.parent.parent


def _protobuf_include() -> pathlib.Path:
    """grpc_tools' copy of google/protobuf/*.proto (well-known types)."""
    with importlib.resources.as_file(importlib.resources.files("grpc_tools") / "_proto") as path:
        return pathlib.Path(path)


def _proto_files(proto_root: pathlib.Path) -> list[str]:
    """Every .proto under proto_root, as sorted POSIX paths relative to it.

    Relative names matter: they become the file names inside the descriptors,
    so output does not depend on where the repository is checked out.
    """
    return sorted(p.relative_to(proto_root).as_posix() for p in proto_root.rglob("*.proto"))


def _remove_stale_outputs(package_root: pathlib.Path) -> None:
    """Delete previous generated modules so a removed .proto leaves no orphan."""
    for path in package_root.rglob("*"):
        if path.is_file() and path.name.endswith(_GENERATED_SUFFIXES):
            path.unlink()


def _write_init_files(package_root: pathlib.Path) -> list[pathlib.Path]:
    """Create __init__.py in package_root and every directory below it."""
    written: list[pathlib.Path] = []
    directories = [package_root, *(p for p in package_root.rglob("*") if p.is_dir())]
    for directory in sorted(directories):
        if directory.name == "__pycache__":
            continue
        init = directory / "__init__.py"
        init.write_text(_INIT_TEXT, encoding="utf-8")
        written.append(init)
    return written


def _protoc(args: list[str]) -> None:
    status: int = protoc.main(["grpc_tools.protoc", *args])  # argv[0] is ignored
    if status != 0:
        raise CodegenError(f"protoc exited with status {status}")


def generate(repo_root: pathlib.Path) -> list[pathlib.Path]:
    """Regenerate every artifact derived from ``repo_root/protos``.

    Returns the written files (absolute, sorted). Raises CodegenError if protoc
    fails and FileNotFoundError if there are no .proto files.
    """
    repo_root = repo_root.resolve()
    proto_root = repo_root / PROTO_ROOT
    package_root = proto_root / "embrec"
    descriptor_set = repo_root / DESCRIPTOR_SET

    sources = _proto_files(proto_root)
    if not sources:
        raise FileNotFoundError(f"no .proto files under {proto_root}")

    _remove_stale_outputs(package_root)
    descriptor_set.parent.mkdir(parents=True, exist_ok=True)

    includes = [
        f"--proto_path={proto_root}",
        f"--proto_path={_googleapis_include()}",
        f"--proto_path={_protobuf_include()}",
    ]
    # protoc resolves the relative source names against the first --proto_path.
    _protoc(
        [
            *includes,
            f"--python_out={proto_root}",
            f"--pyi_out={proto_root}",
            f"--grpc_python_out={proto_root}",
            *sources,
        ]
    )
    # Envoy's transcoder renders error details into JSON only for types it knows, so the
    # descriptor set also carries google.rpc's detail messages (ErrorInfo, BadRequest).
    _protoc(
        [
            *includes,
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={descriptor_set}",
            *sources,
            *DESCRIPTOR_EXTRAS,
        ]
    )

    written = _write_init_files(package_root)
    written.append(descriptor_set)
    written.extend(
        path
        for path in package_root.rglob("*")
        if path.is_file() and path.name.endswith(_GENERATED_SUFFIXES)
    )
    return sorted(written)
