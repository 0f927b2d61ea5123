# Shared by scripts/demo, scripts/test and scripts/bench. Source it; do not run it.
# Installs Debian packages only when missing (idempotent), and finds the repo root.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

# GStreamer RTSP server (the test camera) and ffmpeg/ffprobe (export checks, bench reference).
CAMERA_PACKAGES="gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav ffmpeg"

# The `ffmpeg` cargo feature (raw V4L2 cameras encoded with libavcodec;
# ffmpeg-sys-next generates its bindings with libclang).
FFMPEG_DEV_PACKAGES="libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libclang-dev clang pkg-config"

# Cross-building and running the aarch64 build: Debian's cross gcc and
# qemu-user; the ARM board VM: qemu-system-arm and an arm64 kernel.
ARM_PACKAGES="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static qemu-system-arm"

# A software TPM behind a resource manager (as a board's /dev/tpmrm0 is),
# systemd-creds to seal with it, and libfaketime for the day-rollover test.
TPM_PACKAGES="systemd swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon faketime"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# need_packages PKG...: apt-get install whatever is not installed yet.
need_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -q "${missing[@]}" >/dev/null; then
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null
  fi
}

# FFmpeg's arm64 libraries and headers beside the host's (multiarch), for
# cross-building the ffmpeg feature; they bring the arm64 libc6 that
# qemu-aarch64 runs the binaries with (scripts/lib/aarch64-env.sh).
need_arm64_ffmpeg() {
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -q >/dev/null
  fi
  need_packages libavcodec-dev:arm64 libavformat-dev:arm64 libavutil-dev:arm64 libswscale-dev:arm64
}

need_rust() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 2; }
}
