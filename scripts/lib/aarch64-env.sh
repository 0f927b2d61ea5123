# Cross-building for aarch64 with Debian's cross toolchain; source it.
# Used by scripts/arm-test, scripts/arm-vm-test and scripts/bench.
AARCH64=aarch64-unknown-linux-gnu
AARCH64_SYSROOT=/usr/aarch64-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Run with the arm64 (multiarch) libc6 that FFmpeg's arm64 libraries pulled
# in: its ld.so and libc.so.6 must come from the same build; the cross
# sysroot's loader with the multiarch libc hangs at exit under qemu-user.
AARCH64_RUN_ROOT=/
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L $AARCH64_RUN_ROOT"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# bindgen (v4l2-sys-mit) parses the target's kernel headers.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu --sysroot=$AARCH64_SYSROOT"
# pkg-config (ffmpeg-sys-next) for the target only: the arm64 multiarch .pc
# files; host builds in the same shell keep the host's.
export PKG_CONFIG_ALLOW_CROSS_aarch64_unknown_linux_gnu=1
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
