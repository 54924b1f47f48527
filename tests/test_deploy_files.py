"""The deploy files say what the tests run: `invite-bot serve`, the settings that exist, the probes
that exist. Checked here because no container engine runs on this machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from config import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}


def manifests() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "invite-bot.yaml").read_text()))
    return {document["kind"]: document for document in documents}


def test_the_image_runs_invite_bot_serve_as_a_non_root_user() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["invite-bot"]' in dockerfile
    assert 'CMD ["serve"]' in dockerfile
    user = re.search(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user is not None
    assert user.group(1) not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile
    for name in re.findall(r"\b(BOT_[A-Z_]+|FEISHU_[A-Z_]+)=", dockerfile):
        assert name in SETTINGS, name


def test_serve_is_a_real_subcommand() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert "usage: invite-bot serve" in done.stdout


def test_compose_runs_two_replicas_on_postgresql_behind_a_balancer() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "invite-bot", "balancer"}
    bot = services["invite-bot"]
    assert bot["command"] == ["serve"]
    assert bot["deploy"]["replicas"] == 2
    assert bot["environment"]["BOT_STORE_URL"].startswith("postgresql://invite_bot:")
    assert bot["environment"]["BOT_STORE_URL"].endswith("@postgres:5432/invite_bot")
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in bot
    assert "healthcheck" in services["postgres"]
    assert set(bot["environment"]) <= SETTINGS
    assert "postgres-data" in compose["volumes"]


def test_kubernetes_runs_three_replicas_that_roll_and_survive_disruptions() -> None:
    documents = manifests()
    assert set(documents) == {"Secret", "Deployment", "PodDisruptionBudget", "Service", "Ingress"}
    deployment = documents["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"]["type"] == "RollingUpdate"
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = documents["PodDisruptionBudget"]["spec"]
    assert budget["minAvailable"] == 2
    assert budget["selector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    [container] = deployment["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    secret = documents["Secret"]["stringData"]
    assert set(secret) <= SETTINGS
    assert secret["BOT_STORE_URL"].startswith("postgresql://")
    assert {variable["name"] for variable in container["env"]} <= SETTINGS


def test_systemd_unit_runs_serve() -> None:
    unit = (DEPLOY / "invite-bot.service").read_text()
    assert re.search(r"^ExecStart=\S*invite-bot serve$", unit, re.MULTILINE)


def test_the_deploy_files_raise_the_open_file_limit() -> None:
    unit = (DEPLOY / "invite-bot.service").read_text()
    limit = re.search(r"^LimitNOFILE=(\d+)$", unit, re.MULTILINE)
    assert limit is not None
    assert int(limit.group(1)) >= 65536
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert compose["services"]["invite-bot"]["ulimits"]["nofile"]["soft"] >= 65536


def test_what_the_internet_reaches_is_only_feishu_and_oauth() -> None:
    documents = manifests()
    [rule] = documents["Ingress"]["spec"]["rules"]
    assert {path["path"] for path in rule["http"]["paths"]} == {"/feishu/", "/oauth/"}
    [container] = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    metrics_port = int(env["BOT_METRICS_PORT"])
    assert metrics_port in {port["containerPort"] for port in container["ports"]}
    assert all(port["targetPort"] == "http" for port in documents["Service"]["spec"]["ports"])
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    # In compose only the balancer is published, and it forwards Feishu's and the browsers' paths.
    assert [name for name, service in services.items() if service.get("ports")] == ["balancer"]
    assert services["balancer"]["ports"] == ["8080:8080"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert set(re.findall(r"location (\S+) \{", nginx)) == {"/feishu/", "/oauth/", "/"}
    assert "return 404;" in nginx
