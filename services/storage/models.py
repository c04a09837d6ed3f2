"""SQLAlchemy models for every table embrec keeps, portable between PostgreSQL and SQLite.

Why the model looks the way it does:

* One schema for both databases. The embedded mode (`embrec up`) runs on SQLite through
  aiosqlite, compose and production on PostgreSQL through asyncpg. Only portable column
  types are used: identifiers are UUID *strings* (``String(36)``), JSON is ``JSON`` (JSONB on
  PostgreSQL), big auto-increment keys are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite
  (SQLite only auto-increments an ``INTEGER PRIMARY KEY``).
* Time is always timezone-aware UTC. :class:`UTCDateTime` refuses naive datetimes on the way
  in and re-attaches UTC on the way out, because SQLite stores no offset at all.
* Every tenant-owned table starts with ``tenant_id`` (and its indexes do too), so each
  query a service makes is scoped and indexed by tenant.
* Tables that must be read in insertion order (``audit_events``, ``outbox``, ``event_log``)
  carry a monotonically increasing integer ``seq``/``offset`` as primary key and the public
  UUID as a separate unique ``id``: timestamps tie and UUIDs do not sort.
* JSON columns are replaced, not mutated in place (SQLAlchemy does not track mutation of
  a plain ``JSON`` value): ``row.settings = {**row.settings, "x": 1}``.
* E-mail addresses are stored lower-cased by the services, so a plain unique index is a
  case-insensitive one in effect on both databases.

Ownership (DESIGN.md §3): tenant service — tenants, users, refresh_tokens, invitations,
api_keys; ingestion — items, interactions, uploads; training — training_jobs, models,
deployments, schedules; audit — audit_events. ``outbox``, ``processed_events``,
``event_log`` and ``consumer_offsets`` belong to the event bus (services/events/).

The schema is created by the Alembic migrations in ``migrations/versions``; a test checks
that the migrated schema and these models do not drift apart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "AnalyticsHour",
    "AnalyticsItemDay",
    "AnalyticsUserHourSketch",
    "ApiKey",
    "AuditEvent",
    "Base",
    "BigIntPK",
    "ConsumerOffset",
    "Deployment",
    "EventLogEntry",
    "Interaction",
    "Invitation",
    "Item",
    "JsonType",
    "ModelVersion",
    "OutboxEvent",
    "ProcessedEvent",
    "RefreshToken",
    "Schedule",
    "ServedRecommendation",
    "Tenant",
    "TrainingJob",
    "UTCDateTime",
    "Upload",
    "User",
    "new_id",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new random identifier: a UUID4 in its canonical 36-character text form."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite stores text without an offset, so values are
    normalised to UTC before they are written and UTC is re-attached when they are read.
    Naive datetimes are refused: they are the classic source of off-by-hours bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: use timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON everywhere, JSONB on PostgreSQL (indexable, compact, compared by value).
JsonType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")

#: An auto-incrementing 64-bit key on PostgreSQL; SQLite only auto-increments INTEGER.
BigIntPK: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

# Deterministic constraint names, so later migrations can address them on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base: shared metadata (with naming convention) and type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JsonType,
        list[Any]: JsonType,
        bytes: LargeBinary(),
    }


def _tenant_fk(nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=nullable
    )


# --------------------------------------------------------------------------- tenant service


class Tenant(Base):
    """A customer company. Soft-deleted (``deleted_at``) so its audit trail survives."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default="active")
    plan: Mapped[str] = mapped_column(String(32), default="free")
    suspend_reason: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]


class User(Base):
    """A console identity. ``tenant_id`` is NULL for platform staff (admins, support)."""

    __tablename__ = "users"
    __table_args__ = (Index(None, "tenant_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str | None] = _tenant_fk(nullable=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefreshToken(Base):
    """One refresh token of a login session.

    Tokens rotate on every refresh; all tokens of one login share a ``family_id``. Reuse
    of a rotated (revoked) token revokes the whole family (token theft detection). Only a
    hash of the token is stored. ``impersonator_id`` marks sessions an admin opened as
    the user.
    """

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index(None, "family_id"), Index(None, "user_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[str] = mapped_column(String(36))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    impersonator_id: Mapped[str | None] = mapped_column(String(36))
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Invitation(Base):
    """An invitation for an e-mail address to join a tenant's console with a role."""

    __tablename__ = "invitations"
    __table_args__ = (Index(None, "tenant_id", "email"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ApiKey(Base):
    """A tenant's API key. The secret is shown once and stored only as a hash.

    The public ``prefix`` (unique) finds the row in one indexed lookup; the secret hash is
    then compared in constant time.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "tenant_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    #: Chosen at creation; None means the key never expires. Checked on every use.
    expires_at: Mapped[datetime | None]


# --------------------------------------------------------------------------- ingestion service


class Item(Base):
    """A catalog item, keyed by the tenant's own item id."""

    __tablename__ = "items"
    __table_args__ = (Index(None, "tenant_id", "category"),)

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(1000))
    category: Mapped[str | None] = mapped_column(String(200))
    price: Mapped[float | None] = mapped_column(Float(precision=53))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Interaction(Base):
    """A user-item event (view, click, add_to_cart, purchase, rating...).

    High volume, so an integer surrogate key. ``user_id`` and ``item_id`` are the
    tenant's own ids (not foreign keys: events may arrive before the catalog does).
    ``recommendation_id`` attributes the event to a served recommendation (CTR,
    conversion); ``upload_id`` links rows imported in bulk to their upload.
    """

    __tablename__ = "interactions"
    __table_args__ = (
        Index(None, "tenant_id", "ts"),
        Index(None, "tenant_id", "user_id"),
        # Partial: only attributed rows (a minority) are looked up by recommendation
        # id, and leaving the others out makes every bulk insert cheaper (migration 0008).
        Index(
            None,
            "tenant_id",
            "recommendation_id",
            sqlite_where=text("recommendation_id IS NOT NULL"),
            postgresql_where=text("recommendation_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = _tenant_fk()
    user_id: Mapped[str] = mapped_column(String(256))
    item_id: Mapped[str] = mapped_column(String(256))
    type: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime]
    value: Mapped[float | None] = mapped_column(Float(precision=53))
    recommendation_id: Mapped[str | None] = mapped_column(String(64))
    upload_id: Mapped[str | None] = mapped_column(String(36))


class Upload(Base):
    """A bulk import (catalog or interactions) and its per-row error report.

    ``client_upload_id`` makes imports idempotent: a retried upload with the same id
    returns the first result instead of importing twice. ``content_hash`` detects a
    different body sent under a reused id.
    """

    __tablename__ = "uploads"
    __table_args__ = (
        UniqueConstraint("tenant_id", "client_upload_id"),
        Index(None, "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    kind: Mapped[str] = mapped_column(String(32))
    client_upload_id: Mapped[str | None] = mapped_column(String(128))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    total_rows: Mapped[int] = mapped_column(default=0)
    accepted_rows: Mapped[int] = mapped_column(default=0)
    rejected_rows: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    #: Mode, format, file name, dry run, creator, policy, skipped rows, error count
    #: (revision 0002): report fields that need no index, kept in one JSON column.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ServedRecommendation(Base):
    """A recommendation response (an impression), from RecommendationServed events.

    Analytics joins it with ``interactions.recommendation_id`` for CTR, conversion and
    attributed revenue. ``item_ids`` are the items shown, in order.
    """

    __tablename__ = "served_recommendations"
    __table_args__ = (Index(None, "tenant_id", "served_at"),)

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    recommendation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(256))
    served_at: Mapped[datetime]
    item_ids: Mapped[list[Any]] = mapped_column(default=list)
    item_count: Mapped[int] = mapped_column(default=0)
    surface: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str | None] = mapped_column(String(64))
    fallback: Mapped[bool] = mapped_column(default=False)


class AnalyticsHour(Base):
    """Per tenant and UTC hour: the additive analytics counters (issue #4).

    Maintained in the transaction that writes the raw rows (imports, the TrackEvents
    and served-recommendation consumers), so GetAnalytics reads at most 24 rows per
    day instead of scanning ``interactions``. ``hour`` is hours since the Unix epoch:
    integer arithmetic is the same on PostgreSQL and SQLite, and any whole-hour time
    zone maps hours to local days exactly. ``revenue`` uses the item's price when the
    purchase was written (the raw-row query joined today's price).
    """

    __tablename__ = "analytics_hourly"

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    interactions: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)
    conversions: Mapped[int] = mapped_column(default=0)
    revenue: Mapped[float] = mapped_column(Float(precision=53), default=0.0)
    served: Mapped[int] = mapped_column(default=0)
    impressions: Mapped[int] = mapped_column(default=0)


class AnalyticsItemDay(Base):
    """Per tenant, UTC day (days since the epoch) and item: counts for popular items."""

    __tablename__ = "analytics_item_daily"

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    item_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    interactions: Mapped[int] = mapped_column(default=0)
    clicks: Mapped[int] = mapped_column(default=0)
    impressions: Mapped[int] = mapped_column(default=0)


class AnalyticsUserHourSketch(Base):
    """Per tenant and UTC hour: a HyperLogLog sketch of the users active in that hour.

    GetAnalytics merges them for distinct active users over long ranges, where the
    exact count reads every raw row of the range; see
    ``services/ingestion/sketches.py`` for the stored form (at most 4 KiB a row) and
    the error bound. Per hour rather than per day so that local days of any whole-hour
    time zone, daylight saving included, are unions of whole buckets.
    """

    __tablename__ = "analytics_user_hourly_hll"

    tenant_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    registers: Mapped[bytes] = mapped_column(LargeBinary(), default=b"")


# --------------------------------------------------------------------------- training service


class TrainingJob(Base):
    """A training job; also the trainer workers' queue.

    Workers claim ``state='queued'`` rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), set
    ``worker_id`` and refresh ``heartbeat_at``; a job whose heartbeat goes stale is
    re-queued and ``attempts`` counts the tries.
    """

    __tablename__ = "training_jobs"
    __table_args__ = (
        Index(None, "tenant_id", "created_at"),
        Index(None, "state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    state: Mapped[str] = mapped_column(String(20), default="queued")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    schedule_id: Mapped[str | None] = mapped_column(String(36))
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: auto_deploy, failure reason code, data snapshot (revision 0003).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ModelVersion(Base):
    """A trained model in the registry: version ``n`` of a tenant's model (table ``models``)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    version: Mapped[int]
    job_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("training_jobs.id", ondelete="SET NULL")
    )
    artifact_uri: Mapped[str] = mapped_column(String(2048))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Deployment(Base):
    """A traffic split over model versions, e.g. ``[{"version": 3, "percent": 90}, ...]``.

    Deploying inserts a new active row and deactivates the previous one in the same
    transaction; rollback re-activates an older split. History is kept.
    """

    __tablename__ = "deployments"
    __table_args__ = (Index(None, "tenant_id", "active"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    split: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    #: state, previous deployment, forced, rollback, reason (revision 0003).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Schedule(Base):
    """Periodic retraining of a tenant's model."""

    __tablename__ = "schedules"
    __table_args__ = (Index(None, "tenant_id"), Index(None, "enabled", "next_run_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = _tenant_fk()
    interval_seconds: Mapped[int]
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    auto_deploy: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    last_job_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: name, min_new_interactions and its watermark (revision 0003).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --------------------------------------------------------------------------- audit service


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit trail.

    ``seq`` orders the chain; ``hash`` = H(``prev_hash`` ‖ canonical entry), so editing or
    removing a row breaks verification. ``tenant_id`` is NULL for platform-level actions
    and is deliberately not a foreign key: the trail outlives the tenant.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index(None, "tenant_id", "time"),
        Index(None, "actor", "time"),
        Index(None, "action", "time"),
    )

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str] = mapped_column(String(320))
    impersonator: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


# --------------------------------------------------------------------------- event bus


class OutboxEvent(Base):
    """An event waiting to be published, written in the same transaction as its cause.

    ``seq`` gives the relay its order; ``id`` is the event id consumers deduplicate on.
    The partial index covers exactly the rows the relay looks for.
    """

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    topic: Mapped[str] = mapped_column(String(249))
    key: Mapped[str] = mapped_column(String(256))
    event_type: Mapped[str] = mapped_column(String(200))
    payload: Mapped[bytes]
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


Index(
    "ix_outbox_unpublished",
    OutboxEvent.seq,
    postgresql_where=OutboxEvent.published_at.is_(None),
    sqlite_where=OutboxEvent.published_at.is_(None),
)
# Retention (services/events/retention.py) deletes the oldest published rows by this.
Index(
    "ix_outbox_published_at",
    OutboxEvent.published_at,
    postgresql_where=OutboxEvent.published_at.is_not(None),
    sqlite_where=OutboxEvent.published_at.is_not(None),
)


class ProcessedEvent(Base):
    """Event ids a consumer has already applied; inserted in the consumer's transaction."""

    __tablename__ = "processed_events"
    # Retention (services/events/retention.py) deletes the oldest ids by this.
    __table_args__ = (Index(None, "processed_at"),)

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventLogEntry(Base):
    """The embedded event bus: an append-only log in SQL, read by offset (like a topic)."""

    __tablename__ = "event_log"
    __table_args__ = (Index(None, "topic", "offset"), Index(None, "time"))

    offset: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249))
    key: Mapped[str] = mapped_column(String(256))
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(200))
    payload: Mapped[bytes]
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    time: Mapped[datetime] = mapped_column(default=utcnow)


class ConsumerOffset(Base):
    """The last offset of ``event_log`` a consumer group has processed, per topic."""

    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UsageHour(Base):
    """API calls metered by the service processes, per tenant, UTC hour and method.

    Written by each process's usage flush (``services/platform/usage_store.py``) with
    additive upserts, read by GetUsage. ``tenant_id`` is empty for calls that act on no
    tenant (a platform admin's listing); it has no foreign key so a deleted tenant's
    history stays countable. ``le_*ms`` count the calls at or under each latency bound;
    the calls above the last bound are ``calls`` minus their sum.
    """

    __tablename__ = "usage_hourly"
    __table_args__ = (Index(None, "hour"),)

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hour: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    service: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(100), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    client_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    server_errors: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms_total: Mapped[float] = mapped_column(Float, default=0.0)
    le_1ms: Mapped[int] = mapped_column(BigInteger, default=0)
    le_5ms: Mapped[int] = mapped_column(BigInteger, default=0)
    le_25ms: Mapped[int] = mapped_column(BigInteger, default=0)
    le_100ms: Mapped[int] = mapped_column(BigInteger, default=0)
    le_500ms: Mapped[int] = mapped_column(BigInteger, default=0)
    le_2500ms: Mapped[int] = mapped_column(BigInteger, default=0)
