#!/usr/bin/env python3
"""The Garage cluster harness's proof, with an independent S3 client (boto3).

Run:  scripts/replication-selftest           (builds Garage once, makes the venv)
  or: $REPLICATION_PY tests/replication/selftest.py --garage "$GARAGE_BIN"

Starts a 3-node Garage cluster (replication factor 3) on loopback
(tests/replication/garage.py), makes a bucket and a key with Garage's CLI, then
checks with boto3: a put/get round trip; a multipart upload of 2 x 5 MiB parts
with ChecksumAlgorithm SHA256 and each part's x-amz-checksum-sha256; that the
server VERIFIES per-part checksums: an UploadPart whose x-amz-checksum-sha256
does not match its body is refused (with the payload signed, and with
UNSIGNED-PAYLOAD, where that header is the only integrity check), as is one
whose Content-MD5 does not match, and one whose signed x-amz-content-sha256
does not match (the HTTP status and S3 error code are printed), a refused part
leaves no part behind and a retry completes the upload intact; then kills one
node (SIGKILL): a put still succeeds (write quorum 2 of 3); stops every node
and starts them again: every object is still there, byte for byte.

Prints one PASS/FAIL line per check with its time, then "N passed, M failed";
exits 0 only if all passed. Every wait is bounded; Garage's processes are
killed by PID at the end, on failure and at exit."""
import argparse
import base64
import hashlib
import http.client
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from garage import S3_REGION, GarageCluster, GarageError, summary, wait_until  # noqa: E402

import boto3  # noqa: E402,F401  (fails early when run outside the venv)
from botocore.auth import S3SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

MIB = 1024 * 1024
PART_SIZE = 5 * MIB
BUCKET = "vigil"

RESULTS = []


def b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def b64_md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def check(name, fn):
    """Runs fn(); it returns a detail string (PASS) or raises (FAIL)."""
    started = time.monotonic()
    try:
        detail = fn() or ""
        ok = True
    except Exception as e:  # noqa: BLE001 - every failure is reported
        detail = f"{type(e).__name__}: {e}"
        if os.environ.get("SELFTEST_TRACE"):
            traceback.print_exc()
        ok = False
    took = time.monotonic() - started
    RESULTS.append((name, ok))
    print(f"{'PASS' if ok else 'FAIL'} {name} ({took:.2f} s){': ' + detail if detail else ''}",
          flush=True)
    return ok


def short(message, limit=110):
    """Garage's digest errors end in both digests as byte lists: keep the head."""
    message = message or ""
    return message if len(message) <= limit else message[:limit] + "..."


def client_error(e):
    """(HTTP status, S3 error code, message) of a botocore ClientError."""
    return (e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            e.response.get("Error", {}).get("Code"),
            short(e.response.get("Error", {}).get("Message")))


class SentHeaders:
    """Records the headers of the last request boto3 sent (event before-send),
    to show which checksum headers went on the wire."""

    def __init__(self, client):
        self.last = {}
        client.meta.events.register("before-send.s3.*", self._record)

    def _record(self, request, **_):
        self.last = {k.lower(): (v.decode() if isinstance(v, bytes) else v)
                     for k, v in request.headers.items()}

    def checksum_headers(self):
        return {k: v for k, v in self.last.items()
                if k.startswith("x-amz-checksum") or k in ("content-md5", "x-amz-content-sha256")}


class FixedPayloadHashAuth(S3SigV4Auth):
    """SigV4 with an x-amz-content-sha256 of our choosing (UNSIGNED-PAYLOAD or
    a wrong hash), which botocore's client never sends over plain http."""

    def __init__(self, credentials, payload_hash):
        super().__init__(credentials, "s3", S3_REGION)
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


def raw_upload_part(cluster, key, upload_id, part_number, body, payload_hash, headers):
    """An UploadPart signed by hand: returns (HTTP status, response body text)."""
    endpoint = cluster.s3_endpoint(0)
    query = urllib.parse.urlencode({"partNumber": part_number, "uploadId": upload_id},
                                   quote_via=urllib.parse.quote)
    path = f"/{BUCKET}/{urllib.parse.quote(key)}?{query}"
    request = AWSRequest(method="PUT", url=endpoint + path, data=body, headers=dict(headers))
    creds = Credentials(cluster.access_key_id, cluster.secret_access_key)
    FixedPayloadHashAuth(creds, payload_hash).add_auth(request)
    host, port = urllib.parse.urlsplit(endpoint).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=dict(request.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def xml_field(text, field):
    start = text.find(f"<{field}>")
    end = text.find(f"</{field}>")
    return text[start + len(field) + 2:end] if 0 <= start < end else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--garage", default=os.environ.get("GARAGE_BIN", "garage"),
                    help="the garage binary (default: $GARAGE_BIN)")
    ap.add_argument("--base-port", type=int, default=29100)
    ap.add_argument("--workdir", help="keep the cluster's files here (default: a temp dir, removed)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = args.workdir or tempfile.mkdtemp(prefix="vigil-garage-selftest.")
    cluster = GarageCluster(workdir, nodes=3, rf=3, base_port=args.base_port,
                            garage_bin=args.garage, log=lambda m: print(f"     {m}", flush=True))
    state = {}
    try:
        run_checks(cluster, state)
    finally:
        pids = [n.proc.pid for n in cluster.nodes if n.proc]
        cluster.close()

        def all_gone():
            alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if alive:
                raise GarageError(f"still running: {alive}")
            return f"pids {pids} gone"

        check("close() kills every node by PID", all_gone)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = sum(1 for _, ok in RESULTS if not ok)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def run_checks(cluster, state):
    def start():
        took = cluster.start()
        state["startup_s"] = took
        return f"3 nodes, rf 3, layout applied, all healthy in {took:.1f} s; {summary(cluster)}"

    if not check("cluster starts (3 nodes, replication factor 3, sqlite metadata)", start):
        return

    def bucket_and_key():
        key_id, secret = cluster.create_bucket_and_key(BUCKET)
        s3 = cluster.s3(0)
        wait_until("the new key to work on the bucket",
                   lambda: s3.head_bucket(Bucket=BUCKET) is not None, timeout_s=20)
        return f"bucket {BUCKET}, key {key_id} (read, write, owner)"

    if not check("bucket and key made with garage's CLI", bucket_and_key):
        return

    s3 = cluster.s3(0)
    sent = SentHeaders(s3)
    objects = {}  # key -> bytes, all read back after the restart

    def put_get():
        body = os.urandom(64 * 1024) + b"vigil"
        put = s3.put_object(Bucket=BUCKET, Key="box1/hello.bin", Body=body)
        got = s3.get_object(Bucket=BUCKET, Key="box1/hello.bin")["Body"].read()
        if got != body:
            raise GarageError(f"read back {len(got)} bytes that differ from the {len(body)} put")
        etag = put["ETag"].strip('"')
        if etag != hashlib.md5(body).hexdigest():
            raise GarageError(f"ETag {etag} is not the body's MD5")
        objects["box1/hello.bin"] = body
        return f"{len(body)} bytes, ETag = MD5"

    check("put_object / get_object round trip", put_get)

    def multipart_upload(key, parts, corrupt=None):
        """Multipart with ChecksumAlgorithm SHA256, each part sent with its own
        x-amz-checksum-sha256. Returns the completed object's head."""
        mpu = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256")
        upload_id = mpu["UploadId"]
        done = []
        state["part_headers"] = {}
        for number, part in enumerate(parts, start=1):
            resp = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number,
                                  Body=part, ChecksumSHA256=b64_sha256(part))
            if resp.get("ChecksumSHA256") != b64_sha256(part):
                raise GarageError(f"part {number}: the server echoed ChecksumSHA256 "
                                  f"{resp.get('ChecksumSHA256')}, sent {b64_sha256(part)}")
            if sent.last.get("x-amz-checksum-sha256") != b64_sha256(part):
                raise GarageError(f"part {number}: boto3 sent {sent.checksum_headers()}")
            state["part_headers"] = sent.checksum_headers()
            done.append({"ETag": resp["ETag"], "PartNumber": number,
                         "ChecksumSHA256": b64_sha256(part)})
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
        return s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")

    def multipart():
        parts = [os.urandom(PART_SIZE), os.urandom(PART_SIZE)]
        key = "box1/recordings/cam1/000000000001.vseg"
        head = multipart_upload(key, parts)
        body = b"".join(parts)
        got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if got != body:
            raise GarageError("the completed object differs from its parts")
        objects[key] = body
        return (f"2 x 5 MiB, ContentLength {head['ContentLength']}, "
                f"object ChecksumSHA256 {head.get('ChecksumSHA256')}, ETag {head['ETag']}; "
                f"integrity headers sent with each part: {sorted(state['part_headers'])}")

    check("multipart upload, 2 x 5 MiB, ChecksumAlgorithm SHA256, per-part x-amz-checksum-sha256",
          multipart)

    def refused_part(key):
        """Starts a SHA256 multipart upload of two random 5 MiB parts and
        sends part 1 correctly; the caller sends part 2 wrongly, then
        finish() checks that it left no part and completes the upload.
        Returns (upload id, parts, part 1's response)."""
        parts = [os.urandom(PART_SIZE), os.urandom(PART_SIZE)]
        mpu = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="SHA256")
        upload_id = mpu["UploadId"]
        first = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1,
                               Body=parts[0], ChecksumSHA256=b64_sha256(parts[0]))
        return upload_id, parts, first

    def finish(key, upload_id, parts, first):
        listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload_id).get("Parts", [])
        numbers = [p["PartNumber"] for p in listed]
        if numbers != [1]:
            raise GarageError(f"after the refused part 2 the upload lists parts {numbers}, not [1]")
        second = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=2,
                                Body=parts[1], ChecksumSHA256=b64_sha256(parts[1]))
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={
            "Parts": [{"ETag": first["ETag"], "PartNumber": 1, "ChecksumSHA256": b64_sha256(parts[0])},
                      {"ETag": second["ETag"], "PartNumber": 2, "ChecksumSHA256": b64_sha256(parts[1])}]})
        body = b"".join(parts)
        if s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() != body:
            raise GarageError("the retried upload's object differs from its parts")
        objects[key] = body
        return "no part left behind; retried part accepted, object complete and intact"

    def sha256_mismatch_refused():
        key = "box1/recordings/cam1/000000000002.vseg"
        upload_id, parts, first = refused_part(key)
        wrong = b64_sha256(parts[1] + b"x")  # well formed, not this body's
        try:
            s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=2,
                           Body=parts[1], ChecksumSHA256=wrong)
        except ClientError as e:
            status, code, message = client_error(e)
            sent_now = sent.checksum_headers()
            if sent_now.get("x-amz-checksum-sha256") != wrong:
                raise GarageError(f"boto3 did not send the wrong checksum: {sent_now}") from None
            if status is None or status < 400:
                raise GarageError(f"refused with status {status}?") from None
            state["sha256"] = (status, code, message)
            tail = finish(key, upload_id, parts, first)
            return (f"refused: HTTP {status} {code} ({message}); x-amz-content-sha256 was "
                    f"{sent_now.get('x-amz-content-sha256', '')[:16]}... (the body's, signed); {tail}")
        raise GarageError("Garage ACCEPTED a part whose x-amz-checksum-sha256 does not match its body")

    check("UploadPart with a mismatching x-amz-checksum-sha256 is refused", sha256_mismatch_refused)

    def unsigned_sha256_mismatch_refused():
        key = "box1/recordings/cam1/000000000003.vseg"
        upload_id, parts, first = refused_part(key)
        wrong = b64_sha256(parts[1] + b"x")
        status, text = raw_upload_part(cluster, key, upload_id, 2, parts[1], "UNSIGNED-PAYLOAD",
                                       {"x-amz-checksum-sha256": wrong})
        if status < 400:
            raise GarageError(f"Garage ACCEPTED (HTTP {status}) an UNSIGNED-PAYLOAD part whose "
                              "x-amz-checksum-sha256 does not match its body")
        code, message = xml_field(text, "Code"), short(xml_field(text, "Message"))
        state["unsigned_sha256"] = (status, code, message)
        # The same request with the right checksum is accepted (so the refusal
        # was the checksum, not the hand-made signature).
        ok_status, ok_text = raw_upload_part(cluster, key, upload_id, 2, parts[1],
                                             "UNSIGNED-PAYLOAD",
                                             {"x-amz-checksum-sha256": b64_sha256(parts[1])})
        if ok_status != 200:
            raise GarageError(f"the correct UNSIGNED-PAYLOAD part was refused too: HTTP {ok_status} "
                              f"{xml_field(ok_text, 'Code')} ({xml_field(ok_text, 'Message')})")
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        return (f"refused: HTTP {status} {code} ({message}); "
                "the same part with its right checksum: HTTP 200")

    check("UploadPart with UNSIGNED-PAYLOAD and a mismatching x-amz-checksum-sha256 is refused",
          unsigned_sha256_mismatch_refused)

    def md5_mismatch_refused():
        key = "box1/recordings/cam1/000000000004.vseg"
        upload_id, parts, first = refused_part(key)
        wrong = b64_md5(parts[1] + b"x")
        try:
            s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=2,
                           Body=parts[1], ContentMD5=wrong, ChecksumSHA256=b64_sha256(parts[1]))
        except ClientError as e:
            status, code, message = client_error(e)
            if sent.checksum_headers().get("content-md5") != wrong:
                raise GarageError(f"boto3 did not send the wrong MD5: {sent.checksum_headers()}") from None
            state["md5"] = (status, code, message)
            return f"refused: HTTP {status} {code} ({message}); {finish(key, upload_id, parts, first)}"
        raise GarageError("Garage ACCEPTED a part whose Content-MD5 does not match its body")

    check("UploadPart with a mismatching Content-MD5 is refused", md5_mismatch_refused)

    def content_sha256_mismatch_refused():
        key = "box1/recordings/cam1/000000000005.vseg"
        upload_id, parts, first = refused_part(key)
        wrong = hashlib.sha256(parts[1] + b"x").hexdigest()
        status, text = raw_upload_part(cluster, key, upload_id, 2, parts[1], wrong, {})
        if status < 400:
            raise GarageError(f"Garage ACCEPTED (HTTP {status}) a part whose signed "
                              "x-amz-content-sha256 does not match its body")
        code, message = xml_field(text, "Code"), short(xml_field(text, "Message"))
        state["content_sha256"] = (status, code, message)
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        return f"refused: HTTP {status} {code} ({message})"

    check("UploadPart with a mismatching signed x-amz-content-sha256 is refused",
          content_sha256_mismatch_refused)

    def put_with_node_down():
        cluster.kill_node(2)
        body = os.urandom(256 * 1024)
        key = "box1/degraded.bin"
        started = time.monotonic()
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ChecksumSHA256=b64_sha256(body))
        put_s = time.monotonic() - started
        if s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() != body:
            raise GarageError("read back differs")
        objects[key] = body
        old = s3.get_object(Bucket=BUCKET, Key="box1/hello.bin")["Body"].read()
        if old != objects.get("box1/hello.bin"):
            raise GarageError("an object written before the kill no longer reads back")
        return f"node 2 SIGKILLed; put via node 0 took {put_s:.2f} s (quorum 2 of 3); reads still work"

    check("one node killed: a put still succeeds", put_with_node_down)

    def node_comes_back():
        cluster.start_node(2)
        return "node 2 restarted on its data and healthy"

    check("the killed node starts again", node_comes_back)

    def restart_all():
        # Garage's S3 server waits up to 10 s on open keep-alive connections
        # when it stops: close this client's first.
        s3.close()
        started = time.monotonic()
        cluster.stop_all()
        stop_s = time.monotonic() - started
        start_s = cluster.start_all()
        s3_again = cluster.s3(0)
        wait_until("S3 to answer after the restart",
                   lambda: s3_again.head_bucket(Bucket=BUCKET) is not None, timeout_s=30)
        for key, body in objects.items():
            got = s3_again.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            if got != body:
                raise GarageError(f"{key}: read back {len(got)} bytes that differ")
        listed = s3_again.list_objects_v2(Bucket=BUCKET, Prefix="box1/").get("KeyCount")
        return (f"stopped in {stop_s:.1f} s, started and healthy in {start_s:.1f} s; "
                f"all {len(objects)} objects read back byte for byte ({listed} listed)")

    check("all nodes stopped and started again: the objects are still there", restart_all)

    # A node on each side of the cluster serves the same bucket.
    def other_endpoint():
        s3_2 = cluster.s3(2)
        got = s3_2.get_object(Bucket=BUCKET, Key="box1/degraded.bin")["Body"].read()
        if got != objects["box1/degraded.bin"]:
            raise GarageError("node 2 serves different bytes")
        return "node 2 (down while it was written) serves the object written without it"

    check("another node's endpoint serves the same objects", other_endpoint)

    print("     verified on UploadPart: " + "; ".join(
        f"{name}: HTTP {v[0]} {v[1]}" for name, v in (
            ("x-amz-checksum-sha256", state.get("sha256")),
            ("x-amz-checksum-sha256 (UNSIGNED-PAYLOAD)", state.get("unsigned_sha256")),
            ("Content-MD5", state.get("md5")),
            ("x-amz-content-sha256", state.get("content_sha256"))) if v), flush=True)


if __name__ == "__main__":
    sys.exit(main())
