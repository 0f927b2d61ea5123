SUMMARY = "Vigil NVR appliance"
DESCRIPTION = "The recorder and what a Vigil box needs around it: systemd with \
               TPM2 and cryptsetup support, cryptsetup, the TPM 2.0 stack and V4L2 tools."
HOMEPAGE = "https://github.com/vigil-nvr/vigil"
BUGTRACKER = "https://github.com/vigil-nvr/vigil/issues"
SECTION = "multimedia"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} += "cryptsetup \
                   kernel-module-dm-crypt \
                   systemd \
                   tpm2-tools \
                   tpm2-tss \
                   v4l-utils \
                   vigil \
"
