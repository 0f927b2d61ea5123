SUMMARY = "Example Vigil NVR image"
DESCRIPTION = "A minimal systemd image with Vigil, LUKS2 and the TPM 2.0 stack: \
               put the installer's flags in /etc/vigil/provision.env, and the first \
               boot provisions the recordings volume and the keys."
HOMEPAGE = "https://github.com/vigil-nvr/vigil"
BUGTRACKER = "https://github.com/vigil-nvr/vigil/issues"
SECTION = "images"
LICENSE = "MIT"
CVE_PRODUCT = "vigil"

# systemd is the init (systemd-cryptsetup, systemd-creds and the watchdog):
# the DISTRO must enable it (docs/yocto.md).
REQUIRED_DISTRO_FEATURES = "systemd"

inherit core-image features_check

IMAGE_INSTALL = "packagegroup-core-boot \
                 packagegroup-vigil \
                 ${CORE_IMAGE_EXTRA_INSTALL} \
"

IMAGE_FEATURES += "ssh-server-openssh"
IMAGE_ROOTFS_EXTRA_SPACE = "131072"
