"""The deployment files parse and say what they should (no container engine here to run them).

- ``infra/compose.yaml``: the six services, images named, ports published on 127.0.0.1 by default, named
  volumes declared, no secret in plain text (only ``${VAR:?...}`` references), every variable listed in
  ``infra/.env.example``, the GPU worker reserving NVIDIA devices.
- ``infra/worker-gpu.Dockerfile``: a CUDA base, the package with its ``.[gpu]`` extras, no secrets.
- ``infra/k8s/gpu-work-pool.json``: a valid Prefect base job template requesting ``nvidia.com/gpu``.
- ``prefect.yaml``: four deployments on the ``cpu`` / ``gpu`` pools, the two schedules, entrypoints that load.
- ``mlflow/serve.sh``: valid bash, loopback by default, the repository's store.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "API_KEY")  # AWS_ACCESS_KEY_ID is a user name
SERVICES = {"postgres", "minio", "minio-init", "mlflow", "prefect-server", "worker-cpu", "worker-gpu"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}`` and ``$$``."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value not in (None, "") or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        return value or ""

    return VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def env_example() -> dict[str, str]:
    out = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def render(node: Any, env: dict[str, str]) -> Any:
    """Interpolate every string of a parsed compose file (compose interpolates values, not comments)."""
    if isinstance(node, dict):
        return {k: render(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [render(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any]) -> dict[str, Any]:
    """The compose file rendered with its defaults and dummy secrets (what `docker compose config` does)."""
    return render(raw_compose, {"POSTGRES_PASSWORD": "dummy-pg", "MINIO_ROOT_PASSWORD": "dummy-minio"})


def test_compose_services_images_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, svc in services.items():
        assert svc.get("image"), f"{name}: image must be named"
        assert ":" in svc["image"], f"{name}: image {svc['image']!r} has no tag"
    assert services["mlflow"]["build"]["dockerfile"] == "mlflow.Dockerfile"
    for worker in ("worker-cpu", "worker-gpu"):
        assert services[worker]["build"]["dockerfile"] == "infra/worker-gpu.Dockerfile"
        assert services[worker]["build"]["context"] == ".."
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source!r} not declared"
    assert {"postgres-data", "minio-data"} <= declared
    assert (INFRA / "mlflow.Dockerfile").exists() and (INFRA / "postgres" / "init-databases.sql").exists()


def test_compose_ports_bind_loopback_by_default(compose: dict[str, Any]) -> None:
    published = set()
    for name, svc in compose["services"].items():
        for port in svc.get("ports") or []:
            assert isinstance(port, str) and port.count(":") == 2, (
                f"{name}: {port!r} must name the host address"
            )
            host, host_port, _ = port.split(":")
            assert host == "127.0.0.1", f"{name}: {port!r} is not bound to loopback"
            published.add((name, int(host_port)))
    assert published == {
        ("postgres", 5432),
        ("minio", 9000),
        ("minio", 9001),
        ("mlflow", 5000),
        ("prefect-server", 4200),
    }
    for worker in ("worker-cpu", "worker-gpu", "minio-init"):
        assert not compose["services"][worker].get("ports"), f"{worker} publishes nothing"


def test_compose_has_no_plain_text_secrets(raw_compose: dict[str, Any]) -> None:
    for name, svc in raw_compose["services"].items():
        env = svc.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            value = str(value)
            if any(w in key.upper() for w in SECRET_WORDS) or re.search(r"://[^/@]*:[^/@]*@", value):
                refs = VAR.findall(value)
                secret_refs = [r for r in refs if any(w in r[0] for w in SECRET_WORDS)]
                assert secret_refs, f"{name}.{key}: a secret must come from ${{VAR}}, got {value!r}"
                for ref_name, op, _ in secret_refs:
                    assert op in ("", ":?", "?"), f"{name}.{key}: secret {ref_name} must not have a default"
    example = env_example()
    for key, value in example.items():
        if any(w in key for w in SECRET_WORDS):
            assert value == "", f".env.example must leave {key} empty"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        render(raw_compose, {})


def test_env_example_lists_every_variable(raw_compose: dict[str, Any]) -> None:
    used = {m.group(1) for s in strings(raw_compose) for m in VAR.finditer(s.replace("$$", ""))}
    assert used <= set(env_example()), f"missing from infra/.env.example: {sorted(used - set(env_example()))}"
    assert (INFRA / ".gitignore").read_text().split("\n").count(".env") == 1


def test_gpu_worker_reserves_nvidia_devices(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--pool" in gpu["command"] and gpu["command"][gpu["command"].index("--pool") + 1] == "gpu"
    cpu = compose["services"]["worker-cpu"]
    assert "deploy" not in cpu and cpu["command"][cpu["command"].index("--pool") + 1] == "cpu"
    for worker in (gpu, cpu):
        assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert any(v.endswith(":/workspace") for v in worker["volumes"])


def test_gpu_worker_dockerfile() -> None:
    text = (INFRA / "worker-gpu.Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    base = interpolate(froms[-1], args)
    assert base.startswith("nvidia/cuda:") and "cudnn" in base, base
    assert '".[gpu]"' in text or "'.[gpu]'" in text
    assert "vllm" in text and "constraints" in text
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", text, flags=re.M | re.I)
    assert re.search(r"^USER\s+\S+", text, flags=re.M), "run as a non-root user"
    extras = _pyproject_extras()
    assert {"deepspeed", "vllm"} <= {re.split(r"[<>=!~;\[ ]", d)[0] for d in extras["gpu"]}


def _pyproject_extras() -> dict[str, list[str]]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_kubernetes_gpu_base_job_template() -> None:
    from prefect.server.schemas.actions import validate_base_job_template
    from prefect.utilities.templating import apply_values

    template = json.loads((INFRA / "k8s" / "gpu-work-pool.json").read_text())
    validate_base_job_template(template)  # every placeholder is a declared variable
    props = template["variables"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    assert defaults["image"] and defaults["gpu_count"] >= 1
    rendered = apply_values(
        template["job_configuration"],
        {**defaults, "command": "prefect flow-run execute", "env": {}, "labels": {}, "name": "job"},
    )
    container = rendered["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == defaults["image"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == defaults["gpu_count"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == defaults["gpu_count"]
    pod = rendered["job_manifest"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_prefect_yaml_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in config["deployments"]}
    assert set(deps) == {"weekly", "nightly", "cpu", "gpu"}
    assert deps["weekly"]["work_pool"]["name"] == "cpu" and deps["weekly"]["parameters"]["dispatch"] is True
    assert deps["nightly"]["work_pool"]["name"] == "gpu"
    assert [s["cron"] for s in deps["weekly"]["schedules"]] == ["0 3 * * 1"]
    assert [s["cron"] for s in deps["nightly"]["schedules"]] == ["0 2 * * *"]
    assert {deps["cpu"]["work_pool"]["name"], deps["gpu"]["work_pool"]["name"]} == {"cpu", "gpu"}
    assert "pull" not in config, "the default pull step records the deploying checkout"
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)  # as a worker does (the deployment's working directory)
    monkeypatch.syspath_prepend(str(REPO))
    names = {
        d["entrypoint"]: load_flow_from_entrypoint(str(REPO / d["entrypoint"])).name for d in deps.values()
    }
    assert set(names.values()) == {"training-pipeline", "evaluation-only", "dvc-stage"}


def test_mlflow_serve_script() -> None:
    script = REPO / "mlflow" / "serve.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "MLFLOW_HOST:-127.0.0.1" in text and "mlflow/mlflow.db" in text and "mlflow/artifacts" in text
    assert "exec " in text, "the script must exec the server so that its PID is the server's"


def test_deepspeed_configs_parse() -> None:
    for path in sorted((INFRA / "deepspeed").glob("*.json")):
        assert isinstance(json.loads(path.read_text()), dict), path


def test_makefile_has_serve_and_stop() -> None:
    text = (REPO / "Makefile").read_text()
    assert re.search(r"^serve:", text, flags=re.M) and re.search(r"^stop:", text, flags=re.M)
    assert "flows.serve start" in text and "flows.serve stop" in text
