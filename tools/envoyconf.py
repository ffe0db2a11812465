#!/usr/bin/env python3
"""Render envoy/envoy.yaml with other ports, upstream, costguard configuration
or access-log path. The shipped file stays the one source of truth: `make run`
and the integration tests both start Envoy from it through this script.

usage: envoyconf.py [--listen PORT] [--admin PORT] [--address ADDR] [--upstream URL]
                    [--plugin-config JSON] [--wasm PATH] [--access-log PATH]
                    [--no-filter] -o OUT
"""
import argparse
import json
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "envoy" / "envoy.yaml"


def _hcm(cfg):
    return cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def _wasm_filter(cfg):
    for f in _hcm(cfg)["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            return f
    raise KeyError("no wasm filter in envoy.yaml")


def upstream_cluster(url):
    """The `openai` cluster for an http:// or https:// upstream URL."""
    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"upstream must be http(s)://host[:port], got {url!r}")
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    is_ip = all(p.isdigit() for p in u.hostname.split("."))
    # A DNS name: resolved at runtime (LOGICAL_DNS), e.g. api.openai.com or a compose service.
    cluster = {
        "name": "openai",
        "type": "STATIC" if is_ip else "LOGICAL_DNS",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": "openai",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": u.hostname, "port_value": port}}}}]}],
        },
    }
    if not is_ip:
        cluster["dns_lookup_family"] = "V4_ONLY"
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": u.hostname,
            },
        }
    return cluster, (u.hostname if tls else None)


def rls_cluster(name, host, port):
    """A rate-limit service cluster (gRPC: HTTP/2) for costguard's `global_store.rls_cluster`."""
    return {
        "name": name,
        "type": "STATIC" if all(p.isdigit() for p in host.split(".")) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": host, "port_value": int(port)}}}}]}],
        },
    }


def catalog_listener(address, port, filename):
    """A listener that serves the price catalog file itself (a `direct_response`
    whose body is the file; Envoy re-reads it when a new file is moved into
    its directory), for costguard's `price_catalog`."""
    directory = str(Path(filename).parent)
    return {
        "name": "price_catalog",
        "address": {"socket_address": {"address": address, "port_value": int(port)}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "price_catalog",
                "route_config": {
                    "name": "price_catalog",
                    # The catalog is ~3.5 MB; Envoy's default cap is 4 KB.
                    "max_direct_response_body_size_bytes": 64 * 1024 * 1024,
                    "virtual_hosts": [{
                        "name": "price_catalog",
                        "domains": ["*"],
                        "routes": [{
                            "match": {"path": "/model_prices.json"},
                            "direct_response": {"status": 200, "body": {
                                "filename": str(filename),
                                "watched_directory": {"path": directory},
                            }},
                            "response_headers_to_add": [{"header": {
                                "key": "content-type", "value": "application/json"}}],
                        }],
                    }],
                },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }],
            },
        }]}],
    }


def catalog_cluster(address, port):
    """The `prices` cluster costguard fetches the catalog through."""
    return {
        "name": "prices",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "prices",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": address, "port_value": int(port)}}}}]}],
        },
    }


def render(listen=None, admin=None, upstream=None, plugin_config=None, wasm=None,
           access_log=None, no_filter=False, address=None, rls=None, base=BASE, catalog=None):
    """`catalog`: (port, file) adds the listener serving the price catalog
    file on that port and the `prices` cluster pointing at it."""
    cfg = yaml.safe_load(Path(base).read_text())
    listener = cfg["static_resources"]["listeners"][0]
    for sock, port in ((cfg["admin"]["address"]["socket_address"], admin),
                       (listener["address"]["socket_address"], listen)):
        if port is not None:
            sock["port_value"] = int(port)
        if address is not None:
            sock["address"] = address
    hcm = _hcm(cfg)
    if upstream:
        cluster, host = upstream_cluster(upstream)
        clusters = cfg["static_resources"]["clusters"]
        clusters[:] = [c for c in clusters if c["name"] != "openai"] + [cluster]
        if host:
            for vh in hcm["route_config"]["virtual_hosts"]:
                for r in vh["routes"]:
                    r["route"]["host_rewrite_literal"] = host
    if rls:
        host, _, port = rls.rpartition(":")
        cfg["static_resources"]["clusters"].append(rls_cluster("rls", host or "127.0.0.1", port))
    if catalog:
        port, filename = catalog
        # Loopback only: costguard is the catalog's one reader.
        cfg["static_resources"]["listeners"].append(catalog_listener("127.0.0.1", port, filename))
        cfg["static_resources"]["clusters"].append(catalog_cluster("127.0.0.1", port))
    if access_log:
        for log in hcm.get("access_log", []):
            log["typed_config"]["path"] = str(access_log)
    wasm_filter = _wasm_filter(cfg)
    if plugin_config is not None:
        text = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
        wasm_filter["typed_config"]["config"]["configuration"]["value"] = text
    if wasm:
        wasm_filter["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(wasm)
    if no_filter:
        hcm["http_filters"].remove(wasm_filter)
    return cfg


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=int)
    p.add_argument("--admin", type=int)
    p.add_argument("--upstream")
    p.add_argument("--plugin-config")
    p.add_argument("--wasm")
    p.add_argument("--access-log")
    p.add_argument("--no-filter", action="store_true")
    p.add_argument("--address", help="bind the listener and admin to this address (default 127.0.0.1)")
    p.add_argument("--header", help="a comment line put at the top of the output")
    p.add_argument("-o", "--out", required=True)
    a = p.parse_args(argv)
    cfg = render(a.listen, a.admin, a.upstream, a.plugin_config, a.wasm, a.access_log, a.no_filter, a.address)
    Path(a.out).write_text(dump(cfg, a.header))


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (embedded configs) as literal blocks."""


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(cfg, header=None):
    text = yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, width=120)
    return (f"# {header}\n" if header else "") + text


if __name__ == "__main__":
    main(sys.argv[1:])
