"""The short Indonesian acknowledgement SMS and social-media reporters get back.

It always fits one SMS (160 GSM-7 characters) and never carries the follow-up code: a
social-media reply may be public, and the gateway sends the code on its own, privately.
"""

from __future__ import annotations

from services.intake.domain import Channel
from services.intake.sms import fits_one_sms

# The promise matches sla's first-response clock (services/sla/data/policy.toml: 3 calendar
# days; a unit test holds the two together).
FIRST_RESPONSE_DAYS = 3
TEMPLATE = (
    "LAPOR! Laporan Anda diterima, no. {tracking_id}. Diteruskan ke instansi berwenang; "
    f"tanggapan paling lambat {FIRST_RESPONSE_DAYS} hari. Cek status: lapor.go.id"
)
TEMPLATE_DUPLICATE = (
    "LAPOR! Laporan ini sudah kami terima sebelumnya, no. {tracking_id}. Sedang diproses; "
    "cek status: lapor.go.id"
)
CHANNELS = (Channel.SMS, Channel.SOCIAL_MEDIA)


def acknowledgement(channel: Channel, tracking_id: str, duplicate: bool) -> str:
    if channel not in CHANNELS:
        return ""
    text = (TEMPLATE_DUPLICATE if duplicate else TEMPLATE).format(tracking_id=tracking_id)
    assert fits_one_sms(text), "acknowledgement templates must fit one SMS"
    return text
