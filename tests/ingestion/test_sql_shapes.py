"""Multi-row statements come in few shapes, so SQLite's statement cache stays small."""

from __future__ import annotations

import pytest

from services.ingestion.rollups import statement_sizes


@pytest.mark.parametrize("count", [0, 1, 2, 3, 255, 499, 500, 501, 1234, 19_999, 20_000])
def test_pieces_cover_the_rows_in_order(count: int) -> None:
    pieces = list(statement_sizes(count, 500))
    starts = [start for start, _ in pieces]
    sizes = [size for _, size in pieces]
    assert sum(sizes) == count
    assert starts == [sum(sizes[:n]) for n in range(len(sizes))]


def test_a_long_import_uses_a_bounded_set_of_shapes() -> None:
    shapes = {size for count in range(1, 5000) for _, size in statement_sizes(count, 500)}
    assert shapes <= {500, 256, 128, 64, 32, 16, 8, 4, 2, 1}
