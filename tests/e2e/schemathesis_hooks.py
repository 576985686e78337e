"""Schemathesis hooks: the ``bsn`` string format, so generated BSNs pass the elfproef as real ones do.

Loaded by the fuzz runs through ``SCHEMATHESIS_HOOKS`` (see `tests/e2e/api_fuzz.py`).
"""

import schemathesis
from hypothesis import strategies as st


@st.composite
def _bsn(draw: st.DrawFn) -> str:
    digits = draw(st.lists(st.integers(0, 9), min_size=8, max_size=8))
    total = sum(weight * d for weight, d in zip(range(9, 1, -1), digits, strict=True))
    check = total % 11  # 9*d1 + ... + 2*d8 - d9 = 0 (mod 11)
    if check == 10 or (check == 0 and not any(digits)):
        digits, check = [9, 9, 9, 9, 9, 0, 0, 1], 9  # 999990019, an RvIG test number
    return "".join(map(str, digits)) + str(check)


schemathesis.openapi.format("bsn", _bsn())
