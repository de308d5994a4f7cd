"""Which status events the reporter hears about, and in what words (Indonesian)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    template: str
    text: str


def forwarded(tracking_id: str, institution: str) -> Message:
    return Message(
        "complaint_forwarded",
        f"Laporan {tracking_id} telah diteruskan ke {institution}. "
        "Pantau tindak lanjutnya dengan nomor laporan ini.",
    )


def escalated(tracking_id: str) -> Message:
    return Message(
        "complaint_escalated",
        f"Laporan {tracking_id} belum selesai dalam 60 hari dan diteruskan ke Ombudsman RI.",
    )


def breached(tracking_id: str, clock: str) -> Message | None:
    if clock != "first_response":
        return None
    return Message(
        "first_response_overdue",
        f"Instansi belum menanggapi laporan {tracking_id} dalam batas waktu. Laporan Anda tetap kami pantau.",
    )
