"""`embrec demo`: the whole product in one command, through the public API only.

What it does, as a customer and an operator would by hand (README, "Calling the API"):

1. finds the stack at the gateway URL, or starts ``embrec up`` as a child process with
   a data directory of its own (``<EMBREC_DATA_DIR>/demo``) and stops it at the end;
2. gets a platform admin credential: for a stack it started, it makes the admin on
   that stack's database before starting it (the first admin, or a one-off admin when
   the database already has one), so no password ever passes through a log; for a
   running stack it asks for the admin's password (prompt, or stdin);
3. as that admin, creates a tenant ``demo-<random>`` and two API keys for it: a
   pipeline key (data and models) and a website key (recommend:read, events:write);
4. generates the sample store (``services.sampledata``), uploads both CSV files over
   REST (``POST /api/v1/uploads/{items,interactions}:csv``) with a progress line;
5. starts a training job, shows its progress until it ends, deploys the model at
   100 %, and waits until Recommend answers from that model (not a fallback);
6. prints recommendations for three users, the same filtered by a category, and a
   brand-new visitor (popular items, then fold-in from items just viewed), and a
   ready-to-paste curl with the website key; then the total time.

Every failure is a ``DemoError`` naming the step and why (the HTTP status and the
gateway's JSON error); the CLI prints it as one line, never a traceback. Nothing here
imports grpc or the services' servers: it is a client of the gateway, like a customer.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from services.config import Settings

__all__ = ["DemoError", "DemoOptions", "run_demo"]

#: The default store (DESIGN.md §8) and the quick one (`--small`).
DEFAULT_SIZE = (10_000, 5_000, 100_000)
SMALL_SIZE = (1_000, 400, 15_000)

PIPELINE_SCOPES = ("data:write", "data:read", "models:write", "models:read")
WEBSITE_SCOPES = ("recommend:read", "events:write")

_TERMINAL_JOB_STATES = {
    "TRAINING_JOB_STATE_SUCCEEDED",
    "TRAINING_JOB_STATE_FAILED",
    "TRAINING_JOB_STATE_CANCELLED",
}
_STACK_READY_TIMEOUT_S = 180.0
_SERVING_TIMEOUT_S = 120.0
_TRAINING_TIMEOUT_S = 3600.0
_UPLOAD_CHUNK = 256 * 1024
_SHOWN = 5
#: Gateway answers worth asking again for a call that changes nothing.
_TRANSIENT = {502, 503, 504}
_SAFE_ATTEMPTS = 5


class DemoError(Exception):
    """A step failed; ``step`` names it and the message says why, in one line."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass
class DemoOptions:
    gateway: str
    data_dir: Path
    users: int
    items: int
    interactions: int
    seed: int = 42
    keep_running: bool = False
    admin_email: str = ""
    #: Asked for only when the stack is not ours: a prompt or a stdin line.
    read_admin_password: Callable[[], str] | None = None


@dataclass
class _Admin:
    email: str
    password: str
    #: "first" (the stack's first admin), "one-off" (made for this run) or "given".
    origin: str


# --------------------------------------------------------------------------- output


class _Out:
    """Lines on stdout; on a terminal a progress line is redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._status = ""

    def line(self, text: str = "") -> None:
        self._end_status()
        self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        """A progress line: redrawn on a terminal, printed when it changes otherwise."""
        if text == self._status:
            return
        self._status = text
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _end_status(self) -> None:
        if self._status and self.tty:
            self.stream.write("\n")
        self._status = ""


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s"


# --------------------------------------------------------------------------- HTTP


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} KB"


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _error_text(reply: httpx.Response) -> str:
    """The gateway's JSON error (google.rpc.Status) as one line: message and reason."""
    try:
        body = reply.json()
    except ValueError:
        text = _one_line(reply.text)
        return f"HTTP {reply.status_code}{': ' + text if text else ''}"
    if not isinstance(body, dict):
        return f"HTTP {reply.status_code}: {str(body)[:300]}"
    message = str(body.get("message") or body.get("error") or "").strip()
    reasons = [
        str(d["reason"])
        for d in body.get("details", []) or []
        if isinstance(d, dict) and d.get("reason")
    ]
    violations = [
        f"{v.get('field')}: {v.get('description')}"
        for d in body.get("details", []) or []
        if isinstance(d, dict)
        for v in d.get("field_violations", d.get("fieldViolations", [])) or []
        if isinstance(v, dict)
    ]
    parts = [f"HTTP {reply.status_code}"]
    if reasons:
        parts.append(reasons[0])
    text = " ".join(parts) + (f": {message}" if message else "")
    if violations:
        text += " (" + "; ".join(violations[:5]) + ")"
    return text


class _Api:
    """JSON calls to the gateway; any failure becomes a DemoError for ``step``."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway.rstrip("/")
        # Imports are answered after the whole file is processed: long read timeout.
        self.http = httpx.Client(
            base_url=self.gateway, timeout=httpx.Timeout(30.0, read=600.0), trust_env=False
        )

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        step: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: object = None,
        params: dict[str, str] | None = None,
        content: Iterator[bytes] | bytes | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        attempts = _SAFE_ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                reply = self.http.request(
                    method,
                    path,
                    json=json_body,
                    params=params,
                    content=content,
                    headers=all_headers,
                )
            except httpx.HTTPError as exc:
                if attempt < attempts:
                    time.sleep(attempt)
                    continue
                raise DemoError(
                    step, f"cannot reach the gateway at {self.gateway}: {exc}"
                ) from None
            # A busy embedded stack can miss the gateway's 2 s authz deadline (Envoy
            # then answers 503): calls that change nothing are simply asked again.
            if reply.status_code in _TRANSIENT and attempt < attempts:
                time.sleep(attempt)
                continue
            break
        if reply.status_code >= 400:
            raise DemoError(step, f"{method} {path} answered {_error_text(reply)}")
        try:
            body = reply.json()
        except ValueError:
            raise DemoError(
                step, f"{method} {path} answered non-JSON: {reply.text[:200]!r}"
            ) from None
        if not isinstance(body, dict):
            raise DemoError(step, f"{method} {path} answered {body!r}, not a JSON object")
        return body

    def health(self) -> tuple[int, str] | None:
        """(status code, body) of GET /health, or None when nothing listens."""
        try:
            reply = self.http.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return None
        return reply.status_code, reply.text.strip()


# --------------------------------------------------------------------------- the stack


class _StackChild:
    """`embrec up` as a child process in its own session, logging to a file.

    Its own session: a terminal's Ctrl-C reaches the demo, which then stops the stack in
    order (SIGTERM: gateway first, then services). Its output goes to a file, not a
    pipe, so with --keep-running it outlives the demo without writing into a closed pipe.
    """

    def __init__(self, data_dir: Path, envoy_port: int) -> None:
        self.data_dir = data_dir
        self.envoy_port = envoy_port
        self.log_path = data_dir / "embrec-up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The child reads its settings from the environment like any `embrec up`; only
        # the data dir and gateway port are the demo's own.
        env = {
            **os.environ,
            "EMBREC_DATA_DIR": str(self.data_dir),
            "EMBREC_ENVOY_PORT": str(self.envoy_port),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from services.cli import main; main()", "up"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def last_error(self) -> str:
        """The log's last line: `embrec up` ends with its one-line reason (or, for a
        crash, the exception line that closes the traceback)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:500] if lines else "(empty log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _wait_ready(api: _Api, child: _StackChild, out: _Out) -> None:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < _STACK_READY_TIMEOUT_S:
        if child.exited():
            assert child.process is not None
            raise DemoError(
                "starting the stack",
                f"`embrec up` exited with code {child.process.returncode}: "
                f"{child.last_error()} (full log: {child.log_path}; another embrec may "
                "hold a port: see EMBREC_GRPC_PORT, EMBREC_ENVOY_ADMIN_PORT, "
                "EMBREC_METRICS_PORT, EMBREC_CONSOLE_PORT)",
            )
        answer = api.health()
        if answer is not None and answer[0] == 200:
            return
        if answer is not None:
            last = f" (last /health: HTTP {answer[0]} {_one_line(answer[1])})"
        elapsed = f" {time.monotonic() - started:.0f} s" if out.tty else ""
        out.status(f"      waiting until {api.gateway}/health answers 200 ...{elapsed}")
        time.sleep(0.5)
    raise DemoError(
        "starting the stack",
        f"not healthy after {_STACK_READY_TIMEOUT_S:.0f} s{last}; see {child.log_path}",
    )


def _admin_for_own_stack(settings: Settings) -> _Admin:
    """An admin on the database of a stack we are about to start.

    The first admin when the database has none (what `embrec up` would otherwise print
    once); else a one-off admin for this run, as `embrec admin create` would make it.
    Done before the stack starts, so the password lives only in this process's memory.
    """
    import asyncio

    from services.errors import EmbrecError
    from services.tenant.admins import create_platform_admin, ensure_demo_admin_for

    try:
        first = asyncio.run(ensure_demo_admin_for(settings))
        if first is not None:
            return _Admin(first[0], first[1], "first")
        email = f"demo-{secrets.token_hex(3)}@embrec.local"
        password = secrets.token_urlsafe(18)
        asyncio.run(
            create_platform_admin(settings, email=email, password=password, name="embrec demo")
        )
    except EmbrecError as exc:
        raise DemoError("creating an admin", exc.message) from None
    except Exception as exc:  # a broken or foreign database: say which and why
        raise DemoError(
            "creating an admin",
            f"cannot prepare the database of {settings.data_dir}: {type(exc).__name__}: {exc}",
        ) from None
    return _Admin(email, password, "one-off")


# --------------------------------------------------------------------------- sample data


@dataclass
class _Store:
    items_csv: Path
    interactions_csv: Path
    titles: dict[str, tuple[str, str]]
    history: dict[str, Counter[str]] = field(default_factory=dict)
    per_user: Counter[str] = field(default_factory=Counter)
    item_popularity: Counter[str] = field(default_factory=Counter)
    category_size: Counter[str] = field(default_factory=Counter)
    user_count: int = 0


def _sample_store(options: DemoOptions) -> _Store:
    from services.sampledata import generate, write_csv

    data = generate(
        users=options.users,
        items=options.items,
        interactions=options.interactions,
        seed=options.seed,
    )
    items_csv, interactions_csv = write_csv(data, options.data_dir / "sample-data")
    titles = {row["item_id"]: (row["title"], row["category"]) for row in data.items}
    store = _Store(items_csv, interactions_csv, titles)
    store.category_size.update(category for _, category in titles.values())
    for user_id, item_id, _, _, _ in data.interactions:
        store.per_user[user_id] += 1
        store.item_popularity[item_id] += 1
        store.history.setdefault(user_id, Counter())[titles[item_id][1]] += 1
    store.user_count = len(store.per_user)
    return store


def _pick_users(store: _Store) -> list[str]:
    """user_123 (the seed guide's example) and two more with a real history."""
    chosen = ["user_123"] if store.per_user.get("user_123", 0) >= 3 else []
    for user_id in sorted(store.per_user, key=lambda u: int(u.rpartition("_")[2])):
        if len(chosen) == 3:
            break
        if user_id not in chosen and 8 <= store.per_user[user_id] <= 40:
            chosen.append(user_id)
    for user_id, _ in store.per_user.most_common():
        if len(chosen) == 3:
            break
        if user_id not in chosen:
            chosen.append(user_id)
    return chosen


def _pick_category(store: _Store) -> str:
    """The seed guide's "smartphones" when the catalog has enough of them."""
    if store.category_size.get("smartphones", 0) >= 2 * _SHOWN:
        return "smartphones"
    return store.category_size.most_common(1)[0][0]


# --------------------------------------------------------------------------- steps


def _upload(
    api: _Api, out: _Out, token: str, kind: str, path: Path, upload_id: str
) -> dict[str, Any]:
    total = path.stat().st_size
    started = time.monotonic()

    def chunks() -> Iterator[bytes]:
        sent = 0
        with path.open("rb") as f:
            while chunk := f.read(_UPLOAD_CHUNK):
                sent += len(chunk)
                percent = 100 * sent // max(total, 1)
                if out.tty:
                    out.status(
                        f"      {path.name}: sending {percent:3d} % "
                        f"({_size(sent)} of {_size(total)})"
                    )
                else:  # a log, not a screen: a line per quarter is enough
                    out.status(f"      {path.name}: sending {percent // 25 * 25:3d} %")
                yield chunk
        out.status(f"      {path.name}: sent {_size(total)}, validating and storing ...")

    upload = api.call(
        f"uploading {path.name}",
        "POST",
        f"/api/v1/uploads/{kind}:csv",
        token=token,
        params={"file_name": path.name, "upload_id": upload_id},
        content=chunks(),
        headers={"Content-Type": "text/csv", "Content-Length": str(total)},
    )
    state = str(upload.get("state", ""))
    if state != "UPLOAD_STATE_SUCCEEDED":
        errors = upload.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        raise DemoError(
            f"uploading {path.name}",
            f"the upload ended {state or 'without a state'}"
            + (f"; first error row {first.get('row')}: {first.get('message')}" if first else ""),
        )
    accepted = int(upload.get("rows_accepted", 0))
    rejected = int(upload.get("rows_rejected", 0))
    skipped = int(upload.get("rows_skipped", 0))
    out.line(
        f"      {path.name}: {int(upload.get('rows_total', 0)):,} rows → {accepted:,} accepted, "
        f"{rejected:,} rejected, {skipped:,} skipped (duplicates) in "
        f"{_seconds(time.monotonic() - started)}"
    )
    return upload


def _progress_text(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    state = str(job.get("state", "")).removeprefix("TRAINING_JOB_STATE_").lower()
    epoch, total = int(progress.get("epoch", 0)), int(progress.get("total_epochs", 0))
    text = f"      {state}"
    if total:
        text += f"  epoch {epoch}/{total}  loss {float(progress.get('loss', 0.0)):.4f}"
        metrics = progress.get("metrics") or {}
        shown = [
            f"{name} {float(metrics[name]):.3f}"
            for name in ("ndcg@10", "recall@20")
            if name in metrics
        ]
        if shown:
            text += "  " + "  ".join(shown)
        eta = progress.get("eta")
        if isinstance(eta, str) and eta.endswith("s"):
            text += f"  eta {_seconds(float(eta[:-1]))}"
    elif progress.get("message"):
        text += f"  {progress['message']}"
    return text


def _train(api: _Api, out: _Out, token: str) -> tuple[str, dict[str, Any]]:
    step = "training"
    job = api.call(step, "POST", "/api/v1/trainingJobs", token=token, json_body={})
    job_id = str(job["id"])
    out.line(f"      job {job_id}")
    started = time.monotonic()
    try:
        while str(job.get("state")) not in _TERMINAL_JOB_STATES:
            if time.monotonic() - started > _TRAINING_TIMEOUT_S:
                raise DemoError(step, f"job {job_id} still {job.get('state')} after an hour")
            out.status(_progress_text(job))
            time.sleep(1.0)
            job = api.call(step, "GET", f"/api/v1/trainingJobs/{job_id}", token=token, retry=True)
    except KeyboardInterrupt:
        # Leave no job training for nobody on a stack that outlives us.
        with contextlib.suppress(DemoError):
            api.call(step, "POST", f"/api/v1/trainingJobs/{job_id}:cancel", token=token)
        raise
    out.status(_progress_text(job))
    if job.get("state") != "TRAINING_JOB_STATE_SUCCEEDED":
        error = job.get("error") or {}
        reasons = [d.get("reason") for d in error.get("details", []) if isinstance(d, dict)]
        raise DemoError(
            step,
            f"job {job_id} ended {job.get('state')}"
            + (f" ({reasons[0]})" if reasons and reasons[0] else "")
            + (f": {error.get('message')}" if error.get("message") else ""),
        )
    version = str(job["model_version"])
    model = api.call(step, "GET", f"/api/v1/models/{version}", token=token, retry=True)
    metrics = {k: float(v) for k, v in (model.get("metrics") or {}).items()}
    lineage = model.get("lineage") or {}
    out.line(
        f"      model {version}: NDCG@10 {metrics.get('ndcg@10', 0):.3f}, "
        f"Recall@20 {metrics.get('recall@20', 0):.3f} on held-out interactions "
        f"(popularity baseline NDCG@10 {metrics.get('baseline_ndcg@10', 0):.3f}); "
        f"{int(lineage.get('user_count', 0)):,} users × {int(lineage.get('item_count', 0)):,} "
        f"items, trained in {_seconds(metrics.get('train_seconds', 0.0))} "
        f"on {lineage.get('device') or 'cpu'}"
    )
    return version, model


def _recommend(api: _Api, step: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    return api.call(
        step, "POST", "/api/v1/recommendations", token=token, json_body=body, retry=True
    )


def _wait_serving(api: _Api, out: _Out, token: str, user_id: str, version: str) -> float:
    started = time.monotonic()
    last: dict[str, Any] = {}
    while time.monotonic() - started < _SERVING_TIMEOUT_S:
        last = _recommend(api, "waiting for the model to serve", token, {"user_id": user_id})
        if not last.get("fallback") and last.get("model_version") == version:
            return time.monotonic() - started
        elapsed = f" {time.monotonic() - started:.0f} s" if out.tty else ""
        reason = str(last.get("fallback_reason", "")).removeprefix("FALLBACK_REASON_")
        out.status(f"      retrievers loading {version} ...{elapsed} (meanwhile: {reason})")
        time.sleep(0.5)
    raise DemoError(
        "waiting for the model to serve",
        f"Recommend still answers model_version={last.get('model_version')!r} "
        f"fallback={last.get('fallback')} ({last.get('fallback_reason')}) after "
        f"{_SERVING_TIMEOUT_S:.0f} s",
    )


def _print_items(out: _Out, reply: dict[str, Any]) -> None:
    items = reply.get("items") or []
    if not items:
        out.line("      (no items)")
    for rank, item in enumerate(items, 1):
        out.line(
            f"    {rank}. {item.get('item_id', ''):<10} {item.get('title', ''):<26} "
            f"{item.get('category', ''):<13} score {float(item.get('score', 0.0)):7.3f}"
        )


def _served_by(reply: dict[str, Any]) -> str:
    if reply.get("fallback"):
        reason = str(reply.get("fallback_reason", "")).removeprefix("FALLBACK_REASON_")
        return f"popular items (fallback: {reason})"
    return f"model {reply.get('model_version')}"


def _curl(gateway: str, key: str, body: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"curl -s -X POST {gateway}/api/v1/recommendations \\",
            f"  -H {shlex.quote('Authorization: Bearer ' + key)} \\",
            "  -H 'Content-Type: application/json' \\",
            f"  -d {shlex.quote(json.dumps(body))}",
        ]
    )


def _show_recommendations(
    api: _Api, out: _Out, token: str, store: _Store, version: str, suffix: str
) -> dict[str, Any]:
    """The three sections; returns the request body the curl reproduces."""
    users = _pick_users(store)
    category = _pick_category(store)
    step = "recommending"

    out.line()
    out.line(f"Recommendations ({_SHOWN} per user; items the user already saw are left out)")
    for user_id in users:
        top = ", ".join(c for c, _ in store.history[user_id].most_common(3))
        reply = _recommend(api, step, token, {"user_id": user_id, "count": _SHOWN})
        out.line()
        out.line(
            f"  {user_id}  ({store.per_user[user_id]} interactions, mostly {top})"
            f"  — {_served_by(reply)}"
        )
        _print_items(out, reply)

    out.line()
    out.line(f'Filtered: only category "{category}" (exact filter, applied before ranking)')
    for user_id in users:
        body = {"user_id": user_id, "count": _SHOWN, "filters": {"category": category}}
        reply = _recommend(api, step, token, body)
        out.line()
        out.line(f"  {user_id}  — {_served_by(reply)}")
        _print_items(out, reply)

    visitor = f"new-visitor-{suffix}"
    out.line()
    out.line(f"A brand-new user, {visitor}, unknown to the model")
    reply = _recommend(api, step, token, {"user_id": visitor, "count": _SHOWN})
    out.line()
    out.line(f"  with no history  — {_served_by(reply)}")
    _print_items(out, reply)
    viewed = [
        item for item, _ in store.item_popularity.most_common() if store.titles[item][1] == category
    ][:2]
    reply = _recommend(
        api, step, token, {"user_id": visitor, "count": _SHOWN, "recent_item_ids": viewed}
    )
    out.line()
    names = " and ".join(f"{store.titles[i][0]} ({i})" for i in viewed)
    out.line(f"  after viewing {names}  — {_served_by(reply)}, fold-in from recent_item_ids")
    _print_items(out, reply)
    return {"user_id": users[0], "count": _SHOWN, "filters": {"category": category}}


# --------------------------------------------------------------------------- the demo


def _local_port(gateway: str) -> int | None:
    """The port of a loopback gateway URL (a stack we may start), else None."""
    parts = urlsplit(gateway)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    return parts.port or 80


def run_demo(options: DemoOptions, settings: Settings, stream: TextIO | None = None) -> None:
    """Run the demo, printing to ``stream`` (stdout); raises DemoError on a failed step."""
    out = _Out(stream or sys.stdout)
    started = time.monotonic()
    api = _Api(options.gateway)
    child: _StackChild | None = None
    keep_child = False
    try:
        out.line(f"embrec demo: a tech-gadget store, end to end through {api.gateway}")
        out.line()

        # 1. The stack.
        answer = api.health()
        admin: _Admin
        if answer is None:
            port = _local_port(api.gateway)
            if port is None:
                raise DemoError(
                    "finding the stack",
                    f"nothing answers at {api.gateway}, and the demo can start a stack only "
                    "on this machine (http://127.0.0.1:PORT)",
                )
            own = settings.model_copy(update={"data_dir": options.data_dir, "envoy_port": port})
            out.line(f"[1/8] stack     no stack at {api.gateway}: starting `embrec up`")
            out.line(
                f"      data {options.data_dir.resolve()}, log {options.data_dir}/embrec-up.log"
            )
            admin = _admin_for_own_stack(own)
            child = _StackChild(options.data_dir, port)
            child.start()
            _wait_ready(api, child, out)
            out.line(f"      ready in {_seconds(time.monotonic() - started)}")
        else:
            status, body = answer
            if status != 200:
                raise DemoError(
                    "finding the stack",
                    f"{api.gateway}/health answered HTTP {status} {_one_line(body)}: the "
                    "stack is not healthy, or that port is another program's",
                )
            out.line(f"[1/8] stack     using the running stack at {api.gateway}")
            if options.read_admin_password is None:
                raise DemoError("signing in", "no way to read the admin's password")
            email = options.admin_email or "admin@embrec.local"
            admin = _Admin(email, options.read_admin_password(), "given")

        # 2. Admin sign-in.
        login = api.call(
            "signing in as platform admin",
            "POST",
            "/api/v1/auth/login",
            json_body={"email": admin.email, "password": admin.password},
            retry=True,
        )
        admin_token = str(login["access_token"])
        note = {
            "first": "this stack's first platform admin, created now",
            "one-off": "a platform admin created for this run",
            "given": "as given",
        }[admin.origin]
        out.line(f"[2/8] admin     signed in as {admin.email} ({note})")

        # 3. Tenant and keys.
        suffix = secrets.token_hex(3)
        slug = f"demo-{suffix}"
        tenant = api.call(
            "creating the tenant",
            "POST",
            "/api/admin/tenants",
            token=admin_token,
            json_body={
                "name": f"Demo gadget store {suffix}",
                "slug": slug,
                "email": f"admin@{slug}.example",
            },
        )
        out.line(f"[3/8] tenant    {slug} (id {tenant.get('id')}, plan {tenant.get('plan')})")
        keys: dict[str, str] = {}
        for name, scopes in (("pipeline", PIPELINE_SCOPES), ("website", WEBSITE_SCOPES)):
            created = api.call(
                f"creating the {name} API key",
                "POST",
                "/api/v1/apiKeys",
                token=admin_token,
                params={"tenant_id": slug},
                json_body={"name": f"embrec demo - {name}", "scopes": list(scopes)},
            )
            keys[name] = str(created["secret"])
            out.line(
                f"[4/8] API key   {name}: {created['api_key']['prefix']}... ({', '.join(scopes)})"
            )

        # 4. Data.
        t0 = time.monotonic()
        store = _sample_store(options)
        out.line(
            f"[5/8] data      {store.user_count:,} users, {len(store.titles):,} items, "
            f"{options.interactions:,} interactions (seed {options.seed}) generated in "
            f"{_seconds(time.monotonic() - t0)} → {store.items_csv.parent}"
        )
        out.line("[6/8] upload    CSV over REST: POST /api/v1/uploads/{items,interactions}:csv")
        _upload(api, out, keys["pipeline"], "items", store.items_csv, f"demo-{suffix}-items")
        _upload(
            api,
            out,
            keys["pipeline"],
            "interactions",
            store.interactions_csv,
            f"demo-{suffix}-interactions",
        )

        # 5. Train, deploy, serve.
        out.line("[7/8] training  LightGCN: POST /api/v1/trainingJobs")
        version, _ = _train(api, out, keys["pipeline"])
        deployment = api.call(
            "deploying",
            "POST",
            f"/api/v1/models/{version}:deploy",
            token=keys["pipeline"],
            json_body={"reason": "embrec demo"},
        )
        split = ", ".join(
            f"{s.get('model_version')} {s.get('percent')} %"
            for s in deployment.get("traffic_split", [])
        )
        out.line(f"[8/8] deploy    {split} (deployment {deployment.get('id')})")
        waited = _wait_serving(api, out, keys["website"], _pick_users(store)[0], version)
        out.line(f"      serving {version} after {_seconds(waited)}")

        # 6. Show it.
        curl_body = _show_recommendations(api, out, keys["website"], store, version, suffix)
        out.line()
        out.line("Reproduce the filtered request with the website key (recommend:read only):")
        out.line()
        out.line(_curl(api.gateway, keys["website"], curl_body))
        out.line()
        if child is not None and options.keep_running:
            keep_child = True
            out.line(f"The stack keeps running (pid {child.pid}); stop it with: kill {child.pid}")
            out.line(f"  gateway  {api.gateway}")
            out.line(f"  console  http://127.0.0.1:{settings.console_port}")
            out.line(f"  admin    {admin.email}  password {admin.password}  (shown once)")
            out.line(f"  data     {options.data_dir.resolve()}")
        elif child is not None:
            out.line(
                f"Stopping the stack (its data stays in {options.data_dir}; "
                "--keep-running leaves it up)."
            )
        out.line(f"Done in {_seconds(time.monotonic() - started)}.")
    finally:
        api.close()
        if child is not None and not keep_child:
            child.stop()
