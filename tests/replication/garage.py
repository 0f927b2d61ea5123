"""A real Garage cluster on loopback, for the replication tests (issue 18).

Garage (https://garagehq.deuxfleurs.fr) is an S3-compatible object store; the
binary comes from scripts/lib/garage.sh (need_garage exports GARAGE_BIN), the
Python from scripts/lib/replication-venv.sh (boto3, pinned).

    cluster = GarageCluster(workdir, nodes=3, rf=3, base_port=29100)
    cluster.start()                       # configs, processes, layout, healthy
    key_id, secret = cluster.create_bucket_and_key("vigil")
    s3 = cluster.s3(node=0)               # boto3 client, path style, region "garage"
    cluster.kill_node(2)                  # SIGKILL
    cluster.start_node(2)
    cluster.stop_all(); cluster.start_all()   # same data, the cluster comes back
    cluster.close()                       # kills every node by PID (also atexit)

Node i listens on 127.0.0.1 only: S3 API base_port + 10*i, RPC + 1, admin
API + 3 (its unauthenticated GET /health is the readiness probe: start(),
start_node() and start_all() return once every node says "fully operational"). Metadata in
SQLite. The layout, bucket and key are made with Garage's own CLI
(`garage -c node.toml layout assign|apply`, `bucket create`, `key create`,
`bucket allow --read --write --owner`). Each node's stdout and stderr go to
<workdir>/node<i>/garage.log (appended across restarts). Every wait is
bounded in attempts and in time; a failed wait raises GarageError naming what
did not happen and the tail of the node's log.

Processes are started with PR_SET_PDEATHSIG (SIGKILL), so they die with this
Python process even when it is killed itself; close() kills them by PID, and
runs at exit and from __exit__ when the cluster is used as a context manager.
"""
import atexit
import ctypes
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

S3_REGION = "garage"
ZONE = "dc1"
NODE_CAPACITY = "1G"
CLI_TIMEOUT_S = 30
PORT_STRIDE = 10
S3_PORT_OFFSET = 0
RPC_PORT_OFFSET = 1
ADMIN_PORT_OFFSET = 3


class GarageError(RuntimeError):
    """The cluster did not do what the harness waited for."""


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the Python process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(what, probe, timeout_s, interval_s=0.25):
    """Calls probe() until it returns a true value, at most timeout_s seconds
    and at most timeout_s/interval_s + 1 times; returns that value or raises
    GarageError. probe may raise: the last exception is named in the error."""
    deadline = time.monotonic() + timeout_s
    attempts = int(timeout_s / interval_s) + 1
    last = None
    for _ in range(attempts):
        try:
            value = probe()
            if value:
                return value
            last = None
        except Exception as e:  # noqa: BLE001 - any failure is "not yet"
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    detail = f" (last error: {last!r})" if last is not None else ""
    raise GarageError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")


class GarageNode:
    """One node: its directory, config, ports and process."""

    def __init__(self, index, workdir, base_port):
        self.index = index
        self.dir = os.path.join(workdir, f"node{index}")
        self.config = os.path.join(self.dir, "garage.toml")
        self.log = os.path.join(self.dir, "garage.log")
        self.s3_port = base_port + PORT_STRIDE * index + S3_PORT_OFFSET
        self.rpc_port = base_port + PORT_STRIDE * index + RPC_PORT_OFFSET
        self.admin_port = base_port + PORT_STRIDE * index + ADMIN_PORT_OFFSET
        self.node_id = None  # "<hex id>@127.0.0.1:<rpc port>" once known
        self.proc = None

    @property
    def rpc_addr(self):
        return f"127.0.0.1:{self.rpc_port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def ports(self):
        return [self.s3_port, self.rpc_port, self.admin_port]


class GarageCluster:
    def __init__(self, workdir, nodes=3, rf=3, base_port=29100, garage_bin=None,
                 log=None):
        if nodes < rf:
            raise ValueError(f"{nodes} nodes cannot hold replication factor {rf}")
        self.workdir = os.path.abspath(workdir)
        self.rf = rf
        self.base_port = base_port
        self.garage_bin = garage_bin or os.environ.get("GARAGE_BIN") or "garage"
        self.nodes = [GarageNode(i, self.workdir, base_port) for i in range(nodes)]
        self.rpc_secret = secrets.token_hex(32)
        self.admin_token = secrets.token_hex(16)
        self.metrics_token = secrets.token_hex(16)
        self.access_key_id = None
        self.secret_access_key = None
        self._log = log or (lambda msg: None)
        self._closed = False
        atexit.register(self.close)

    # ---- life cycle -------------------------------------------------------

    def start(self, timeout_s=90):
        """First start: writes the configs, starts every node, connects them,
        assigns and applies the layout (version 1) and waits until every node
        reports healthy. Returns the seconds it took."""
        started = time.monotonic()
        try:
            os.makedirs(self.workdir, exist_ok=True)
            busy = [p for n in self.nodes for p in n.ports() if not _port_free(p)]
            if busy:
                raise GarageError(f"ports already in use on 127.0.0.1: {busy}")
            for node in self.nodes:
                os.makedirs(node.dir, exist_ok=True)
                self._write_config(node, bootstrap_peers=[])
                self._spawn(node)
            for node in self.nodes:
                node.node_id = self._read_node_id(node, timeout_s)
            # Now that every id is known, each config names the others, so a
            # node restarted alone (start_node, start_all) finds its peers.
            for node in self.nodes:
                self._write_config(node, bootstrap_peers=[
                    n.node_id for n in self.nodes if n is not node])
            first = self.nodes[0]
            for node in self.nodes[1:]:
                wait_until(f"node 0 connecting to node {node.index}",
                           lambda n=node: self.cli("node", "connect", n.node_id,
                                                   node=first.index) is not None,
                           timeout_s=20, interval_s=0.5)
            wait_until("every node in `garage status`",
                       lambda: self._nodes_seen_up(first.index) >= len(self.nodes),
                       timeout_s=timeout_s, interval_s=0.5)
            for node in self.nodes:
                self.cli("layout", "assign", "-z", ZONE, "-c", NODE_CAPACITY,
                         node.node_id.split("@")[0], node=first.index)
            self.cli("layout", "apply", "--version", "1", node=first.index)
            self.wait_healthy(range(len(self.nodes)), timeout_s=timeout_s)
        except BaseException:
            self.close()
            raise
        took = time.monotonic() - started
        self._log(f"garage: {len(self.nodes)} nodes up, layout applied, healthy in {took:.1f} s")
        return took

    def kill_node(self, i, timeout_s=10):
        """SIGKILL node i (no shutdown at all) and wait until it is gone."""
        node = self.nodes[i]
        if node.proc is None:
            return
        try:
            os.kill(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            node.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise GarageError(f"node {i} (pid {node.proc.pid}) still alive after SIGKILL") from e
        node.proc = None

    def start_node(self, i, timeout_s=60):
        """Start node i again on its existing data and wait until it reports
        the whole cluster fully healthy again (admin GET /health)."""
        node = self.nodes[i]
        if node.running:
            return
        self._spawn(node)
        self.wait_healthy([i], timeout_s=timeout_s)

    def stop_all(self, timeout_s=20):
        """SIGTERM every node (Garage shuts down cleanly), SIGKILL the ones
        still alive after timeout_s. A node's S3 server waits up to 10 s for
        its open client connections (boto3 keeps them alive: close() the
        clients first for a quick stop)."""
        for node in self.nodes:
            if node.running:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"garage: node {node.index} ignored SIGTERM for {timeout_s} s; SIGKILL")
                self.kill_node(node.index)
            node.proc = None

    def start_all(self, timeout_s=90):
        """Start every node that is not running, on the same data, and wait
        until all are healthy. Returns the seconds it took."""
        started = time.monotonic()
        for node in self.nodes:
            if not node.running:
                self._spawn(node)
        self.wait_healthy(range(len(self.nodes)), timeout_s=timeout_s)
        return time.monotonic() - started

    def close(self):
        """Kill every node by PID (SIGKILL) and reap it. Idempotent; never raises."""
        for node in self.nodes:
            proc = node.proc
            if proc is None:
                continue
            try:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            node.proc = None
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- S3 -----------------------------------------------------------

    def s3_endpoint(self, node=0):
        return f"http://127.0.0.1:{self.nodes[node].s3_port}"

    def create_bucket_and_key(self, bucket, key_name=None):
        """`garage bucket create`, `garage key create`, `garage bucket allow
        --read --write --owner`; returns (access_key_id, secret_access_key)
        and makes them the default of s3()."""
        key_name = key_name or f"{bucket}-key"
        self.cli("bucket", "create", bucket)
        out = self.cli("key", "create", key_name)
        key_id = re.search(r"Key ID:\s*(GK[0-9a-fA-F]+)", out)
        secret = re.search(r"Secret key:\s*([0-9a-fA-F]{32,})", out)
        if not key_id or not secret:
            raise GarageError(f"`garage key create` printed no key id/secret:\n{out}")
        self.cli("bucket", "allow", "--read", "--write", "--owner", bucket,
                 "--key", key_id.group(1))
        self.access_key_id, self.secret_access_key = key_id.group(1), secret.group(1)
        return self.access_key_id, self.secret_access_key

    def s3(self, node=0, access_key_id=None, secret_access_key=None, **config):
        """A boto3 S3 client for node's endpoint: region "garage", path-style
        addressing, bounded timeouts and retries. config: extra
        botocore.config.Config arguments."""
        import boto3
        from botocore.config import Config

        settings = dict(
            region_name=S3_REGION,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        settings.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint(node),
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=Config(**settings),
        )

    # ---- Garage's CLI and health ------------------------------------------

    def cli(self, *args, node=0, timeout_s=CLI_TIMEOUT_S):
        """Run `garage -c <node i's config> ARGS`; returns stdout, raises
        GarageError with stdout+stderr when it exits non-zero or hangs."""
        cmd = [self.garage_bin, "-c", self.nodes[node].config, *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  env=self._env())
        except subprocess.TimeoutExpired as e:
            raise GarageError(f"`{' '.join(args)}` took over {timeout_s} s") from e
        if done.returncode != 0:
            raise GarageError(f"`garage {' '.join(args)}` exited {done.returncode}:\n"
                              f"{done.stdout}{done.stderr}")
        return done.stdout

    def health(self, node):
        """(HTTP status, text) of node's admin GET /health, or (None, error)
        when it does not answer. 200 "Garage is fully operational": every
        storage node up; 200 "...some storage nodes are unavailable": quorum
        still there; 503: no quorum (or no layout yet)."""
        url = f"http://127.0.0.1:{self.nodes[node].admin_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")
        except OSError as e:
            return None, str(e)

    def wait_healthy(self, nodes, timeout_s=60, fully=True):
        """Waits until each of nodes says 200 on /health; fully: and that
        every storage node of the cluster is up (not merely a quorum)."""
        for i in nodes:
            node = self.nodes[i]

            def probe(node=node):
                if not node.running:
                    raise GarageError(f"node {node.index} exited with {node.proc.returncode}")
                status, text = self.health(node.index)
                return status == 200 and (not fully or "fully operational" in text)

            what = f"node {i} {'fully ' if fully else ''}healthy (GET /health)"
            try:
                wait_until(what, probe, timeout_s)
            except GarageError as e:
                raise GarageError(f"{e}\n--- {node.log} ---\n{_tail(node.log)}") from None

    # ---- internals ------------------------------------------------------

    def _env(self):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "garage=info")
        env["NO_COLOR"] = "1"
        env.pop("GARAGE_RPC_HOST", None)
        env.pop("GARAGE_CONFIG_FILE", None)
        return env

    def _write_config(self, node, bootstrap_peers):
        peers = ",\n".join(f'  "{p}"' for p in bootstrap_peers)
        text = f"""# Garage node {node.index} of the replication test cluster (tests/replication/garage.py)
metadata_dir = "{node.dir}/meta"
data_dir = "{node.dir}/data"
db_engine = "sqlite"
replication_factor = {self.rf}
consistency_mode = "consistent"
rpc_bind_addr = "{node.rpc_addr}"
rpc_public_addr = "{node.rpc_addr}"
rpc_secret = "{self.rpc_secret}"
bootstrap_peers = [
{peers}
]

[s3_api]
s3_region = "{S3_REGION}"
api_bind_addr = "127.0.0.1:{node.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{node.admin_port}"
admin_token = "{self.admin_token}"
metrics_token = "{self.metrics_token}"
"""
        tmp = node.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, node.config)

    def _spawn(self, node):
        with open(node.log, "ab") as log:
            log.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            node.proc = subprocess.Popen(
                [self.garage_bin, "-c", node.config, "server"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._env(), preexec_fn=_die_with_parent)
        self._log(f"garage: node {node.index} pid {node.proc.pid} "
                  f"(s3 :{node.s3_port}, rpc :{node.rpc_port}, admin :{node.admin_port})")

    def _read_node_id(self, node, timeout_s):
        def probe():
            if not node.running:
                raise GarageError(f"node {node.index} exited with {node.proc.returncode}")
            out = self.cli("node", "id", "-q", node=node.index).strip()
            return out if re.fullmatch(r"[0-9a-f]{64}@127\.0\.0\.1:\d+", out) else None

        try:
            return wait_until(f"node {node.index}'s id", probe, timeout_s, interval_s=0.5)
        except GarageError as e:
            raise GarageError(f"{e}\n--- {node.log} ---\n{_tail(node.log)}") from None

    def _nodes_seen_up(self, via):
        """How many of our nodes `garage status` on node `via` lists under
        HEALTHY NODES (one row per node, starting with its id's first 16 hex
        digits; the nodes that are down follow under FAILED NODES)."""
        out = self.cli("status", node=via)
        healthy = out.split("==== FAILED NODES ====")[0].splitlines()
        return sum(1 for node in self.nodes
                   if any(line.startswith(node.node_id[:16]) for line in healthy))


def summary(cluster):
    """A JSON-able description of the cluster, for logs."""
    return json.dumps({
        "workdir": cluster.workdir,
        "nodes": [{"index": n.index, "id": n.node_id, "s3": cluster.s3_endpoint(n.index),
                   "pid": n.proc.pid if n.proc else None} for n in cluster.nodes],
        "replication_factor": cluster.rf,
    })
