"""``embrec bench sample``: trains a small sample store end to end; ``--set`` overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EMBREC = str(Path(sys.executable).parent / "embrec")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EMBREC, "bench", "sample", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_small_store_trains_with_overrides() -> None:
    done = bench(
        "--users", "300", "--items", "120", "--interactions", "3000",
        "--set", "epochs=2", "--set", "l2=0.002", "--set", "lr_schedule=constant",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "epochs<=2" in done.stdout
    assert "l2=0.002" in done.stdout
    assert "(constant)" in done.stdout
    assert "held-out test split: NDCG@10" in done.stdout
    # A miss points at what the store allows (an untrained model misses; this one meets).
    assert "meets" in done.stdout
    assert "embrec bench sample --ceiling" not in done.stdout
    untrained = bench(
        "--users", "300", "--items", "120", "--interactions", "3000",
        "--set", "epochs=1", "--set", "lr=0.00001", "--set", "category_boost=false",
    )  # fmt: skip
    assert untrained.returncode == 0, untrained.stderr
    assert "MISSES" in untrained.stdout
    assert "what this store allows a learner: embrec bench sample --ceiling" in untrained.stdout


def test_bad_overrides_are_usage_errors() -> None:
    for args, says in (
        (["--set", "no_such_knob=1"], "unknown trainer setting 'no_such_knob'"),
        (["--set", "epochs"], "--set takes key=value"),
    ):
        done = bench(*args)
        assert done.returncode != 0
        assert says in done.stderr + done.stdout
        assert "Traceback" not in done.stderr


def test_ceiling_prints_what_the_store_allows() -> None:
    done = bench(
        "--users", "300", "--items", "120", "--interactions", "3000",
        "--ceiling", "--ceiling-samples", "500",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "oracle: true user styles and tastes" in done.stdout
    assert "a model that learned the items perfectly: NDCG@10" in done.stdout
    for args, says in (
        (["--ceiling", "--ceiling-samples", "0"], "--ceiling-samples must be positive"),
        (["--ceiling", "--set", "epochs=2"], "--ceiling does not train"),
        (["--ceiling", "--users", "100000", "--items", "50000"], "users x items tables"),
    ):
        refused = bench(*args)
        assert refused.returncode != 0
        assert says in refused.stderr + refused.stdout
        assert "Traceback" not in refused.stderr
