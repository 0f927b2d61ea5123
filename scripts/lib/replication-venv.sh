# The replication tests' Python: source it after scripts/lib/common.sh, then
# call need_replication_venv. It makes once (cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/replication-venv-<versions>) a venv of
# Debian's /usr/bin/python3 without the system's site packages (so a boto3
# installed elsewhere on the machine cannot stand in for the pinned one), and
# pip installs the pinned boto3 and botocore: the reference S3 client the
# tests check Garage and Vigil's uploads with, independent of Vigil's own S3
# code. Exports REPLICATION_PY (the venv's python).

BOTO3_VERSION="1.44.8"
BOTOCORE_VERSION="1.44.8"

need_replication_venv() {
  need_packages python3 python3-venv
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/replication-venv-boto3-${BOTO3_VERSION}"
  if [ ! -f "$venv/.complete" ]; then
    log "making the replication test venv $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
      "boto3==$BOTO3_VERSION" "botocore==$BOTOCORE_VERSION"
    "$venv/bin/python" -c 'import boto3' \
      || { echo "boto3 does not import in $venv" >&2; return 1; }
    touch "$venv/.complete"
  fi
  REPLICATION_PY="$venv/bin/python"
  export REPLICATION_PY
}
