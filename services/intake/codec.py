"""Translation between intake's domain and the lapor.v1 protobuf messages."""

from __future__ import annotations

from datetime import datetime

from lapor.v1 import common_pb2, events_pb2

from services.common.ids import new_event_id
from services.common.outbox import OutboxMessage
from services.common.pbtime import timestamp
from services.common.topics import COMPLAINTS_RECEIVED, REPORTER_ACTIONS
from services.intake.domain import Channel, Classification, Complaint, Privacy, Status

CHANNELS = {
    common_pb2.CHANNEL_WEB: Channel.WEB,
    common_pb2.CHANNEL_SMS: Channel.SMS,
    common_pb2.CHANNEL_MOBILE_APP: Channel.MOBILE_APP,
    common_pb2.CHANNEL_SOCIAL_MEDIA: Channel.SOCIAL_MEDIA,
    common_pb2.CHANNEL_INSTITUTION_SYSTEM: Channel.INSTITUTION_SYSTEM,
}
PRIVACIES = {
    common_pb2.PRIVACY_PUBLIC: Privacy.PUBLIC,
    common_pb2.PRIVACY_CONFIDENTIAL: Privacy.CONFIDENTIAL,
    common_pb2.PRIVACY_ANONYMOUS: Privacy.ANONYMOUS,
}
CLASSIFICATIONS = {
    common_pb2.CLASSIFICATION_ASPIRATION: Classification.ASPIRATION,
    common_pb2.CLASSIFICATION_COMPLAINT: Classification.COMPLAINT,
    common_pb2.CLASSIFICATION_INFORMATION_REQUEST: Classification.INFORMATION_REQUEST,
}
STATUS_PB = {
    Status.RECEIVED: common_pb2.COMPLAINT_STATUS_RECEIVED,
    Status.ROUTED: common_pb2.COMPLAINT_STATUS_ROUTED,
    Status.IN_VERIFICATION: common_pb2.COMPLAINT_STATUS_IN_VERIFICATION,
    Status.IN_PROGRESS: common_pb2.COMPLAINT_STATUS_IN_PROGRESS,
    Status.FOLLOWED_UP: common_pb2.COMPLAINT_STATUS_FOLLOWED_UP,
    Status.CLOSED: common_pb2.COMPLAINT_STATUS_CLOSED,
    Status.ESCALATED: common_pb2.COMPLAINT_STATUS_ESCALATED,
}
COLOUR_PB = {
    "red": common_pb2.STATUS_COLOUR_RED,
    "yellow": common_pb2.STATUS_COLOUR_YELLOW,
    "green": common_pb2.STATUS_COLOUR_GREEN,
}
CHANNEL_PB = {v: k for k, v in CHANNELS.items()}
PRIVACY_PB = {v: k for k, v in PRIVACIES.items()}
CLASSIFICATION_PB = {v: k for k, v in CLASSIFICATIONS.items()}


def received_event(c: Complaint) -> OutboxMessage:
    """ComplaintReceived carries no reporter identity, whatever the privacy."""
    event = events_pb2.ComplaintReceived(
        meta=common_pb2.EventMeta(
            event_id=new_event_id(),
            tracking_id=c.tracking_id,
            occurred_at=timestamp(c.received_at),
            producer="intake",
        ),
        channel=CHANNEL_PB[c.channel],
        privacy=PRIVACY_PB[c.privacy],
        classification=CLASSIFICATION_PB[c.classification],
        title=c.title,
        body=c.body,
        region_code=c.region_code,
        reporter_reachable=c.reachable,
        category=c.category,
        named_institution_id=c.named_institution_id,
    )
    return OutboxMessage(
        event.meta.event_id, COMPLAINTS_RECEIVED, c.tracking_id, event.SerializeToString()
    )


def privacy_raised_event(tracking_id: str, privacy: Privacy, at: datetime) -> OutboxMessage:
    """ReporterAction{action: privacy_raised}: the new privacy, nothing about the reporter."""
    event = events_pb2.ReporterAction(
        meta=common_pb2.EventMeta(
            event_id=new_event_id(),
            tracking_id=tracking_id,
            occurred_at=timestamp(at),
            producer="intake",
        ),
        action="privacy_raised",
        privacy=privacy.value,
    )
    return OutboxMessage(
        event.meta.event_id, REPORTER_ACTIONS, tracking_id, event.SerializeToString()
    )
