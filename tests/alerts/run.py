#!/usr/bin/python3
"""The alerts acceptance suite (issue 16): real receivers on loopback
(mosquitto with TLS and a password, a webhook receiver that checks the
signature, Twilio's Messages API shape, an SMTP sink with STARTTLS) and
real daemons delivering to them. Prints PASS/FAIL per scenario with its
figures, then a summary. Exit status 0 only if every scenario passed.

    tests/alerts/run.py [--vigil BIN] [--only 1,4] [--keep]

Scenarios: 1 camera offline and back, 2 receivers down + kill -9,
3 disk (tmpfs full, flipped byte), 4 flapping, 5 no secrets leak,
6 `vigil alerts test`, /metrics, roles. Box A (cameras front, yard; the
recordings on a 64 MiB tmpfs) runs 6, 1, 2, 3 and its part of 5; box B
(camera flappy behind the flapping proxy, rate_limit 4) runs 4 and its
part of 5. Every process is killed by PID in a `finally`.
scripts/alerts-test installs what it needs and builds the binary."""
import argparse
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hostile"))

import scenarios  # noqa: E402
from box import AlertBox  # noqa: E402
from receivers import Receivers  # noqa: E402
from verdict import Verdict  # noqa: E402  (tests/hostile/verdict.py)


def guarded(v, f, *args):
    """Runs one scenario into Verdict v; an exception fails it."""
    try:
        f(*args, v)
    except Exception as e:  # noqa: BLE001: one scenario's crash must not stop the others
        v.check(False, f"the scenario crashed: {type(e).__name__}: {e}")
        traceback.print_exc()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigil", default=os.environ.get("VIGIL_BIN", "/tmp/vigil-alerts/vigil"))
    p.add_argument("--only", help="comma-separated scenario numbers (e.g. 1,4)")
    p.add_argument("--keep", action="store_true", help="keep the installation and receiver directories")
    a = p.parse_args()
    only = set(a.only.split(",")) if a.only else None

    def want(n):
        return only is None or str(n) in only

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    verdicts = []
    leak = Verdict(5, "no secrets leak")
    rx = Receivers(keep=a.keep)
    boxes = []
    try:
        rx.start_all()
        print(f"receivers: webhook {rx.webhook.port}, mqtt {rx.mqtt.port}, twilio {rx.twilio.port}, "
              f"smtp {rx.smtp.port} ({rx.dir})", flush=True)
        if any(want(n) for n in (1, 2, 3, 5, 6)):
            box = AlertBox(a.vigil, rx, "alerts-a", ["front", "yard"], tmpfs_mib=64, keep=a.keep)
            boxes.append(box)
            run_box(box, rx, verdicts, leak, want, [(6, "alerts test, /metrics, roles", scenarios.cli_test),
                                                    (1, "camera offline and back", scenarios.offline_and_back),
                                                    (2, "receivers down, kill -9", scenarios.receivers_down),
                                                    (3, "disk full, flipped byte", scenarios.disk)])
        if want(4):
            box = AlertBox(a.vigil, rx, "alerts-b", ["flappy"], flapping="flappy", keep=a.keep,
                           # No delay: every cut is an offline alert and a resolve (a
                           # 1 s delay would withdraw these 0.6 s blips silently).
                           offline_after_seconds=0, gap_after_seconds=3600, flap_threshold=3,
                           digest_after_seconds=10, digest_threshold=5, rate_limit=4)
            boxes.append(box)
            run_box(box, rx, verdicts, leak, want, [(4, "flapping", scenarios.flapping)])
    except Exception as e:  # noqa: BLE001
        v = Verdict("setup", "receivers, installation, daemon, cameras")
        v.check(False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
        v.finish()
        verdicts.append(v)
    finally:
        failed_any = any(not v.passed for v in verdicts) or not leak.passed
        for b in boxes:
            if failed_any and b.runs:
                print(f"--- {b.name} daemon log (last 2000 characters) ---\n{b.log()[-2000:]}", flush=True)
            b.close()
        rx.close()
    if want(5) and leak.figures:
        leak.finish()
        verdicts.append(leak)
    print("\n=== alerts suite: summary")
    print(f"{'#':<7}{'result':<8}{'s':>5}  scenario")
    for v in verdicts:
        print(f"{str(v.number):<7}{'PASS' if v.passed else 'FAIL':<8}{v.seconds:>5.0f}  {v.name}")
    failed = [v for v in verdicts if not v.passed]
    print(f"alerts: {len(verdicts) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - t0:.0f} s")
    return 1 if failed or not verdicts else 0


def run_box(box, rx, verdicts, leak, want, plan):
    """Provisions and starts one box, runs its scenarios in order, then its
    part of the leak scan (5)."""
    t = time.monotonic()
    box.provision()
    box.start_daemon()
    box.wait_recording()
    print(f"{box.name}: daemon pid {box.daemon.pid}, HTTPS on 127.0.0.1:{box.port}, device {box.device_id}, "
          f"ready in {time.monotonic() - t:.0f} s ({box.dir})", flush=True)
    for n, name, f in plan:
        if want(n):
            v = Verdict(n, name)
            guarded(v, f, box, rx)
            v.finish()
            verdicts.append(v)
    if want(5):
        guarded(leak, scenarios.leaks, box, rx)


if __name__ == "__main__":
    sys.exit(main())
