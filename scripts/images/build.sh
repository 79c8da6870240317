#!/usr/bin/env bash
# Builds the StacyVM base images without a container registry:
#
#   stacyvm/minimal  Debian bookworm, debootstrap --variant=minbase
#   stacyvm/python   the same plus python3 (no recommended packages)
#
# Usage: scripts/images/build.sh OUTDIR
#
# Writes OUTDIR/minimal and OUTDIR/python as OCI image layouts and
# OUTDIR/minimal.tar and OUTDIR/python.tar as docker-save archives. Import one
# into StacyVM with `stacyvm image import stacyvm/minimal OUTDIR/minimal`.
# When `docker info` succeeds, the archives are also loaded into Docker as
# stacyvm/minimal:latest and stacyvm/python:latest.
#
# Needs root and debootstrap (apt-get install -y debootstrap). The debootstrap
# result is cached in OUTDIR/cache/<image> and reused by later runs; delete
# that directory to rebuild from the mirror.
#
# Environment:
#   MIRROR             Debian mirror URL; default: the first bookworm source
#                      in /etc/apt/sources.list and /etc/apt/sources.list.d
#   SOURCE_DATE_EPOCH  time stamped on every file and in the image config;
#                      default 1704067200 (2024-01-01T00:00:00Z)
#
# From one cached root filesystem the layouts are byte-identical on every run.
# NOTE: two debootstrap runs give the same package set only while the mirror
# serves the same package versions, so pin MIRROR to a snapshot for that.
set -euo pipefail

SUITE=bookworm
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"

log() { printf '%s build.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# find_mirror prints the URI of the first apt source that serves $SUITE, in
# one-line (.list) or deb822 (.sources) format.
find_mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r $f ]] || continue
		awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == s) { print $i; exit } break } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		# A deb822 stanza ends at a blank line; print its URI when its
		# Suites field names $SUITE.
		awk -v s="$SUITE" '
			/^[ \t]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
			END { if (uri != "" && hit) print uri }' "$f"
	done
}

# bootstrap ROOTFS [--include=PKGS] runs debootstrap into ROOTFS unless a
# complete result is cached there, then removes files that differ between runs.
bootstrap() {
	local rootfs=$1
	shift
	if [[ -f $rootfs.done ]]; then
		log "using cached root filesystem $rootfs"
		return
	fi
	rm -rf "$rootfs" "$rootfs.tmp"
	log "debootstrap $SUITE${*:+ $*} into $rootfs from $MIRROR"
	debootstrap --variant=minbase "$@" "$SUITE" "$rootfs.tmp" "$MIRROR" >"$rootfs.log" 2>&1 ||
		die "debootstrap failed; see $rootfs.log"
	scrub "$rootfs.tmp"
	mv "$rootfs.tmp" "$rootfs"
	touch "$rootfs.done"
}

# scrub removes run-specific files from a fresh root filesystem: logs, apt
# indexes and caches, device nodes (a runtime provides /dev), and the
# password-change date in /etc/shadow, which debootstrap sets to today.
scrub() {
	local r=$1
	chroot "$r" apt-get clean
	find "$r/var/log" -type f -delete
	rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/ldconfig/aux-cache" \
		"$r/var/cache/debconf/"*-old "$r/var/lib/dpkg/"*-old \
		"$r/tmp/"* "$r/var/tmp/"* "$r/run/"* "$r/proc/"* "$r/sys/"*
	find "$r/dev" -mindepth 1 -delete
	rm -f "$r/etc/machine-id" "$r/etc/hostname"
	local day=$((SOURCE_DATE_EPOCH / 86400))
	sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$day:/" "$r/etc/shadow"
	[[ -e $r/etc/shadow- ]] && sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$day:/" "$r/etc/shadow-"
	find "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/info" -mindepth 1 \
		! -name copyright ! -type d -delete 2>/dev/null || true
}

# check_tools fails unless the root filesystem has the commands the sandbox
# providers and the tests rely on.
check_tools() {
	local r=$1 t
	for t in sh bash setsid sha256sum od dd head; do
		chroot "$r" sh -c "command -v $t" >/dev/null || die "$t is missing in $r"
	done
}

# pack ROOTFS NAME OUT [mkoci flags] writes the OCI layout OUT and the
# docker-save archive OUT.tar.
pack() {
	local rootfs=$1 name=$2 out=$3
	shift 3
	log "packing $rootfs as $name"
	(cd "$REPO" && go run ./scripts/images/mkoci -rootfs "$rootfs" -name "$name" \
		-out "$out" -docker-archive "$out.tar" "$@")
}

load_into_docker() {
	if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
		log "no Docker engine; skipped docker load"
		return
	fi
	local archive
	for archive in "$@"; do
		log "docker load -i $archive"
		docker load -i "$archive"
	done
}

main() {
	[[ $# -eq 1 ]] || die "usage: $0 OUTDIR"
	[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
	command -v debootstrap >/dev/null || die "debootstrap is not installed; run apt-get install -y debootstrap"

	REPO=$(cd "$(dirname "$0")/../.." && pwd)
	mkdir -p "$1/cache"
	OUT=$(cd "$1" && pwd)
	MIRROR=${MIRROR:-$(find_mirror | head -n 1)}
	[[ -n $MIRROR ]] || die "no $SUITE source in /etc/apt; set MIRROR to a Debian mirror URL"

	local start=$SECONDS
	bootstrap "$OUT/cache/minimal"
	bootstrap "$OUT/cache/python" --include=python3
	check_tools "$OUT/cache/minimal"
	check_tools "$OUT/cache/python"
	chroot "$OUT/cache/python" python3 -c 'import json, subprocess, sqlite3' ||
		die "python3 in $OUT/cache/python cannot import its standard library"

	pack "$OUT/cache/minimal" stacyvm/minimal:latest "$OUT/minimal" -cmd /bin/bash
	pack "$OUT/cache/python" stacyvm/python:latest "$OUT/python" -cmd python3 -env LANG=C.UTF-8
	load_into_docker "$OUT/minimal.tar" "$OUT/python.tar"
	log "done in $((SECONDS - start))s"
}

main "$@"
