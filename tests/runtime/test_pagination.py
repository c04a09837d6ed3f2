from __future__ import annotations

import pytest

from services.errors import InvalidArgument
from services.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, next_token, parse_page


def test_defaults_and_cap() -> None:
    assert parse_page(0, "").size == DEFAULT_PAGE_SIZE
    assert parse_page(10**6, "").size == MAX_PAGE_SIZE


def test_negative_page_size_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_page(-1, "")
    assert caught.value.violations[0].field == "page_size"


def test_token_round_trip_and_end() -> None:
    first = parse_page(2, "", ("active",))
    token = next_token(first, 2, has_more=True)
    assert parse_page(2, token, ("active",)).offset == 2
    assert next_token(first, 2, has_more=False) == ""


@pytest.mark.parametrize("token", ["garbage", "eyJvIjogMX0"])
def test_foreign_or_malformed_token_is_invalid(token: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_page(2, token)


def test_token_for_other_filters_is_rejected() -> None:
    token = next_token(parse_page(2, "", ("active",)), 2, has_more=True)
    with pytest.raises(InvalidArgument, match="other filters"):
        parse_page(2, token, ("suspended",))
