"""Fleet-wide global budget: two Envoys with costguard share one window
through a real rate-limit service (Limitador counting in Redis, served over
Envoy's RLS gRPC API by tests/rls-server), including outages of the service
and of Redis."""
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, Envoy, chat, free_port, wait_until

RLS_BIN = ROOT / "tests" / "rls-server" / "target" / "release" / "costguard-rls-server"
MICROS_PER_HIT = 1_000  # usd_per_hit 0.001
BUDGET_USD = 1
pytestmark = pytest.mark.skipif(not RLS_BIN.exists() or shutil.which("redis-server") is None,
                                reason="needs redis-server and `make rls-server`")


class Redis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="costguard-redis-")
        self.proc = None
        self.start()

    def start(self):
        # Append-only file: a restart keeps the counters, as a production Redis would.
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", self.dir.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.cli("PING") == "PONG", what="redis up")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    # Sums Limitador's counters (string keys) whose name holds ARGV[1], in one round trip:
    # a thousand keys read one redis-cli call at a time took longer than a test's deadline.
    SUM_COUNTERS = ("local total = 0 "
                    "for _, k in ipairs(redis.call('KEYS', '*')) do "
                    "if string.find(k, ARGV[1], 1, true) and redis.call('TYPE', k).ok == 'string' then "
                    "total = total + (tonumber(redis.call('GET', k)) or 0) end end "
                    "return total")

    def sum_counters(self, containing=""):
        """The sum of Limitador's counters whose key holds `containing`."""
        return int(self.cli("EVAL", self.SUM_COUNTERS, "0", containing) or 0)

    def counter_hits(self):
        """Limitador's counter for the costguard limit (the only key it writes here)."""
        return self.sum_counters()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def close(self):
        self.stop()
        self.dir.cleanup()


class RateLimitService:
    def __init__(self, redis_port, port=None, extra=(), global_hits=None):
        """`extra`: more arguments, e.g. `--budget-limit` for budget rules' keys;
        `global_hits`: the global window's limit (default: BUDGET_USD)."""
        self.port = port or free_port()
        self.redis_port = redis_port
        self.extra = list(extra)
        self.global_hits = global_hits or BUDGET_USD * 1_000_000 // MICROS_PER_HIT
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [str(RLS_BIN), "--port", str(self.port), "--redis", f"redis://127.0.0.1:{self.redis_port}",
             "--limit", f"costguard:{self.global_hits}:3600", *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        assert "listening on" in line, line

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def fleet(sim):
    redis = Redis()
    rls = RateLimitService(redis.port)
    config = {
        "pricing": {"gpt-5": {"input": 10, "output": 30}},
        "session": {"budget_usd": 1000},
        "global": {"budget_usd": BUDGET_USD, "window_s": 3600, "cooldown_s": 60},
        # Above the service's own worst case (its Redis connect and response
        # timeouts, 200 ms each, and a reconnect): a report that costguard
        # gives up on while the service still counts it is counted twice
        # (README: choosing timeout_ms), which the outage tests would see.
        "global_store": {"rls_cluster": "rls", "domain": "costguard", "sync_interval_ms": 200,
                         "timeout_ms": 1000, "usd_per_hit": MICROS_PER_HIT / 1e6},
    }
    envoys = [Envoy(sim.port, config, rls=f"127.0.0.1:{rls.port}").wait_ready() for _ in range(2)]
    yield envoys, rls, redis
    for e in envoys:
        e.stop()
    rls.stop()
    redis.close()


def spend(envoy, cents):
    """A call costing exactly `cents` on the fleet config's gpt-5 ($10 per 1M input tokens)."""
    return chat(envoy, model="gpt-5", usage={"prompt_tokens": cents * 1_000, "completion_tokens": 0})


def reported_hits(envoys):
    return sum(e.stat("costguard.cost_micro_usd") for e in envoys) // MICROS_PER_HIT


def test_the_fleet_trips_every_breaker_at_the_fleet_budget(fleet):
    (a, b), rls, redis = fleet
    assert spend(a, 40).status_code == 200
    assert spend(b, 40).status_code == 200
    # $0.80 of $1.00 across the fleet, each Envoy well under: both still serve.
    wait_until(lambda: redis.counter_hits() == 800, what="the fleet's spend in Redis")
    assert spend(b, 1).status_code == 200
    assert spend(a, 30).status_code == 200  # the fleet reaches $1.11
    # B never saw more than $0.41 itself, yet refuses once the fleet is over.
    wait_until(lambda: spend(b, 1).status_code == 503, timeout=15, interval=0.2, what="B's breaker to open")
    wait_until(lambda: spend(a, 1).status_code == 503, timeout=15, interval=0.2, what="A's breaker to open")
    for e in (a, b):
        e.wait_stat("costguard.circuit_breaker.trips", 1)


def test_service_outage_spend_arrives_once_after(fleet):
    (a, b), rls, redis = fleet
    assert spend(a, 10).status_code == 200
    wait_until(lambda: redis.counter_hits() == 100, what="the first report")
    rls.stop()
    for _ in range(3):
        assert spend(a, 5).status_code == 200
        assert spend(b, 5).status_code == 200
    for e in (a, b):
        wait_until(lambda: e.stat("costguard.global_store.errors") > 0, what="errors counted")
        e.wait_stat("costguard.global_store.healthy", 0)
    assert redis.counter_hits() == 100
    rls.start()
    # Everything both Envoys priced arrives exactly once.
    wait_until(lambda: redis.counter_hits() == 400, timeout=30, interval=0.3,
               what="Redis to hold exactly the spend both Envoys priced")
    assert reported_hits((a, b)) == 400
    for e in (a, b):
        e.wait_stat("costguard.global_store.healthy", 1)
    time.sleep(1)  # nothing arrives twice
    assert redis.counter_hits() == 400


def test_while_the_service_is_down_each_envoy_enforces_locally(fleet):
    (a, b), rls, redis = fleet
    rls.stop()
    assert spend(a, 100).status_code == 200  # A alone reaches $1.00
    wait_until(lambda: spend(a, 1).status_code == 503, timeout=10, interval=0.2, what="A's local breaker")
    assert spend(b, 1).status_code == 200, "B's own window is far below the budget"
    a.wait_stat("costguard.global_store.healthy", 0)


def test_redis_outage_is_survived_the_same_way(fleet):
    (a, b), rls, redis = fleet
    assert spend(a, 10).status_code == 200
    wait_until(lambda: redis.counter_hits() == 100, what="the first report")
    redis.stop()
    assert spend(a, 7).status_code == 200
    assert spend(b, 9).status_code == 200
    for e in (a, b):
        wait_until(lambda: e.stat("costguard.global_store.errors") > 0, what="errors counted")
    redis.start()
    seen = []
    try:
        wait_until(lambda: seen.append(redis.counter_hits()) or seen[-1] == 100 + 70 + 90, timeout=30,
                   interval=0.3, what="the spend made during the outage to arrive once")
    except AssertionError as e:
        raise AssertionError(f"{e}; Redis's last counts: {seen[-5:]}") from None
    time.sleep(1)
    assert redis.counter_hits() == 260


def test_a_stopped_envoy_leaves_the_fleet_spend_behind(fleet):
    (a, b), rls, redis = fleet
    assert spend(a, 90).status_code == 200
    wait_until(lambda: redis.counter_hits() == 900, what="A's spend reported")
    a.stop()
    # B learns the fleet's spend from the service: $0.90 + $0.15 trips it.
    assert spend(b, 15).status_code == 200
    wait_until(lambda: spend(b, 1).status_code == 503, timeout=15, interval=0.2, what="B's breaker")
