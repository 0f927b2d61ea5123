SUMMARY = "Vigil network video recorder"
DESCRIPTION = "Records RTSP (H.264/H.265) and V4L2/USB cameras to a LUKS volume, \
               every recording chunk-encrypted (ChaCha20-Poly1305) under keys the TPM 2.0 seals, \
               and exports signed evidence bundles that verify offline. Serves a local HTTPS API \
               and web UI."
HOMEPAGE = "https://github.com/vigil-nvr/vigil"
BUGTRACKER = "https://github.com/vigil-nvr/vigil/issues"
SECTION = "multimedia"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"
CVE_PRODUCT = "vigil"

# v4l2-sys-mit generates its V4L2 bindings with bindgen, which loads
# libclang at build time and parses the target's kernel headers.
DEPENDS += "clang-native"

PV = "0.1.0+git"

# Installers building from their own mirror set VIGIL_GIT_URI and SRCREV
# (a release commit) in local.conf or a bbappend: see docs/yocto.md.
VIGIL_GIT_URI ??= "git://github.com/vigil-nvr/vigil.git;protocol=https;branch=main"
SRC_URI = "${VIGIL_GIT_URI}"

# The crates of Cargo.lock, fetched by BitBake before compiling (no network
# at compile time). Regenerate with `bitbake -c update_crates vigil` or
# scripts/yocto-crates after Cargo.lock changes; scripts/test checks it.
require ${BPN}-crates.inc

# nooelint: oelint.vars.autorev
SRCREV ??= "${AUTOREV}"

inherit cargo cargo-update-recipe-crates systemd useradd pkgconfig

# Raw (YUYV) V4L2 cameras are encoded to H.264 with FFmpeg (h264_v4l2m2m on
# boards with a hardware encoder, else libx264): PACKAGECONFIG:append = " ffmpeg".
PACKAGECONFIG ??= ""
PACKAGECONFIG[ffmpeg] = ",,ffmpeg"

# The workspace: build the daemon crate; the lock file is at the root.
CARGO_SRC_DIR = "daemon"
CARGO_MANIFEST_PATH = "${S}/daemon/Cargo.toml"
CARGO_LOCK_SRC_DIR = "${S}"
# nooelint: oelint.vars.mispell.unknown
CARGO_FEATURES = "${@bb.utils.filter('PACKAGECONFIG', 'ffmpeg', d)}"

export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET} ${TUNE_CCARGS}"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/vigil.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/systemd/vigil-provision.service ${D}${systemd_system_unitdir}/
    install -D -m 0644 ${S}/systemd/vigil.tmpfiles ${D}${nonarch_libdir}/tmpfiles.d/vigil.conf
    install -D -m 0644 ${S}/systemd/vigil.sysusers ${D}${nonarch_libdir}/sysusers.d/vigil.conf
    install -D -m 0755 ${S}/scripts/provision ${D}${libexecdir}/vigil/provision
    install -d ${D}${datadir}/vigil/board
    install -m 0644 ${S}/board/profiles/*.toml ${D}${datadir}/vigil/board/
}

SYSTEMD_SERVICE:${PN} = "vigil.service vigil-provision.service"
SYSTEMD_AUTO_ENABLE = "enable"

# The same account systemd-sysusers would make (systemd/vigil.sysusers).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system vigil"
USERADD_PARAM:${PN} = "--system --gid vigil --groups video --home-dir ${localstatedir}/lib/vigil \
                       --no-create-home --shell /sbin/nologin --comment 'Vigil NVR' vigil"

FILES:${PN} += "${systemd_system_unitdir}/vigil.service \
                ${systemd_system_unitdir}/vigil-provision.service \
                ${nonarch_libdir}/tmpfiles.d/vigil.conf \
                ${nonarch_libdir}/sysusers.d/vigil.conf \
                ${libexecdir}/vigil \
"

# The provisioning script (first boot): LUKS2 with a TPM2 token, the KEK
# sealed by systemd-creds, an ext4 volume. ca-certificates: alert channels
# over TLS (webhooks, Twilio, SMTP, MQTT) trust the system's roots in
# /etc/ssl/certs unless a channel names its own ca_file.
RDEPENDS:${PN} += "bash \
                   ca-certificates \
                   cryptsetup \
                   e2fsprogs-mke2fs \
                   tpm2-tss \
                   util-linux-blkid \
"
