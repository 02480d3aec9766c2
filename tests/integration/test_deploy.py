"""deploy/, checked without a container engine.

The compose file by Debian's docker-compose (v1) and by today's Compose spec (compose-spec);
the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate) and Strimzi's
kinds against the fields we use of them; Prometheus config, rules and alert tests by promtool;
and what the files promise against the code: topics, principals and consumer groups, metric
names and ports, the dashboard's SQL on the read models, and every running process's /metrics
through `promtool check metrics`.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import certifi
import faust
import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from events.log import (
    KafkaAuth,
    current_auth,
    durable_producer_config,
    group_consumer,
    use_auth,
)
from events.topics import COMMAND_TOPICS, DEAD_LETTERS, EVENT_TOPICS
from projections import transport, worker
from projections.decider import Incidents, Points
from services.cli import PROCESS_PORTS, load_settings
from services.settings import Settings
from tests.stack import RunningStack

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "gridgov.json"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # the oldest we claim and the newest the schemas know

PARTITIONS = Settings.model_fields["partitions"].default
METRICS_PORT = Settings.model_fields["projector_metrics_port"].default
PORTS = {"ingest": Settings.model_fields["ingest_port"].default,
         "query": Settings.model_fields["query_port"].default,
         **{f"projector-{p}": METRICS_PORT + PROCESS_PORTS[p] for p in worker.PROJECTIONS},
         "decider": METRICS_PORT + PROCESS_PORTS["decider"],
         "points-decider": METRICS_PORT + PROCESS_PORTS["points_decider"]}
GROUPS = {f"gridgov-{p}" for p in worker.PROJECTIONS} | \
    {f"gridgov-{d.name}-decider" for d in (Incidents, Points)}
ALL_TOPICS = {t.name for t in (*EVENT_TOPICS, DEAD_LETTERS, *COMMAND_TOPICS)}


def run(*argv: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def manifests() -> list[dict[str, Any]]:
    return [d for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for d in documents(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] == kind]


def acls() -> set[tuple[str, str, str, str]]:
    """(principal, operation, resource type, name) from deploy/compose/kafka/acls.txt."""
    found = set()
    for line in (COMPOSE / "kafka" / "acls.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            who, operations, kind, name = line.split()
            found |= {(who, op, kind, name) for op in operations.split(",")}
    return found


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it, with a .env made by secrets.sh."""
    env = tmp_path_factory.mktemp("compose") / ".env"
    env.write_text(run("sh", str(COMPOSE / "secrets.sh")).stdout)
    valid = run("docker-compose", "-f", str(COMPOSE / "compose.yaml"), "--env-file", str(env),
                "config", "-q")
    assert valid.returncode == 0, valid.stderr
    resolved = run("docker-compose", "-f", str(COMPOSE / "compose.yaml"), "--env-file", str(env),
                   "config")
    assert resolved.returncode == 0, resolved.stderr
    config: dict[str, Any] = yaml.safe_load(resolved.stdout)
    return config


def gridgov_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run a long-lived `gridgov` process."""
    return {name: s for name, s in compose["services"].items()
            if str(s.get("image", "")).startswith("gridgov:") and s.get("restart") != "no"}


# -- compose ------------------------------------------------------------------------------

def test_the_compose_file_is_valid_for_docker_compose_and_for_the_compose_spec(
    compose: dict[str, Any],
) -> None:
    PyCompose.from_json(json.dumps(compose))  # raises ValueError naming the offending field
    assert {"kafka-1", "kafka-2", "kafka-3", "kafka-setup", "postgres", "migrate", "ingest",
            "query", "prometheus", "grafana"} <= set(compose["services"])


def test_the_brokers_form_a_replicated_kraft_cluster_that_denies_by_default(
    compose: dict[str, Any],
) -> None:
    brokers = {name: s for name, s in compose["services"].items()
               if re.fullmatch(r"kafka-\d", name)}
    assert sorted(s["environment"]["NODE_ID"] for s in brokers.values()) == ["1", "2", "3"]
    start = (COMPOSE / "kafka" / "start.sh").read_text(encoding="utf-8")
    for setting in ("process.roles=broker,controller", "default.replication.factor=3",
                    "min.insync.replicas=2", "unclean.leader.election.enable=false",
                    "allow.everyone.if.no.acl.found=false", "auto.create.topics.enable=false",
                    "controller.quorum.voters=1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"):
        assert re.search(rf"(?m)^{re.escape(setting)}$", start), setting
    protocols = re.search(r"(?m)^listener\.security\.protocol\.map=(.*)$", start)
    assert protocols and all(p.split(":")[1].startswith("SASL_")
                             for p in protocols.group(1).split(","))
    assert run("sh", "-n", str(COMPOSE / "kafka" / "start.sh")).returncode == 0
    assert run("sh", "-n", str(COMPOSE / "kafka" / "setup.sh")).returncode == 0


def test_every_gridgov_process_authenticates_as_its_own_principal(compose: dict[str, Any]) -> None:
    principals = {who for who, *_ in acls()}
    users: dict[str, str] = {}
    for name, service in gridgov_services(compose).items():
        env = {k: str(v) for k, v in service["environment"].items()}
        assert env["GRIDGOV_KAFKA_USERNAME"] in principals, name
        assert env["GRIDGOV_KAFKA_PASSWORD"], name
        assert users.setdefault(env["GRIDGOV_KAFKA_USERNAME"], name) == name  # not shared
        settings = Settings.from_env(env)  # the settings parse, secrets accepted
        assert settings.kafka_security_protocol.startswith("SASL")
        assert settings.host == "0.0.0.0"  # noqa: S104 - in a container, Prometheus scrapes it
    setup = compose["services"]["kafka-setup"]["environment"]
    assert {f"PASSWORD_{p.upper().replace('-', '_')}" for p in principals} <= set(setup)


def test_only_the_processes_that_open_personal_data_hold_the_master_key(
    compose: dict[str, Any],
) -> None:
    """ingest seals, query masks, reveals and erases, the admin's commands erase: each gets
    GRIDGOV_MASTER_KEY (a valid 256-bit key from .env); projectors and deciders carry only
    ciphertext and do not. Kubernetes: the same, from the gridgov-secrets Secret."""
    holders = {"ingest", "query", "admin-cli"}
    for name, service in compose["services"].items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        assert ("GRIDGOV_MASTER_KEY" in env) == (name in holders), name
        if name in holders:
            assert Settings.from_env(env).master_key == env["GRIDGOV_MASTER_KEY"], name
    assert compose["services"]["admin-cli"]["environment"]["GRIDGOV_KAFKA_USERNAME"] == \
        "admin-cli"
    for deployment in of_kind("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        name = deployment["metadata"]["name"]
        assert ("GRIDGOV_MASTER_KEY" in env) == (name in holders), name
        if name in holders:
            assert env["GRIDGOV_MASTER_KEY"]["valueFrom"]["secretKeyRef"] == {
                "name": "gridgov-secrets", "key": "data-master-key"}
        assert not [e for e in env if "MASTER" in e and e != "GRIDGOV_MASTER_KEY"], name


def test_a_services_principal_reaches_every_kafka_client_it_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GRIDGOV_KAFKA_* (as the deployments set them) -> kafka-python, the projectors' aiokafka
    and the deciders' faust."""
    for name, value in {"TOKEN_SECRET": "a-token-secret-long-enough-0123456789-abcdefghij",
                        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_USERNAME": "ingest",
                        "KAFKA_PASSWORD": "scram-password-9f3a", "KAFKA_CA_FILE": certifi.where(),
                        "KAFKA_BOOTSTRAP": "gridgov-kafka-bootstrap:9093"}.items():
        monkeypatch.setenv(f"GRIDGOV_{name}", value)
    try:
        settings = load_settings()
        auth = current_auth()
        assert (auth.username, auth.password) == ("ingest", "scram-password-9f3a")
        assert "scram-password" not in repr(settings) + repr(auth)
        producer = durable_producer_config(settings.kafka_bootstrap or "")
        assert (producer["security_protocol"], producer["sasl_mechanism"],
                producer["sasl_plain_username"], producer["ssl_cafile"]) == \
            ("SASL_SSL", "SCRAM-SHA-512", "ingest", certifi.where())
        assert producer["acks"] == "all" and producer["enable_idempotence"] is True
        async def projectors_consumer() -> dict[str, Any]:
            kafka = group_consumer(settings.kafka_bootstrap or "", "gridgov-five_have")
            await kafka.stop()  # never started: nothing was opened
            return vars(kafka._client)

        client = asyncio.run(projectors_consumer())
        assert (client["_security_protocol"], client["_sasl_mechanism"],
                client["_sasl_plain_username"], client["_sasl_plain_password"]) == \
            ("SASL_SSL", "SCRAM-SHA-512", "ingest", "scram-password-9f3a")
        assert client["_ssl_context"] is not None
        deciders = transport.credentials(auth)  # what the deciders' faust apps are given
        assert isinstance(deciders, faust.SASLCredentials)
        aiokafka = credentials_to_aiokafka_auth(deciders)
        assert (aiokafka["security_protocol"], aiokafka["sasl_mechanism"],
                aiokafka["sasl_plain_username"]) == ("SASL_SSL", "SCRAM-SHA-512", "ingest")
        assert aiokafka["ssl_context"] is not None
    finally:
        use_auth(KafkaAuth())
    assert transport.credentials(current_auth()) is None  # the embedded broker: PLAINTEXT
    assert "security_protocol" not in durable_producer_config("127.0.0.1:9092")


# -- topics and principals ----------------------------------------------------------------

def test_the_topics_are_the_catalog_with_the_log_of_record_kept_forever() -> None:
    setup = (COMPOSE / "kafka" / "setup.sh").read_text(encoding="utf-8")
    forever = set(re.search(r"for name in (.*); do\n  topic \"\$name\" -1", setup)
                  .group(1).split())  # type: ignore[union-attr]
    assert forever == {t.name for t in (*EVENT_TOPICS, DEAD_LETTERS)}
    assert ALL_TOPICS - forever == {t.name for t in COMMAND_TOPICS}
    assert all(name in setup for name in ALL_TOPICS)
    topics = {d["spec"]["topicName"]: d["spec"] for d in of_kind("KafkaTopic")}
    assert set(topics) == ALL_TOPICS
    for name, spec in topics.items():
        assert (spec["partitions"], spec["replicas"]) == (PARTITIONS, 3), name
        assert spec["config"]["min.insync.replicas"] == 2
        assert spec["config"]["unclean.leader.election.enable"] is False
        assert (spec["config"]["retention.ms"] == -1) == (name in forever), name


def test_the_acls_grant_each_service_its_part_and_no_one_else_writes_the_log() -> None:
    granted = acls()
    strimzi = {(u["metadata"]["name"], op, rule["resource"]["type"], rule["resource"]["name"])
               for u in of_kind("KafkaUser") for rule in u["spec"]["authorization"]["acls"]
               for op in rule["operations"]}
    assert strimzi == granted  # compose and Kubernetes hold the same principals and ACLs
    for user in of_kind("KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert all(r["resource"]["patternType"] == "literal" and r.get("type", "allow") == "allow"
                   for r in user["spec"]["authorization"]["acls"])
    assert {op for _, op, _, _ in granted} <= {"Read", "Write", "Describe"}
    assert {kind for _, _, kind, _ in granted} == {"topic", "group"}

    def writers(topic: str) -> set[str]:
        return {who for who, op, kind, name in granted if op == "Write" and name == topic}

    assert writers("gridgov.incidents") == {"ingest", "decider-incidents"}
    assert writers("gridgov.patrols") == {"ingest"}
    assert writers("gridgov.points") == {"ingest", "decider-points"}
    # break-glass reads and erasures (query), tokens and erasures by command (admin-cli); a
    # promotion with a reason is a break-glass job with a principal of its own
    assert writers("gridgov.audit") == {"query", "admin-cli"}
    assert {(op, name) for who, op, _, name in granted if who == "admin-cli"} == {
        ("Write", "gridgov.audit"), ("Describe", "gridgov.audit")}
    assert {t.name for t in COMMAND_TOPICS} == {
        name for _, op, _, name in granted if op == "Write" and name.startswith("gridgov.commands")}
    assert all(writers(t.name) == {"ingest"} for t in COMMAND_TOPICS)
    assert writers("gridgov.deadletter") == {"projector-archive"}  # the one that parks poison
    assert {op for who, op, _, _ in granted if who == "auditor"} == {"Read", "Describe"}
    assert {name for who, op, _, name in granted if who == "query" and op == "Write"} == {
        "gridgov.audit"}
    assert {name for _, _, kind, name in granted if kind == "group"} == GROUPS


# -- Kubernetes ---------------------------------------------------------------------------

ACL_RULE = {
    "type": "object", "additionalProperties": False, "required": ["resource", "operations"],
    "properties": {
        "resource": {"type": "object", "additionalProperties": False, "required": ["type", "name"],
                     "properties": {"type": {"enum": ["topic", "group", "cluster",
                                                      "transactionalId"]},
                                    "name": {"type": "string"},
                                    "patternType": {"enum": ["literal", "prefix"]}}},
        "operations": {"type": "array", "minItems": 1, "items": {"enum": [
            "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
            "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"]}},
        "type": {"enum": ["allow", "deny"]}, "host": {"type": "string"}}}
CLUSTER_LABEL = {"type": "object", "required": ["labels"], "properties": {"labels": {
    "type": "object", "required": ["strimzi.io/cluster"]}}}
#: the fields of Strimzi's kafka.strimzi.io/v1beta2 kinds that deploy/k8s uses, as Strimzi's
#: CRDs define them (names, types, enums, required); anything else is refused
STRIMZI: dict[str, dict[str, Any]] = {
    "KafkaTopic": {"type": "object", "required": ["metadata", "spec"], "properties": {
        "metadata": CLUSTER_LABEL,
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "topicName": {"type": "string"}, "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {"type": "object"}}}}},
    "KafkaUser": {"type": "object", "required": ["metadata", "spec"], "properties": {
        "metadata": CLUSTER_LABEL,
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "authentication": {"type": "object", "additionalProperties": False,
                               "required": ["type"], "properties": {
                                   "type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}},
            "authorization": {"type": "object", "additionalProperties": False,
                              "required": ["type", "acls"], "properties": {
                                  "type": {"enum": ["simple"]},
                                  "acls": {"type": "array", "items": ACL_RULE}}}}}}},
    "KafkaNodePool": {"type": "object", "required": ["metadata", "spec"], "properties": {
        "metadata": CLUSTER_LABEL,
        "spec": {"type": "object", "additionalProperties": False,
                 "required": ["replicas", "roles", "storage"], "properties": {
                     "replicas": {"type": "integer", "minimum": 0},
                     "roles": {"type": "array", "items": {"enum": ["controller", "broker"]}},
                     "storage": {"type": "object", "required": ["type"], "properties": {
                         "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                         "volumes": {"type": "array", "items": {
                             "type": "object", "additionalProperties": False,
                             "required": ["type"], "properties": {
                                 "id": {"type": "integer", "minimum": 0},
                                 "type": {"enum": ["ephemeral", "persistent-claim"]},
                                 "size": {"type": "string"}, "class": {"type": "string"},
                                 "deleteClaim": {"type": "boolean"},
                                 "kraftMetadata": {"enum": ["shared"]}}}}}},
                     "resources": {"type": "object"}, "jvmOptions": {"type": "object"},
                     "template": {"type": "object"}}}}},
    "Kafka": {"type": "object", "required": ["metadata", "spec"], "properties": {
        "spec": {"type": "object", "additionalProperties": False, "required": ["kafka"],
                 "properties": {
                     "kafka": {"type": "object", "additionalProperties": False,
                               "required": ["listeners"], "properties": {
                                   "version": {"type": "string"},
                                   "metadataVersion": {"type": "string"},
                                   "listeners": {"type": "array", "minItems": 1, "items": {
                                       "type": "object", "required": ["name", "port", "type",
                                                                      "tls"],
                                       "properties": {
                                           "name": {"type": "string",
                                                    "pattern": "^[a-z0-9]{1,11}$"},
                                           "port": {"type": "integer", "minimum": 9092},
                                           "type": {"enum": ["internal", "route", "loadbalancer",
                                                             "nodeport", "ingress",
                                                             "cluster-ip"]},
                                           "tls": {"type": "boolean"},
                                           "authentication": {"type": "object", "properties": {
                                               "type": {"enum": ["tls", "scram-sha-512",
                                                                 "oauth", "custom"]}}}}}},
                                   "authorization": {"type": "object", "required": ["type"],
                                                     "properties": {"type": {"enum": [
                                                         "simple", "opa", "keycloak",
                                                         "custom"]}}},
                                   "config": {"type": "object"},
                                   "metricsConfig": {"type": "object", "required": ["type"],
                                                     "properties": {"type": {"enum": [
                                                         "jmxPrometheusExporter"]}}}}},
                     "entityOperator": {"type": "object", "additionalProperties": False,
                                        "properties": {"topicOperator": {"type": "object"},
                                                       "userOperator": {"type": "object"}}}}}}},
}


def test_the_manifests_validate_against_the_kubernetes_and_strimzi_schemas() -> None:
    kinds: dict[str, int] = {}
    for doc in manifests():
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):
            assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
            jsonschema.validate(doc, STRIMZI[doc["kind"]])
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises with the field
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret",
            "ConfigMap", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"} <= set(kinds)
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_the_kafka_cluster_replicates_and_every_listener_authenticates() -> None:
    (kafka,), (pool,) = of_kind("Kafka"), of_kind("KafkaNodePool")
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled",
                                                "strimzi.io/kraft": "enabled"}
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"controller",
                                                                            "broker"}
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert config["unclean.leader.election.enable"] is False
    assert all(lst["tls"] and lst["authentication"]["type"] == "scram-sha-512"
               for lst in kafka["spec"]["kafka"]["listeners"])
    settings = {d["metadata"]["name"]: d for d in of_kind("ConfigMap")}["gridgov-settings"]
    assert settings["data"]["GRIDGOV_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["data"]["GRIDGOV_KAFKA_BOOTSTRAP"] == "gridgov-kafka-bootstrap:9093"
    assert int(settings["data"]["GRIDGOV_PARTITIONS"]) == PARTITIONS


def test_every_process_has_probes_a_budget_its_principal_and_bounded_scaling() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    budgets = {d["metadata"]["name"]: d for d in of_kind("PodDisruptionBudget")}
    scalers = {d["spec"]["scaleTargetRef"]["name"]: d for d in of_kind("HorizontalPodAutoscaler")}
    users = {u["metadata"]["name"] for u in of_kind("KafkaUser")}
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret")}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        component = name.replace("five-have", "five_have").replace("points-ledger",
                                                                   "points_ledger")
        port = PORTS[component]
        path = "/health" if name in ("ingest", "query") else "/metrics"
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == path, (name, probe)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels
        env = {e["name"]: e for e in container["env"]}
        assert env["GRIDGOV_KAFKA_USERNAME"]["value"] in users
        assert env["GRIDGOV_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == \
            env["GRIDGOV_KAFKA_USERNAME"]["value"]  # the Secret Strimzi's User Operator makes
        for ref in (e["valueFrom"]["secretKeyRef"] for e in container["env"]
                    if "valueFrom" in e and e["valueFrom"]["secretKeyRef"]["name"] in secrets):
            assert ref["key"] in secrets[ref["name"]]["stringData"]
        if name.startswith("projector-"):
            hpa = scalers[name]["spec"]
            assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= PARTITIONS
        elif name.endswith("decider"):
            assert deployment["spec"]["replicas"] == 1
            assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert set(scalers) == {d for d in deployments if d.startswith("projector-")}
    assert {"token-secret", "data-master-key"} <= set(secrets["gridgov-secrets"]["stringData"])


# -- Prometheus ---------------------------------------------------------------------------

def test_the_prometheus_configs_and_rules_pass_promtool() -> None:
    for config in ("prometheus.yml", "prometheus-k8s.yml"):
        checked = run("promtool", "check", "config", config, cwd=PROMETHEUS)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = run("promtool", "check", "rules", *map(str, sorted(PROMETHEUS.glob("rules/*.yml"))))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    alerts = run("promtool", "test", "rules", "alerts.yml", cwd=PROMETHEUS / "tests")
    assert alerts.returncode == 0, alerts.stdout + alerts.stderr


def scraped(config: str) -> dict[str, tuple[str, int]]:
    """job -> (DNS name, port) of a Prometheus config's DNS discovery."""
    jobs = yaml.safe_load((PROMETHEUS / config).read_text(encoding="utf-8"))["scrape_configs"]
    return {job["job_name"]: (sd["names"][0], sd["port"])
            for job in jobs for sd in job.get("dns_sd_configs", [])}


def test_prometheus_scrapes_every_gridgov_process_in_compose_and_kubernetes(
    compose: dict[str, Any],
) -> None:
    in_compose = scraped("prometheus.yml")
    assert set(gridgov_services(compose)) == set(PORTS)
    assert {job: sd for job, sd in in_compose.items() if job in PORTS} == \
        {name: (name, port) for name, port in PORTS.items()}
    in_k8s = scraped("prometheus-k8s.yml")
    headless = {s["metadata"]["name"]: s for s in of_kind("Service")
                if s["spec"].get("clusterIP") == "None"}
    for job, port in PORTS.items():
        name, scraped_port = in_k8s[job]
        service = headless[name.split(".")[0]]
        assert (scraped_port, service["spec"]["ports"][0]["port"]) == (port, port), job


# -- against the running processes and read models ----------------------------------------

def exposition(url: str) -> str:
    answer = httpx.get(url, timeout=10, follow_redirects=True)
    assert answer.status_code == 200, url
    return answer.text


def test_every_running_process_metrics_pass_promtool_check_metrics(stack: RunningStack) -> None:
    urls = stack.info["metrics_urls"]
    assert set(urls) == set(PORTS)
    for name, url in urls.items():
        checked = run("promtool", "check", "metrics", stdin=exposition(url))
        assert checked.returncode == 0 and not checked.stdout.strip(), \
            f"{name}: {checked.stdout}{checked.stderr}"


def sample_names(text: str) -> set[str]:
    """Every sample name a Prometheus exposition can carry, labelled children or not."""
    names = set()
    for kind_line in re.finditer(r"(?m)^# TYPE (\S+) (\S+)$", text):
        name, kind = kind_line.groups()
        names |= {name + s for s in ("_bucket", "_count", "_sum")} if kind == "histogram" \
            else {name}
    return names


def queries() -> tuple[list[str], list[str]]:
    """The PromQL expressions and the SQL of the dashboard, and the alert rules' expressions."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    targets = [t for p in panels for t in p.get("targets", [])]
    rules = [r["expr"] for path in PROMETHEUS.glob("rules/*.yml")
             for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
             for r in g["rules"]]
    return [t["expr"] for t in targets if "expr" in t] + rules, \
        [t["rawSql"] for t in targets if "rawSql" in t]


def test_the_dashboard_and_the_alerts_read_metrics_the_processes_expose(
    stack: RunningStack,
) -> None:
    exposed = set().union(*(sample_names(exposition(url))
                            for url in stack.info["metrics_urls"].values()))
    promql, _ = queries()
    used = {m for expr in promql for m in re.findall(r"\bgridgov_[a-z_]+", expr)}
    assert used and used <= exposed, used - exposed
    provisioned = {d["uid"] for d in yaml.safe_load(
        (COMPOSE / "grafana/provisioning/datasources/gridgov.yaml").read_text())["datasources"]}
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    assert {p["datasource"]["uid"] for p in panels if "datasource" in p} <= provisioned


def test_the_dashboard_sql_runs_on_the_read_models_within_grafanas_grants(
    stack: RunningStack,
) -> None:
    _, statements = queries()
    compose_text = (COMPOSE / "compose.yaml").read_text(encoding="utf-8")
    granted = set(re.search(r"grant select on ([\w, ]+) to grafana", compose_text)
                  .group(1).replace(" ", "").split(","))  # type: ignore[union-attr]
    assert statements
    for statement in statements:
        assert set(re.findall(r"\bfrom ([a-z_]+)(?![\w(])", statement)) <= granted, statement
        concrete = statement.replace("$__timeFrom()", "'2020-01-01T00:00:00Z'") \
            .replace("$__timeTo()", "'2030-01-01T00:00:00Z'")
        assert "$__" not in concrete
        stack.sql(concrete.replace("%", "%%"))  # raises on a table or column we do not have


def test_the_image_holds_the_packages_and_runs_the_gridgov_command() -> None:
    dockerfile = (COMPOSE / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"(?m)^COPY (\w+) \1$", dockerfile))
    assert copied == {"events", "projections", "services"}
    assert re.search(r'(?m)^ENTRYPOINT \["gridgov"\]$', dockerfile)
    assert re.search(r"(?m)^USER \d+$", dockerfile)  # not root
    for name, service in yaml.safe_load(
            (COMPOSE / "compose.yaml").read_text(encoding="utf-8"))["services"].items():
        command = service.get("command")
        if str(service.get("image", "")).startswith("gridgov:") and command:
            assert run(".venv/bin/gridgov", *command, "--help").returncode == 0, \
                f"{name}: gridgov {shlex.join(command)}"
