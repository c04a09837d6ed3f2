"""HyperLogLog sketches: accuracy against exact counts, merge == union, stored form."""

from __future__ import annotations

import numpy as np
import pytest

from services.ingestion import sketches

#: Three standard errors: about 99.7 % of estimates fall inside.
BOUND = 3 * sketches.STANDARD_ERROR


def _sketch_of(users: list[str]) -> sketches.Registers:
    return sketches.sketch(sketches.hash_users(users))


@pytest.mark.parametrize("n", [1, 7, 300, 3_000, 20_000, 300_000])
def test_estimates_are_within_the_stated_bound(n: int) -> None:
    users = [f"user_{k}" for k in range(n)]
    estimate = sketches.estimate(_sketch_of(users))
    assert abs(estimate - n) <= max(BOUND * n, 1), (n, estimate)


def test_the_error_averages_to_the_standard_error() -> None:
    """Over 20 disjoint sets of 10,000 ids, the mean relative error is ~0.8 sigma."""
    errors = []
    for part in range(20):
        users = [f"{part}-{k:08x}@shop.example" for k in range(10_000)]
        errors.append(abs(sketches.estimate(_sketch_of(users)) - 10_000) / 10_000)
    assert max(errors) <= BOUND
    # E|X| = sqrt(2/pi) sigma ≈ 0.8 sigma for a normal error; allow sampling slack.
    assert float(np.mean(errors)) <= 1.3 * sketches.STANDARD_ERROR


def test_an_empty_sketch_counts_zero() -> None:
    assert sketches.estimate(_sketch_of([])) == 0
    assert sketches.encode(_sketch_of([])) == b""
    assert not sketches.decode(b"").any()


def test_merging_sketches_is_the_sketch_of_the_union() -> None:
    a = [f"user_{k}" for k in range(0, 60_000)]
    b = [f"user_{k}" for k in range(40_000, 90_000)]
    merged = np.maximum(_sketch_of(a), _sketch_of(b))
    assert (merged == _sketch_of(sorted(set(a) | set(b)))).all()
    # Duplicates change nothing: a set's sketch, whatever the repetitions.
    assert (_sketch_of(a + a[:1000]) == _sketch_of(a)).all()
    estimate = sketches.estimate(merged)
    assert abs(estimate - 90_000) <= BOUND * 90_000


def test_grouped_sketches_equal_one_sketch_per_group() -> None:
    users = [f"u{k}" for k in range(5_000)]
    hashes = sketches.hash_users(users)
    groups = np.array([k % 3 for k in range(5_000)], dtype=np.intp)
    grouped = sketches.sketches_by_group(hashes, groups, 3)
    for g in range(3):
        assert (grouped[g] == _sketch_of(users[g::3])).all()


@pytest.mark.parametrize("n", [0, 1, 200, 900, 5_000, 50_000])
def test_the_stored_form_round_trips(n: int) -> None:
    registers = _sketch_of([f"user_{k}" for k in range(n)])
    blob = sketches.encode(registers)
    # Sparse below a quarter of the registers in use: never longer than the dense form.
    assert len(blob) <= sketches.REGISTERS
    assert (sketches.decode(blob) == registers).all()


def test_decode_many_mixes_sparse_and_dense() -> None:
    sets = [[], ["a"], [f"x{k}" for k in range(400)], [f"y{k}" for k in range(40_000)]]
    registers = [_sketch_of(users) for users in sets]
    decoded = sketches.decode_many([sketches.encode(r) for r in registers])
    for got, want in zip(decoded, registers, strict=True):
        assert (got == want).all()


def test_a_damaged_blob_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a stored sketch"):
        sketches.decode(b"abc")


def test_encode_many_equals_encode_row_by_row() -> None:
    sets = [[], [f"y{k}" for k in range(40_000)], ["a"], [f"x{k}" for k in range(900)], []]
    registers = np.stack([_sketch_of(users) for users in sets])
    assert sketches.encode_many(registers) == [sketches.encode(r) for r in registers]
    assert sketches.encode_many(registers[:0]) == []
