"""The ``embrec`` command line.

Every command turns a bad setting or bad input into one line on stderr and a
non-zero exit, never a traceback: ``ConfigError`` and ``UsageError`` are caught in
``main``. Heavy imports (torch, faiss, the services) happen inside the commands, so
``embrec --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from services.config import SERVICE_NAMES, ConfigError, Settings, load_settings
from services.runtime import loop as event_loop

__all__ = ["app", "main"]

app = typer.Typer(
    name="embrec",
    help="embrec: multi-tenant embedding recommendations (LightGCN + FAISS) behind Envoy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks that print figures (never part of the test suite).")
app.add_typer(bench_app, name="bench")
admin_app = typer.Typer(help="Platform administration: console admins.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

REPO_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """Bad input on the command line; the message is shown as is."""


def _settings(**overrides: object) -> Settings:
    settings = load_settings(**overrides)
    from services.runtime.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    return settings


#: Hostable besides the domain services: Envoy's authz and rate-limit services.
EXTRA_SERVICES = ("gateway",)


def _parse_services(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if names == ["all"]:
        return [*SERVICE_NAMES, *EXTRA_SERVICES]
    choices = (*SERVICE_NAMES, *EXTRA_SERVICES)
    unknown = sorted(set(names) - set(choices))
    if unknown or not names:
        raise UsageError(
            f"unknown service(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(choices)} or 'all'"
        )
    return names


@app.command()
def version() -> None:
    """Print the embrec version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("embrec"))


@app.command()
def serve(
    services: Annotated[
        str, typer.Option(help="Comma-separated services to host, or 'all'.")
    ] = "all",
    port: Annotated[int | None, typer.Option(help="gRPC port (default EMBREC_GRPC_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
) -> None:
    """Host a subset of the gRPC services in one process (one per container in compose)."""
    names = _parse_services(services)
    overrides: dict[str, object] = {}
    if port is not None:
        overrides["grpc_port"] = port
    if host is not None:
        overrides["grpc_host"] = host
    settings = _settings(**overrides)
    from services.app import build_runtime

    async def run() -> None:
        runtime = await build_runtime(settings, names)
        await runtime.serve_until_signal()

    event_loop.run(run(), settings.event_loop)


@app.command()
def up() -> None:
    """Start everything on this host: all services, Envoy on :8080, SQLite, the event log."""
    settings = _settings()
    from services.embedded import run_embedded

    event_loop.run(run_embedded(settings, REPO_ROOT), settings.event_loop)


@app.command()
def console(
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default EMBREC_CONSOLE_PORT).")
    ] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    target: Annotated[
        str | None,
        typer.Option(help="The services' gRPC address (default EMBREC_GRPC_HOST:GRPC_PORT)."),
    ] = None,
) -> None:
    """Serve the NiceGUI console (admin back office and tenant portal) over the gRPC API."""
    settings = _settings()
    from services.embedded import with_embedded_secrets
    from ui.app import run, storage_secret_from

    # The console signs its session cookies with a key derived from the JWT secret; in
    # the embedded mode that secret lives in data_dir/secrets.json.
    settings = with_embedded_secrets(settings)
    assert settings.jwt_secret is not None
    run(
        target=target or f"{settings.grpc_host}:{settings.grpc_port}",
        host=host,
        port=port or settings.console_port,
        storage_secret=storage_secret_from(settings.jwt_secret.get_secret_value()),
        storage_dir=(settings.data_dir / "console").resolve(),
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    down: Annotated[bool, typer.Option("--down", help="Downgrade to REVISION instead.")] = False,
) -> None:
    """Apply (or with --down, revert) database migrations on EMBREC_DATABASE_URL."""
    settings = _settings()
    from services.storage import migrate as migrations

    url = settings.effective_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if down:
        asyncio.run(migrations.downgrade(url, revision))
    else:
        asyncio.run(migrations.upgrade(url, revision))
    typer.echo(f"database at revision {revision}{' (downgraded)' if down else ''}")


def _generate_into(root: Path) -> None:
    import dataclasses

    from gateway.envoy_config import GatewaySettings, default_embedded_settings, secured, write
    from services.devtools.codegen import generate

    generate(root)
    embedded = default_embedded_settings(root)
    write(embedded, root / "envoy" / "envoy.yaml")
    # Compose: one container per service on 50051; /health goes to `tenant`, which
    # probes its peers; authz (HTTP, gateway:50052) and the global rate limit (Redis)
    # run in `gateway`.
    # The descriptor is mounted beside the config in the image.
    plain = GatewaySettings(base_dir=root, default_upstream=("127.0.0.1", 50051))
    compose_base = secured(plain, ("gateway", 50051), global_rate_limit=True)
    compose = dataclasses.replace(
        compose_base,
        listen_address="0.0.0.0",
        admin_address="0.0.0.0",
        descriptor_path=Path("/app/envoy/embrec.pb"),
        descriptor_source=root / "envoy" / "embrec.pb",
        upstreams={name: (name, 50051) for name in SERVICE_NAMES} | {"platform": ("tenant", 50051)},
        default_upstream=None,
        # Popular items instead of 503 when every retrieval replica is down.
        retrieval_fallback_upstream=("retrieval-fallback", 50051),
    )
    write(compose, root / "compose" / "envoy.compose.yaml")


def _drift(committed: Path, fresh: Path) -> list[str]:
    """Files under protos/, envoy/ and compose/ that differ between committed and fresh."""

    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for sub in ("protos", "envoy", "compose")
            for p in (root / sub).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    mine, theirs = files(committed), files(fresh)
    drifted = [f"{rel} (missing)" for rel in sorted(theirs - mine)]
    drifted += [f"{rel} (stale)" for rel in sorted(mine - theirs)]
    drifted += [
        str(rel)
        for rel in sorted(mine & theirs)
        if not filecmp.cmp(committed / rel, fresh / rel, shallow=False)
    ]
    return drifted


@app.command()
def gen(
    check: Annotated[
        bool, typer.Option("--check", help="Fail if committed generated files drift.")
    ] = False,
) -> None:
    """Generate Python gRPC code (+ .pyi), the Envoy descriptor set and envoy/envoy.yaml."""
    if not check:
        _generate_into(REPO_ROOT)
        typer.echo("generated protos/embrec/**, envoy/embrec.pb, envoy/envoy.yaml")
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        # Copy the sources only, so a stale generated file shows up as drift.
        generated = shutil.ignore_patterns(
            "__pycache__", "*.py", "*.pyi", "*.pb", "envoy.yaml", "envoy.compose.yaml"
        )
        for sub in ("protos", "envoy", "compose", "third_party"):
            if (REPO_ROOT / sub).exists():
                shutil.copytree(REPO_ROOT / sub, copy / sub, ignore=generated)
        _generate_into(copy)
        drifted = _drift(REPO_ROOT, copy)
    if drifted:
        raise UsageError(
            "generated files drift from the sources; run `make gen` and commit: "
            + ", ".join(drifted[:10])
        )
    typer.echo("generated files are up to date")


@app.command()
def worker() -> None:
    """Run a trainer worker: claim queued training jobs and train them (compose, GPU nodes)."""
    import asyncio
    import signal

    settings = _settings()

    async def run() -> None:
        from services.storage.db import create_engine, session_factory
        from services.training.worker import Worker

        engine = create_engine(settings.effective_database_url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await Worker(settings, session_factory(engine)).run(stop)
        finally:
            await engine.dispose()

    asyncio.run(run())


@bench_app.command("train")
def bench_train(
    dataset: Annotated[
        str, typer.Option(help="'gowalla' or a directory with train/test.txt.gz")
    ] = "gowalla",
    minutes: Annotated[
        float,
        typer.Option(help="Training budget; evaluations come on top, so 45 ends within the hour."),
    ] = 45.0,
) -> None:
    """Train LightGCN on a benchmark split and print quality and speed figures."""
    from trainer.bench import bench_train as run_bench

    data_dir = _dataset_dir(dataset)
    run_bench(data_dir / "train.txt.gz", data_dir / "test.txt.gz", minutes=minutes)


#: Largest users x items table ``bench sample --ceiling`` builds (it holds ~4 at once).
CEILING_MAX_TABLE_GIB = 1.0


@bench_app.command("sample")
def bench_sample(
    users: Annotated[int, typer.Option(help="Users in the sample store.")] = 10_000,
    items: Annotated[int, typer.Option(help="Catalog items.")] = 5_000,
    interactions: Annotated[int, typer.Option(help="Interactions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Sample data seed.")] = 42,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a trainer setting over the platform defaults, e.g. "
            "--set epochs=60 --set lr=0.05 (trainer/config.py names; repeatable).",
        ),
    ] = None,
    ceiling: Annotated[
        bool,
        typer.Option(
            "--ceiling",
            help="Instead of training: what the store allows, the generator's item "
            "parameters known and each user inferred from their history.",
        ),
    ] = False,
    ceiling_samples: Annotated[
        int, typer.Option(help="Style samples for --ceiling (more: closer, slower).")
    ] = 100_000,
) -> None:
    """Train on the sample store as a training job would: per-epoch quality, time, baseline."""
    if min(users, items, interactions) <= 0:
        raise UsageError("--users, --items and --interactions must be positive")
    from services.training.bench import bench_ceiling, parse_overrides
    from services.training.bench import bench_sample as run_bench

    if ceiling:
        if ceiling_samples <= 0:
            raise UsageError("--ceiling-samples must be positive")
        if set_:
            raise UsageError("--set changes training; --ceiling does not train")
        # Several users x items float32 tables are held at once (the averaged choice
        # probabilities, the oracle's, the scores): refuse what would not fit, clearly.
        table_gib = users * items * 4 / 2**30
        if table_gib > CEILING_MAX_TABLE_GIB:
            raise UsageError(
                f"--ceiling holds several users x items tables of {table_gib:.1f} GiB each; "
                f"use a store with users x items under "
                f"{int(CEILING_MAX_TABLE_GIB * 2**30 / 4):,}"
            )
        bench_ceiling(
            users=users, items=items, interactions=interactions, seed=seed, samples=ceiling_samples
        )
        return

    try:
        overrides = parse_overrides(set_ or [])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        run_bench(
            users=users, items=items, interactions=interactions, seed=seed, overrides=overrides
        )
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None


@bench_app.command("retrieval")
def bench_retrieval(
    items: Annotated[int, typer.Option(help="Catalog size.")] = 1_000_000,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 64,
) -> None:
    """FAISS build time, memory, latency and recall against exact search."""
    from retriever.bench import bench_retrieval as run_bench

    run_bench(n_items=items, dim=dim)


@bench_app.command("serve")
def bench_serve(
    items: Annotated[int, typer.Option(help="Catalog size.")] = 5000,
    users: Annotated[int, typer.Option(help="Users in the model.")] = 10_000,
    user_pool: Annotated[int, typer.Option(help="Distinct users the clients ask for.")] = 1000,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 50,
    duration: Annotated[float, typer.Option(help="Seconds per protocol.")] = 15.0,
    replicas: Annotated[int, typer.Option(help="Retrieval processes behind Envoy.")] = 2,
    client_processes: Annotated[int, typer.Option(help="Load generator processes.")] = 2,
    protocol: Annotated[str, typer.Option(help="'grpc', 'rest' or 'both'.")] = "both",
    database_url: Annotated[str, typer.Option(help="Database URL; default SQLite.")] = "",
    redis_url: Annotated[
        str, typer.Option(help="Redis for the cache; default a redis-server from PATH.")
    ] = "",
    ring_hash: Annotated[
        bool,
        typer.Option(help="Ring hash on the tenant (production); off = round robin over replicas."),
    ] = True,
    hash_balance_factor: Annotated[
        int,
        typer.Option(
            help="Bounded-load ring hash: a replica over this % of the average outstanding "
            "requests passes a request on (production 150; 0 = plain ring hash)."
        ),
    ] = 150,
    authz: Annotated[
        bool,
        typer.Option(
            help="Envoy's ext_authz and rate limits (production); off = the service checks "
            "the JWT itself, to measure what the authz hop costs."
        ),
    ] = True,
    authz_transport: Annotated[
        str,
        typer.Option(
            help="How Envoy asks for authz decisions: 'http' (production) or 'grpc' (the "
            "v3 Check service), to compare the two."
        ),
    ] = "http",
    global_rate_limit: Annotated[
        bool,
        typer.Option(
            help="The global (Redis) rate limit as well as Envoy's local buckets, as "
            "compose runs it (production); off = local buckets only, as `embrec up` "
            "without Redis runs."
        ),
    ] = True,
    loadgen: Annotated[
        str,
        typer.Option(
            help="'h2load' (nghttp2-client: closed-loop and fixed-rate passes), 'python' "
            "(in-repo generator: cold and warm passes) or 'auto' (h2load when on PATH)."
        ),
    ] = "auto",
    rate: Annotated[
        float,
        typer.Option(help="Offered req/s of h2load's fixed-rate pass (0 = closed loop only)."),
    ] = 1000.0,
    h2load_users: Annotated[
        int, typer.Option(help="h2load processes, each asking for one user.")
    ] = 10,
) -> None:
    """Recommend through Envoy (gRPC and REST): req/s, p50/p95/p99, errors, cache hits."""
    from services.retrieval.bench import bench_serve as run_bench

    if hash_balance_factor != 0 and hash_balance_factor < 100:
        raise UsageError("--hash-balance-factor is a percentage >= 100, or 0 for none")
    if authz_transport not in ("http", "grpc"):
        raise UsageError("--authz-transport is 'http' or 'grpc'")
    protocols = ("grpc", "rest") if protocol == "both" else (protocol,)
    run_bench(
        REPO_ROOT,
        items=items,
        users=users,
        user_pool=user_pool,
        concurrency=concurrency,
        duration=duration,
        replicas=replicas,
        client_processes=client_processes,
        protocols=protocols,
        database_url=database_url,
        redis_url=redis_url,
        ring_hash=ring_hash,
        hash_balance_factor=hash_balance_factor or None,
        authz=authz,
        authz_transport=authz_transport,
        global_rate_limit=global_rate_limit,
        loadgen=loadgen,
        rate=rate,
        h2load_users=h2load_users,
    )


@bench_app.command("authz")
def bench_authz(
    requests: Annotated[int, typer.Option(help="Requests per Envoy configuration.")] = 2000,
) -> None:
    """Authz decision latency (cached, uncached) and the secured gateway's overhead."""
    from gateway.bench import bench_authz as run_bench

    run_bench(requests, REPO_ROOT)


@bench_app.command("audit-export")
def bench_audit_export(
    rows: Annotated[int, typer.Option(help="Audit events in the trail.")] = 1_000_000,
    database_url: Annotated[
        str, typer.Option(help="PostgreSQL URL (postgresql+asyncpg://...); default SQLite.")
    ] = "",
) -> None:
    """ExportAuditEvents over a large trail: rows/s and memory (bounded, not growing)."""
    from services.audit.bench import bench_audit_export as run_bench

    run_bench(rows=rows, database_url=database_url)


@bench_app.command("ingest")
def bench_ingest(
    rows: Annotated[int, typer.Option(help="Interactions in the imported CSV.")] = 1_000_000,
    database_url: Annotated[
        str, typer.Option(help="PostgreSQL URL (postgresql+asyncpg://...); default SQLite.")
    ] = "",
    track_calls: Annotated[int, typer.Option(help="Sequential TrackEvents calls.")] = 1000,
    analytics_rows: Annotated[
        int, typer.Option(help="Also load this many interactions and time GetAnalytics.")
    ] = 0,
) -> None:
    """Bulk import interactions/s, peak server memory, TrackEvents and analytics latency."""
    from services.ingestion.bench import bench_ingest as run_bench

    run_bench(
        rows=rows, database_url=database_url, track_calls=track_calls, analytics_rows=analytics_rows
    )


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="The admin's sign-in email.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from stdin (first line)."),
    ] = False,
) -> None:
    """Create a platform admin on EMBREC_DATABASE_URL (the password is prompted for)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    from services.errors import EmbrecError
    from services.tenant.admins import create_platform_admin

    try:
        user_id = asyncio.run(
            create_platform_admin(settings, email=email, password=password, name=name)
        )
    except EmbrecError as exc:
        violations = getattr(exc, "violations", [])
        detail = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise UsageError(f"{exc.message}{f' ({detail})' if detail else ''}") from None
    typer.echo(f"platform admin {email.strip().lower()} created (user id {user_id})")


@app.command()
def demo(
    gateway: Annotated[
        str | None,
        typer.Option(help="Gateway URL; default http://127.0.0.1:EMBREC_ENVOY_PORT."),
    ] = None,
    small: Annotated[
        bool,
        typer.Option("--small", help="A quick run: 1K users, 400 items, 15K interactions."),
    ] = False,
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the stack the demo started running."),
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data dir of the stack the demo starts; default EMBREC_DATA_DIR/demo."),
    ] = None,
    admin_email: Annotated[
        str, typer.Option(help="Admin of an already running stack (default admin@embrec.local).")
    ] = "",
    admin_password_stdin: Annotated[
        bool,
        typer.Option(
            "--admin-password-stdin",
            help="Read that admin's password from stdin (first line) instead of a prompt.",
        ),
    ] = False,
    users: Annotated[int | None, typer.Option(help="Sample users (overrides the size).")] = None,
    items: Annotated[int | None, typer.Option(help="Sample items (overrides the size).")] = None,
    interactions: Annotated[
        int | None, typer.Option(help="Sample interactions (overrides the size).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sample data seed.")] = 42,
) -> None:
    """Create a demo tenant, load sample data, train, deploy and print recommendations.

    Uses the stack at --gateway, or starts `embrec up` (data in EMBREC_DATA_DIR/demo)
    and stops it at the end unless --keep-running.
    """
    from services.demo import DEFAULT_SIZE, SMALL_SIZE, DemoError, DemoOptions, run_demo

    size = SMALL_SIZE if small else DEFAULT_SIZE
    n_users, n_items, n_interactions = (
        size[0] if users is None else users,
        size[1] if items is None else items,
        size[2] if interactions is None else interactions,
    )
    if min(n_users, n_items, n_interactions) <= 0:
        raise UsageError("--users, --items and --interactions must be positive")
    settings = load_settings()

    def read_password() -> str:
        # Never an option or an environment variable: those end up in shell history,
        # `ps` and CI logs.
        if admin_password_stdin:
            return sys.stdin.readline().rstrip("\r\n")
        if not sys.stdin.isatty():
            raise UsageError(
                "a stack is already running: give its admin's password with "
                "--admin-password-stdin, or run in a terminal to be prompted"
            )
        return str(typer.prompt("Admin password", hide_input=True))

    options = DemoOptions(
        gateway=gateway or f"http://127.0.0.1:{settings.envoy_port}",
        data_dir=data_dir or settings.data_dir / "demo",
        users=n_users,
        items=n_items,
        interactions=n_interactions,
        seed=seed,
        keep_running=keep_running,
        admin_email=admin_email,
        read_admin_password=read_password,
    )
    try:
        run_demo(options, settings)
    except DemoError as exc:
        typer.echo(f"embrec demo: {exc.step} failed: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("embrec demo: interrupted", err=True)
        raise typer.Exit(130) from None


@app.command("sample-data")
def sample_data(
    users: Annotated[int, typer.Option(help="Users.")] = 10_000,
    items: Annotated[int, typer.Option(help="Catalog items.")] = 5_000,
    interactions: Annotated[int, typer.Option(help="Interactions.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 42,
    out: Annotated[Path, typer.Option(help="Directory for items.csv and interactions.csv.")] = Path(
        "sample-data"
    ),
    upload: Annotated[bool, typer.Option("--upload", help="Upload through the API.")] = False,
    tenant: Annotated[str, typer.Option(help="Tenant slug or id for --upload.")] = "",
    target: Annotated[str, typer.Option(help="Gateway host:port for --upload.")] = "localhost:8080",
    api_key: Annotated[
        str, typer.Option(envvar="EMBREC_API_KEY", help="API key (data:write) for --upload.")
    ] = "",
) -> None:
    """Write a tech-gadget store's items.csv and interactions.csv; optionally upload them."""
    from services.sampledata import generate, write_csv

    if min(users, items, interactions) <= 0:
        raise UsageError("--users, --items and --interactions must be positive")
    data = generate(users=users, items=items, interactions=interactions, seed=seed)
    items_path, interactions_path = write_csv(data, out)
    typer.echo(f"wrote {items_path} and {interactions_path}")
    if not upload:
        return
    from services.sampledata.upload import upload_files

    item_upload, interaction_upload = upload_files(
        items_path, interactions_path, target=target, tenant=tenant, api_key=api_key
    )
    typer.echo(
        f"{data.user_count / 1000:g}K users, {item_upload.rows_accepted / 1000:g}K items, "
        f"{interaction_upload.rows_accepted / 1000:g}K interactions uploaded"
    )


def _dataset_dir(dataset: str) -> Path:
    if dataset == "gowalla":
        candidates = [
            REPO_ROOT.parent / "shared" / "data" / "gowalla",
            REPO_ROOT / "data" / "gowalla",
        ]
        for candidate in candidates:
            if (candidate / "train.txt.gz").exists():
                return candidate
        raise UsageError("Gowalla data not found in ../shared/data/gowalla")
    path = Path(dataset)
    if not (path / "train.txt.gz").exists() or not (path / "test.txt.gz").exists():
        raise UsageError(f"{path} must contain train.txt.gz and test.txt.gz")
    return path


def main() -> None:
    """Entry point: one clear line and exit 2 for bad config or input."""
    try:
        app()
    except (ConfigError, UsageError) as exc:
        typer.echo(f"embrec: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
