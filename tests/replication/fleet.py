"""Scenario 4 of the replication suite: a fleet on loopback. 20 boxes, each a
real `vigil run` with its own data directory, keys and bucket prefix,
replicate into the same 3-node Garage cluster while each gets 8 cameras'
recordings at 4 Mbit/s in real time: every 10 s, each camera of each box gets
a new 10 s recording (a noise MP4 at a constant 4 Mbit/s brought in with
`vigil import`, so every byte is real ciphertext written by Vigil's own
writer), for ROUNDS rounds. Printed: the rate produced and the rate the
cluster absorbed, each box's CPU, and the lag when production stops (how far
behind real time the fleet's uploads are); then the fleet drains. Checked:
every recording arrives and one box's replica verifies."""
import os
import subprocess
import time

import fixture
from fixture import kill_pid, wait_for

BOXES = 20
CAMERAS = 8
SECONDS = 10
MBIT = 4
ROUNDS = 3


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

    def prepare(self, secret):
        for argv, stdin in ((("keys", "init", "--recovery-key-file", os.path.join(self.dir, "rk.txt")), None),
                            (("secrets", "set", "replication.secret-access-key"), secret)):
            o = self.cli(*argv, stdin=stdin)
            if o.returncode != 0:
                raise RuntimeError(f"fleet box {self.n}: {' '.join(argv)}: {o.stdout}{o.stderr}")

    def record(self, source, camera, start_ns):
        """One camera's next 10 s recording (while the daemon runs)."""
        t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ns // 1_000_000_000))
        o = self.cli("import", "--camera", f"cam{camera + 1}", "--start", t, source)
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


def lag(boxes, now_ns):
    """(recordings waiting, the oldest waiting one's age in s) over the fleet."""
    waiting, oldest = 0, None
    for b in boxes:
        try:
            r = b.query("SELECT count(*), min(r.start_wall_ns) FROM replica q JOIN recording r "
                        "ON r.id = q.recording_id WHERE q.state = 'queued'")[0]
        except Exception:
            continue
        waiting += r[0]
        if r[1] is not None:
            oldest = r[1] if oldest is None else min(oldest, r[1])
    return waiting, (now_ns - oldest) / 1e9 if oldest is not None else 0.0


def run(args, cluster, work, check, log):
    from concurrent.futures import ThreadPoolExecutor
    source = make_source(work)
    size = os.path.getsize(source)
    log(f"fleet: source MP4 {size} bytes ({size * 8 / SECONDS / 1e6:.2f} Mbit/s over {SECONDS} s)")
    boxes = [FleetBox(args.vigil, work, n, cluster) for n in range(BOXES)]
    try:
        for b in boxes:
            b.prepare(cluster.secret_access_key)
        for b in boxes:
            b.start()
        total = BOXES * CAMERAS * ROUNDS
        t0 = time.monotonic()
        # Recordings are stamped as if made in the last ROUNDS x 10 s, so the
        # lag (now minus the oldest waiting recording's start) is real time.
        base_ns = time.time_ns() - ROUNDS * SECONDS * 1_000_000_000
        late = 0.0
        with ThreadPoolExecutor(max_workers=4) as pool:
            for r in range(ROUNDS):
                due = t0 + r * SECONDS
                time.sleep(max(0.0, due - time.monotonic()))
                jobs = [pool.submit(b.record, source, c, base_ns + r * SECONDS * 1_000_000_000)
                        for b in boxes for c in range(CAMERAS)]
                for j in jobs:
                    j.result()
                late = max(late, time.monotonic() - due - SECONDS)
        produced_s = time.monotonic() - t0
        waiting, oldest = lag(boxes, time.time_ns())
        made = sum(b.state()[0] for b in boxes)
        sent = sum(b.state()[2] for b in boxes)
        log(f"fleet: {made} recordings ({made * size * 8 / produced_s / 1e6:.0f} Mbit/s) made in {produced_s:.1f} s "
            f"(the imports kept up with real time: {'yes' if late <= 0 else f'no, {late:.1f} s behind'}); "
            f"when production stopped {waiting} recording(s) were waiting, the oldest {oldest:.1f} s old")

        def all_done():
            return sum(b.state()[1] for b in boxes) >= total
        done = wait_for(600, all_done, every=1)
        took = time.monotonic() - t0
        states = [b.state() for b in boxes]
        nbytes = sum(s[2] for s in states)
        cpus = [b.cpu_s() or 0.0 for b in boxes]
        mbit = nbytes * 8 / took / 1e6
        log(f"fleet: {sum(s[1] for s in states)}/{total} recordings, {nbytes / 1e6:.1f} MB replicated in {took:.1f} s "
            f"= {nbytes / took / 1e6:.1f} MB/s ({mbit:.0f} Mbit/s: the upload of {mbit / MBIT:.0f} cameras at "
            f"{MBIT} Mbit/s, {mbit / MBIT / CAMERAS:.1f} boxes of {CAMERAS}, sustained); bytes sent while producing "
            f"{sent / 1e6:.1f} MB; per-box CPU {min(cpus):.2f}-{max(cpus):.2f} s (mean {sum(cpus) / len(cpus):.2f} s "
            f"= {sum(cpus) / len(cpus) / took * 100:.1f}% of a core, {sum(cpus) / max(nbytes / 1e9, 1e-9):.1f} CPU-s "
            f"per GB)")
        check("fleet: 20 boxes x 8 cameras at 4 Mbit/s replicate every recording into one cluster", done,
              f"lag when production stopped: {waiting} recording(s), oldest {oldest:.1f} s; all in after {took:.1f} s; "
              f"{mbit:.0f} Mbit/s absorbed; per-box CPU mean {sum(cpus) / len(cpus):.2f} s")
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
