"""A software TPM 2.0 for the replication suite's second box, as the
end-to-end tests run one (tests/src/lib.rs `Swtpm`): swtpm on loopback TCP
behind tpm2-abrmd (the resource manager a board's /dev/tpmrm0 is) on a
private D-Bus. The box seals its key-encryption key to it with
systemd-creds. Every process is killed by PID in close(), also on failure."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

TCTI = "tabrmd:bus_type=session"


def _free_pair():
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return p, p + 1
        except OSError:
            continue
    raise RuntimeError("no free pair of ports for swtpm")


def _wait(limit, f, every=0.2):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if f():
            return True
        time.sleep(every)
    return False


class Swtpm:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vigil-swtpm-")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        self.procs = []
        self.bus_address = f"unix:path={self.dir}/bus"

    def env(self):
        return dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus_address, TPM2TOOLS_TCTI=TCTI)

    def start(self):
        port, ctrl = _free_pair()
        self.procs.append(subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={ctrl},bindaddr=127.0.0.1", "--tpmstate", f"dir={self.state}",
             "--flags", "not-need-init,startup-clear"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        if not _wait(10, listening):
            raise RuntimeError(f"swtpm did not listen on {port}")
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" '
                    '"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                    f'<busconfig><type>session</type><listen>unix:path={self.dir}/bus</listen><auth>EXTERNAL</auth>'
                    '<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/>'
                    '<allow own="*"/></policy></busconfig>\n')
        self.procs.append(subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if not _wait(10, lambda: os.path.exists(os.path.join(self.dir, "bus"))):
            raise RuntimeError("the private D-Bus did not start")
        log = open(os.path.join(self.dir, "abrmd.log"), "wb")
        self.procs.append(subprocess.Popen(
            ["tpm2-abrmd", "--session", "--allow-root", "--flush-all", f"--tcti=swtpm:host=127.0.0.1,port={port}"],
            stdout=subprocess.DEVNULL, stderr=log, env=self.env()))
        log.close()
        ok = _wait(15, lambda: subprocess.run(["tpm2_getcap", "properties-fixed"], env=self.env(),
                                               capture_output=True).returncode == 0, every=0.3)
        if not ok:
            raise RuntimeError("tpm2-abrmd did not answer: " + open(os.path.join(self.dir, "abrmd.log")).read()[-500:])
        return self

    def keys_toml(self, d, pcrs="7"):
        return (f'[keys]\nsource = "credential"\ncredential = "{d}/kek.cred"\ntpm2_device = "{TCTI}"\n'
                f'tpm2_pcrs = "{pcrs}"\n')

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)
