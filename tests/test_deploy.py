"""The deployment files (deploy/) describe what the code does: every setting they name is a real
one, the replicas share Milvus and Redis, the proxy knows every replica and moves on from one
that refuses connections, and the probes ask routes the server has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bots.http import create_app
from bots.slack.settings import SlackSettings
from qa.settings import Settings

from .conftest import ROOT

DEPLOY = ROOT / "deploy"
_KNOWN = {f"VERBATIM_{name.upper()}" for name in Settings.model_fields}
_KNOWN |= {f"SLACK_{name.upper()}" for name in SlackSettings.model_fields}
_KNOWN |= {"FORWARDED_ALLOW_IPS"}  # uvicorn's own


def _ours(environment: dict[str, Any]) -> set[str]:
    return {k for k in environment if k.startswith(("VERBATIM_", "SLACK_", "FORWARDED_"))}


def test_compose_runs_two_replicas_over_shared_services_behind_a_proxy() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    replicas = {
        name: service
        for name, service in services.items()
        if service.get("command", [])[:2] == ["verbatim", "serve"]
    }
    assert len(replicas) == 2 and {"milvus", "redis", "proxy", "indexer"} <= set(services)
    for name, service in replicas.items():
        env = service["environment"]
        assert _ours(env) <= _KNOWN, _ours(env) - _KNOWN
        assert env["VERBATIM_VECTOR_STORE"] == "milvus", name
        assert env["VERBATIM_STATE_URL"].startswith("redis://redis:"), name
        assert {"milvus", "redis"} <= set(service["depends_on"]), name
        assert "index:/data/index" in service["volumes"]  # the version every replica loads
        assert service["environment"]["VERBATIM_INDEX_DIR"] == "/data/index"
    indexer = services["indexer"]
    assert indexer["command"][:2] == ["verbatim", "index"]
    assert indexer["environment"] == next(iter(replicas.values()))["environment"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstream = set(re.findall(r"^\s*server (\S+):8000", nginx, re.M))
    assert upstream == set(replicas)
    assert re.search(r"proxy_next_upstream error", nginx)


def test_kubernetes_probes_ask_routes_the_server_has(tmp_path: Path) -> None:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "verbatim.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in documents}
    assert {"ConfigMap", "Deployment", "Service", "CronJob"} <= set(kinds)
    config = kinds["ConfigMap"]["data"]
    assert set(config) <= _KNOWN, set(config) - _KNOWN
    assert int(config["VERBATIM_WORKERS"]) == 1 or config["VERBATIM_STATE_URL"].startswith(
        "redis://"
    )  # `serve --workers N` refuses to run without shared state
    deployment = kinds["Deployment"]["spec"]
    assert deployment["replicas"] >= 2
    container = deployment["template"]["spec"]["containers"][0]
    routes = {getattr(route, "path", "") for route in create_app(Settings(home=tmp_path)).routes}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    port = container["ports"][0]["containerPort"]
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == port
    assert container["command"][-1] == str(port)
