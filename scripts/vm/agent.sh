#!/bin/bash
# Runs inside the whole-board VM at every boot (vm-agent.service) and does
# the guest's part of scripts/vm-test, one phase per boot, named on the
# kernel command line (vigil.vmtest=provision|check|powercut|locked). Every result is
# a line starting with VMCHECK on the console; the host reads the serial log.
set -uo pipefail
out() { echo "VMCHECK $*" > /dev/console; }
phase=$(sed -n 's/.*vigil\.vmtest=\([a-z]*\).*/\1/p' /proc/cmdline)
up() { cut -d' ' -f1 /proc/uptime; }
# Bounded wait: wait_until SECONDS COMMAND...
wait_until() { local n=$(( $1 * 2 )); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.5; done; return 1; }
complete_recordings() { vigil --config /etc/vigil/vigil.toml recordings 2>/dev/null | awk 'NR>1 && $7=="complete"' | wc -l; }
# (Evaluated at each try, unlike an argument built once.)
more_recordings_than() { [ "$(complete_recordings)" -gt "$1" ]; }

case "$phase" in
provision)
  out "boot-1 at $(up) s: first boot, vigil-provision.service provisions"
  if wait_until 600 sh -c '[ "$(systemctl show -p ActiveState --value vigil-provision.service)" != activating ] && \
       [ "$(systemctl show -p ActiveState --value vigil-provision.service)" != inactive ]'; then :; fi
  journalctl -b -u vigil-provision.service --no-pager -o cat | sed 's/^/VMCHECK provision-log: /' > /dev/console
  if [ "$(systemctl show -p Result --value vigil-provision.service)" = success ] && \
     [ "$(systemctl show -p ActiveState --value vigil-provision.service)" = active ]; then
    a=$(systemctl show -p ExecMainStartTimestampMonotonic --value vigil-provision.service)
    b=$(systemctl show -p ExecMainExitTimestampMonotonic --value vigil-provision.service)
    out "provisioned in $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.1f", (b-a)/1e6}') s by vigil-provision.service"
    out "report $(tr -d '\n ' < /root/vigil-provisioning-report.json)"
  else
    out "FAIL provisioning: vigil-provision.service $(systemctl show -p ActiveState,Result --value vigil-provision.service | tr '\n' ' ')"
  fi
  systemctl reboot
  ;;
check)
  out "boot-2 at $(up) s"
  ready_at=none
  if systemctl is-active --quiet 'systemd-cryptsetup@vigil\x2drec.service' && [ -e /dev/mapper/vigil-rec ]; then
    out "volume unlocked at boot with no passphrase (headless): its key slots are the TPM2 token ($(cryptsetup luksDump /dev/vdb | grep -c 'systemd-tpm2')) and the recovery key only"
  else
    out "FAIL volume locked: $(journalctl -b -u 'systemd-cryptsetup@vigil\x2drec.service' --no-pager -o cat | tail -3 | tr '\n' ' ')"
  fi
  mountpoint -q /srv/vigil/recordings && out "recordings volume mounted" || out "FAIL recordings volume not mounted"
  if wait_until 120 systemctl is-active --quiet vigil.service; then
    ready_at=$(up)
    out "vigil active (Type=notify: READY) at $ready_at s, unsealed credential(s) in its credentials directory: $(ls /run/credentials/vigil.service/ 2>/dev/null | tr "\n" " ")"
  else
    out "FAIL vigil not active: $(journalctl -b -u vigil --no-pager -o cat | tail -5 | tr '\n' ' ')"
  fi
  if wait_until 120 sh -c 'vigil --config /etc/vigil/vigil.toml recordings 2>/dev/null | awk "NR>1" | grep -q .'; then
    out "boot-to-recording: the first recording exists $(up) s after the kernel started (READY at $ready_at s)"
  fi
  if wait_until 120 more_recordings_than 3; then
    out "recording: $(complete_recordings) complete recordings at $(up) s ($(systemctl show -p StatusText --value vigil.service))"
  else
    out "FAIL no recordings: $(vigil --config /etc/vigil/vigil.toml recordings 2>&1 | tail -3 | tr '\n' ' ')"
  fi
  # Provisioning again changes nothing.
  id_before=$(vigil --config /etc/vigil/vigil.toml device | sed -n 's/^device id: *//p')
  . /etc/vigil/provision.env
  # shellcheck disable=SC2086
  if /usr/libexec/vigil/provision $PROVISION_ARGS > /root/provision-again.log 2>&1 \
     && ! grep -q "formatting\|enrolling the TPM\|sealing the key\|VOLUME RECOVERY KEY\|recovery key written" /root/provision-again.log \
     && grep -q "$id_before" /root/provision-again.log; then
    out "provisioning again: nothing changed (same device $id_before)"
  else
    out "FAIL provisioning is not idempotent: $(tail -5 /root/provision-again.log | tr '\n' ' ')"
  fi
  main=$(systemctl show -p MainPID --value vigil.service)
  out "memory with 5 cameras (4 RTSP, 1 USB encoded with libx264): VmRSS $(awk '/VmRSS/{print $2}' /proc/"$main"/status) KiB, VmHWM $(awk '/VmHWM/{print $2}' /proc/"$main"/status) KiB"
  token=$(vigil --config /etc/vigil/vigil.toml tokens create --user admin --name vmtest --role operator 2>/dev/null)
  out "token $token"
  out "fingerprint $(vigil --config /etc/vigil/vigil.toml device | sed -n 's/^fingerprint: *//p')"
  # The USB camera (vivid, loaded at boot by /etc/modules-load.d): 60 s
  # recorded, then unplugged (the driver unbound, as a pulled USB cable
  # unregisters the device) and plugged back in.
  usb_frames() { vigil --config /etc/vigil/vigil.toml recordings --camera usb1 2>/dev/null | awk -v b="$1" 'NR>1 && $3 >= b {n += $5} END {print n+0}'; }
  usb_first() { vigil --config /etc/vigil/vigil.toml recordings --camera usb1 2>/dev/null | awk -v b="$1" 'NR>1 && $3 >= b {print $3; exit}'; }
  boot_utc=$(date -u -d "-$(up | cut -d. -f1) sec" +%FT%TZ)
  out "v4l2 devices: $(vigil cameras probe | grep -c '^/dev/video') ($(vigil cameras probe | sed -n 's/^\(\/dev\/video0: [^(]*\).*/\1/p'))"
  if wait_until 120 sh -c "[ -n \"\$(vigil --config /etc/vigil/vigil.toml recordings --camera usb1 2>/dev/null | awk 'NR>1' | head -1)\" ]"; then
    first=$(usb_first "$boot_utc")
    wait_s=$(( 62 - ( $(date +%s) - $(date -d "$first" +%s) ) ))
    [ "$wait_s" -gt 0 ] && sleep "$wait_s"
    out "usb1 (V4L2 vivid, YUYV encoded by vigil) recording since $first: $(usb_frames "$boot_utc") frames in complete and open recordings at $(up) s"
    since=$(date '+%F %T')
    echo vivid.0 > /sys/bus/platform/drivers/vivid/unbind
    t_unplug=$(date +%s.%N)
    if wait_until 30 sh -c "journalctl -u vigil --since '$since' -o cat | grep -q 'V4L2 capture ended'"; then
      ended=$(journalctl -u vigil --since "$since" -o cat | grep 'V4L2 capture ended' | head -1)
      captured=$(echo "$ended" | sed -n 's/.*captured=\([0-9]*\).*/\1/p')
      out "unplugged: $(echo "$ended" | tr -s ' ')"
      sleep 3
      out "v4l2-export $boot_utc $(date -u +%FT%TZ) $captured $(usb_frames "$boot_utc")"
    else
      out "FAIL the unplugged camera was not noticed: $(journalctl -u vigil --since "$since" -o cat | tail -3 | tr '\n' ' ')"
    fi
    since=$(date '+%F %T')
    before=$(usb_frames "$boot_utc")
    echo vivid.0 > /sys/bus/platform/drivers/vivid/bind
    t_plug=$(date +%s.%N)
    if wait_until 60 sh -c "[ \$(vigil --config /etc/vigil/vigil.toml recordings --camera usb1 2>/dev/null | awk 'NR>1 {n += \$5} END {print n+0}') -gt $((before + 30)) ]"; then
      out "replugged: recording resumed, $(( $(usb_frames "$boot_utc") - before )) new frames $(awk -v a="$t_plug" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s after the device came back ($(journalctl -u vigil --since "$since" -o cat | grep -c 'opening V4L2 device') reopen attempts)"
    else
      out "FAIL recording did not resume after replug: $(journalctl -u vigil --since "$since" -o cat | tail -4 | tr '\n' ' ')"
    fi
  else
    out "FAIL usb1 never recorded: $(vigil --config /etc/vigil/vigil.toml cameras 2>&1 | grep usb1)"
  fi
  out "ready-for-host"
  # The host exports and verifies through the port forward meanwhile.
  sleep 45
  pid=$(systemctl show -p MainPID --value vigil.service)
  before=$(complete_recordings)
  t0=$(up)
  kill -STOP "$pid"
  out "froze vigil (pid $pid) at $t0 s"
  if wait_until 90 sh -c "p=\$(systemctl show -p MainPID --value vigil.service); [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ] && systemctl is-active --quiet vigil.service"; then
    out "watchdog restarted vigil after $(awk -v a="$t0" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}') s: $(journalctl -b -u vigil --no-pager -o cat | grep -m1 "Watchdog timeout")"
  else
    out "FAIL vigil was not restarted by the watchdog"
  fi
  if wait_until 90 more_recordings_than "$before"; then
    out "recording resumed after the restart ($(complete_recordings) complete)"
  else
    out "FAIL recording did not resume after the restart"
  fi
  # ExecStopPost (vigil alerts note-stop) kept $SERVICE_RESULT=watchdog: the
  # new run raised daemon.restarted saying so (issue 16).
  if wait_until 30 sh -c "vigil --config /etc/vigil/vigil.toml alerts list --all 2>/dev/null | grep -q 'daemon.restarted.*watchdog'"; then
    out "alert: $(vigil --config /etc/vigil/vigil.toml alerts list --all 2>/dev/null | grep -m1 'daemon.restarted' | sed 's/^ *//' | cut -c1-200)"
  else
    out "FAIL no daemon.restarted alert naming the watchdog: $(vigil --config /etc/vigil/vigil.toml alerts list --all 2>&1 | tail -3 | tr '\n' ' ')"
  fi
  # The audit log's anchors on a real, sealed journal (docs/evidence.md).
  if [ -s /root/journal-verify-key.txt ]; then
    # Verify only the files journald has archived, sealed and closed: the
    # active system.journal can read as "Bad message" while an entry is half
    # appended (seen twice in CI after the watchdog restart's burst, even
    # straight after a rotation, since the new file fills at once). Rotating
    # first archives everything written so far.
    journalctl --sync; journalctl --rotate; sleep 1
    archived=$(ls /var/log/journal/*/system@*.journal 2>/dev/null | wc -l)
    if [ "$archived" -gt 0 ] && journalctl --verify --verify-key="$(cat /root/journal-verify-key.txt)" \
        --file='/var/log/journal/*/system@*.journal' > /root/journal-verify.log 2>&1; then
      out "journal sealed (FSS) and verified with the escrowed key: $(grep -c '^PASS' /root/journal-verify.log) archived file(s) PASS"
    else
      out "FAIL journalctl --verify: $(tail -2 /root/journal-verify.log | tr '\n' ' ')"
    fi
  else
    out "FAIL provisioning wrote no journal verification key"
  fi
  verify() { vigil --config /etc/vigil/vigil.toml audit verify 2>&1; }
  if v=$(verify); then
    out "audit verify: $(echo "$v" | tr '\n' ' ')"
  else
    out "FAIL audit verify on the untouched log: $(echo "$v" | tr '\n' ' ')"
  fi
  # An attacker with the disk cuts the last 3 entries and every checkpoint
  # covering them: the database alone cannot tell, the journal can.
  systemctl stop vigil.service
  cp -p /var/lib/vigil/vigil.db /root/vigil.db.orig
  python3 -c 'import sqlite3
c = sqlite3.connect("/var/lib/vigil/vigil.db")
top = c.execute("SELECT max(id) FROM audit_log").fetchone()[0]
c.execute("DELETE FROM audit_log WHERE id > ?", (top - 3,))
c.execute("DELETE FROM audit_checkpoint WHERE entry_id > ?", (top - 3,))
c.commit()'
  v=$(verify); rc=$?
  if [ "$rc" = 1 ] && echo "$v" | grep -q 'truncated'; then
    out "tail and its checkpoints cut: audit verify exits 1 through the journal: $(echo "$v" | grep -m1 truncated)"
  else
    out "FAIL the cut tail was not found through the journal (exit $rc): $(echo "$v" | tr '\n' ' ')"
  fi
  cp -p /root/vigil.db.orig /var/lib/vigil/vigil.db
  systemctl start vigil.service
  out "done-check"
  systemctl poweroff
  ;;
powercut)
  # scripts/vm-test's power cuts (VM_POWER_CUTS): the host kills QEMU itself
  # at a random moment while the cameras record, then boots again. Each boot
  # reports what recovery kept of the run before it (the end of each
  # camera's last recording), checks the archive, then records and prints
  # the time every 0.25 s until the host cuts the power (or, at the last
  # boot, powers off).
  trial=$(sed -n 's/.*vigil\.trial=\([0-9]*\).*/\1/p' /proc/cmdline)
  cuts=$(sed -n 's/.*vigil\.cuts=\([0-9]*\).*/\1/p' /proc/cmdline)
  sync_s=$(sed -n 's/.*vigil\.sync=\([0-9]*\).*/\1/p' /proc/cmdline)
  cfg=/etc/vigil/vigil.toml
  # Each recording of camera $1 as "start end" in seconds since the epoch
  # (vigil prints RFC 3339 times with 0 to 3 decimals: compared as numbers).
  rec_times() {
    vigil --config "$cfg" recordings --camera "$1" 2>/dev/null | python3 -c '
import datetime, sys
def t(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
for line in list(sys.stdin)[1:]:
    f = line.split()
    try:
        print(f"{t(f[2]):.3f} {t(f[3]):.3f}")
    except (IndexError, ValueError):
        pass'
  }
  boot_at=$(awk -v n="$(date +%s.%N)" -v u="$(up)" 'BEGIN { printf "%.3f", n - u }')
  out "powercut-boot $trial at $(up) s (booted at $boot_at)"
  if ! wait_until 180 systemctl is-active --quiet vigil.service; then
    out "FAIL vigil not active after the power cut: $(journalctl -b -u vigil --no-pager -o cat | tail -5 | tr '\n' ' ')"
  fi
  if [ "$trial" -gt 0 ]; then
    for c in cam1 cam2 cam3 cam4; do
      # The end of the last recording made before this boot (0: none).
      out "last-frame $c $(rec_times "$c" | awk -v b="$boot_at" '$1 < b && $2 > e {e = $2} END {printf "%.3f", e}')"
    done
    out "recovered: $(journalctl -b -u vigil --no-pager -o cat | grep -c 'recovered an interrupted recording') interrupted recording(s) ($(journalctl -b -u vigil --no-pager -o cat | grep -m1 'Vigil started again' | sed 's/.*Vigil started again/Vigil started again/' | cut -c1-160))"
    if v=$(vigil --config "$cfg" verify 2>&1); then
      out "verify ok: $(echo "$v" | tail -1)"
    else
      out "FAIL verify after power cut $trial: $(echo "$v" | grep -v ' ok$' | tail -4 | tr '\n' ' ')"
    fi
    if wait_until 120 sh -c "journalctl -b -u vigil -o cat | grep -q 'archive checked against the index'"; then
      chk=$(journalctl -b -u vigil -o cat | grep -m1 'archive checked against the index')
      out "archive-check $chk"
      echo "$chk" | grep -q 'missing=0' || out "FAIL the index names files that are gone after power cut $trial"
    else
      out "FAIL no archive check after power cut $trial"
    fi
  fi
  if [ "$trial" -ge "$cuts" ]; then
    out "done-powercut"
    systemctl poweroff
    exit 0
  fi
  # This run's sync interval (0: at every GOP's end, the default). With an
  # interval, 60 s segments: a rotation (every 5 s as provisioned) syncs the
  # closing recording and would hide the interval.
  seg=5; [ "$sync_s" = 0 ] || seg=60
  if ! grep -qx "sync_interval_seconds = $sync_s" "$cfg" || ! grep -qx "segment_seconds = $seg" "$cfg"; then
    sed -i '/^sync_interval_seconds/d; /^segment_seconds/d' "$cfg"
    sed -i "/^\[recording\]/a sync_interval_seconds = $sync_s" "$cfg"
    sed -i "/^\[recording\]/a segment_seconds = $seg" "$cfg"
    systemctl restart vigil.service
    wait_until 120 systemctl is-active --quiet vigil.service || out "FAIL vigil not active with sync_interval_seconds = $sync_s"
    out "recording with segment_seconds = $seg, sync_interval_seconds = $sync_s"
  fi
  now=$(date +%s.%N)
  recording_now() {
    for c in cam1 cam2 cam3 cam4; do
      rec_times "$c" | awk -v t="$now" '$2 > t {f = 1} END {exit !f}' || return 1
    done
  }
  if wait_until 180 recording_now; then
    out "ticking (sync_interval_seconds $sync_s; GOP 10 frames at 10 fps)"
  else
    out "FAIL the cameras are not recording before power cut $((trial + 1))"
  fi
  # Bounded: the host cuts the power within a minute.
  for _ in $(seq 2400); do out "tick $(date +%s.%N)"; sleep 0.25; done
  systemctl poweroff
  ;;
locked)
  out "boot-3 at $(up) s (another TPM)"
  sleep 5
  if [ -e /dev/mapper/vigil-rec ]; then
    out "FAIL the volume opened with another TPM"
  else
    out "volume stays locked; the log says: $(journalctl -b --no-pager -o cat -t systemd-cryptsetup | grep -v '^$' | tail -3 | tr '\n' ' ')"
  fi
  if cryptsetup open --key-file /root/vigil-volume-recovery-key.txt /dev/vdb vigil-rec && mount /dev/mapper/vigil-rec /mnt; then
    out "the recovery key opens it: $(find /mnt -name '*.vseg' | wc -l) recording files"
    umount /mnt; cryptsetup close vigil-rec
  else
    out "FAIL the recovery key does not open the volume"
  fi
  out "done-locked"
  systemctl poweroff
  ;;
*)
  out "no vigil.vmtest phase on the kernel command line"
  ;;
esac
