#!/usr/bin/env bash
# Builds the source tarball (with vendored crates), the SRPM and the binary RPMs
# (corosync-eip, corosync-eip-selinux) into target/rpm/{SOURCES,SRPMS,RPMS}.
#
# Debian's rpm knows nothing of RHEL's BuildRequires, hence --nodeps: the toolchain, corosync
# libraries and selinux-policy-dev come from scripts/setup.sh instead.
#
# COROSYNC_EIP_RPM_TARGET_DIR: cargo target directory kept between builds (default
# target/rpmbuild-target), so only the first build compiles every crate.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOP="$ROOT/target/rpm"
CARGO_DIR="${COROSYNC_EIP_RPM_TARGET_DIR:-$ROOT/target/rpmbuild-target}"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
NV="corosync-eip-$VERSION"

mkdir -p "$TOP" "$CARGO_DIR"
# The package is built by plain rustc, as on a RHEL builder, even when the test suite that
# runs this compiles its own crates through clippy's driver.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
# Two builds at once (a test and a person) would share the staging dir and the target dir.
exec 9>"$TOP/.lock"
flock 9

t0=$(date +%s)
STAGE="$TOP/stage"
rm -rf "$STAGE" "$TOP/BUILD" "$TOP/BUILDROOT" "$TOP/RPMS" "$TOP/SRPMS"
mkdir -p "$STAGE/$NV" "$TOP/SOURCES"
# The working tree, not HEAD: CI packages exactly what it tests.
cp -a Cargo.toml Cargo.lock README.md src docs contrib selinux corosync-conf rpm "$STAGE/$NV/"
# The test lab is a member of the workspace: cargo needs its manifest to read the lock file,
# though the package never builds it.
mkdir -p "$STAGE/$NV/lab"
cp -a lab/Cargo.toml lab/src "$STAGE/$NV/lab/"
rm -f "$STAGE/$NV/selinux/"*.pp "$STAGE/$NV/selinux/"*.pp.bz2
rm -rf "$STAGE/$NV/selinux/tmp"
cargo vendor --quiet --locked --versioned-dirs --manifest-path "$STAGE/$NV/Cargo.toml" \
    "$STAGE/$NV/vendor" >/dev/null
gz=gzip
command -v pigz >/dev/null 2>&1 && gz=pigz
tar -C "$STAGE" -cf - "$NV" | $gz -1 > "$TOP/SOURCES/$NV.tar.gz"
rm -rf "$STAGE"
t1=$(date +%s)
echo "build-rpm: source tarball $(du -h "$TOP/SOURCES/$NV.tar.gz" | cut -f1) in $((t1 - t0))s"

payload=()
# zstd payloads are what RHEL 9 uses too; far faster than xz for a large Rust binary.
if rpmbuild --showrc 2>/dev/null | grep -q 'PayloadIsZstd'; then
    payload=(--define "_binary_payload w3.zstdio" --define "_source_payload w1.gzdio")
fi

# Debian's rpm defines _sharedstatedir as /usr/com; RHEL's is /var/lib. Debuginfo splitting
# needs RHEL's find-debuginfo.
rpmbuild -ba --nodeps \
    --define "_topdir $TOP" \
    --define "cargo_target_dir $CARGO_DIR" \
    --define "_sharedstatedir /var/lib" \
    --define "debug_package %{nil}" \
    "${payload[@]}" \
    rpm/corosync-eip.spec
t2=$(date +%s)
echo "build-rpm: rpmbuild in $((t2 - t1))s, total $((t2 - t0))s"
find "$TOP/RPMS" "$TOP/SRPMS" -name '*.rpm' -printf '%p\n' | sort
