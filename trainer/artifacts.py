"""Versioned, checksummed training artifacts, written atomically.

Why this module exists: the retriever loads whatever a trainer wrote, possibly while
the trainer is still writing the next version, and a half-written or bit-flipped
embedding file must never be served. So a version is written to a temporary sibling
directory, every file is fsynced, a ``manifest.json`` records the sha256 of each
file, and only then is the directory renamed into place (atomic on POSIX). Readers
verify every checksum before using anything.

Layout of ``<root>/<version>/``: item_embeddings.npy, user_embeddings.npy,
user_ids.json, item_ids.json, popularity.npy (train count per item), metrics.json,
config.json, data_hash.txt, manifest.json; optionally scoring.json (how the retriever
scores on top of the dot product: ``{"recent_category": {...}}``, see
``retriever.recency``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MANIFEST",
    "Artifacts",
    "ArtifactsCorruptError",
    "load_artifacts",
    "verify_artifacts",
    "write_artifacts",
]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ArtifactsCorruptError(RuntimeError):
    """A file is missing, extra, or does not match its manifest checksum."""


@dataclass
class Artifacts:
    """One trained model version as stored on disk."""

    user_embeddings: npt.NDArray[np.float32]
    item_embeddings: npt.NDArray[np.float32]
    user_ids: list[str]
    item_ids: list[str]
    popularity: npt.NDArray[np.int64]
    metrics: dict[str, Any]
    config: dict[str, Any]
    data_hash: str
    manifest: dict[str, Any]
    scoring: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifacts(
    root: str | Path,
    version: str,
    *,
    user_embeddings: npt.NDArray[np.floating[Any]],
    item_embeddings: npt.NDArray[np.floating[Any]],
    user_ids: list[str],
    item_ids: list[str],
    popularity: npt.NDArray[np.integer[Any]],
    metrics: dict[str, Any],
    config: dict[str, Any],
    data_hash: str,
    scoring: dict[str, Any] | None = None,
) -> Path:
    """Write version ``version`` under ``root`` atomically; return its directory.

    Raises FileExistsError if that version already exists (versions are immutable)
    and ValueError if the shapes and id maps disagree.
    """
    root = Path(root)
    if user_embeddings.shape[0] != len(user_ids) or item_embeddings.shape[0] != len(item_ids):
        raise ValueError("embedding rows must match the id maps")
    if popularity.shape[0] != len(item_ids):
        raise ValueError("popularity must have one count per item")
    final = root / version
    if final.exists():
        raise FileExistsError(f"artifact version {version!r} already exists in {root}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        np.save(tmp / "user_embeddings.npy", np.ascontiguousarray(user_embeddings, np.float32))
        np.save(tmp / "item_embeddings.npy", np.ascontiguousarray(item_embeddings, np.float32))
        np.save(tmp / "popularity.npy", np.asarray(popularity, np.int64))
        (tmp / "user_ids.json").write_text(json.dumps(user_ids))
        (tmp / "item_ids.json").write_text(json.dumps(item_ids))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        (tmp / "data_hash.txt").write_text(data_hash + "\n")
        if scoring:
            (tmp / "scoring.json").write_text(json.dumps(scoring, indent=1, sort_keys=True))
        files = {}
        for p in sorted(tmp.iterdir()):
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
            files[p.name] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "data_hash": data_hash,
            "n_users": len(user_ids),
            "n_items": len(item_ids),
            "dim": int(item_embeddings.shape[1]),
            "files": files,
        }
        with (tmp / MANIFEST).open("w") as fh:
            json.dump(manifest, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def verify_artifacts(path: str | Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest or raise."""
    path = Path(path)
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactsCorruptError(f"{path}: unreadable manifest: {exc}") from exc
    expected = set(manifest.get("files", {}))
    present = {p.name for p in path.iterdir() if p.name != MANIFEST}
    if expected != present:
        raise ArtifactsCorruptError(
            f"{path}: files differ from manifest (missing {sorted(expected - present)}, "
            f"extra {sorted(present - expected)})"
        )
    for name, meta in manifest["files"].items():
        digest = _sha256(path / name)
        if digest != meta["sha256"]:
            raise ArtifactsCorruptError(
                f"{path / name}: sha256 {digest} does not match manifest {meta['sha256']}"
            )
    return manifest


def load_artifacts(path: str | Path) -> Artifacts:
    """Load one artifact version after verifying all checksums."""
    path = Path(path)
    manifest = verify_artifacts(path)
    return Artifacts(
        user_embeddings=np.load(path / "user_embeddings.npy"),
        item_embeddings=np.load(path / "item_embeddings.npy"),
        user_ids=json.loads((path / "user_ids.json").read_text()),
        item_ids=json.loads((path / "item_ids.json").read_text()),
        popularity=np.load(path / "popularity.npy"),
        metrics=json.loads((path / "metrics.json").read_text()),
        config=json.loads((path / "config.json").read_text()),
        data_hash=(path / "data_hash.txt").read_text().strip(),
        manifest=manifest,
        scoring=(
            json.loads((path / "scoring.json").read_text())
            if (path / "scoring.json").is_file()
            else {}
        ),
    )
