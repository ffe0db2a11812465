#!/usr/bin/env python3
"""Regenerates the operators' kit files derived from envoy/envoy.yaml, so
there is one Envoy config to edit: the Docker Compose config, the
Kubernetes ConfigMap and the live price catalog example. `make kit` runs it; a test fails when they are stale."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envoyconf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEADER = "Generated from envoy/envoy.yaml by tools/render_kit.py (make kit). Edit that file, not this one."


def docker_config():
    cfg = envoyconf.render(address="0.0.0.0", upstream="http://sim:8080", wasm="/etc/envoy/costguard.wasm")
    return envoyconf.dump(cfg, HEADER)


def docker_fleet_config():
    """The Compose Envoy with its spend counted in the rate-limit service
    (profile `fleet`): the global window and a fleet-wide budget rule."""
    shipped = envoyconf.render()
    plugin = json.loads(envoyconf._wasm_filter(shipped)["typed_config"]["config"]["configuration"]["value"])
    plugin["global_store"] = {"rls_cluster": "rls", "domain": "costguard", "sync_interval_ms": 1000,
                              "timeout_ms": 250, "usd_per_hit": 0.00001, "descriptors_per_call": 100}
    for rule in plugin.get("budgets", []):
        rule["scope"] = "fleet"
    cfg = envoyconf.render(address="0.0.0.0", upstream="http://sim:8080", wasm="/etc/envoy/costguard.wasm",
                           plugin_config=json.dumps(plugin, indent=2) + "\n", rls="ratelimit:8081")
    header = (HEADER + "\n# docker compose --profile fleet: the global window and the budget rules counted in"
              "\n# envoyproxy/ratelimit on Redis (envoy/docker/ratelimit/config.yaml), shared by every replica.")
    return envoyconf.dump(cfg, header)


def kubernetes_configmap():
    cfg = envoyconf.render(address="0.0.0.0", upstream="https://api.openai.com", wasm="/wasm/costguard.wasm")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "costguard-envoy", "labels": {"app.kubernetes.io/name": "costguard-envoy"}},
        "data": {"envoy.yaml": envoyconf.dump(cfg)},
    }
    return envoyconf.dump(configmap, HEADER)


def price_catalog_config():
    """envoy.yaml plus a live price catalog that Envoy serves from a file."""
    shipped = envoyconf.render()
    plugin = json.loads(envoyconf._wasm_filter(shipped)["typed_config"]["config"]["configuration"]["value"])
    plugin["price_catalog"] = {"cluster": "prices", "path": "/model_prices.json", "authority": "prices.internal",
                               "refresh_s": 3600, "timeout_ms": 5000}
    cfg = envoyconf.render(plugin_config=json.dumps(plugin, indent=2) + "\n",
                           catalog=(10001, "envoy/catalog/model_prices.json"))
    header = (HEADER + "\n# The live price catalog: a second listener (127.0.0.1:10001) serves the file"
              "\n# envoy/catalog/model_prices.json (make price-catalog-file copies the pinned one there);"
              "\n# costguard fetches it through the `prices` cluster at start and every refresh_s."
              "\n# Replace the file by moving a new one into the directory: Envoy watches it.")
    return envoyconf.dump(cfg, header)


FILES = {
    ROOT / "envoy" / "envoy-price-catalog.yaml": price_catalog_config,
    ROOT / "envoy" / "docker" / "envoy.yaml": docker_config,
    ROOT / "envoy" / "docker" / "envoy-fleet.yaml": docker_fleet_config,
    ROOT / "envoy" / "kubernetes" / "envoy" / "configmap.yaml": kubernetes_configmap,
}


def main():
    for path, make in FILES.items():
        path.write_text(make())
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
