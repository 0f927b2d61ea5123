"""Scenario 4 of the replication suite: a fleet on loopback. 20 boxes, each a
real `vigil run` with its own data directory, keys and bucket prefix, each
holding 8 cameras' recordings at 4 Mbit/s (a 10 s noise MP4 at a constant
4 Mbit/s brought in with `vigil import`, so every byte is real ciphertext),
start replicating into the same 3-node Garage cluster at once. Printed:
the throughput, each box's CPU, and the lag at the end; checked: every
recording arrives and one box's replica verifies."""
import os
import subprocess
import time

import fixture
from fixture import kill_pid, wait_for

BOXES = 20
CAMERAS = 8
SECONDS = 10
MBIT = 4


def make_source(work):
    path = os.path.join(work, "fleet-source.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"nullsrc=s=640x360:r=25,geq=random(1)*255:128:128", "-t", str(SECONDS), "-c:v", "libx264",
                    "-preset", "ultrafast", "-b:v", f"{MBIT}M", "-minrate", f"{MBIT}M", "-maxrate", f"{MBIT}M",
                    "-bufsize", "2M", "-g", "25", "-pix_fmt", "yuv420p", path], check=True, timeout=300)
    return path


class FleetBox:
    def __init__(self, vigil, work, n, cluster):
        self.vigil, self.n = vigil, n
        self.dir = os.path.join(work, f"fleet{n:02d}")
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "vigil.toml")
        self.prefix = f"fleet{n:02d}"
        with open(self.config, "w") as f:
            f.write(f'[storage]\ndir = "{self.dir}/recordings"\ndb = "{self.dir}/vigil.db"\n'
                    f'allow_unencrypted_volume = true\n\n[keys]\nsource = "file"\nfile = "{self.dir}/kek.key"\n\n'
                    f'[replication]\nendpoint = "{cluster.s3_endpoint(n % 3)}"\nallow_http = true\n'
                    f'region = "garage"\nbucket = "vigil"\nprefix = "{self.prefix}"\n'
                    f'access_key_id = "{cluster.access_key_id}"\npart_size_mib = 8\n')
        self.proc = None
        self.log = os.path.join(self.dir, "daemon.log")

    def cli(self, *args, stdin=None):
        return subprocess.run([self.vigil, "--config", self.config, *args], input=stdin, capture_output=True,
                              text=True, timeout=300, env=dict(os.environ, VIGIL_LOG="warn"))

    def prepare(self, source, secret, start_ns):
        for argv, stdin in ((("keys", "init", "--recovery-key-file", os.path.join(self.dir, "rk.txt")), None),
                            (("secrets", "set", "replication.secret-access-key"), secret)):
            o = self.cli(*argv, stdin=stdin)
            if o.returncode != 0:
                raise RuntimeError(f"fleet box {self.n}: {' '.join(argv)}: {o.stdout}{o.stderr}")
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ns // 1_000_000_000))
        for c in range(CAMERAS):
            o = self.cli("import", "--camera", f"cam{c + 1}", "--start", t, source)
            if o.returncode != 0:
                raise RuntimeError(f"fleet box {self.n}: import: {o.stdout}{o.stderr}")

    def start(self):
        log = open(self.log, "wb")
        self.proc = subprocess.Popen([self.vigil, "--config", self.config, "run"], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, env=dict(os.environ, VIGIL_LOG="info"))
        log.close()

    def query(self, sql):
        import sqlite3
        c = sqlite3.connect(f"file:{self.dir}/vigil.db?mode=ro", uri=True, timeout=10)
        try:
            return c.execute(sql).fetchall()
        finally:
            c.close()

    def state(self):
        """(recordings, replicated, bytes replicated)"""
        try:
            r = self.query("SELECT (SELECT count(*) FROM recording WHERE state != 'writing'), "
                           "(SELECT count(*) FROM replica WHERE state = 'done'), "
                           "(SELECT coalesce(sum(bytes), 0) FROM replica WHERE state = 'done')")
            return r[0]
        except Exception:
            return (CAMERAS, 0, 0)

    def cpu_s(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def close(self):
        kill_pid(self.proc, grace=10)


def run(args, cluster, work, check, log):
    source = make_source(work)
    size = os.path.getsize(source)
    log(f"fleet: source MP4 {size} bytes ({size * 8 / SECONDS / 1e6:.2f} Mbit/s over {SECONDS} s)")
    boxes = [FleetBox(args.vigil, work, n, cluster) for n in range(BOXES)]
    start_ns = time.time_ns() - 3600 * 1_000_000_000
    t = time.monotonic()
    try:
        for b in boxes:
            b.prepare(source, cluster.secret_access_key, start_ns)
        log(f"fleet: {BOXES} boxes x {CAMERAS} cameras imported in {time.monotonic() - t:.0f} s")
        t0 = time.monotonic()
        for b in boxes:
            b.start()
        total = BOXES * CAMERAS

        def all_done():
            return sum(b.state()[1] for b in boxes) >= total
        done = wait_for(600, all_done, every=1)
        took = time.monotonic() - t0
        states = [b.state() for b in boxes]
        nbytes = sum(s[2] for s in states)
        cpus = [b.cpu_s() or 0.0 for b in boxes]
        mbit = nbytes * 8 / took / 1e6
        lag_end = [(s[0] - s[1]) for s in states]
        log(f"fleet: {sum(s[1] for s in states)}/{total} recordings, {nbytes / 1e6:.1f} MB in {took:.1f} s = "
            f"{nbytes / took / 1e6:.1f} MB/s ({mbit:.0f} Mbit/s, the upload of {mbit / MBIT:.0f} cameras at "
            f"{MBIT} Mbit/s sustained); per-box CPU {min(cpus):.2f}-{max(cpus):.2f} s "
            f"(mean {sum(cpus) / len(cpus):.2f} s, {sum(cpus) / max(nbytes / 1e9, 1e-9):.1f} CPU-s per GB); "
            f"recordings still waiting at the end: {sum(lag_end)}")
        check("fleet: 20 boxes replicate every recording into one cluster", done,
              f"{took:.1f} s, {mbit:.0f} Mbit/s, per-box CPU mean {sum(cpus) / len(cpus):.2f} s, lag at end "
              f"{sum(lag_end)} recording(s)")
        env = dict(os.environ, VIGIL_REPLICA_SECRET_ACCESS_KEY=cluster.secret_access_key, VIGIL_LOG="warn")
        o = subprocess.run([args.vigil, "--config", "/nonexistent", "replica", "verify", "--endpoint",
                            cluster.s3_endpoint(1), "--allow-http", "--region", "garage", "--bucket", "vigil",
                            "--prefix", boxes[7].prefix, "--access-key-id", cluster.access_key_id],
                           capture_output=True, text=True, timeout=300, env=env)
        check("fleet: a box's replica verifies from another node", o.returncode == 0,
              (o.stdout.strip().splitlines() or [""])[0])
    finally:
        for b in boxes:
            b.close()
