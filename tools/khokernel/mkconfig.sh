#!/bin/sh
# mkconfig.sh SRC OUT : allnoconfig + selftests/liveupdate/config + kho.config, then olddefconfig; checks key options.
set -eu
SRC=$1; OUT=$2; HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
make -s -C "$SRC" O="$OUT" ARCH=x86_64 allnoconfig
( cd "$OUT" && "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" .config \
    "$SRC/tools/testing/selftests/liveupdate/config" "$HERE/kho.config" )
make -s -C "$SRC" O="$OUT" ARCH=x86_64 olddefconfig
fail=0
for o in RELOCATABLE KEXEC_HANDOVER LIVEUPDATE LIVEUPDATE_MEMFD KEXEC_FILE DEBUG_INFO_BTF TRANSPARENT_HUGEPAGE \
         SERIAL_8250_CONSOLE BLK_DEV_INITRD DEVTMPFS TMPFS PROC_PAGE_MONITOR KALLSYMS_ALL MEMFD_CREATE; do
  if grep -q "^CONFIG_$o=y" "$OUT/.config"; then echo "ok   CONFIG_$o=y"; else echo "MISSING CONFIG_$o"; fail=1; fi
done
for o in MODULES RANDOMIZE_BASE; do
  if grep -q "^CONFIG_$o=y" "$OUT/.config"; then echo "BAD  CONFIG_$o=y"; fail=1; else echo "ok   CONFIG_$o off"; fi
done
exit $fail
