"""HyperLogLog sketches of distinct users, for GetAnalytics on large ranges.

A sketch is 2^12 = 4,096 one-byte registers. A user id is hashed to 64 bits (BLAKE2b,
the id alone, so the same id gives the same bits in every tenant and every release);
the top 12 bits pick a register, which keeps the largest "leading zeros + 1" of the
other 52 bits seen. Sketches merge by register-wise maximum, and the merge of two
sketches is exactly the sketch of the union of their sets, so per-hour sketches add up
to any range or local day.

The estimate is Ertl's improved raw estimator ("New cardinality estimation algorithms
for HyperLogLog sketches", 2017): no empirical bias tables, and the relative standard
error is 1.04 / sqrt(4096) ≈ 1.6 % from a handful of users to billions (small counts
are close to exact). About 99.7 % of estimates fall within three standard errors
(±4.9 %).

Stored form (``analytics_user_hourly_hll.registers``): a sketch with fewer than 1,024
non-zero registers is a sorted array of little-endian uint32 ``index << 8 | value``
(4 bytes per register in use, empty bytes for an empty sketch); otherwise the 4,096
registers themselves. The length tells the two apart (the sparse form is always
shorter than 4,096 bytes). A quiet hour thus takes a few bytes per active user, a busy
one 4 KiB.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from hashlib import blake2b

import numpy as np
import numpy.typing as npt

__all__ = [
    "REGISTERS",
    "STANDARD_ERROR",
    "decode",
    "decode_many",
    "encode",
    "encode_many",
    "estimate",
    "hash_users",
    "sketch",
    "sketches_by_group",
]

PRECISION = 12
REGISTERS = 1 << PRECISION
#: Relative standard error of an estimate.
STANDARD_ERROR = 1.04 / math.sqrt(REGISTERS)
_TAIL = 64 - PRECISION  # bits left after the register index
_TAIL_MASK = np.uint64((1 << _TAIL) - 1)
_SPARSE_LIMIT = REGISTERS // 4  # registers in use below which the sparse form is smaller

Registers = npt.NDArray[np.uint8]
Hashes = npt.NDArray[np.uint64]


def hash_users(user_ids: Iterable[str]) -> Hashes:
    """64-bit hashes of user ids (BLAKE2b of the UTF-8 id, big-endian)."""
    digest = b"".join(blake2b(u.encode(), digest_size=8).digest() for u in user_ids)
    return np.frombuffer(digest, dtype=">u8").astype(np.uint64)


def _index_and_rank(hashes: Hashes) -> tuple[npt.NDArray[np.intp], Registers]:
    index = (hashes >> np.uint64(_TAIL)).astype(np.intp)
    tail = hashes & _TAIL_MASK
    # Below 2^52 a float64 holds the tail exactly, and frexp's exponent is its bit
    # length (0 for 0): rank = leading zeros within the 52 bits + 1.
    _, bits = np.frexp(tail.astype(np.float64))
    return index, (_TAIL + 1 - bits).astype(np.uint8)


def sketch(hashes: Hashes) -> Registers:
    """The sketch of a set of hashed users."""
    one: Registers = sketches_by_group(hashes, np.zeros(len(hashes), dtype=np.intp), 1)[0]
    return one


def sketches_by_group(hashes: Hashes, groups: npt.NDArray[np.intp], count: int) -> Registers:
    """One sketch per group (``groups[i]`` in ``range(count)`` for ``hashes[i]``)."""
    out = np.zeros(count * REGISTERS, dtype=np.uint8)
    if len(hashes):
        index, rank = _index_and_rank(hashes)
        np.maximum.at(out, groups * REGISTERS + index, rank)
    return out.reshape(count, REGISTERS)


def encode(registers: Registers) -> bytes:
    """The stored form: sparse below 1,024 registers in use, else dense."""
    used = np.flatnonzero(registers)
    if len(used) >= _SPARSE_LIMIT:
        return registers.astype(np.uint8).tobytes()
    pairs = (used.astype(np.uint32) << np.uint32(8)) | registers[used].astype(np.uint32)
    return pairs.astype("<u4").tobytes()


def encode_many(registers: Registers) -> list[bytes]:
    """:func:`encode` of each row of a ``(n, 4096)`` array, vectorised.

    A year-wide import batch rewrites ~8,760 hourly sketches: a ``flatnonzero`` per row
    took ~0.4 s.
    """
    used = np.count_nonzero(registers, axis=1)
    small = registers[used < _SPARSE_LIMIT].ravel()
    # Flat indices: row-major, so each row's registers come out in order, and
    # index % 4096 is the register (2-D np.nonzero was 10x slower).
    flat = np.flatnonzero(small)
    pairs = ((flat & (REGISTERS - 1)).astype(np.uint32) << np.uint32(8)) | small[flat]
    sparse = pairs.astype("<u4").tobytes()
    ends = np.cumsum(used[used < _SPARSE_LIMIT]).tolist()
    out: list[bytes] = []
    start = 0
    position = 0
    for n, count in enumerate(used.tolist()):
        if count >= _SPARSE_LIMIT:
            out.append(registers[n].astype(np.uint8).tobytes())
            continue
        end = ends[position] * 4
        out.append(sparse[start:end])
        start, position = end, position + 1
    return out


def decode(blob: bytes) -> Registers:
    one: Registers = decode_many([blob])[0]
    return one


def decode_many(blobs: Sequence[bytes]) -> Registers:
    """Stored sketches as one ``(len(blobs), 4096)`` array of registers."""
    out = np.zeros((len(blobs), REGISTERS), dtype=np.uint8)
    sizes = np.fromiter((len(b) for b in blobs), dtype=np.intp, count=len(blobs))
    dense = np.flatnonzero(sizes == REGISTERS)
    if len(dense):
        joined = b"".join(blobs[i] for i in dense.tolist())
        out[dense] = np.frombuffer(joined, dtype=np.uint8).reshape(-1, REGISTERS)
    sparse = np.flatnonzero((sizes != REGISTERS) & (sizes > 0))
    if len(sparse):
        if (sizes[sparse] % 4).any() or (sizes[sparse] > REGISTERS).any():
            raise ValueError("not a stored sketch")
        pairs = np.frombuffer(b"".join(blobs[i] for i in sparse.tolist()), dtype="<u4")
        rows = np.repeat(sparse, sizes[sparse] // 4)
        # Each register appears once per stored sketch, so plain assignment is the max.
        out[rows, (pairs >> np.uint32(8)).astype(np.intp)] = (pairs & np.uint32(0xFF)).astype(
            np.uint8
        )
    return out


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0


_ALPHA_INF = 1.0 / (2.0 * math.log(2.0))


def estimate(registers: Registers) -> int:
    """Estimated distinct users of a sketch (Ertl's improved raw estimator)."""
    m = REGISTERS
    counts = np.bincount(registers, minlength=_TAIL + 2).tolist()
    if counts[0] == m:
        return 0
    z = m * _tau(1.0 - counts[_TAIL + 1] / m)
    for k in range(_TAIL, 0, -1):
        z = 0.5 * (z + counts[k])
    z += m * _sigma(counts[0] / m)
    return round(_ALPHA_INF * m * m / z)
