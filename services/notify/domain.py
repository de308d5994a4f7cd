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


def for_case_action(tracking_id: str, action: str, institution: str, note: str) -> Message | None:
    """The institution's actions the reporter hears about. `note` is the public note the
    institution wrote for the reporter (never anyone's identity)."""
    detail = f" {note.strip()}" if note.strip() else ""
    if action == "responded":
        return Message(
            "institution_responded", f"{institution} menanggapi laporan {tracking_id}:{detail}"
        )
    if action == "info_requested":
        return Message(
            "information_requested",
            f"{institution} meminta informasi tambahan untuk laporan {tracking_id}:{detail} "
            "Balas melalui kanal LAPOR! dengan kode tindak lanjut Anda.",
        )
    if action == "resolved":
        return Message(
            "complaint_resolved",
            f"Laporan {tracking_id} telah ditindaklanjuti oleh {institution}:{detail} "
            "Konfirmasi atau tolak hasilnya dengan kode tindak lanjut Anda.",
        )
    if action in ("confirmed", "auto_closed"):
        return Message(
            "complaint_closed", f"Laporan {tracking_id} telah selesai. Terima kasih telah melapor."
        )
    if action in ("verified", "forwarded"):  # the holder after the action: who has it now
        return forwarded(tracking_id, institution)
    if action == "not_authority":
        return Message(
            "complaint_not_authority",
            f"Laporan {tracking_id} bukan kewenangan instansi yang terhubung dengan LAPOR! "
            f"dan ditutup oleh admin LAPOR!.{detail}",
        )
    if action == "archived":
        return Message(
            "complaint_archived", f"Laporan {tracking_id} diarsipkan oleh admin LAPOR!.{detail}"
        )
    return None
