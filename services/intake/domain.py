"""Intake's domain: what a report is, the rules a submission must meet, and what it
becomes once received. No I/O here."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.common.errors import Violation
from services.common.status import Colour
from services.intake.phone import NotAPhoneNumber, to_e164


class Channel(StrEnum):
    WEB = "web"
    SMS = "sms"
    MOBILE_APP = "mobile_app"
    SOCIAL_MEDIA = "social_media"
    INSTITUTION_SYSTEM = "institution_system"


class Privacy(StrEnum):
    PUBLIC = "public"
    CONFIDENTIAL = "confidential"
    ANONYMOUS = "anonymous"


class Classification(StrEnum):
    ASPIRATION = "aspiration"
    COMPLAINT = "complaint"
    INFORMATION_REQUEST = "information_request"


class Status(StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"
    IN_VERIFICATION = "in_verification"
    IN_PROGRESS = "in_progress"
    FOLLOWED_UP = "followed_up"
    CLOSED = "closed"
    ESCALATED = "escalated"


TITLE_MAX = 200
BODY_MAX = 10_000
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
REGION_CODE = re.compile(r"^\d{2}(\.\d{2})?$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


@dataclass(frozen=True)
class Contact:
    name: str = ""
    phone: str = ""
    email: str = ""
    handle: str = ""  # social media account, "platform:@handle"

    @property
    def empty(self) -> bool:
        return not (
            self.name.strip() or self.phone.strip() or self.email.strip() or self.handle.strip()
        )


@dataclass(frozen=True)
class SmsOrigin:
    sender: str
    text: str


@dataclass(frozen=True)
class SocialOrigin:
    platform: str
    handle: str
    post_id: str


@dataclass(frozen=True)
class InstitutionOrigin:
    source_system: str
    reference: str


@dataclass(frozen=True)
class SubmitComplaint:
    """The command a channel sends. Enum fields are None when the value is unknown."""

    channel: Channel | None
    privacy: Privacy | None
    classification: Classification | None
    title: str
    body: str
    region_code: str
    reporter: Contact = field(default_factory=Contact)
    idempotency_key: str = ""
    sms: SmsOrigin | None = None
    social: SocialOrigin | None = None
    institution: InstitutionOrigin | None = None
    category: str = ""
    named_institution_id: str = ""


CATEGORY_MAX = 100
INSTITUTION_ID = re.compile(r"^[a-z0-9][a-z0-9._/\-]{0,99}$")


def validate(cmd: SubmitComplaint, known_region: Callable[[str], bool]) -> list[Violation]:
    v: list[Violation] = []
    if cmd.channel is None:
        v.append(Violation("channel", f"must be one of {', '.join(Channel)}"))
    if cmd.privacy is None:
        v.append(Violation("privacy", f"must be one of {', '.join(Privacy)}"))
    if cmd.classification is None:
        v.append(Violation("classification", f"must be one of {', '.join(Classification)}"))
    _text(v, "title", cmd.title, TITLE_MAX)
    _text(v, "body", cmd.body, BODY_MAX)
    region = cmd.region_code.strip()
    if not region:
        v.append(Violation("region_code", "must not be empty"))
    elif not REGION_CODE.match(region):
        v.append(Violation("region_code", "must be a Kemendagri code like 51 or 51.08"))
    elif not known_region(region):
        v.append(Violation("region_code", f"{region} is not a province or regency/city code"))
    if cmd.idempotency_key and not IDEMPOTENCY_KEY.match(cmd.idempotency_key):
        v.append(Violation("idempotency_key", "must be 1-128 characters of A-Z a-z 0-9 . _ : -"))
    if cmd.privacy is not Privacy.ANONYMOUS:
        r = cmd.reporter
        if r.email and not EMAIL.match(r.email.strip()):
            v.append(Violation("reporter.email", "is not an e-mail address"))
        if r.phone:
            try:
                to_e164(r.phone)
            except NotAPhoneNumber as exc:
                v.append(Violation("reporter.phone", str(exc)))
        if len(r.name) > 200:
            v.append(Violation("reporter.name", "must be at most 200 characters"))
    if len(cmd.category.strip()) > CATEGORY_MAX:
        v.append(Violation("category", f"must be at most {CATEGORY_MAX} characters"))
    named = cmd.named_institution_id.strip()
    if named and not INSTITUTION_ID.match(named):
        v.append(
            Violation(
                "named_institution_id", "must be a directory id like nasional-pln or pemda-51.08"
            )
        )
    return v


def _text(v: list[Violation], name: str, value: str, limit: int) -> None:
    text = value.strip()
    if not text:
        v.append(Violation(name, "must not be empty"))
    elif len(text) > limit:
        v.append(Violation(name, f"must be at most {limit} characters, got {len(text)}"))


def fingerprint(cmd: SubmitComplaint) -> str:
    """What makes two submissions 'the same request' for idempotency: the report, not the
    reporter. The fingerprint is stored in clear, so no trace of the identity goes into it
    (a hash of a phone number is brute-forced in minutes)."""
    canonical = json.dumps(
        [
            cmd.channel,
            cmd.privacy,
            cmd.classification,
            cmd.title.strip(),
            cmd.body.strip(),
            cmd.region_code.strip(),
            # only when given, so reports stored before these fields keep their fingerprint
            *(
                [cmd.category.strip(), cmd.named_institution_id.strip()]
                if cmd.category.strip() or cmd.named_institution_id.strip()
                else []
            ),
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Complaint:
    """A received report. `reporter` is None for anonymous reports: it is never kept."""

    tracking_id: str
    channel: Channel
    privacy: Privacy
    classification: Classification
    title: str
    body: str
    region_code: str
    reporter: Contact | None
    received_at: datetime
    idempotency_scope: str
    fingerprint: str
    follow_up_hash: str = ""
    dedupe_keys: tuple[str, ...] = ()
    category: str = ""
    named_institution_id: str = ""
    # The channel client that submitted it ("" for a trusted in-process caller): only a
    # retry from the same client is answered with a new follow-up code.
    client_id: str = ""

    @property
    def reachable(self) -> bool:
        return self.reporter is not None and bool(self.reporter.phone or self.reporter.email)


def receive(
    cmd: SubmitComplaint,
    tracking_id: str,
    now: datetime,
    *,
    idempotency_scope: str = "",
    follow_up_hash: str = "",
    dedupe_keys: tuple[str, ...] = (),
    client_id: str = "",
) -> Complaint:
    """The complaint a valid (and normalised) command becomes. Anonymous: no contact kept."""
    assert cmd.channel and cmd.privacy and cmd.classification, "validate() first"
    reporter = None
    if cmd.privacy is not Privacy.ANONYMOUS and not cmd.reporter.empty:
        r = cmd.reporter
        phone = to_e164(r.phone) if r.phone.strip() else ""
        reporter = Contact(r.name.strip(), phone, r.email.strip(), r.handle.strip())
    key = cmd.idempotency_key or f"none:{tracking_id}"
    return Complaint(
        tracking_id=tracking_id,
        channel=cmd.channel,
        privacy=cmd.privacy,
        classification=cmd.classification,
        title=cmd.title.strip(),
        body=cmd.body.strip(),
        region_code=cmd.region_code.strip(),
        reporter=reporter,
        received_at=now,
        idempotency_scope=idempotency_scope or f"{cmd.channel}:{key}",
        fingerprint=fingerprint(cmd),
        follow_up_hash=follow_up_hash,
        dedupe_keys=dedupe_keys,
        category=cmd.category.strip(),
        named_institution_id=cmd.named_institution_id.strip(),
        client_id=client_id,
    )


def colour_for(status: Status, first_response_given: bool = False) -> Colour:
    """LAPOR!'s colours: red until the institution follows up, yellow while in process,
    green once followed up or closed."""
    if status in (Status.FOLLOWED_UP, Status.CLOSED):
        return Colour.GREEN
    if status is Status.IN_PROGRESS or first_response_given:
        return Colour.YELLOW
    return Colour.RED


def shows_content_publicly(privacy: Privacy) -> bool:
    return privacy is Privacy.PUBLIC
