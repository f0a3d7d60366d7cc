#!/bin/sh
# mkinitrd.sh LUO_GUEST BZIMAGE OUTDIR
# OUTDIR/initrd-b.cpio.gz: busybox-static, /init, /luogt_info.sh, /luo_guest (used by the kexec'd boot)
# OUTDIR/initrd-a.cpio.gz: the same plus /boot/bzImage and /boot/initrd-b.cpio.gz (the first boot
#                          kexec_file_load()s those two)
set -eu
GUEST=$1; BZ=$2; OUT=$3; HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
R=$OUT/root; rm -rf "$R"; mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
cp /bin/busybox "$R/bin/busybox"; ln -s busybox "$R/bin/sh"
cp "$HERE/init.sh" "$R/init"; cp "$HERE/luogt_info.sh" "$R/luogt_info.sh"; cp "$GUEST" "$R/luo_guest"
chmod 755 "$R/init" "$R/luo_guest"
( cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet ) | gzip -9 -n > "$OUT/initrd-b.cpio.gz"
mkdir -p "$R/boot"; cp "$BZ" "$R/boot/bzImage"; cp "$OUT/initrd-b.cpio.gz" "$R/boot/initrd-b.cpio.gz"
( cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet ) | gzip -9 -n > "$OUT/initrd-a.cpio.gz"
ls -l "$OUT"/initrd-*.cpio.gz
