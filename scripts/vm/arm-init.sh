#!/bin/sh
# /init of the arm64 test boot (scripts/arm-vm-test): the TPM, a vivid USB
# camera recorded by vigil for 30 s, its export written raw to /dev/vda for
# the host. Every result is an ARMCHECK line on the console; then power off.
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs -o size=256m tmpfs /srv; mount -t tmpfs tmpfs /tmp
out() { echo "ARMCHECK $*" > /dev/console; }
up() { cut -d' ' -f1 /proc/uptime; }
out "kernel $(uname -r) on $(uname -m) up at $(up) s"
modprobe virtio_mmio; modprobe virtio_blk; modprobe tpm_tis
for _ in $(seq 50); do [ -c /dev/tpmrm0 ] && [ -b /dev/vda ] && break; sleep 0.1; done

# TPM2_GetRandom(16) through the kernel's resource manager.
if [ -c /dev/tpmrm0 ]; then
  exec 3<>/dev/tpmrm0
  printf '\200\001\000\000\000\014\000\000\001\173\000\020' >&3
  resp=$(dd bs=64 count=1 <&3 2>/dev/null | hexdump -v -e '/1 "%02x"')
  exec 3>&-
  case $resp in
    80010000001c00000000*) out "TPM 2.0 ($(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)) answers TPM2_GetRandom: ${resp#80010000001c000000000010}" ;;
    *) out "FAIL TPM2_GetRandom: response $resp" ;;
  esac
else
  out "FAIL no /dev/tpmrm0 (tpm-tis-device)"
fi

modprobe vivid n_devs=1 node_types=0x1
for _ in $(seq 50); do [ -c /dev/video0 ] && break; sleep 0.1; done
[ -c /dev/video0 ] || out "FAIL vivid gave no /dev/video0"
vigil cameras probe | sed -n '1,4p' | while read -r l; do out "probe: $l"; done

cat > /srv/vigil.toml <<TOML
[storage]
dir = "/srv/recordings"
db = "/srv/vigil.db"
# No LUKS volume in this small boot (scripts/vm-test has one).
allow_unencrypted_volume = true

[keys]
source = "file"
file = "/srv/kek.key"

[recording]
segment_seconds = 10
stall_timeout_seconds = 10

[[camera]]
name = "usb1"
url = "v4l2:///dev/video0?format=yuyv&width=320&height=180&fps=15"
TOML
V="vigil --config /srv/vigil.toml"
$V keys init > /srv/keys-init.log 2>&1 || out "FAIL keys init: $(tail -2 /srv/keys-init.log)"
$V run > /srv/run.log 2>&1 &
pid=$!
t0=$(date +%s)
for _ in $(seq 120); do grep -q '"streaming"\|streaming camera=usb1\|camera=usb1.*streaming' /srv/run.log && break; sleep 0.5; done
grep -q 'encoding raw camera frames' /srv/run.log && out "$(grep -o 'encoder=[^ ]*' /srv/run.log | head -1) encoding at $(up) s"
sleep 30
kill "$pid"
for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
captured=$(grep -o 'captured=[0-9]*' /srv/run.log | tail -1 | cut -d= -f2)
out "vigil recorded usb1 for $(( $(date +%s) - t0 )) s: $($V recordings | awk 'NR>1 {n++; f += $5} END {printf "%d recordings, %d frames", n, f}'), captured ${captured:-?}"
grep -E 'ERROR|panicked' /srv/run.log | head -3 | while read -r l; do out "FAIL log: $l"; done
if $V verify > /srv/verify.log 2>&1; then out "verify: $(tail -1 /srv/verify.log)"; else out "FAIL verify: $(tail -2 /srv/verify.log)"; fi
if $V export --camera usb1 --start 2000-01-01T00:00:00Z --end 2100-01-01T00:00:00Z --out /srv/usb1.mp4 > /srv/export.log 2>&1; then
  size=$(stat -c %s /srv/usb1.mp4)
  dd if=/srv/usb1.mp4 of=/dev/vda bs=1M conv=fsync 2>/dev/null
  out "export-on-disk $size ${captured:-0}"
else
  out "FAIL export: $(tail -2 /srv/export.log)"
fi
out "done at $(up) s"
sync; poweroff -f
