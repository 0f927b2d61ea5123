#!/usr/bin/python3
"""The hostile-client suite (issue 14): attacks a real daemon on loopback
and prints PASS/FAIL per attack with its figures, then a summary table.
Exit status 0 only if every attack was repelled.

    tests/hostile/run.py [--vigil BIN] [--only 1,7,9] [--keep]

`--vigil` (or $VIGIL_BIN) is the binary; scripts/hostile-test builds it and
installs what the suite needs. Every process it starts is killed by PID in
a `finally`, also when an attack fails or the run is interrupted."""
import argparse
import os
import resource
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anchor  # noqa: E402
import auth  # noqa: E402
import egress  # noqa: E402
import flood  # noqa: E402
import notes  # noqa: E402
import tls  # noqa: E402
from fixture import ADMIN_PW, NOFILE, Fixture, login  # noqa: E402
from verdict import Verdict  # noqa: E402

RSS_WAIT = 60  # seconds after the slow-client attack before RSS is judged


def guarded(number, name, f, *args):
    """Runs one attack; an exception fails it (with the traceback's last line)."""
    try:
        return f(*args)
    except Exception as e:  # noqa: BLE001: one attack's crash must not stop the others
        v = Verdict(number, name)
        v.check(False, f"the attack crashed: {type(e).__name__}: {e}")
        traceback.print_exc()
        v.finish()
        return v


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigil", default=os.environ.get("VIGIL_BIN", "/tmp/vigil-hostile/vigil"))
    p.add_argument("--only", help="comma-separated attack numbers (e.g. 1,7,9b)")
    p.add_argument("--keep", action="store_true", help="keep the installation directory")
    a = p.parse_args()
    only = set(a.only.split(",")) if a.only else None

    def want(n):
        return only is None or str(n) in only

    # 1,024 client sockets, and the daemon's (started from here) as its unit allows.
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    verdicts = []
    fx = Fixture(a.vigil, keep=a.keep)
    try:
        fx.provision()
        fx.start_daemon()
        print(f"daemon pid {fx.daemon.pid}, HTTPS on 127.0.0.1:{fx.port}, installation {fx.dir}", flush=True)
        # 4 first: the admin's one-time password is changed to ADMIN_PW there.
        verdicts.append(guarded(4, "one-time admin password", auth.one_time_password, fx))
        if login(fx.port, "admin", ADMIN_PW, src="127.0.0.61")[1] is None:
            raise RuntimeError("the admin cannot log in with the new password; nothing else can run")
        fx.wait_recording()
        for n, name, f in [(2, "login throttle race", auth.login_race),
                           (3, "/me/password oracle", auth.password_oracle),
                           (5, "footage egress", egress.footage_egress),
                           (8, "API tokens", auth.tokens),
                           (9, "notes", notes.notes)]:
            if want(n):
                verdicts.append(guarded(n, name, f, fx))
        mem = {}
        if want(1) or want(11):
            verdicts.append(guarded(1, "slow clients", flood.slow_clients, fx, mem))
        # While the daemon rests for RSS_WAIT s: the offline bundle checks (CLI only).
        if want("9b"):
            verdicts.append(guarded("9b", "bundle forgery", notes.bundle_forgery, fx))
        if want(11) and "attack_end" in mem:
            left = mem["attack_end"] + RSS_WAIT - time.monotonic()
            if left > 0:
                print(f"    (waiting {left:.0f} s for memory to settle)", flush=True)
                time.sleep(left)
            verdicts.append(guarded(11, "memory", flood.memory, fx, mem))
        # 6 late: by now the archive outgrows the kernel's socket buffers,
        # so an unread stream really stalls (and holds its slot).
        if want(6):
            verdicts.append(guarded(6, "stalled streams", flood.stalled_streams, fx))
        if want(10):
            verdicts.append(guarded(10, "testssl.sh", tls.testssl, fx))
        if want(7):
            fx.stop_daemon()
            verdicts.append(guarded(7, "audit anchor", anchor.audit_anchor, fx))
    except Exception as e:  # noqa: BLE001
        v = Verdict("setup", "installation, daemon, camera")
        v.check(False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
        v.finish()
        verdicts.append(v)
    finally:
        if any(not v.passed for v in verdicts):
            tail = fx.log()[-2000:]
            print(f"--- daemon log (last 2000 characters) ---\n{tail}", flush=True)
        fx.close()
    print("\n=== hostile-client suite: summary")
    print(f"{'#':<6}{'result':<8}{'s':>5}  attack")
    for v in verdicts:
        print(f"{str(v.number):<6}{'PASS' if v.passed else 'FAIL':<8}{v.seconds:>5.0f}  {v.name}")
    failed = [v for v in verdicts if not v.passed]
    print(f"hostile: {len(verdicts) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - t0:.0f} s")
    return 1 if failed or not verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
