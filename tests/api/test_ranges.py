"""The Range header's single-range parsing (apps/api/ranges.py); served over HTTP in tests/serving."""

from __future__ import annotations

import pytest

from apps.api.ranges import ByteRange, RangeNotSatisfiable, requested_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=990-2000", ByteRange(990, 999)),
        ("bytes=10-", ByteRange(10, 999)),
        ("bytes=-1", ByteRange(999, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes = 5-6", ByteRange(5, 6)),
        ("bytes=9-3", None),
        ("bytes=-", None),
        ("bytes=1-2,4-5", None),
        ("pages=1-2", None),
        ("bytes=x-y", None),
    ],
)
def test_requested_range(header, expected):
    assert requested_range(header, 1000) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable):
        requested_range(header, size)
