"""The one train/validation split of the shared MMLU-Pro data, by question id.

Every trainer and every replay figure uses this split, so validation numbers never see training
questions. 20% of question ids (by a stable hash, not Python's salted hash()) are validation.
"""

from __future__ import annotations

import hashlib

VALIDATION_FRACTION_PERCENT = 20


def is_validation(question_id: int | str) -> bool:
    digest = hashlib.sha1(f"mmlu-pro:{question_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < VALIDATION_FRACTION_PERCENT
