"""Each channel's own fields and rules, and how they fold into a submission.

SMS: the sender becomes the reporter's phone (E.164), the text the body, and the title
(when none is given) the text's first words. Social media: the account becomes the
reporter's handle. Institution systems: (source system, reference) is the report's
identity, so the same reference twice is the same report. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import replace

from services.common.errors import Violation
from services.intake import sms
from services.intake.domain import Channel, SubmitComplaint
from services.intake.phone import NotAPhoneNumber, to_e164

SOURCE_SYSTEM = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
REFERENCE = re.compile(r"^[\x21-\x7e]{1,128}$")
HANDLE = re.compile(r"^@?[A-Za-z0-9._-]{1,64}$")
PLATFORM = re.compile(r"^[a-z0-9_-]{1,32}$")
POST_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
SMS_TITLE_WORDS = 60  # characters of the text that make an SMS report's title


def prepare(cmd: SubmitComplaint) -> tuple[SubmitComplaint, list[Violation]]:
    """The command with its channel fields folded in, and the channel rules it breaks."""
    v: list[Violation] = []
    for name, value, channel in (
        ("sms", cmd.sms, Channel.SMS),
        ("social_media", cmd.social, Channel.SOCIAL_MEDIA),
        ("institution_reference", cmd.institution, Channel.INSTITUTION_SYSTEM),
    ):
        if cmd.channel is channel and value is None:
            v.append(Violation(name, f"is required for channel {channel}"))
        elif cmd.channel is not channel and value is not None:
            v.append(Violation(name, f"is only for channel {channel}"))
    if v:
        return cmd, v
    phone = _e164_or_none(cmd.reporter.phone) if cmd.reporter.phone.strip() else None
    if phone:  # one reporter, however the number is written (invalid ones: validate())
        cmd = replace(cmd, reporter=replace(cmd.reporter, phone=phone))
    if cmd.channel is Channel.SMS:
        return _sms(cmd, v), v
    if cmd.channel is Channel.SOCIAL_MEDIA:
        return _social(cmd, v), v
    if cmd.channel is Channel.INSTITUTION_SYSTEM:
        _institution(cmd, v)
    return cmd, v


def _sms(cmd: SubmitComplaint, v: list[Violation]) -> SubmitComplaint:
    assert cmd.sms is not None
    try:
        sender = to_e164(cmd.sms.sender)
    except NotAPhoneNumber as exc:
        v.append(Violation("sms.sender", str(exc)))
        sender = ""
    text = cmd.sms.text.strip()
    if not text:
        v.append(Violation("sms.text", "must not be empty"))
    elif sms.segments(text) > sms.MAX_SEGMENTS:
        v.append(
            Violation(
                "sms.text",
                f"must fit {sms.MAX_SEGMENTS} concatenated SMS ({sms.MAX_GSM7_SEPTETS} GSM-7 "
                f"or {sms.MAX_UCS2_UNITS} UCS-2 characters), got {sms.segments(text)} parts",
            )
        )
    if cmd.body.strip() and cmd.body.strip() != text:
        v.append(Violation("body", "must be empty for channel sms: the text is sms.text"))
    title = cmd.title.strip() or _title_from(text)
    reporter = cmd.reporter
    if sender and reporter.phone.strip() and _e164_or_none(reporter.phone) != sender:
        v.append(Violation("reporter.phone", "must be empty or the SMS sender for channel sms"))
    if sender:
        reporter = replace(reporter, phone=sender)
    return replace(cmd, title=title, body=text, reporter=reporter)


def _social(cmd: SubmitComplaint, v: list[Violation]) -> SubmitComplaint:
    post = cmd.social
    assert post is not None
    platform = post.platform.strip().lower()
    if not PLATFORM.match(platform):
        v.append(Violation("social_media.platform", "must be 1-32 of a-z 0-9 _ - (e.g. x)"))
    handle = post.handle.strip()
    if not HANDLE.match(handle):
        v.append(
            Violation(
                "social_media.handle", "must be 1-64 of A-Z a-z 0-9 . _ - (a leading @ optional)"
            )
        )
    if not POST_ID.match(post.post_id.strip()):
        v.append(Violation("social_media.post_id", "must be 1-128 of A-Z a-z 0-9 . _ : / -"))
    account = f"{platform}:@{handle.removeprefix('@')}"
    return replace(cmd, reporter=replace(cmd.reporter, handle=account))


def _institution(cmd: SubmitComplaint, v: list[Violation]) -> None:
    ref = cmd.institution
    assert ref is not None
    if not SOURCE_SYSTEM.match(ref.source_system):
        v.append(
            Violation(
                "institution_reference.source_system", "must be 2-64 of a-z 0-9 . _ - (lower case)"
            )
        )
    if not REFERENCE.match(ref.reference):
        v.append(
            Violation("institution_reference.reference", "must be 1-128 printable ASCII characters")
        )


REFERENCE_SCOPE = f"{Channel.INSTITUTION_SYSTEM}:refh:"  # then "<source system>:<keyed hash>"
PLAIN_REFERENCE_SCOPE = f"{Channel.INSTITUTION_SYSTEM}:ref:"  # before 2026-11-23: see store
POST_SCOPE = f"{Channel.SOCIAL_MEDIA}:post:"  # then the post's keyed hash
FORGOTTEN_SCOPE = "forgotten:"  # then the tracking id: a scope given up (store)


def reference_scope(source_system: str, reference_key: str) -> str:
    return f"{REFERENCE_SCOPE}{source_system}:{reference_key}"


def idempotency_scope(cmd: SubmitComplaint, post_key: str = "", reference_key: str = "") -> str:
    """The scope that makes retries the same report; "" for the default (channel + key).

    Institution systems: their reference, as a keyed hash (`reference_key`: the original
    system's reference leads to the reporter there). Social media without an idempotency
    key: the post (as a keyed hash, `post_key`, since a post id leads to the account)."""
    if cmd.channel is Channel.INSTITUTION_SYSTEM and cmd.institution is not None:
        return reference_scope(cmd.institution.source_system, reference_key)
    if cmd.channel is Channel.SOCIAL_MEDIA and not cmd.idempotency_key and post_key:
        return f"{POST_SCOPE}{post_key}"
    return ""


def _title_from(text: str) -> str:
    first_line = text.splitlines()[0] if text else ""
    if len(first_line) <= SMS_TITLE_WORDS:
        return first_line
    cut = first_line[:SMS_TITLE_WORDS].rsplit(" ", 1)[0]
    return f"{cut}…"


def _e164_or_none(raw: str) -> str | None:
    try:
        return to_e164(raw)
    except NotAPhoneNumber:
        return None
