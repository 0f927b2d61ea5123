# Garage (the S3-compatible object store the replication tests run against):
# source it after scripts/lib/common.sh, then call need_garage. It builds
# Garage from crates.io once, with the pinned version and only the features
# the tests need (the bundled C libraries, so no system libsodium/zstd, and
# the sqlite metadata engine; no lmdb, metrics or k2v), into
# ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/garage-<version>, outside the clone,
# so a clean clone on the same machine reuses it. A marker file .complete
# says the install finished. Exports GARAGE_BIN (the garage binary).
#
# The build takes the shared build lock /tmp/vigil-build.lock when that file
# exists, so it does not fight another cargo build for the cores.

GARAGE_VERSION="2.5.0"
GARAGE_FEATURES="bundled-libs,sqlite"

need_garage() {
  local root="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/garage-$GARAGE_VERSION"
  if [ ! -f "$root/.complete" ] || [ ! -x "$root/bin/garage" ]; then
    need_rust
    need_packages $BUILD_PACKAGES
    log "building Garage $GARAGE_VERSION into $root (once; several minutes)"
    rm -rf "$root"
    mkdir -p "$root"
    local install=(cargo install garage --version "$GARAGE_VERSION" --locked
      --no-default-features --features "$GARAGE_FEATURES" --root "$root")
    # cargo install builds in a temporary target dir of its own unless
    # CARGO_TARGET_DIR says otherwise: keep Garage's objects out of the
    # project's target dir.
    if [ -e /tmp/vigil-build.lock ]; then
      env -u CARGO_TARGET_DIR flock /tmp/vigil-build.lock "${install[@]}"
    else
      env -u CARGO_TARGET_DIR "${install[@]}"
    fi
    "$root/bin/garage" --version >/dev/null 2>&1 || [ -x "$root/bin/garage" ] \
      || { echo "Garage $GARAGE_VERSION did not install into $root" >&2; return 1; }
    touch "$root/.complete"
  fi
  GARAGE_BIN="$root/bin/garage"
  export GARAGE_BIN
}
