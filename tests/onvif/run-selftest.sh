#!/usr/bin/env bash
# The ONVIF simulator's selftest with its reference clients: installs what it
# needs (GStreamer test camera, ffprobe, lxml, python3-venv; the venv of
# onvif-zeep + wsdiscovery from PyPI, cached), then runs tests/onvif/selftest.py.
#   bash tests/onvif/run-selftest.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"
source "$ROOT/scripts/lib/onvif-venv.sh"
need_packages $CAMERA_PACKAGES python3-lxml python3-venv
need_onvif_venv
exec timeout 600 "$ONVIF_PY" "$ROOT/tests/onvif/selftest.py" --wsdl "$ONVIF_WSDL" "$@"
