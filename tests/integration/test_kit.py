"""The operators' kit: every shipped Envoy config validates with the pinned
Envoy, every embedded costguard configuration passes costguard's own
checker, generated files are current, and the Grafana dashboard queries only
metrics a real Envoy emits."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from conftest import ENVOY_BIN, ROOT, WASM, Envoy, chat, wait_until
from test_realtime import open_session, recv_json, respond, rt_usage

sys.path.insert(0, str(ROOT / "tools"))
import render_kit  # noqa: E402

CHECKER = ROOT / "target" / "release" / "costguard-check-config"
KIT = ROOT / "envoy"


def validate_envoy_config(text, tmp_path, name):
    """envoy --mode validate; the module path is pointed at the local build and the
    price catalog at a small file (validation opens both)."""
    text = re.sub(r"filename: \S+costguard\.wasm", f"filename: {WASM}", text)
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir(exist_ok=True)
    (catalog_dir / "model_prices.json").write_text("{}")
    text = text.replace("envoy/catalog/model_prices.json", str(catalog_dir / "model_prices.json"))
    text = re.sub(r"path: envoy/catalog\b", f"path: {catalog_dir}", text)
    path = tmp_path / name
    path.write_text(text)
    r = subprocess.run([str(ENVOY_BIN), "--mode", "validate", "-c", str(path), "--log-level", "error"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def check_costguard_config(config, tmp_path):
    text = config if isinstance(config, str) else json.dumps(config)
    r = subprocess.run([str(CHECKER), "-"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ": OK" in r.stdout


def wasm_filter_config(envoy_cfg):
    hcm = envoy_cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")


def test_shipped_envoy_configs_validate_and_embed_valid_costguard_configs(tmp_path):
    configmap = yaml.safe_load((KIT / "kubernetes" / "envoy" / "configmap.yaml").read_text())
    configs = {
        "envoy.yaml": (KIT / "envoy.yaml").read_text(),
        "envoy-price-catalog.yaml": (KIT / "envoy-price-catalog.yaml").read_text(),
        "docker.yaml": (KIT / "docker" / "envoy.yaml").read_text(),
        "docker-fleet.yaml": (KIT / "docker" / "envoy-fleet.yaml").read_text(),
        "configmap.yaml": configmap["data"]["envoy.yaml"],
    }
    for name, text in configs.items():
        validate_envoy_config(text, tmp_path, name)
        value = wasm_filter_config(yaml.safe_load(text))["typed_config"]["config"]["configuration"]["value"]
        check_costguard_config(value, tmp_path)


def test_generated_kit_files_are_current():
    for path, make in render_kit.FILES.items():
        assert path.read_text() == make(), f"{path} is stale: run `make kit`"


def test_filter_snippet_matches_the_full_config():
    snippet = yaml.safe_load((KIT / "costguard-filter.yaml").read_text())
    assert len(snippet) == 1
    full = wasm_filter_config(yaml.safe_load((KIT / "envoy.yaml").read_text()))
    code = ["typed_config", "config", "vm_config", "code", "local", "filename"]

    def without_path(f):
        f = json.loads(json.dumps(f))
        node = f
        for k in code[:-1]:
            node = node[k]
        node.pop(code[-1])
        return f

    assert without_path(snippet[0]) == without_path(full)


def test_docker_compose_file(tmp_path):
    compose = yaml.safe_load((KIT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"envoy", "sim", "prometheus", "grafana", "envoy-fleet", "ratelimit", "redis"}
    # The fleet services are an optional profile: a plain `up` starts only the others.
    assert {n for n, s in services.items() if "profiles" in s} == {"envoy-fleet", "ratelimit", "redis"}
    # The rate-limit service knows every descriptor the fleet Envoy reports.
    rl = yaml.safe_load((KIT / "docker" / "ratelimit" / "config.yaml").read_text())
    fleet_cfg = yaml.safe_load((KIT / "docker" / "envoy-fleet.yaml").read_text())
    plugin = json.loads(wasm_filter_config(fleet_cfg)["typed_config"]["config"]["configuration"]["value"])
    assert rl["domain"] == plugin["global_store"]["domain"]
    budget_values = {d.get("value") for d in rl["descriptors"] if d["key"] == "costguard_budget"}
    assert {r["name"] for r in plugin["budgets"] if r.get("scope") == "fleet"} <= budget_values
    assert any(c["name"] == plugin["global_store"]["rls_cluster"] for c in fleet_cfg["static_resources"]["clusters"])
    assert services["envoy"]["image"].startswith("envoyproxy/envoy:v1.40")
    mounts = {}
    for svc in services.values():
        for volume in svc.get("volumes", []):
            src, dst = volume.split(":")[:2]
            mounts[dst] = (KIT / src).resolve()
    assert mounts["/etc/envoy/costguard.wasm"] == WASM.resolve()
    for dst, src in mounts.items():
        assert src.exists(), f"{src} (mounted at {dst}) does not exist"
    sim_build = services["sim"]["build"]
    assert (KIT / sim_build["context"] / sim_build["dockerfile"]).exists()
    prom = yaml.safe_load((KIT / "docker" / "prometheus.yml").read_text())
    job = prom["scrape_configs"][0]
    assert job["metrics_path"] == "/stats/prometheus" and job["static_configs"][0]["targets"] == ["envoy:9901"]


def test_kubernetes_manifests():
    docs = {}
    for path in sorted((KIT / "kubernetes").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    assert set(docs) == {("ConfigMap", "costguard-envoy"), ("Deployment", "costguard-envoy"),
                         ("Service", "costguard-envoy"), ("WasmPlugin", "costguard"),
                         ("EnvoyExtensionPolicy", "costguard")}
    pod = docs[("Deployment", "costguard-envoy")]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "costguard-envoy"
    envoy_cfg = yaml.safe_load(docs[("ConfigMap", "costguard-envoy")]["data"]["envoy.yaml"])
    wasm_path = wasm_filter_config(envoy_cfg)["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert wasm_path.startswith(mounts["wasm"] + "/")
    init_mounts = {m["name"]: m["mountPath"] for m in pod["initContainers"][0]["volumeMounts"]}
    assert init_mounts["wasm"] == mounts["wasm"]
    plugin = docs[("WasmPlugin", "costguard")]["spec"]
    assert plugin["url"].startswith("oci://")
    check_costguard_config(plugin["pluginConfig"], None)
    policy = docs[("EnvoyExtensionPolicy", "costguard")]["spec"]["wasm"][0]
    assert policy["code"]["type"] == "Image"
    check_costguard_config(policy["config"], None)


def test_grafana_dashboard_queries_only_emitted_metrics(sim):
    dashboard = json.loads((KIT / "grafana" / "costguard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = set(re.findall(r"\bcostguard_[a-z_]+", " ".join(exprs)))
    assert len(queried) >= 15
    rule = {"name": "key-daily", "key": "header:x-api-key", "limit_usd": 100, "window": "day"}
    e = Envoy(sim.port, {"global": {"budget_usd": 1000000}, "budgets": [rule]}).wait_ready()
    try:
        chat(e, model="gpt-4.1-mini", usage={"prompt_tokens": 10, "completion_tokens": 5},
             headers={"x-api-key": "k"})
        with open_session(e) as ws:
            recv_json(ws)
            respond(ws, rt_usage(100, 50))
        # Histograms appear after Envoy's stats flush (about 5 s).
        def emitted():
            text = requests.get(f"{e.admin}/stats/prometheus", timeout=10).text
            names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("costguard_")}
            return names if queried <= names else None
        names = wait_until(emitted, timeout=30, interval=0.5, what=f"every queried metric among {sorted(queried)}")
        prometheus = requests.get(f"{e.admin}/stats/prometheus", timeout=10).text
        assert 'costguard_model_cost_micro_usd{model="gpt-4.1-mini"}' in prometheus
        assert 'costguard_budget_keys{budget="key-daily"} 1' in prometheus
        assert queried <= names
    finally:
        e.stop()
