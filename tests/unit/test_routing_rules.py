"""Routing rules as data: parsing, checking against the directory, deciding, reloading."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.common.regions import RegionTable, default_regions
from services.routing.domain.classifier import Classification, TopicClassifier
from services.routing.domain.directory import Directory, Institution
from services.routing.domain.rules import DEFAULT_RULES_FILE, RulesError, RuleSet
from services.routing.rules_source import RulesSource


@pytest.fixture(scope="module")
def regions() -> RegionTable:
    return default_regions()


@pytest.fixture(scope="module")
def directory(regions: RegionTable) -> Directory:
    return Directory.seed(regions)


@pytest.fixture(scope="module")
def shipped(directory: Directory) -> RuleSet:
    return RuleSet.load(DEFAULT_RULES_FILE, directory)


def sure(topic: str | None, confidence: float = 0.95) -> Classification:
    scores = ((topic, confidence),) if topic else ()
    return Classification(topic, confidence, scores, ("term",) if topic else ())


@pytest.mark.parametrize(
    ("topic", "region", "expected", "rule"),
    [
        ("adminduk", "51.08", "pemda-51.08/disdukcapil", "adminduk-disdukcapil"),
        ("adminduk", "51", "pemda-51/disdukcapil", "adminduk-disdukcapil"),
        ("bpjs_kesehatan", "51.08", "nasional-bpjs-kesehatan", "bpjs-kesehatan"),
        ("listrik", "94.04", "nasional-pln", "listrik-pln"),
        ("jalan", "32.73", "pemda-32.73/dpupr", "jalan-dpupr"),
        ("sampah", "51.71", "pemda-51.71/dlh", "sampah-dlh"),
        ("bbm_lpg", "35.78", "pemda-35.78/disperindag", "bbm-lpg-disperindag"),
        ("bbm_lpg", "35", "nasional-pertamina", "bbm-lpg-pertamina"),  # by region level
    ],
)
def test_shipped_rules_route_topic_and_region(
    shipped: RuleSet,
    directory: Directory,
    regions: RegionTable,
    topic: str,
    region: str,
    expected: str,
    rule: str,
) -> None:
    decision = shipped.route(regions.get(region), sure(topic), directory)
    assert decision.institution_id == expected
    assert decision.rule == f"rule:{rule}@{shipped.version}"
    assert decision.rules_version == shipped.version
    assert decision.scores and decision.matched_terms == ("term",)


def test_unsure_or_unknown_goes_to_the_verification_queue(
    shipped: RuleSet, directory: Directory, regions: RegionTable
) -> None:
    low = shipped.route(regions.get("51.08"), sure("jalan", 0.3), directory)
    assert (low.institution_id, low.rule, low.topic) == (
        "verification-queue",
        "low-confidence",
        "jalan",
    )
    assert shipped.route(regions.get("51.08"), sure(None, 0.0), directory).rule == "no-topic"
    assert shipped.route(None, sure("jalan"), directory).rule == "unknown-region"


def test_a_topic_without_rule_goes_to_the_queue(directory: Directory, regions: RegionTable) -> None:
    rules = RuleSet.parse({"version": "1", "rule": []}, directory)
    assert rules.route(regions.get("51.08"), sure("jalan"), directory).rule == "no-rule"


def test_region_prefixes_and_levels_narrow_a_rule(
    directory: Directory, regions: RegionTable
) -> None:
    rules = RuleSet.parse(
        {
            "version": "2",
            "rule": [
                {"name": "bali-cities", "topic": "jalan", "to": "government", "levels": ["city"], "regions": ["51"]},
                {"name": "rest", "topic": "jalan", "to": "institution:nasional-kemen-pu"},
            ],
        },
        directory,
    )  # fmt: skip
    assert (
        rules.route(regions.get("51.71"), sure("jalan"), directory).institution_id == "pemda-51.71"
    )
    assert rules.route(regions.get("51.08"), sure("jalan"), directory).institution_id == (
        "nasional-kemen-pu"
    )
    assert rules.route(regions.get("52.71"), sure("jalan"), directory).institution_id == (
        "nasional-kemen-pu"
    )


def test_reporter_hint_is_recorded_but_does_not_decide(
    shipped: RuleSet, directory: Directory, regions: RegionTable
) -> None:
    decision = shipped.route(regions.get("51.08"), sure("jalan"), directory, hint="nasional-pln")
    assert (decision.institution_id, decision.hint) == ("pemda-51.08/dpupr", "nasional-pln")
    unknown = shipped.route(regions.get("51.08"), sure("jalan"), directory, hint="nowhere")
    assert unknown.hint == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rule": []}, "version"),
        ({"version": "1", "rules": [{"name": "x", "topic": "jalan", "to": "government"}]}, "unknown top-level keys \\['rules'\\]"),
        ({"version": "1"}, "no \\[\\[rule\\]\\] tables"),
        ({"version": "1", "rule": [{"name": "x", "topic": "cuaca", "to": "government"}]}, "unknown topic"),
        ({"version": "1", "rule": [{"name": "x", "topic": "jalan", "to": "unit:nope"}]}, "unknown unit"),
        ({"version": "1", "rule": [{"name": "x", "topic": "jalan", "to": "institution:nasional-x"}]}, "unknown institution"),
        ({"version": "1", "rule": [{"name": "x", "topic": "jalan"}]}, "to must be"),
        ({"version": "1", "rule": [{"name": "x", "topic": "jalan", "to": "government", "levels": ["desa"]}]}, "levels"),
        ({"version": "1", "rule": [{"name": "x", "topic": "jalan", "to": "government", "colour": 1}]}, "unknown keys"),
        ({"version": "1", "rule": [{"name": "x", "topic": "jalan", "to": "government"}] * 2}, "duplicate name"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_naming_the_problem(
    directory: Directory, data: dict[str, object], message: str
) -> None:
    with pytest.raises(RulesError, match=message):
        RuleSet.parse(data, directory)


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_source_reloads_a_changed_file_and_keeps_old_rules_on_a_bad_one(
    tmp_path: Path, directory: Directory
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('version = "a"\n[[rule]]\nname = "j"\ntopic = "jalan"\nto = "unit:dpupr"\n')
    source = RulesSource(path, lambda: directory)
    assert source().version == "a" and source.reload_if_changed() is None
    path.write_text('version = "b"\n[[rule]]\nname = "j"\ntopic = "jalan"\nto = "government"\n')
    _touch_later(path)
    result = source.reload_if_changed()
    assert result is not None and result.reloaded and source().version == "b"
    path.write_text('version = "c"\n[[rule]\n')
    _touch_later(path)
    refused = source.reload_if_changed()
    assert refused is not None and not refused.reloaded and refused.error
    assert source().version == "b" and source.last_error == refused.error
    assert source.reload_if_changed() is None  # the same bad file is not retried in a loop


def test_a_bad_file_at_start_is_an_error(tmp_path: Path, directory: Directory) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("version = ")
    with pytest.raises(RulesError, match=str(path)):
        RulesSource(path, lambda: directory)


def test_classifier_and_rules_together_route_real_reports(
    shipped: RuleSet, directory: Directory, regions: RegionTable
) -> None:
    classifier = TopicClassifier.default()

    def route(title: str, body: str, region: str) -> str:
        return shipped.route(
            regions.get(region), classifier.classify(title, body), directory
        ).institution_id

    assert (
        route("E-KTP blm jd", "sdh 3 bln rekam ektp blm jadi2", "51.08")
        == "pemda-51.08/disdukcapil"
    )
    assert route("Kartu BPJS", "kartu bpjs kesehatan saya tdk aktif pdhl iuran lunas", "31.74") == (
        "nasional-bpjs-kesehatan"
    )
    assert route("Halo", "terima kasih admin", "51.08") == "verification-queue"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('topic = ["jalan", "sampah"]\nto = "government"', "unknown topic"),
        ('topic = "jalan"\nto = "government"\nlevels = [["city"]]', "levels must be"),
        ('topic = "jalan"\nto = "institution:"', "unknown institution"),
    ],
)
def test_a_mistyped_value_is_refused_not_a_crash(
    tmp_path: Path, directory: Directory, rule: str, message: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('version = "a"\n[[rule]]\nname = "j"\ntopic = "jalan"\nto = "government"\n')
    source = RulesSource(path, lambda: directory)
    path.write_text(f'version = "b"\n[[rule]]\nname = "j"\n{rule}\n')
    _touch_later(path)
    refused = source.reload_if_changed()
    assert refused is not None and not refused.reloaded and message in refused.error
    assert source().version == "a"


def test_a_unit_id_without_a_slash_does_not_break_the_rules(directory: Directory) -> None:
    """Stored before unit ids were checked: the rules still load."""
    odd = Institution("upt-pasar", "UPT", "unit", "pemda-51.08", "51.08", ())
    with_odd = Directory([*directory.all(), odd])
    rules = RuleSet.parse(
        {"version": "1", "rule": [{"name": "j", "topic": "jalan", "to": "unit:dpupr"}]}, with_odd
    )
    assert len(rules.rules) == 1


def test_rules_may_name_an_institution_added_at_run_time_across_a_restart(
    tmp_path: Path, directory: Directory, regions: RegionTable
) -> None:
    """At start the stored institutions are not read yet: the file loads, and the check in
    full (recheck, after they are read) passes once the directory has the institution."""
    added = Institution("pemda-51.08/upt-pasar", "UPT Pasar", "unit", "pemda-51.08", "51.08", ())
    path = tmp_path / "rules.toml"
    path.write_text(
        'version = "a"\n[[rule]]\nname = "pasar"\ntopic = "pungli"\n'
        'to = "institution:pemda-51.08/upt-pasar"\n'
    )
    current = {"directory": directory}
    source = RulesSource(path, lambda: current["directory"])  # the seed only, as at start
    assert source().version == "a"
    # Before the stored institutions are read, the rule resolves to nothing: the queue.
    assert source().route(regions.get("51.08"), sure("pungli"), directory).rule == "no-rule"
    current["directory"] = Directory([*directory.all(), added])  # registry.load()
    asyncio.run(source.recheck())
    assert source.last_error == ""
    decision = source().route(regions.get("51.08"), sure("pungli"), current["directory"])
    assert decision.institution_id == "pemda-51.08/upt-pasar"


def test_a_file_refused_for_a_missing_institution_is_tried_again_when_the_directory_moves(
    tmp_path: Path, directory: Directory
) -> None:
    """A replica whose directory copy is behind refuses a rule naming a new unit; once its
    copy refreshes, the same file loads without anyone touching it."""
    path = tmp_path / "rules.toml"
    path.write_text('version = "a"\n[[rule]]\nname = "j"\ntopic = "jalan"\nto = "government"\n')
    current = {"directory": directory}
    source = RulesSource(path, lambda: current["directory"])
    path.write_text(
        'version = "b"\n[[rule]]\nname = "pasar"\ntopic = "pungli"\n'
        'to = "institution:pemda-51.08/upt-pasar"\n'
    )
    _touch_later(path)
    refused = source.reload_if_changed()
    assert refused is not None and "unknown institution" in refused.error
    assert source.reload_if_changed() is None  # nothing moved: not retried in a loop
    current["directory"] = Directory(list(directory.all()))  # a refresh without the unit
    again = source.reload_if_changed()
    assert again is not None and not again.reloaded and source().version == "a"
    added = Institution("pemda-51.08/upt-pasar", "UPT Pasar", "unit", "pemda-51.08", "51.08", ())
    current["directory"] = Directory([*directory.all(), added])
    loaded = source.reload_if_changed()
    assert loaded is not None and loaded.reloaded and source().version == "b"
    assert source.last_error == ""
