# The ONVIF test clients' Python: source it after scripts/lib/common.sh, then
# call need_onvif_venv. It makes once (cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/onvif-venv-<versions>) a venv of
# Debian's /usr/bin/python3 with --system-site-packages, so gi/GStreamer and
# lxml from Debian stay visible, and pip installs the pinned onvif-zeep (the
# reference ONVIF client, which also ships the official ONVIF WSDLs and XSDs)
# and wsdiscovery (the reference WS-Discovery message parser). Exports
# ONVIF_PY (the venv's python) and ONVIF_WSDL (onvif-zeep's wsdl folder).

ONVIF_ZEEP_VERSION="0.2.12"
WSDISCOVERY_VERSION="2.1.2"

need_onvif_venv() {
  need_packages python3 python3-venv python3-lxml
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/onvif-venv-zeep${ONVIF_ZEEP_VERSION}-wsd${WSDISCOVERY_VERSION}"
  if [ ! -f "$venv/.complete" ]; then
    log "making the ONVIF client venv $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
      "onvif-zeep==$ONVIF_ZEEP_VERSION" "wsdiscovery==$WSDISCOVERY_VERSION"
    touch "$venv/.complete"
  fi
  ONVIF_PY="$venv/bin/python"
  ONVIF_WSDL=$("$ONVIF_PY" -c 'import os, onvif; print(os.path.join(os.path.dirname(os.path.dirname(onvif.__file__)), "wsdl"))')
  if [ ! -f "$ONVIF_WSDL/devicemgmt.wsdl" ]; then
    ONVIF_WSDL=$("$ONVIF_PY" - <<'EOF'
import glob, os, sys, onvif
base = os.path.dirname(os.path.dirname(onvif.__file__))
hits = glob.glob(os.path.join(sys.prefix, "**", "devicemgmt.wsdl"), recursive=True) \
    + glob.glob(os.path.join(base, "**", "devicemgmt.wsdl"), recursive=True)
print(os.path.dirname(hits[0]) if hits else "")
EOF
)
  fi
  [ -n "$ONVIF_WSDL" ] && [ -f "$ONVIF_WSDL/devicemgmt.wsdl" ] || { echo "onvif-zeep's wsdl folder not found in $venv" >&2; return 1; }
  export ONVIF_PY ONVIF_WSDL
}
