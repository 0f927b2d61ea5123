"""10: testssl.sh (the Debian package) against the HTTPS port: protocols,
standard cipher categories and the vulnerability checks, offline."""
import json
import shutil
import subprocess
import time

from verdict import Verdict

OLD_PROTOCOLS = {"SSLv2", "SSLv3", "TLS1", "TLS1_1"}
VULNERABILITIES = {"heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS",
                   "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "DROWN_hint", "LOGJAM",
                   "LOGJAM-common_primes", "BEAST", "BEAST_CBC_TLS1", "LUCKY13", "winshock", "RC4", "opossum"}
BAD = {"MEDIUM", "HIGH", "CRITICAL"}


def testssl(fx):
    v = Verdict(10, "testssl.sh: no vulnerability, nothing below TLS 1.2")
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if not v.check(exe is not None, "testssl.sh is not installed (scripts/hostile-test installs it)"):
        v.finish()
        return v
    out = fx.path("testssl.json")
    t = time.monotonic()
    try:
        p = subprocess.run([exe, "--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none",
                            "--connect-timeout", "5", "--openssl-timeout", "5", "-p", "-s", "-U",
                            "--jsonfile", out, f"https://127.0.0.1:{fx.port}"],
                           capture_output=True, text=True, timeout=180)
        code = p.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    took = time.monotonic() - t
    try:
        with open(out) as f:
            findings = json.load(f)
    except (OSError, ValueError):
        findings = []
    offered = [f["id"] for f in findings if f.get("id") in OLD_PROTOCOLS
               and "offered" in f.get("finding", "") and "not offered" not in f.get("finding", "")]
    protos = {f["id"]: f.get("finding", "") for f in findings if f.get("id") in OLD_PROTOCOLS | {"TLS1_2", "TLS1_3"}}
    vulns = [f"{f['id']} ({f.get('severity')}): {f.get('finding', '')}" for f in findings
             if f.get("id") in VULNERABILITIES and f.get("severity") in BAD]
    problems = [f"{f['id']}: {f.get('finding', '')}" for f in findings if f.get("severity") == "FATAL"]
    v.figure(f"testssl.sh exit {code} in {took:.0f} s; {len(findings)} findings; protocols {protos}")
    v.check(findings, f"testssl.sh wrote no findings (exit {code})")
    v.check(code != "timeout", "testssl.sh did not finish within 180 s")
    v.check(not offered, f"protocols below TLS 1.2 offered: {offered}")
    v.check(not vulns, f"vulnerability findings of severity MEDIUM or above: {vulns}")
    v.check(not problems, f"testssl.sh could not scan: {problems}")
    v.finish()
    return v
