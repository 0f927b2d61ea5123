#!/usr/bin/env python3
"""Issue 18's acceptance suite: off-box replication into a real 3-node Garage
cluster (replication factor 3) on loopback, with a real daemon recording two
real GStreamer cameras.

1. A replica that matches: the cameras record for 3 minutes with
   replication on; every finished recording is in the bucket, `vigil replica
   verify` passes, the bucket holds no plaintext (no H.264 parameter sets, no
   MP4 boxes; the detector is first shown to find them in a real MP4).
   During those minutes:
   - node loss: one Garage node is killed mid-upload, uploads go on (quorum);
   - kill -9: the daemon is killed with a multipart upload in flight; after a
     restart it resumes that upload (its parts are not sent again);
   - outage: the whole cluster is down for 60 s: the lag rises, then catches
     up; no recording is uploaded twice.
2. Tampering: a byte of a replicated object is flipped through the S3 API;
   `vigil replica verify` names that object and exits 1.
3. Restore: a second box (its own data directory and keys, no access to the
   first box's database) gets only the recovery key: `vigil replica export`
   makes an MP4 with the same frame count as the first box's export of the
   same range, and `vigil replica restore` brings the recordings into its
   storage, where its own `vigil export` gives the same frames again.
4. Fleet: 20 simulated boxes (each a real daemon with 8 cameras' recordings
   at 4 Mbit/s imported) replicate into the same cluster at once: throughput,
   per-box CPU, the lag at the end.

Every process is killed by PID, also on failure. Exit 0 only if all passed.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hostile"))
sys.path.insert(0, HERE)
import fixture  # noqa: E402  (tests/hostile/fixture.py)
from fixture import kill_pid, wait_for  # noqa: E402
from garage import GarageCluster  # noqa: E402
from swtpm import Swtpm  # noqa: E402

RESULTS = []
T0 = time.monotonic()
BUCKET = "vigil"
PART_MIB = 5


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f} s] {msg}", flush=True)


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok), detail))
    log(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    return ok


class Box(fixture.Fixture):
    """A box with two cameras whose recordings are 20 s at ~3 Mbit/s (two
    5 MiB parts each, so every recording is a multipart upload)."""
    CAMERAS = [("cam1", "/h264"), ("cam2", "/h264")]
    USERS = [("tech", "admin")]
    SEGMENT_SECONDS = 20
    PLAIN_LISTEN = False
    CAMERA_ARGS = ["--size", "640x360", "--fps", "15", "--gop", "15", "--bitrate", "3000", "--pattern", "snow"]

    def __init__(self, vigil_bin, replication, keep=False, cameras=True, tpm=None):
        super().__init__(vigil_bin, keep=keep)
        self.replication = replication
        self.with_cameras = cameras
        self.tpm = tpm

    def env(self, **extra):
        env = self.tpm.env() if self.tpm else dict(os.environ)
        env.update(extra)
        return env

    def cli(self, *args, stdin=None, timeout=120):
        env = self.env(VIGIL_LOG="warn", NO_COLOR="1")
        return subprocess.run([self.bin, "--config", self.config, *args], input=stdin, capture_output=True,
                              text=True, timeout=timeout, env=env)

    def start_camera(self):
        if not self.with_cameras:
            self.camera_port = 9
            return
        super().start_camera()

    def write_config(self):
        super().write_config()
        if not self.with_cameras:
            with open(self.config) as f:
                text = f.read()
            text = re.sub(r"\[\[camera\]\]\nname = \"[^\"]+\"\nurl = \"[^\"]+\"\n\n", "", text)
            with open(self.config, "w") as f:
                f.write(text)
        if self.tpm:
            with open(self.config) as f:
                text = f.read()
            text = re.sub(r'\[keys\]\nsource = "file"\nfile = "[^"]+"\n', self.tpm.keys_toml(self.dir), text)
            if "credential" not in text:
                raise RuntimeError("could not put the TPM's key source in the second box's config")
            with open(self.config, "w") as f:
                f.write(text)
        with open(self.config, "a") as f:
            f.write("\n" + self.replication)

    @property
    def recovery_key_file(self):
        return self.path("recovery-key.txt")

    def keys_init_args(self):
        return ["--recovery-key-file", self.recovery_key_file]

    def set_secret(self, secret):
        o = self.cli("secrets", "set", "replication.secret-access-key", stdin=secret)
        if o.returncode != 0:
            raise RuntimeError(f"secrets set: {o.stdout}{o.stderr}")

    def kill9(self):
        if self.daemon is not None and self.daemon.poll() is None:
            os.kill(self.daemon.pid, signal.SIGKILL)
            self.daemon.wait(10)
        self.daemon = None

    def health(self):
        s = self.admin()
        r = s.call("GET", "/health/ready")
        return (r.json() or {}).get("replication", {})

    def admin(self):
        if getattr(self, "_admin", None) is None:
            r, s = fixture.login(self.port, "tech", fixture.USER_PW)
            if s is None:
                raise RuntimeError(f"admin cannot log in: {r}")
            self._admin = s
        return self._admin

    def metric(self, name):
        r = self.admin().call("GET", "/metrics")
        m = re.search(rf"^{name} (\d+)", r.text(), re.M)
        return int(m.group(1)) if m else None

    def device_id(self):
        return self.query("SELECT device_id FROM device")[0][0] if self.query(
            "SELECT name FROM sqlite_master WHERE name = 'device'") else None


def pick_base_port():
    """A base for the cluster's 30 ports, below the kernel's ephemeral range
    (32768 and up), whose ports are all free now."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20000, 32000, 100)
        try:
            socks = []
            for p in range(base, base + 30):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of 30 ports for the Garage cluster")


def replication_toml(cluster, prefix, extra=""):
    return (f'[replication]\nendpoint = "{cluster.s3_endpoint(0)}"\nallow_http = true\nregion = "garage"\n'
            f'bucket = "{BUCKET}"\nprefix = "{prefix}"\naccess_key_id = "{cluster.access_key_id}"\n'
            f'part_size_mib = {PART_MIB}\nlag_alert_minutes = 1\n{extra}\n'
            f'[retention]\nkeep_until_replicated = true\n')


def replica_cli(vigil, cluster, prefix, *args, timeout=300, node=0):
    env = dict(os.environ, VIGIL_REPLICA_SECRET_ACCESS_KEY=cluster.secret_access_key, VIGIL_LOG="warn",
               NO_COLOR="1")
    argv = [vigil, "--config", "/nonexistent/vigil.toml", "replica", *args, "--endpoint", cluster.s3_endpoint(node),
            "--allow-http", "--region", "garage", "--bucket", BUCKET, "--prefix", prefix, "--access-key-id",
            cluster.access_key_id]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


# At least 6 bytes each, so that ~140 MB of ciphertext matches none by
# chance (expected false hits ~1e-5 per run; 4-byte marks gave ~0.25).
PLAINTEXT_MARKS = [(b"\x00\x00\x00\x01\x67\x64", "H.264 High SPS (Annex B)"),
                   (b"\x00\x00\x00\x01\x67\x42", "H.264 Baseline SPS (Annex B)"),
                   (b"\x00\x00\x00\x01\x68\xee", "H.264 PPS (Annex B)"),
                   (b"\x00\x00\x00\x01\x40\x01", "H.265 VPS (Annex B)"),
                   (b"ftypiso", "MP4 ftyp"), (b"moov\x00\x00\x00", "MP4 moov"), (b"mvhd\x00\x00", "MP4 mvhd"),
                   (b"avcC\x01\x64", "MP4 avcC (High)"), (b"avcC\x01\x42", "MP4 avcC (Baseline)"),
                   (b"hvcC\x01", "MP4 hvcC"), (b"x264 - core", "x264 SEI")]


def plaintext_marks(data):
    return [what for mark, what in PLAINTEXT_MARKS if mark in data]


def frames_of(path):
    o = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                        "stream=nb_read_frames", "-of", "csv=p=0", path], capture_output=True, text=True, timeout=120)
    try:
        return int(o.stdout.strip().split(",")[0])
    except ValueError:
        return None


def done_counts(box):
    rows = box.query("SELECT count(*), sum(q.state = 'done') FROM recording r LEFT JOIN replica q "
                     "ON q.recording_id = r.id WHERE r.state != 'writing'")
    return rows[0][0] or 0, rows[0][1] or 0


def writing_count(box):
    return box.query("SELECT count(*) FROM recording WHERE state = 'writing'")[0][0] or 0


def drained(box):
    """No recording is being written and every finished one is uploaded."""
    total, done = done_counts(box)
    return writing_count(box) == 0 and total == done and total > 0


def replicated_lines(box):
    """recording id -> the daemon log's `replicated` lines for it (all runs)."""
    out = {}
    for line in box.log().splitlines():
        if "replicated" in line and "recording=" in line:
            m = re.search(r"recording=(\d+)", line)
            if m:
                out.setdefault(int(m.group(1)), []).append(line)
    return out


def scenario_box(args, cluster, work):
    """Scenarios 1-3 on one box; returns nothing, records checks."""
    box = Box(args.vigil, "", keep=args.keep)
    box.replication = replication_toml(cluster, "box1")
    try:
        box.provision()
        box.set_secret(cluster.secret_access_key)
        box.start_daemon()
        t_start = time.monotonic()
        log("box1 recording two cameras with replication on")
        s3 = cluster.s3()

        # Node loss while uploads run: wait for the first multipart upload, then kill node 2.
        got = wait_for(90, lambda: box.query("SELECT count(*) FROM replica_part")[0][0] > 0, every=0.1)
        check("a multipart upload began", got)
        cluster.kill_node(2)
        log("killed Garage node 2 (SIGKILL) mid-upload")
        before = done_counts(box)[1]
        progressed = wait_for(90, lambda: done_counts(box)[1] >= before + 2, every=0.5)
        check("uploads go on with one of three nodes dead (quorum 2 of 3)", progressed,
              f"{done_counts(box)[1] - before} more recording(s) uploaded")
        cluster.start_node(2)
        log("node 2 back")

        # kill -9 with parts in flight.
        def in_flight():
            rows = box.query("SELECT q.recording_id, count(p.part_no) FROM replica q JOIN replica_part p "
                             "ON p.recording_id = q.recording_id WHERE q.state = 'queued' AND q.upload_id IS NOT NULL "
                             "GROUP BY q.recording_id")
            return rows[0] if rows else None
        hit = wait_for(120, in_flight, every=0.05)
        check("caught a multipart upload with a part stored", hit is not None)
        if hit:
            rec_id, parts_before = hit
            box.kill9()
            log(f"kill -9 of the daemon with recording {rec_id}'s upload in flight ({parts_before} part(s) stored)")
            box.start_daemon()
            ok = wait_for(90, lambda: box.query("SELECT state FROM replica WHERE recording_id = ?", (rec_id,))
                          [0][0] == "done", every=0.5)
            lines = replicated_lines(box).get(rec_id, [])
            m = re.search(r"bytes=(\d+).*sent_bytes=(\d+)", lines[-1]) if lines else None
            size, sent = (int(m.group(1)), int(m.group(2))) if m else (0, -1)
            check("after kill -9 the upload resumed: the parts stored before it were not sent again",
                  ok and any("resumed=true" in line for line in lines) and 0 <= sent <= size - parts_before * PART_MIB
                  * (1 << 20),
                  f"recording {rec_id}: {size} bytes, {parts_before} part(s) of {PART_MIB} MiB stored before the "
                  f"kill, {sent} bytes sent after it")

        # The whole cluster down for 60 s.
        cluster.stop_all()
        t_down = time.monotonic()
        log("the whole Garage cluster is down for 60 s")
        lag_peak = 0
        while time.monotonic() - t_down < 60:
            time.sleep(5)
            lag_peak = max(lag_peak, box.health().get("lag_seconds") or 0)
        check("lag rises while the store is down", lag_peak >= 40, f"peak lag {lag_peak} s")
        cluster.start_all()
        t_up = time.monotonic()
        log("cluster back; waiting for the lag to catch up")
        caught = wait_for(150, lambda: (box.health().get("queued_recordings") or 0) <= 2
                          and (box.health().get("lag_seconds") or 0) < 45, every=2)
        check("lag catches up after the outage", caught,
              f"{time.monotonic() - t_up:.0f} s after the cluster came back: {json.dumps(box.health())}")

        # Up to 3 minutes of recording in all, then stop the cameras and drain.
        remaining = 180 - (time.monotonic() - t_start)
        if remaining > 0:
            time.sleep(remaining)
        kill_pid(box.camera)
        box.camera = None
        log(f"cameras stopped after {time.monotonic() - t_start:.0f} s; draining")
        # The recordings the cameras were writing close when their sessions
        # end (the next read tick sees the end of the stream): count only then.
        wait_for(60, lambda: drained(box), every=1)
        total, done = done_counts(box)
        check("every finished recording is in the bucket", total > 0 and total == done and writing_count(box) == 0,
              f"{done}/{total}, {writing_count(box)} still being written")
        lines = replicated_lines(box)
        twice = {k: v for k, v in lines.items() if len(v) > 1}
        sent = box.metric("vigil_replication_sent_bytes_total") or 0
        sizes = box.query("SELECT coalesce(sum(bytes), 0) FROM replica WHERE state = 'done'")[0][0]
        # Bytes this run of the daemon stored (counted per part or object the
        # store accepted) against the recordings it finished: a byte stored
        # twice would make the first larger.
        run2 = [int(m.group(1)) for m in re.finditer(r"replicated.*?bytes=(\d+)", box.current_log())]
        over = []
        for rid, ls in lines.items():
            m = re.search(r"bytes=(\d+).*sent_bytes=(\d+)", ls[-1])
            if m and int(m.group(2)) > int(m.group(1)):
                over.append(rid)
        check("no recording was uploaded twice", not twice and not over and 0 < sent <= sum(run2),
              f"{len(lines)} recordings replicated once each; since the restart {sent} bytes stored for "
              f"{len(run2)} recordings of {sum(run2)} bytes")
        health = box.health()
        status = box.cli("status").stdout
        status_line = next((l.strip() for l in status.splitlines() if l.startswith("replication:")), "no status line")
        check("lag is in /health/ready, /metrics and vigil status",
              health.get("enabled") is True and "lag_seconds" in health
              and box.metric("vigil_replication_lag_seconds") is not None and status_line.startswith("replication:"),
              status_line)

        # What is in the bucket.
        objs = []
        token = None
        for _ in range(1000):
            kw = dict(Bucket=BUCKET, Prefix="box1/")
            if token:
                kw["ContinuationToken"] = token
            r = s3.list_objects_v2(**kw)
            objs += r.get("Contents", [])
            token = r.get("NextContinuationToken")
            if not token:
                break
        vsegs = [o["Key"] for o in objs if o["Key"].endswith(".vseg")]
        check("the bucket holds each recording, its manifest, key and audit head",
              len(vsegs) == total and any(o["Key"] == "box1/audit/head.json" for o in objs)
              and any(o["Key"].startswith("box1/keys/") for o in objs),
              f"{len(objs)} objects, {len(vsegs)} recordings, {sizes} bytes")
        # No plaintext: first prove the detector on a real MP4.
        rfc = lambda ns: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
            f".{(ns % 1_000_000_000) // 1_000_000:03d}Z"
        ranges, box_frames = {}, {}
        for cam in ("cam1", "cam2"):
            rows = box.query("SELECT min(r.start_wall_ns), max(r.end_wall_ns) FROM recording r JOIN camera c "
                             "ON c.id = r.camera_id WHERE c.name = ? AND r.state != 'writing'", (cam,))
            start_ns, end_ns = rows[0]
            # A range well inside the recordings: from 25 s after the first starts, for 60 s.
            s_ns = start_ns + 25_000_000_000
            ranges[cam] = (s_ns, min(end_ns - 5_000_000_000, s_ns + 60_000_000_000))
            out = os.path.join(work, f"box1-{cam}.mp4")
            o = box.cli("export", "--camera", cam, "--start", rfc(ranges[cam][0]), "--end", rfc(ranges[cam][1]),
                        "--out", out)
            box_frames[cam] = frames_of(out) if o.returncode == 0 else None
        mp4 = os.path.join(work, "box1-cam1.mp4")
        with open(mp4, "rb") as f:
            control = plaintext_marks(f.read(1 << 20))
        leaks = {}
        for key in vsegs:
            data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            found = plaintext_marks(data)
            if found:
                leaks[key] = found
        check("no plaintext in the bucket (the detector finds SPS and MP4 boxes in a real export)",
              box_frames["cam1"] and len(control) >= 3 and not leaks,
              f"control export shows {control}; {len(vsegs)} objects scanned, leaks: {leaks or 'none'}")
        o = replica_cli(args.vigil, cluster, "box1", "verify")
        check("vigil replica verify passes", o.returncode == 0 and "RESULT: INTACT" in o.stdout,
              (o.stdout + o.stderr).strip().splitlines()[0] if (o.stdout + o.stderr).strip() else "")

        # The fingerprint the installer wrote down (the provisioning report's).
        dev = box.cli("device").stdout
        m = re.search(r"fingerprint: ([0-9a-f]{64})", dev)
        box1_fingerprint = m.group(1) if m else ""
        o = replica_cli(args.vigil, cluster, "box1", "list", "--expect-fingerprint", box1_fingerprint)
        check("vigil replica list with the box's pinned fingerprint", o.returncode == 0 and "as expected" in o.stderr
              and f"{total} recording(s)" in o.stdout, (o.stdout.strip().splitlines() or [""])[-1])
        o = replica_cli(args.vigil, cluster, "box1", "verify", "--expect-fingerprint", "ab" * 32)
        check("a replica whose signing key is not the pinned one is refused", o.returncode == 1
              and "not the expected" in o.stderr, o.stderr.strip().splitlines()[-1] if o.stderr.strip() else "")

        # 3. Restore on a second box with only the recovery key.
        tpm = Swtpm().start()
        box2 = Box(args.vigil, "", keep=args.keep, cameras=False, tpm=tpm)
        box2.replication = ""
        try:
            box2.provision()
            st = box2.cli("keys", "status").stdout
            check("the second box seals its own key with a new (software) TPM", "systemd credential" in st,
                  next((l.strip() for l in st.splitlines() if "systemd credential" in l), st.strip()[-200:]))
            for cam in ("cam1", "cam2"):
                s_ns, e_ns = ranges[cam]
                out2 = os.path.join(work, f"box2-replica-{cam}.mp4")
                o = replica_cli(args.vigil, cluster, "box1", "export", "--recovery-key-file", box.recovery_key_file,
                                "--camera", cam, "--start", rfc(s_ns), "--end", rfc(e_ns), "--out", out2)
                f2 = frames_of(out2) if o.returncode == 0 else None
                check(f"vigil replica export of {cam} on another machine: the same frames as the box's own export",
                      o.returncode == 0 and f2 is not None and f2 == box_frames[cam],
                      f"box1 {box_frames[cam]} frames, replica {f2} frames; {o.stdout.strip()[:160]} "
                      f"{o.stderr.strip()[-300:] if o.returncode else ''}")
            s_ns, e_ns = ranges["cam1"]
            o = replica_cli(args.vigil, cluster, "box1", "export", "--recovery-key-file", box2.recovery_key_file,
                            "--camera", "cam1", "--start", rfc(s_ns), "--end", rfc(e_ns),
                            "--out", os.path.join(work, "wrong-key.mp4"))
            check("another box's recovery key opens nothing", o.returncode != 0 and "not the recovery key" in
                  (o.stdout + o.stderr), (o.stdout + o.stderr).strip()[-200:])
            restore = [args.vigil, "--config", box2.config, "replica", "restore", "--recovery-key-file",
                       box.recovery_key_file, "--endpoint", cluster.s3_endpoint(0), "--allow-http",
                       "--region", "garage", "--bucket", BUCKET, "--prefix", "box1", "--access-key-id",
                       cluster.access_key_id]
            env = box2.env(VIGIL_REPLICA_SECRET_ACCESS_KEY=cluster.secret_access_key, VIGIL_LOG="warn")
            o = subprocess.run(restore, capture_output=True, text=True, timeout=300, env=env)
            check("restore refuses to run without the old box's pinned fingerprint",
                  o.returncode == 2 and "restore writes into this box" in o.stderr, o.stderr.strip()[-160:])
            o = subprocess.run(restore + ["--expect-fingerprint", box1_fingerprint], capture_output=True, text=True,
                               timeout=300, env=env)
            frames3 = {}
            for cam in ("cam1", "cam2"):
                s_ns, e_ns = ranges[cam]
                out3 = os.path.join(work, f"box2-restored-{cam}.mp4")
                o2 = box2.cli("export", "--camera", cam, "--start", rfc(s_ns), "--end", rfc(e_ns), "--out", out3)
                frames3[cam] = frames_of(out3) if o2.returncode == 0 else o2.stderr.strip()[-200:]
            check("vigil replica restore into the second box, then its own export of each camera: same frames",
                  o.returncode == 0 and frames3 == box_frames,
                  f"{o.stdout.strip()[:200]} {o.stderr.strip()[-300:] if o.returncode else ''}; "
                  f"box1 {box_frames}, box2 {frames3}")
            o = box2.cli("verify")
            check("the restored recordings pass the second box's vigil verify", o.returncode == 0,
                  (o.stdout + o.stderr).strip().splitlines()[-1] if (o.stdout + o.stderr).strip() else "")
        finally:
            box2.close()
            tpm.close()

        # Re-encryption on the box: the recordings under that key go again.
        key = box.query("SELECT lower(hex(r.key_id)) FROM recording r JOIN camera c ON c.id = r.camera_id "
                        "WHERE c.name = 'cam1' LIMIT 1")[0][0]
        before = {k: len(v) for k, v in replicated_lines(box).items()}
        o = box.cli("keys", "reencrypt", "--key", key, "--reason", "test", timeout=300)
        requeued = wait_for(120, lambda: box.query("SELECT count(*) FROM replica WHERE state = 'queued'")[0][0] == 0
                            and len(replicated_lines(box)) and sum(len(v) for v in replicated_lines(box).values())
                            > sum(before.values()), every=1)
        wait_for(60, lambda: box.query("SELECT count(*) FROM replica WHERE state = 'queued'")[0][0] == 0, every=1)
        again = sum(len(v) for v in replicated_lines(box).values()) - sum(before.values())
        o2 = replica_cli(args.vigil, cluster, "box1", "verify")
        s_ns, e_ns = ranges["cam1"]
        out4 = os.path.join(work, "after-reencrypt.mp4")
        o3 = replica_cli(args.vigil, cluster, "box1", "export", "--recovery-key-file", box.recovery_key_file,
                         "--camera", "cam1", "--start", rfc(s_ns), "--end", rfc(e_ns), "--out", out4)
        check("after vigil keys reencrypt the new ciphertext replaces the old in the bucket, and it verifies",
              o.returncode == 0 and requeued and again > 0 and o2.returncode == 0 and o3.returncode == 0
              and frames_of(out4) == box_frames["cam1"],
              f"{o.stdout.strip()[:120]}{o.stderr.strip()[-200:] if o.returncode else ''}; {again} recording(s) "
              f"uploaded again; verify: {(o2.stdout.strip().splitlines() or [''])[-1]}")

        # 2. Tampering through the S3 API.
        victim = sorted(vsegs)[len(vsegs) // 2]
        data = bytearray(s3.get_object(Bucket=BUCKET, Key=victim)["Body"].read())
        data[len(data) // 2] ^= 0x01
        s3.put_object(Bucket=BUCKET, Key=victim, Body=bytes(data))
        o = replica_cli(args.vigil, cluster, "box1", "verify")
        rel = victim[len("box1/"):]
        check("a flipped byte: vigil replica verify names the object and exits 1",
              o.returncode == 1 and rel in o.stdout and "altered" in o.stdout,
              next((l for l in o.stdout.splitlines() if "PROBLEM" in l), o.stderr.strip()[-200:]))
    finally:
        box.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="box,fleet")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vigil-replication-")
    cluster = GarageCluster(os.path.join(work, "garage"), nodes=3, rf=3, base_port=pick_base_port(), log=log)
    try:
        took = cluster.start()
        log(f"Garage cluster of 3 nodes (replication factor 3) up in {took:.1f} s")
        cluster.create_bucket_and_key(BUCKET)
        only = set(args.only.split(","))
        if "box" in only:
            try:
                scenario_box(args, cluster, work)
            except Exception as e:  # a broken step fails the suite, never hangs it
                check("scenarios 1-3 ran to the end", False, repr(e))
        if "fleet" in only:
            import fleet
            try:
                fleet.run(args, cluster, work, check, log)
            except Exception as e:
                check("the fleet ran to the end", False, repr(e))
    finally:
        cluster.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"replication suite: {len(RESULTS) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - T0:.0f} s")
    for n in failed:
        print(f"  FAILED: {n}")
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
