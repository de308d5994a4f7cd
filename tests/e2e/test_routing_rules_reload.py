"""Routing rules change without a restart; a bad file is refused and the old rules stay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lapor.v1 import officer_pb2 as pb

from services.routing.domain.rules import DEFAULT_RULES_FILE
from services.stack.supervisor import Stack
from tests.e2e.officer_support import Officers, admin, submit
from tests.support import eventually

POTHOLE = {"region_code": "51.08"}  # the default report of tests.support: a pothole


def test_rule_reload_takes_effect_without_restart(
    fresh_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    shipped = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    rules.write_text(shipped, encoding="utf-8")
    stack = fresh_stack(
        env={
            "routing": {
                "LAPOR_ROUTING_RULES_FILE": str(rules),
                "LAPOR_ROUTING_RULES_POLL_SECONDS": "0.2",
            }
        }
    )
    routing = stack.services["routing"].popen.pid
    with Officers(stack) as api:
        before = api.routed(submit(stack, **POTHOLE))
        assert before.institution.id == "pemda-51.08/dpupr"

        edited = shipped.replace('version = "', 'version = "edited-').replace(
            'to = "unit:dpupr"', 'to = "government"'
        )
        rules.write_text(edited, encoding="utf-8")  # picked up by the file watcher

        def routed_to_government() -> pb.Report | None:
            report = api.routed(submit(stack, **POTHOLE))
            return report if report.institution.id == "pemda-51.08" else None

        after = eventually(routed_to_government, timeout=30, what="the edited rule")
        assert after.routing.rules_version.startswith("edited-")
        assert after.routing.rule.startswith("rule:jalan-dpupr@edited-")

        rules.write_text(edited + "\n[[rule]]\nname = 'broken'\ntopic = 'jalan'\n", "utf-8")
        refused = api.admin.ReloadRules(pb.ReloadRulesRequest(), metadata=admin(), timeout=5)
        assert not refused.reloaded and "broken" in refused.error
        assert refused.version.startswith("edited-")
        still = api.routed(submit(stack, **POTHOLE))
        assert still.institution.id == "pemda-51.08"
    assert stack.services["routing"].popen.pid == routing  # never restarted
    assert stack.services["routing"].popen.poll() is None
