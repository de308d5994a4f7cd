"""The file name officers are given for a piece of evidence: never the reporter's.

The reporter names the file they upload, and a name such as ``KTP_Budi_Santoso_0812345.jpg``
says who they are; for a confidential or anonymous report that must not reach the
institution. So everything officers receive (EvidenceService's listing and download, hence the
`lapor officer evidence` CLI's file) carries a name built only from what intake knows:
``lampiran-<evidence id>.<extension>``, the extension being the usual one of the content type
sniffed at upload (``ALLOWED`` in services/intake/evidence.py). The reporter's own API
(ReporterService) keeps showing the name they chose.
"""

from __future__ import annotations

import string

from services.intake.evidence import ALLOWED, normalise_type

PREFIX = "lampiran"  # "attachment"
UNKNOWN_EXTENSION = "bin"  # a listed type that is not an allowed one (a damaged listing)
_HEX = frozenset(string.hexdigits.lower())


def officer_file_name(evidence_id: str, content_type: str) -> str:
    """``lampiran-<evidence id>.<ext>``, e.g. ``lampiran-65f0c0ffee0000000000a001.jpg``.

    Unique within a report (the evidence id), and only hex digits, a hyphen and a dot: a plain
    file name on any system."""
    ident = "".join(c for c in evidence_id.strip().lower() if c in _HEX) or "0"
    extensions = ALLOWED.get(normalise_type(content_type))
    return f"{PREFIX}-{ident}.{extensions[0] if extensions else UNKNOWN_EXTENSION}"
