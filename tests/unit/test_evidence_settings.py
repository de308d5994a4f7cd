"""The evidence upload cap, the file limit and the orphan sweep's settings: defaults, overrides, and a
malformed value stopping intake with the setting's name."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.settings import Env, SettingsError
from services.intake.reporter_wiring import ReporterSettings


def test_defaults() -> None:
    s = ReporterSettings.from_env(Env({}))
    assert s.evidence.max_concurrent_uploads == 8
    assert s.evidence.max_files == 20
    assert s.evidence_sweep.grace == timedelta(hours=1)
    assert s.evidence_sweep.interval_seconds == 600


def test_overrides() -> None:
    s = ReporterSettings.from_env(
        Env(
            {
                "LAPOR_EVIDENCE_MAX_CONCURRENT_UPLOADS": "3",
                "LAPOR_EVIDENCE_MAX_FILES": "5",
                "LAPOR_EVIDENCE_ORPHAN_GRACE_SECONDS": "5",
                "LAPOR_EVIDENCE_SWEEP_INTERVAL_SECONDS": "0.5",
            }
        )
    )
    assert s.evidence.max_concurrent_uploads == 3
    assert s.evidence.max_files == 5
    assert s.evidence_sweep.grace == timedelta(seconds=5)
    assert s.evidence_sweep.interval_seconds == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LAPOR_EVIDENCE_MAX_CONCURRENT_UPLOADS", "0"),
        ("LAPOR_EVIDENCE_MAX_CONCURRENT_UPLOADS", "many"),
        ("LAPOR_EVIDENCE_MAX_FILES", "0"),
        ("LAPOR_EVIDENCE_MAX_FILES", "1001"),
        ("LAPOR_EVIDENCE_MAX_FILES", "twenty"),
        ("LAPOR_EVIDENCE_ORPHAN_GRACE_SECONDS", "0"),
        ("LAPOR_EVIDENCE_SWEEP_INTERVAL_SECONDS", "soon"),
    ],
)
def test_malformed_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ReporterSettings.from_env(Env({name: value}))
