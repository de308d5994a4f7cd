"""The public listing's query and its opaque page tokens. Pure: no I/O.

Order is newest first, ties broken by tracking id, so a page token (the last item's
received time and id) continues exactly where the previous page ended, even while new
reports arrive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import ValidationError, Violation
from services.common.status import CaseState
from services.intake.domain import REGION_CODE, Classification

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
CATEGORY_MAX = 100


@dataclass(frozen=True)
class Cursor:
    received_at: datetime
    tracking_id: str


@dataclass(frozen=True)
class PublicQuery:
    region_code: str = ""
    classification: Classification | None = None
    category: str = ""
    state: str = ""
    page_size: int = DEFAULT_PAGE_SIZE
    after: Cursor | None = None

    @property
    def filters_key(self) -> str:
        canonical = json.dumps([self.region_code, self.classification, self.category, self.state])
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_query(
    region_code: str,
    classification: Classification | None,
    category: str,
    state: str,
    page_size: int,
    page_token: str,
) -> PublicQuery:
    v: list[Violation] = []
    region = region_code.strip()
    if region and not REGION_CODE.match(region):
        v.append(Violation("region_code", "must be a Kemendagri code like 51 or 51.08"))
    state = state.strip()
    if state and state not in set(CaseState):
        v.append(Violation("state", f"must be one of {', '.join(CaseState)}"))
    category = category.strip()
    if len(category) > CATEGORY_MAX:
        v.append(Violation("category", f"must be at most {CATEGORY_MAX} characters"))
    if page_size < 0:
        v.append(Violation("page_size", "must not be negative"))
    if v:
        raise ValidationError(v)
    query = PublicQuery(
        region_code=region,
        classification=classification,
        category=category,
        state=state,
        page_size=min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )
    if page_token:
        return PublicQuery(**{**query.__dict__, "after": decode_token(page_token, query)})
    return query


def encode_token(last: Cursor, query: PublicQuery) -> str:
    raw = json.dumps(
        {"t": last.received_at.isoformat(), "i": last.tracking_id, "f": query.filters_key}
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, query: PublicQuery) -> Cursor:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        cursor = Cursor(datetime.fromisoformat(data["t"]), str(data["i"]))
        filters = data["f"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationError([Violation("page_token", "is not a token this API issued")]) from None
    if filters != query.filters_key:
        raise ValidationError(
            [Violation("page_token", "was issued for other filters; start again without it")]
        )
    return cursor
