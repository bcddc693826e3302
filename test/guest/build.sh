#!/bin/bash
# Builds the test guest into $NODEVIRT_GUEST_OUT (default /var/cache/nodevirt/test-guest) from the host's Debian packages: the linux-image-amd64 kernel
# and a busybox-static initramfs carrying /init and the kernel modules it needs. Cached on a hash of inputs.
#
# Usage: test/guest/build.sh [--force]    (env NODEVIRT_GUEST_KVER=<version> picks another installed kernel)
# Output: vmlinuz, initramfs.gz, kernel-release, modules.txt, inputs.sha256. Outside the checkout because
# QEMU runs as libvirt-qemu and must traverse every parent directory (a clone under /root is mode 0700).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${NODEVIRT_GUEST_OUT:-/var/cache/nodevirt/test-guest}
busybox=/bin/busybox
force=0
[ "${1:-}" = --force ] && force=1

say() { echo "guest: $*" >&2; }
die() { echo "guest: error: $*" >&2; exit 1; }

# Modules the guest loads, roots only: modprobe adds their dependencies. NICs (virtio, e1000), the seed
# CD-ROM or disk (IDE/SATA/virtio-scsi/virtio-blk, sr/sd) and iso9660. af_packet (udhcpc's raw socket) is
# built into Debian kernels; it is listed so a modular build still gets it.
modules=(virtio_pci virtio_net e1000 virtio_blk virtio_scsi ata_piix ahci sr_mod sd_mod cdrom isofs af_packet)

[ -x "$busybox" ] || die "$busybox missing: apt-get install busybox-static"
command -v cpio >/dev/null || die "cpio missing: apt-get install cpio"
command -v modprobe >/dev/null || die "modprobe missing: apt-get install kmod"

# The kernel: the one linux-image-amd64 points at, else the newest installed with its modules.
kver=${NODEVIRT_GUEST_KVER:-}
if [ -z "$kver" ]; then
	kver=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null | sed -n 's/^linux-image-\([^ ,]*\).*/\1/p')
fi
if [ -z "$kver" ] || [ ! -e "/boot/vmlinuz-$kver" ]; then
	kver=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' 2>/dev/null | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
fi
if [ -z "$kver" ] || [ ! -e "/boot/vmlinuz-$kver" ]; then die "no kernel in /boot: apt-get install linux-image-amd64"; fi
[ -d "/lib/modules/$kver" ] || die "/lib/modules/$kver missing (kernel package incomplete?)"
vmlinuz=/boot/vmlinuz-$kver

bb_version=$("$busybox" 2>&1 | head -n 1 || true)
# Everything the output depends on; file contents for our sources, identity (size, mtime) for the big ones.
inputs=$(
	cd "$here"
	sha256sum build.sh init udhcpc.script www-update
	echo "kernel $kver $(stat -c '%s %Y' "$vmlinuz")"
	echo "busybox $bb_version $(stat -c '%s %Y' "$busybox")"
	echo "modules ${modules[*]}"
)
hash=$(echo "$inputs" | sha256sum | cut -d' ' -f1)

mkdir -p "$out"
chmod 0755 "$out" "$(dirname "$out")"
# Tests and setup may build at the same time; the second waits and then finds the cache warm.
exec 9>"$out/.lock"
flock 9

if [ $force = 0 ] && [ -f "$out/initramfs.gz" ] && [ -f "$out/vmlinuz" ] &&
	[ "$(cat "$out/inputs.sha256" 2>/dev/null)" = "$hash" ]; then
	say "up to date ($kver)"
	exit 0
fi

say "building for kernel $kver"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/nodevirt,proc,sys,dev,run,tmp,mnt,www,lib/modules/"$kver"}
cp "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
install -m 0755 "$here/init" "$stage/init"
install -m 0755 "$here/udhcpc.script" "$stage/etc/nodevirt/udhcpc.script"
install -m 0755 "$here/www-update" "$stage/etc/nodevirt/www-update"
echo "$kver" >"$stage/etc/nodevirt/kernel-release"

# Resolve every module with its dependencies in load order; the first occurrence of a file wins, so each
# module follows everything it needs. Compressed modules are unpacked so busybox insmod can load them.
declare -A seen=()
order=()
for m in "${modules[@]}"; do
	deps=$(modprobe -S "$kver" --show-depends "$m" 2>&1) || die "modprobe cannot resolve $m for $kver: $deps"
	while read -r verb path _; do
		[ "$verb" = insmod ] || continue
		[ -n "${seen[$path]:-}" ] && continue
		seen[$path]=1
		order+=("$path")
	done <<<"$deps"
done
: >"$stage/etc/nodevirt/modules"
for path in "${order[@]}"; do
	rel=${path#/}
	case "$rel" in
	*.ko.xz) dst=${rel%.xz}; mkdir -p "$stage/$(dirname "$dst")"; xz -dc "$path" >"$stage/$dst" ;;
	*.ko.zst) dst=${rel%.zst}; mkdir -p "$stage/$(dirname "$dst")"; zstd -qdc "$path" >"$stage/$dst" ;;
	*.ko.gz) dst=${rel%.gz}; mkdir -p "$stage/$(dirname "$dst")"; gzip -dc "$path" >"$stage/$dst" ;;
	*) dst=$rel; mkdir -p "$stage/$(dirname "$dst")"; cp "$path" "$stage/$dst" ;;
	esac
	echo "/$dst" >>"$stage/etc/nodevirt/modules"
done

(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
	gzip -n -6 >"$stage/.initramfs.gz"

# Replace the outputs only when complete, stamp last: an interrupted build is never mistaken for a cache hit.
rm -f "$out/inputs.sha256"
cp "$vmlinuz" "$out/.vmlinuz.new" && mv -f "$out/.vmlinuz.new" "$out/vmlinuz"
mv -f "$stage/.initramfs.gz" "$out/initramfs.gz"
cp "$stage/etc/nodevirt/modules" "$out/modules.txt"
echo "$kver" >"$out/kernel-release"
# libvirt's qemu (user libvirt-qemu) must read these; the directory listing is harmless.
chmod 0644 "$out/vmlinuz" "$out/initramfs.gz" "$out/modules.txt" "$out/kernel-release"
echo "$hash" >"$out/inputs.sha256"
say "built $out/initramfs.gz ($(stat -c %s "$out/initramfs.gz") bytes, ${#order[@]} modules)"
