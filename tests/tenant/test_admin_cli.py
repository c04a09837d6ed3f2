"""`embrec admin create` as an operator runs it, and the start-up check for secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import auth_service_pb2_grpc as auth_grpc
from embrec.tenant.v1 import resources_pb2
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from services.app import build_runtime
from services.config import ConfigError, load_settings
from tests.services.conftest import StackFactory
from tests.tenant.support import bearer, slug

EMBREC = str(Path(sys.executable).parent / "embrec")


def admin_create(data_dir: Path, email: str, password: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBREC_")}
    env["EMBREC_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [EMBREC, "admin", "create", "--email", email, "--password-stdin"],
        input=f"{password}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_admin_create_then_login(tmp_path: Path, stack_factory: StackFactory) -> None:
    data_dir = tmp_path / "embrec"
    password = "a long admin passphrase"
    done = admin_create(data_dir, "Boss@Platform.example", password)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr

    again = admin_create(data_dir, "boss@platform.example", password)
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr
    weak = admin_create(data_dir, "other@platform.example", "short")
    assert weak.returncode == 2 and "10 characters" in weak.stderr

    stack = await stack_factory(data_dir=data_dir)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    login = await auth.Login(auth_pb.LoginRequest(email="boss@platform.example", password=password))
    assert login.user.role == resources_pb2.ROLE_PLATFORM_ADMIN
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    created = await tenants.CreateTenant(
        tenant_pb.CreateTenantRequest(
            tenant={"name": "By CLI admin", "slug": slug(), "email": "c@cli.example"}
        ),
        metadata=bearer(login.access_token),
    )
    assert created.id


async def test_services_refuse_to_start_without_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, metrics_port=0, jwt_secret=None, internal_secret=None
    )
    with pytest.raises(ConfigError, match="EMBREC_JWT_SECRET"):
        await build_runtime(settings, ["tenant"], migrate=True)
    with pytest.raises(ConfigError, match="EMBREC_JWT_SECRET"):
        load_settings(jwt_secret="too-short")


async def test_embedded_mode_makes_its_own_secrets_and_demo_admin(
    tmp_path: Path, stack_factory: StackFactory
) -> None:
    from services.embedded import with_embedded_secrets
    from services.tenant.admins import ensure_demo_admin_for

    settings = with_embedded_secrets(
        load_settings(data_dir=tmp_path, jwt_secret=None, internal_secret=None)
    )
    secrets_file = tmp_path / "secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    again = with_embedded_secrets(
        load_settings(data_dir=tmp_path, jwt_secret=None, internal_secret=None)
    )
    assert again.jwt_secret == settings.jwt_secret  # kept: tokens survive a restart

    created = await ensure_demo_admin_for(settings)
    assert created is not None
    email, password = created
    assert await ensure_demo_admin_for(settings) is None  # printed once, never again

    assert settings.jwt_secret is not None and settings.internal_secret is not None
    stack = await stack_factory(
        data_dir=tmp_path,
        jwt_secret=settings.jwt_secret.get_secret_value(),
        internal_secret=settings.internal_secret.get_secret_value(),
    )
    auth = auth_grpc.AuthServiceStub(stack.channel)
    login = await auth.Login(auth_pb.LoginRequest(email=email, password=password))
    assert login.user.role == resources_pb2.ROLE_PLATFORM_ADMIN
