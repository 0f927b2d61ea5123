#!/usr/bin/python3
"""The onboarding acceptance suite (issue 17): three ONVIF camera
simulators (tests/onvif/sim.py) answering WS-Discovery on loopback only,
real GStreamer test cameras behind their stream URIs, and a real daemon.
Prints PASS/FAIL per scenario with its figures, then a summary. Exit status
0 only if every scenario passed.

    tests/onboarding/run.py [--vigil BIN] [--only 1,4] [--keep]

Scenarios: 1 discovery, 2 a wrong password and an unreachable camera,
3 onboarding by ONVIF (before the daemon starts), 4 main and sub streams
live, 5 the camera's clock (90 s off: flagged, then sync-time), 6 PTZ
(operator moves reach the camera exactly; a viewer is refused and audited),
7 camera events on the timeline. Every process is killed by PID in a
`finally`. scripts/onvif-test installs what it needs and builds the binary."""
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
from box import OnboardingBox  # noqa: E402
from verdict import Verdict  # noqa: E402  (tests/hostile/verdict.py)

BEFORE = [(1, "discovery", scenarios.discover), (2, "wrong password, unreachable", scenarios.wrong_password),
          (3, "onboarding by ONVIF", scenarios.onboard_before_start)]
AFTER = [(4, "main and sub streams", scenarios.streams), (6, "PTZ", scenarios.ptz),
         (7, "camera events", scenarios.events), (5, "the camera's clock", scenarios.clock)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vigil", default=os.environ.get("VIGIL_BIN", "target/release/vigil"))
    p.add_argument("--only", help="comma-separated scenario numbers")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    only = set(a.only.split(",")) if a.only else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    verdicts = []
    box = OnboardingBox(a.vigil, keep=a.keep)

    def run(plan):
        for n, name, f in plan:
            # 3 writes the cameras the later scenarios use: it always runs.
            if only is None or str(n) in only or n == 3:
                v = Verdict(n, name)
                try:
                    f(box, v)
                except Exception as e:  # noqa: BLE001: one crash must not stop the others
                    v.check(False, f"the scenario crashed: {type(e).__name__}: {e}")
                    traceback.print_exc()
                v.finish()
                verdicts.append(v)
    try:
        box.provision()
        print(f"simulators: " + ", ".join(f"{s.name} {s.port}" for s in box.sims.values()) + f" ({box.dir})",
              flush=True)
        run(BEFORE)
        box.start_daemon()
        print(f"daemon pid {box.daemon.pid}, HTTPS on 127.0.0.1:{box.port}", flush=True)
        run(AFTER)
    except Exception as e:  # noqa: BLE001
        v = Verdict("setup", "simulators, cameras, installation, daemon")
        v.check(False, f"{type(e).__name__}: {e}")
        traceback.print_exc()
        v.finish()
        verdicts.append(v)
    finally:
        if any(not v.passed for v in verdicts) and box.runs:
            print(f"--- daemon log (last 3000 characters) ---\n{box.log()[-3000:]}", flush=True)
        box.close()
    print("\n=== onboarding suite: summary")
    for v in verdicts:
        print(f"{str(v.number):<7}{'PASS' if v.passed else 'FAIL':<8}{v.seconds:>5.0f}  {v.name}")
    failed = [v for v in verdicts if not v.passed]
    print(f"onboarding: {len(verdicts) - len(failed)} passed, {len(failed)} failed in {time.monotonic() - t0:.0f} s")
    return 1 if failed or not verdicts else 0


if __name__ == "__main__":
    sys.exit(main())
