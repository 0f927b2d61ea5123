# Shared by the scripts under scripts/. Source it; do not run it.
# Installs Debian packages only when missing (idempotent), and finds the repo root.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

# GStreamer RTSP server (the test camera) and ffmpeg/ffprobe (export checks, bench reference).
CAMERA_PACKAGES="gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav ffmpeg"

# What `cargo build -p vigil` needs on Debian 12 besides Rust (rustup brings
# no C toolchain): gcc, the linker driver rustc calls (`cc`) and the C
# compiler of ring and the bundled SQLite; libc6-dev, the C library's headers
# and the kernel's (linux-libc-dev); libclang-dev, with which bindgen
# (v4l2-sys-mit, under the v4l crate) parses <linux/videodev2.h>: the library
# only, bindgen needs no clang binary. No pkg-config: nothing in the default
# build looks a library up. Every script that runs cargo installs these
# (scripts/fresh-machine-test checks it on a fresh Debian 12 for scripts/demo).
BUILD_PACKAGES="gcc libc6-dev libclang-dev"

# The `ffmpeg` cargo feature (raw V4L2 cameras encoded with libavcodec;
# ffmpeg-sys-next generates its bindings with libclang and finds FFmpeg with
# pkg-config), on top of the plain build's packages.
FFMPEG_DEV_PACKAGES="$BUILD_PACKAGES libavcodec-dev libavformat-dev libavutil-dev libswscale-dev clang pkg-config"

# Cross-building and running the aarch64 build: Debian's cross gcc and
# qemu-user; the ARM board VM: qemu-system-arm and an arm64 kernel.
ARM_PACKAGES="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static qemu-system-arm"

# A software TPM behind a resource manager (as a board's /dev/tpmrm0 is),
# systemd-creds to seal with it, and libfaketime for the day-rollover test.
TPM_PACKAGES="systemd swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon faketime"

# What is built or downloaded once and kept between runs, outside the clone
# (a clean clone starts with no target/): the VM and chroot root
# filesystems, the arm64 kernel, Garage, the Python venvs.
VIGIL_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/vigil"
# Where cargo puts what it builds (scripts/test points it into VIGIL_CACHE).
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# need_packages PKG...: apt-get install whatever is not installed yet. A
# fresh system (a container, a new root filesystem) has no package lists
# yet: then apt-get update first; otherwise only when the install fails
# (stale lists).
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
  if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    $sudo apt-get update -q >/dev/null
  fi
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
