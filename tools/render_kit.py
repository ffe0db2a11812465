#!/usr/bin/env python3
"""Regenerates the operators' kit files derived from envoy/envoy.yaml, so
there is one Envoy config to edit: the Docker Compose config and the
Kubernetes ConfigMap. `make kit` runs it; a test fails when they are stale."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envoyconf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEADER = "Generated from envoy/envoy.yaml by tools/render_kit.py (make kit). Edit that file, not this one."


def docker_config():
    cfg = envoyconf.render(address="0.0.0.0", upstream="http://sim:8080", wasm="/etc/envoy/costguard.wasm")
    return envoyconf.dump(cfg, HEADER)


def kubernetes_configmap():
    cfg = envoyconf.render(address="0.0.0.0", upstream="https://api.openai.com", wasm="/wasm/costguard.wasm")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "costguard-envoy", "labels": {"app.kubernetes.io/name": "costguard-envoy"}},
        "data": {"envoy.yaml": envoyconf.dump(cfg)},
    }
    return envoyconf.dump(configmap, HEADER)


FILES = {
    ROOT / "envoy" / "docker" / "envoy.yaml": docker_config,
    ROOT / "envoy" / "kubernetes" / "envoy" / "configmap.yaml": kubernetes_configmap,
}


def main():
    for path, make in FILES.items():
        path.write_text(make())
        print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
