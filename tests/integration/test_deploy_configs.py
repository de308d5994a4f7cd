"""The deployment configuration under deploy/ stays consistent with the code.

* every YAML file parses (needs PyYAML: skipped when it is not installed);
* the Grafana dashboard and the alert rules use only metrics, labels and label values the
  services really export (read from the code: prometheus_client calls in services/);
* the Kubernetes manifests agree with the settings the services read;
* the network policies let in what each Service exposes (and nothing else) and let out
  DNS, Kafka and MongoDB at the configured addresses, and intake's webhook;
* with `promtool` on PATH (Debian package `prometheus`): the rules pass `promtool check
  rules`, their unit tests pass `promtool test rules`, the Prometheus config passes
  `promtool check config` and every dashboard query is valid PromQL.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = ROOT / "services"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "lapor-overview.json"
KUBERNETES = DEPLOY / "kubernetes"
README = DEPLOY / "README.md"
SERVICE_NAMES = ("intake", "routing", "sla", "notify")

# What prometheus_client exposes for each kind of metric, as suffixes of the defined name
# (a Counter's defined name loses its "_total" first, as prometheus_client does).
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Summary": ("", "_count", "_sum", "_created"),
}
BUILTIN_SERIES = {"up"}  # added by Prometheus itself to every target
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every series
# Labels whose exact-match values must appear as string literals in services/.
CHECKED_VALUES = {"method", "outcome", "topic", "dependency"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@dataclass(frozen=True)
class Metric:
    name: str  # as defined, without a Counter's "_total"
    kind: str
    labels: frozenset[str]


@dataclass(frozen=True)
class Code:
    metrics: dict[str, Metric]
    strings: frozenset[str]


@cache
def code() -> Code:
    metrics: dict[str, Metric] = {}
    strings: set[str] = set()
    for path in sorted(SERVICES.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if kind not in SUFFIXES or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            label_node = node.args[2] if len(node.args) > 2 else None
            for keyword in node.keywords:
                if keyword.arg == "labelnames":
                    label_node = keyword.value
            labels: tuple[str, ...] = ()
            if isinstance(label_node, ast.List | ast.Tuple):
                labels = tuple(
                    e.value
                    for e in label_node.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
            name = first.value.removesuffix("_total") if kind == "Counter" else first.value
            metrics[name] = Metric(name, kind, frozenset(labels))
    return Code(metrics, frozenset(strings))


def resolve(series: str) -> Metric | None:
    """The metric of the code that exposes `series`, or None."""
    for metric in code().metrics.values():
        for suffix in SUFFIXES[metric.kind]:
            if series == metric.name + suffix:
                return metric
    return None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"(?<![\w:$.])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_SELECTOR = re.compile(r"(?<![\w:])(lapor_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def problems_in(expr: str) -> list[str]:
    """What in a PromQL expression does not match the metrics the code exports."""
    problems: list[str] = []
    bare = _STRING.sub('""', expr)
    for variable in GRAFANA_VARIABLES:
        bare = bare.replace(variable, "")
    names = {n for n in _NAME.findall(bare) if n.startswith("lapor_")}
    if not names and not any(re.search(rf"\b{b}\b", bare) for b in BUILTIN_SERIES):
        problems.append("uses no lapor_ metric")
    used: list[Metric] = []
    for name in sorted(names):
        metric = resolve(name)
        if metric is None:
            problems.append(f"{name} is not exported by services/")
        else:
            used.append(metric)
    for series, body in _SELECTOR.findall(expr):
        metric = resolve(series)
        if metric is None:
            continue
        allowed = metric.labels | TARGET_LABELS | ({"le"} if series.endswith("_bucket") else set())
        for label, op, value in _MATCHER.findall(body):
            if label not in allowed:
                problems.append(f"{series} has no label {label!r}")
            elif op == "=" and label in CHECKED_VALUES and value not in code().strings:
                problems.append(f"{series}{{{label}={value!r}}}: no such value in services/")
            elif label == "code" and op in ("=", "!=", "=~", "!~"):
                for part in value.split("|"):
                    if part and part not in grpc.StatusCode.__members__:
                        problems.append(f"{series}: {part!r} is not a gRPC status code")
    known = set().union(*(m.labels for m in used)) | TARGET_LABELS | {"le"}
    for group in _GROUPING.findall(bare):
        for label in (g.strip() for g in group.split(",")):
            if label and label not in known:
                problems.append(f"grouping by {label!r}, which none of its metrics has")
    return problems


# --- reading the files ---------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_yaml_all(path: Path) -> list[Any]:
    yaml = pytest.importorskip("yaml")
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _alert_exprs_without_yaml(text: str) -> dict[str, str]:
    """alert name -> expr, read from alerts.yml without a YAML library (the file keeps to
    `- alert: Name` followed by `expr: <one line>` or `expr: |` with an indented block)."""
    lines = text.splitlines()
    found: dict[str, str] = {}
    alert = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^\s*-\s+alert:\s*(\S+)\s*$", line):
            alert = m.group(1)
        elif (m := re.match(r"^(\s*)expr:\s*(.*)$", line)) and alert is not None:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in ("|", "|-", "|+", ">", ">-", ">+"):
                block: list[str] = []
                while i + 1 < len(lines) and (
                    not lines[i + 1].strip()
                    or len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent
                ):
                    i += 1
                    block.append(lines[i])
                width = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                sep = "\n" if rest.startswith("|") else " "
                rest = sep.join(b[width:] for b in block).strip()
            elif rest[:1] in ("'", '"'):
                rest = rest[1:-1]
            found[alert] = rest
            alert = None
        i += 1
    return found


def alert_exprs() -> dict[str, str]:
    text = ALERTS.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:
        return _alert_exprs_without_yaml(text)
    doc = yaml.safe_load(text)
    return {
        r["alert"]: str(r["expr"]).strip()
        for g in doc["groups"]
        for r in g["rules"]
        if "alert" in r
    }


def dashboard_panels() -> list[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for panel in panels:
            out.append(panel)
            out.extend(walk(panel.get("panels", [])))
        return out

    return walk(json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"])


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


# --- (a) YAML parses ---------------------------------------------------------------------


def test_deploy_has_the_expected_files() -> None:
    expected = [
        "README.md",
        "Dockerfile",
        "kubernetes/namespace.yaml",
        "kubernetes/configmap.yaml",
        "kubernetes/secret.example.yaml",
        "kubernetes/networkpolicy.yaml",
        *(f"kubernetes/{name}.yaml" for name in SERVICE_NAMES),
        "prometheus/prometheus.yml",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
        "grafana/lapor-overview.json",
    ]
    assert [f for f in expected if not (DEPLOY / f).is_file()] == []


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_yaml_all(path), f"{path} holds no document"


# --- (b) the Grafana dashboard --------------------------------------------------------------


def test_the_code_exports_the_metrics_the_checks_rely_on() -> None:
    for series in (
        "lapor_serving",
        "lapor_dependency_up",
        "lapor_grpc_requests_total",
        "lapor_grpc_request_duration_seconds_bucket",
        "lapor_events_consumed_total",
        "lapor_intake_group_commit_size_bucket",
        "lapor_sla_detection_lag_seconds_bucket",
    ):
        assert resolve(series) is not None, series
    assert resolve("lapor_serving_total") is None  # a Gauge has no _total
    assert resolve("lapor_grpc_requests_bucket") is None  # a Counter has no buckets
    assert problems_in("sum by (chanel) (rate(lapor_intake_complaints_submitted_total[5m]))")
    assert problems_in('lapor_events_consumed_total{outcome="dead_letered"}')
    assert problems_in('lapor_grpc_requests_total{code!~"OK|INVALID"}')
    assert not problems_in("sum by (le) (rate(lapor_sla_detection_lag_seconds_bucket[5m]))")


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = dashboard_panels()
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    for panel in panels:
        if panel.get("type") == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_dashboard_covers_the_overview() -> None:
    exprs = " ".join(e for _title, e in dashboard_exprs())
    for series in (
        "lapor_intake_complaints_submitted_total",
        'lapor_grpc_request_duration_seconds_bucket{method="SubmitComplaint"}',
        "lapor_grpc_requests_total",
        "lapor_intake_group_commit_size_bucket",
        "lapor_events_consumed_total",
        "lapor_outbox_published_total",
        "lapor_dependency_up",
        "lapor_serving",
        "lapor_sla_warnings_total",
        "lapor_sla_breaches_total",
        "lapor_sla_escalations_total",
        "lapor_sla_detection_lag_seconds_bucket",
    ):
        assert series in exprs, f"no panel shows {series}"


@pytest.mark.parametrize("title,expr", dashboard_exprs(), ids=[t for t, _e in dashboard_exprs()])
def test_dashboard_queries_use_exported_metrics(title: str, expr: str) -> None:
    assert problems_in(expr) == [], f"panel {title!r}: {expr}"


# --- (c) the alert rules --------------------------------------------------------------------


def test_alerts_cover_the_failure_modes() -> None:
    exprs = alert_exprs()
    joined = " ".join(exprs.values())
    assert len(exprs) >= 8
    for fragment in (
        "lapor_serving == 0",
        "lapor_dependency_up == 0",
        'code!~"OK|INVALID_ARGUMENT|NOT_FOUND"',
        'lapor_grpc_request_duration_seconds_bucket{method="SubmitComplaint"}',
        'lapor_events_consumed_total{outcome="dead_lettered"}',
        "lapor_outbox_relay_errors_total",
        "increase(lapor_sla_escalations_total[1h])",
        "lapor_sla_detection_lag_seconds_bucket",
        "max by (job) (lapor_sla_sweep_last_success_timestamp_seconds)",
        "sum by (job, lease) (lapor_lease_held) == 0",
        "sum by (job, lease) (lapor_lease_held) > 1",
        *(f'absent(up{{job="{service}"}})' for service in SERVICE_NAMES),
    ):
        assert fragment in joined, f"no alert on {fragment}"


@pytest.mark.parametrize("alert", sorted(alert_exprs()))
def test_alert_exprs_use_exported_metrics(alert: str) -> None:
    expr = alert_exprs()[alert]
    assert problems_in(expr) == [], f"{alert}: {expr}"


def test_alert_reader_without_yaml_agrees_with_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    with_yaml = {
        r["alert"]: " ".join(str(r["expr"]).split()) for g in doc["groups"] for r in g["rules"]
    }
    without = _alert_exprs_without_yaml(ALERTS.read_text(encoding="utf-8"))
    assert {k: " ".join(v.split()) for k, v in without.items()} == with_yaml


def test_every_alert_has_severity_and_guidance() -> None:
    (doc,) = load_yaml_all(ALERTS)
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            annotations = rule["annotations"]
            assert annotations["summary"].strip(), rule["alert"]
            assert "First:" in annotations["description"], f"{rule['alert']}: what to do first?"


def test_alert_unit_tests_cover_at_least_four_alerts() -> None:
    tested = set(re.findall(r"alertname:\s*(\w+)", ALERT_TESTS.read_text(encoding="utf-8")))
    assert tested <= set(alert_exprs()), tested - set(alert_exprs())
    assert len(tested) >= 4


# --- Kubernetes manifests agree with the code -----------------------------------------------


def code_settings() -> set[str]:
    """LAPOR_* settings the services read (the embedded stack and the CLI aside)."""
    names: set[str] = set()
    for path in SERVICES.rglob("*.py"):
        if path.relative_to(SERVICES).parts[0] in ("stack", "cli"):
            continue
        names.update(re.findall(r"\bLAPOR_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    return names


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_yaml_all(path):
            if "kind" in doc and "metadata" in doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def test_readme_documents_every_setting_and_topic() -> None:
    readme = README.read_text(encoding="utf-8")
    assert sorted(n for n in code_settings() if n not in readme) == []
    for topic in ALL_TOPICS:
        command = rf"kafka-topics\.sh[^`]*?--create[^`]*?--topic {re.escape(topic)}\s"
        assert re.search(command, readme), f"no topic creation command for {topic}"


def test_configmaps_hold_only_settings_the_code_reads() -> None:
    settings = code_settings()
    for (kind, name), doc in manifests().items():
        if kind == "ConfigMap" and name.startswith("lapor-") and name != "lapor-kafka-ca":
            unknown = sorted(k for k in doc["data"] if k not in settings)
            assert unknown == [], f"ConfigMap {name}: {unknown}"


def test_example_secrets_hold_placeholders_only() -> None:
    for doc in load_yaml_all(KUBERNETES / "secret.example.yaml"):
        assert doc["kind"] == "Secret"
        for key, value in {**doc.get("stringData", {}), **doc.get("data", {})}.items():
            assert "CHANGE_ME" in value, f"{doc['metadata']['name']}.{key} looks like a real value"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_deployment_runs_the_service_safely(service: str) -> None:
    docs = manifests()
    deployment = docs[("Deployment", service)]
    config = docs[("ConfigMap", f"lapor-{service}")]["data"]
    grpc_port = int(config["LAPOR_GRPC_PORT"])
    metrics_port = int(config["LAPOR_METRICS_PORT"])
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("lapor/backend:")
    assert container["command"] == ["python", "-m", f"services.{service}"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    # Readiness asks the overall status (""); startup and liveness ask the "liveness"
    # entry, which does not follow MongoDB or Kafka: no outage, however long, restarts pods.
    assert container["readinessProbe"]["grpc"].get("service", "") == ""
    assert container["startupProbe"]["grpc"]["service"] == "liveness"
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    # intake's shutdown adds the access codes' settle (5 s) and the rate limiter's last
    # MongoDB write (up to 10 s) to the others' 5 + 5 + 10 + 5 s.
    assert spec["terminationGracePeriodSeconds"] == (45 if service == "intake" else 30)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]) == {"requests", "limits"}
    refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    assert refs == ["lapor-common", f"lapor-{service}"]
    assert ("lapor-intake-identity" in str(container["envFrom"])) == (service == "intake")
    assert {e["name"] for e in container["env"]} >= {"LAPOR_MONGODB_URI"}
    if service == "intake":
        assert deployment["spec"]["replicas"] >= 2
    svc = docs[("Service", service)]
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
        "grpc": grpc_port,
        "metrics": metrics_port,
    }
    assert docs[("ConfigMap", "lapor-common")]["data"]["LAPOR_GRPC_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_service_has_a_disruption_budget(service: str) -> None:
    """A node drain evicts one pod of a service at a time, and a dependency outage (every
    pod unready) does not block drains; the README lists the budgets."""
    docs = manifests()
    deployment = docs[("Deployment", service)]
    budget = docs[("PodDisruptionBudget", service)]["spec"]
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    replicas = deployment["spec"]["replicas"]
    allowed = budget.get("maxUnavailable", replicas - budget.get("minAvailable", replicas))
    assert 1 <= allowed < replicas, f"{service}: {allowed} disruptions of {replicas} replicas"
    readme = " ".join(README.read_text(encoding="utf-8").split())
    listing = readme[readme.index("and a PodDisruptionBudget:") :][:400]
    assert f"`{service}`" in listing, f"the README does not list {service}'s budget"


def test_access_codes_are_delivered_by_the_webhook() -> None:
    """The shipped ConfigMap never discards access codes ("log") nor keeps them readable
    ("collection"); the URL is a placeholder refused at start; the token comes from the
    Secret the README and secret.example.yaml describe."""
    from services.common.settings import Env, SettingsError
    from services.intake.access_codes import AccessSettings

    docs = manifests()
    config = docs[("ConfigMap", "lapor-intake")]["data"]
    assert config["LAPOR_ACCESS_CODE_SENDER"] == "webhook"
    env = {**config, "LAPOR_ACCESS_CODE_WEBHOOK_TOKEN": "CHANGE_ME"}
    with pytest.raises(SettingsError, match="LAPOR_ACCESS_CODE_WEBHOOK_URL"):
        AccessSettings.from_env(Env(env))
    filled = {**env, "LAPOR_ACCESS_CODE_WEBHOOK_URL": "https://sms-gateway.example.go.id/v1"}
    assert AccessSettings.from_env(Env(filled)).sender == "webhook"
    (container,) = docs[("Deployment", "intake")]["spec"]["template"]["spec"]["containers"]
    token = {e["name"]: e for e in container["env"]}["LAPOR_ACCESS_CODE_WEBHOOK_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (
        "lapor-intake-access-code-webhook",
        "LAPOR_ACCESS_CODE_WEBHOOK_TOKEN",
    )
    example = {d["metadata"]["name"]: d for d in load_yaml_all(KUBERNETES / "secret.example.yaml")}
    assert "LAPOR_ACCESS_CODE_WEBHOOK_TOKEN" in example[ref["name"]]["stringData"]


def acl_table() -> dict[str, tuple[set[str], set[str]]]:
    """Kafka user -> (WRITE topics, READ topics), from the README's ACL table."""
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`lapor-[a-z]+`", cells[0]):
            write, read = (set(re.findall(r"`(lapor\.[a-z.]+)`", c)) for c in cells[1:3])
            rows[cells[0].strip("`")] = (write, read)
    return rows


def test_the_redrive_user_may_write_every_consumed_topic() -> None:
    """`services.common.redrive` sends a dead letter back to the topic it was consumed from,
    which no service's own user may write: the README's operator user must."""
    acls = acl_table()
    services = {f"lapor-{name}" for name in SERVICE_NAMES}
    assert services <= set(acls), sorted(acls)
    consumed = set().union(*(acls[user][1] for user in services))
    assert consumed == set(ALL_TOPICS)
    for user in services:
        write, read = acls[user]
        assert not write & read, f"{user} writes a topic it reads: {write & read}"
    assert acls["lapor-ops"][0] >= consumed, consumed - acls["lapor-ops"][0]
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert "--allow-principal User:lapor-ops --operation Write" in readme
    assert "LAPOR_KAFKA_SASL_USERNAME=lapor-ops" in readme
    assert "services.common.redrive" in readme


def declared_readiness(service: str) -> str:
    """The `readiness=` a service's bootstrap hands to the runtime (the default: both)."""
    tree = ast.parse((SERVICES / service / "bootstrap.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "readiness":
            assert isinstance(node.value, ast.Name), service
            return node.value.id
    return "MONGODB_AND_KAFKA"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_manifest_and_readme_say_what_readiness_needs(service: str) -> None:
    """intake, routing and sla serve their APIs without Kafka (their events wait in the
    outbox); notify, which has no API, needs both. The manifests' comments and the README
    say the same as the code."""
    expected = {"intake": "MONGODB_ONLY", "routing": "MONGODB_ONLY", "sla": "MONGODB_ONLY"}
    declared = declared_readiness(service)
    assert declared == expected.get(service, "MONGODB_AND_KAFKA")
    manifest = (KUBERNETES / f"{service}.yaml").read_text(encoding="utf-8")
    comment = " ".join(
        line.strip().lstrip("#").strip() for line in manifest.splitlines() if "#" in line
    )
    if declared == "MONGODB_ONLY":
        assert "SERVING once MongoDB is connected" in comment
        assert f"a Kafka outage leaves {service} SERVING" in comment
    else:
        assert "SERVING once MongoDB and Kafka are connected" in comment
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert "**MongoDB** for intake, routing and sla, **MongoDB and Kafka** for notify" in readme


def test_dockerfile_builds_the_image_the_manifests_run() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "python:3.11-slim" in dockerfile
    # The locked runtime packages only (tests/unit/test_lock_file.py checks the lock), never
    # requirements.txt's ranges nor the embedded stack, whose launcher stays out as well.
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
    assert not re.search(r"pip install[^\n]*requirements(-embedded)?\.txt", dockerfile)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert "services/stack" in ignored
    assert "grpc_tools.protoc" in dockerfile
    assert "PYTHONPATH=/app:/app/gen" in dockerfile
    assert re.search(r"^USER (?!root|0\b)", dockerfile, re.M), "the image must not run as root"


# --- network policies -------------------------------------------------------------------------

# Service ports no policy opens, on purpose: notify's gRPC serves health and reflection only,
# which kubelet's probes reach from the node (never subject to network policies).
CLOSED_ON_PURPOSE = {("notify", "grpc")}
# Which policy opens which port of which service: "nothing else" in the test below.
EXPECTED_INGRESS = {
    ("intake", "grpc"): {"intake-from-channels", "officer-apis-from-gateway"},
    ("routing", "grpc"): {"officer-apis-from-gateway"},
    ("sla", "grpc"): {"officer-apis-from-gateway"},
    **{(service, "metrics"): {"metrics-from-prometheus"} for service in SERVICE_NAMES},
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def network_policies() -> list[dict[str, Any]]:
    policies = [d for (kind, _), d in manifests().items() if kind == "NetworkPolicy"]
    assert policies, "no NetworkPolicy in deploy/kubernetes"
    return policies


def pods() -> dict[str, tuple[dict[str, str], list[dict[str, Any]]]]:
    """Deployment name -> (its pods' labels, its container's ports)."""
    found = {}
    for (kind, name), doc in manifests().items():
        if kind == "Deployment":
            template = doc["spec"]["template"]
            (container,) = template["spec"]["containers"]
            found[name] = (template["metadata"]["labels"], container["ports"])
    return found


def policy_rules(direction: str, labels: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(policy name, rule) of every `ingress` or `egress` rule that applies to a pod."""
    kind = direction.capitalize()
    return [
        (policy["metadata"]["name"], rule)
        for policy in network_policies()
        if kind in policy["spec"]["policyTypes"] and selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get(direction) or []
    ]


def rule_opens(rule: dict[str, Any], port: dict[str, Any]) -> bool:
    """Whether a rule's ports include a container port (by name or number; no ports: all)."""
    return "ports" not in rule or any(
        entry["port"] in (port.get("name"), port["containerPort"])
        and entry.get("protocol", "TCP") == port.get("protocol", "TCP")
        for entry in rule["ports"]
    )


def opened_by(labels: dict[str, str], port: dict[str, Any]) -> set[str]:
    return {name for name, rule in policy_rules("ingress", labels) if rule_opens(rule, port)}


def test_network_policies_deny_everything_by_default() -> None:
    kustomization = (KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8")
    assert re.search(r"^\s*-\s*networkpolicy\.yaml\s*$", kustomization, re.M)
    policies = network_policies()
    for policy in policies:
        assert policy["metadata"]["namespace"] == "lapor", policy["metadata"]["name"]
        assert policy["spec"]["policyTypes"], policy["metadata"]["name"]
    deny = [
        p["metadata"]["name"]
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny == ["default-deny"]


def test_every_service_port_is_reachable_through_a_network_policy() -> None:
    """Each port a Service exposes is a container port of the pods it selects, and some
    ingress rule lets it in (but the ports closed on purpose)."""
    deployments = pods()
    checked = set()
    for (kind, name), svc in manifests().items():
        if kind != "Service":
            continue
        targets = [
            (deployment, ports)
            for deployment, (labels, ports) in deployments.items()
            if selects({"matchLabels": svc["spec"]["selector"]}, labels)
        ]
        assert targets, f"Service {name} selects no pod"
        for deployment, ports in targets:
            labels = deployments[deployment][0]
            for service_port in svc["spec"]["ports"]:
                target = service_port.get("targetPort", service_port["port"])
                (port,) = [p for p in ports if target in (p["name"], p["containerPort"])]
                checked.add((deployment, port["name"]))
                opened = opened_by(labels, port)
                if (deployment, port["name"]) in CLOSED_ON_PURPOSE:
                    assert opened == set(), f"{deployment} {port['name']}: drop the exception"
                else:
                    assert opened, f"Service {name} port {port['name']}: no policy lets it in"
    assert checked == set(EXPECTED_INGRESS) | CLOSED_ON_PURPOSE


def test_network_policies_let_in_nothing_else() -> None:
    """Every ingress rule names its peers and ports, opens only ports the selected pods
    have, and the policies open each service's ports to the expected callers only."""
    deployments = pods()
    for policy in network_policies():
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("ingress") or []:
            assert rule.get("from") and rule.get("ports"), f"{name}: a rule open to all"
            for peer in rule["from"]:
                assert "ipBlock" not in peer, f"{name}: ingress by address ({peer})"
                assert peer.get("namespaceSelector") or peer.get("podSelector"), name
            for entry in rule["ports"]:
                selected = [
                    ports
                    for labels, ports in deployments.values()
                    if selects(policy["spec"]["podSelector"], labels)
                ]
                assert selected, f"{name} selects no pod"
                for ports in selected:
                    assert entry["port"] in {p["name"] for p in ports}, f"{name}: {entry}"
    opened = {
        (deployment, port["name"]): opened_by(labels, port)
        for deployment, (labels, ports) in deployments.items()
        for port in ports
    }
    assert {k: v for k, v in opened.items() if v} == EXPECTED_INGRESS


def egress_allows(labels: dict[str, str], port: int, protocol: str, namespace: str = "") -> bool:
    """Whether some egress rule lets a pod reach `port` (in `namespace`, when given)."""
    for _, rule in policy_rules("egress", labels):
        if not rule_opens(rule, {"containerPort": port, "protocol": protocol}):
            continue
        if "to" not in rule:  # every destination
            return True
        for peer in rule["to"]:
            selector = peer.get("namespaceSelector") or {}
            if not namespace or selects(selector, {"kubernetes.io/metadata.name": namespace}):
                return True
    return False


def in_cluster_addresses(hosts: str) -> set[tuple[str, int]]:
    """(namespace, port) of `host.<service>.<namespace>.svc[...]:port` addresses."""
    found = set()
    for host, port in re.findall(r"([A-Za-z0-9.-]+):(\d+)", hosts):
        labels = host.split(".")
        assert "svc" in labels, f"{host}: not an in-cluster address; adapt this test"
        found.add((labels[labels.index("svc") - 1], int(port)))
    return found


def test_network_policies_let_out_what_the_services_use() -> None:
    """DNS, the Kafka brokers of configmap.yaml and the MongoDB members of the example
    Secret, from every pod of the namespace (a one-off outbox replay pod too); HTTPS, for the
    access-code webhook, from intake only."""
    common = manifests()[("ConfigMap", "lapor-common")]["data"]
    kafka = in_cluster_addresses(common["LAPOR_KAFKA_BOOTSTRAP_SERVERS"])
    uris = " ".join(
        value
        for doc in load_yaml_all(KUBERNETES / "secret.example.yaml")
        if doc["metadata"]["name"] == "lapor-mongodb"
        for value in doc["stringData"].values()
    )
    mongodb = in_cluster_addresses(" ".join(re.findall(r"@([^/]+)/", uris)))
    assert kafka and mongodb
    replay = {"app.kubernetes.io/part-of": "lapor", "app.kubernetes.io/component": "outbox-replay"}
    pod_labels = {name: labels for name, (labels, _) in pods().items()}
    for name, labels in {**pod_labels, "outbox-replay": replay}.items():
        assert egress_allows(labels, 53, "UDP") and egress_allows(labels, 53, "TCP"), name
        for namespace, port in kafka | mongodb:
            assert egress_allows(labels, port, "TCP", namespace), f"{name} -> {namespace}:{port}"
        assert egress_allows(labels, 443, "TCP") == (name == "intake"), name


# --- (d) promtool ---------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not on PATH (Debian: apt-get install prometheus)")
    return subprocess.run(
        [binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str((PROMETHEUS / "prometheus.yml").relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, (_title, expr) in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


_METRIC_ROW = re.compile(r"^\| `(lapor_\w+)` \|[^|]+\| (\w+) \|([^|]*)\|", re.MULTILINE)
_KINDS = {"counter": "Counter", "gauge": "Gauge", "histogram": "Histogram", "summary": "Summary"}


def test_the_metrics_table_lists_every_metric_with_its_type_and_labels() -> None:
    """deploy/README.md "Monitoring" has one row per metric the code defines: the name as
    exposed (a counter with ``_total``), its type and its labels (each in backticks)."""
    rows = {name: (kind, labels) for name, kind, labels in _METRIC_ROW.findall(README.read_text())}
    defined = {
        (m.name + "_total" if m.kind == "Counter" else m.name): m for m in code().metrics.values()
    }
    assert sorted(set(defined) - set(rows)) == [], "metrics without a row"
    assert sorted(set(rows) - set(defined)) == [], "rows for metrics the code does not define"
    for name, metric in defined.items():
        kind, labels = rows[name]
        assert _KINDS.get(kind) == metric.kind, f"{name}: documented as {kind}"
        # The label names in backticks; the values some rows list follow in parentheses.
        names = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", labels)))
        assert names == set(metric.labels), f"{name}: labels {sorted(names)}"
