#!/usr/bin/env bash
# Regenerate the real-kernel PKRAM fixtures in testdata/real/ (not part of CI).
#
# A stock Debian 12 kernel boots under QEMU TCG with a busybox initramfs; init
# creates tmpfs files and loads pkram_fixture.ko, which performs the PKRAM save
# path (RFC v1 or v2 layout) on those files' own page-cache pages in the running
# kernel and prints the ground truth; the host then pauses the guest and dumps
# its physical memory over QMP (raw pmemsave + ELF dump-guest-memory).
# Two boots: rev=1 and rev=2. The ISF is built from the kernel's BTF + kallsyms.
#
# Usage: tools/realkernel/build.sh            (root only for the apt-get install step)
# Docs:  testdata/real/README.md
# Env:   WORK=dir   scratch directory (default /tmp/pkram-realkernel; ~1 GB)
#        DEST=dir   output (default <repo>/testdata/real)
#        SKIP_APT=1 do not apt-get install the tools
#        KEEP_V2_ELF=1 also ship the v2 ELF core (+10 MB)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WORK="${WORK:-/tmp/pkram-realkernel}"
DEST="${DEST:-$REPO/testdata/real}"

# Pinned kernel: the Debian 12 "cloud" flavour boots fastest under TCG (LZ4 vmlinuz,
# few drivers). The ABI package name pins the build; the version pins the upload.
ABI=6.1.0-56
FLAVOUR=cloud-amd64
PKGVER=6.1.192-2
KREL="$ABI-$FLAVOUR"
DEBS=(
  "linux-image-$KREL=$PKGVER"
  "linux-headers-$KREL=$PKGVER"
  "linux-headers-$ABI-common=$PKGVER"
  "linux-kbuild-6.1=$PKGVER"
)
MEM_MB=128
# super block pages (pkram=<hex pfn>), reserved with memmap=4K$<addr> so nothing else uses them.
# v1 passes the bare hex the way `pkram=$(cat /sys/kernel/pkram)` does, v2 a 0x-prefixed value.
SB_V1=5b6d
SB_V2=4c1f
APPEND_COMMON="console=ttyS0 nokaslr init_on_free=1 quiet"

declare -A T
now() { date +%s.%N; }
lap() { python3 -c "print(round($(now) - $1, 1))"; }
T0=$(now)

# ---- 0. tools ----
t=$(now)
if [ "${SKIP_APT:-0}" != 1 ]; then
  need=()
  for pkg in qemu-system-x86 busybox-static cpio xz-utils lz4 gcc-12 make libelf1; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  command -v python3 >/dev/null || need+=(python3)
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "need root to apt-get install ${need[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
fi
T[tools]=$(lap "$t")

mkdir -p "$WORK/debs" "$WORK/out" "$DEST/symbols/linux"
cd "$WORK"

# ---- 1. download + extract the kernel and headers ----
t=$(now)
fetch() {
  (cd debs && for d in "${DEBS[@]}"; do
     n="${d%%=*}"
     ls "${n}_${PKGVER}_"*.deb >/dev/null 2>&1 || apt-get download -q "$d" 2>&1 \
       | grep -v 'Download is performed unsandboxed' || true
     ls "${n}_${PKGVER}_"*.deb >/dev/null 2>&1 || return 1
   done)
}
fetch || { apt-get update -qq && fetch; } || { echo "apt-get download of ${DEBS[*]} failed" >&2; exit 1; }
T[download]=$(lap "$t")
t=$(now)
rm -rf root && mkdir root
for d in debs/*_"$PKGVER"_*.deb; do dpkg-deb -x "$d" root; done
HDR="$WORK/root/usr/src/linux-headers-$KREL"
sed -i "s#^include /usr/src/#include $WORK/root/usr/src/#" "$HDR/Makefile"   # it hard-codes /usr/src
VMLINUZ="$WORK/root/boot/vmlinuz-$KREL"
python3 "$HERE/extract_vmlinux.py" "$VMLINUZ" "$WORK/vmlinux.elf"
T[extract]=$(lap "$t")

# ---- 2. module ----
t=$(now)
rm -rf module && mkdir module
cp "$HERE/module/pkram_fixture.c" "$HERE/module/Kbuild" module/
make -s -C "$HDR" M="$WORK/module" modules 2>&1 | grep -v 'Skipping BTF generation' || true
test -f module/pkram_fixture.ko
T[module]=$(lap "$t")

# ---- 3. initramfs ----
t=$(now)
rm -rf initrd && mkdir -p initrd/bin initrd/proc initrd/sys initrd/dev initrd/pk
cp /bin/busybox initrd/bin/busybox
cp "$HERE/init.sh" initrd/init && chmod 755 initrd/init
cp module/pkram_fixture.ko initrd/
(cd initrd && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9 > ../initrd.cpio.gz)
T[initramfs]=$(lap "$t")

# ---- 4. two boots in parallel (one TCG thread each), dumps over QMP ----
t=$(now)
python3 "$HERE/run_guest.py" --kernel "$VMLINUZ" --initrd initrd.cpio.gz --mem-mb $MEM_MB \
  --append "$APPEND_COMMON memmap=4K\$0x${SB_V1}000 pkram=$SB_V1 pkgt_rev=1 pkgt_export=1" \
  --out out --name pkram-v1-real > out/v1.run.json &
P1=$!
python3 "$HERE/run_guest.py" --kernel "$VMLINUZ" --initrd initrd.cpio.gz --mem-mb $MEM_MB \
  --append "$APPEND_COMMON memmap=4K\$0x${SB_V2}000 pkram=0x$SB_V2 pkgt_rev=2" \
  --out out --name pkram-v2-real > out/v2.run.json &
P2=$!
wait $P1
wait $P2
T[boot_and_dump]=$(lap "$t")

# ---- 5. ISF from BTF + the guest's kallsyms ----
t=$(now)
tr -d '\r' < out/pkram-v1-real.ttyS1.log | base64 -d | gunzip > kallsyms.txt
ISF="$DEST/symbols/linux/$KREL.json.xz"
python3 "$HERE/btf2isf.py" --vmlinux vmlinux.elf --kallsyms kallsyms.txt --trim --out "$ISF" > out/isf.json
T[isf]=$(lap "$t")

# ---- 6. manifests, cross-checked against the dumps ----
t=$(now)
QEMU_VER="$(qemu-system-x86_64 --version | head -1)"
BB_VER="$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo unknown)"
for v in 1 2; do
  n=pkram-v$v-real
  extra=(--extra "kernel_package=\"linux-image-$KREL $PKGVER\""
         --extra "qemu=\"$QEMU_VER\"" --extra "busybox_static=\"$BB_VER\""
         --extra "isf=\"symbols/linux/$KREL.json.xz\""
         --extra "dump_state=\"guest paused after pkram_fixture emulated __pkram_reboot() (handed-over layout in a running kernel)\""
         --extra "boot_timing=$(cat out/$n.timing.json | tr -d '\n ')")
  listelf=()
  if [ $v = 2 ] && [ "${KEEP_V2_ELF:-0}" != 1 ]; then listelf=(--no-list-elf); fi
  python3 "$HERE/mkmanifest.py" --console out/$n.console.log --raw out/$n.raw --elf out/$n.elf \
    "${listelf[@]}" --name $n --out "$DEST/$n.manifest.json" "${extra[@]}"
done
T[manifest]=$(lap "$t")

# ---- 7. compress (two xz at a time) and copy ----
t=$(now)
rm -f out/*.xz
to_xz=(out/pkram-v1-real.raw out/pkram-v2-real.raw out/pkram-v1-real.elf)
[ "${KEEP_V2_ELF:-0}" = 1 ] && to_xz+=(out/pkram-v2-real.elf)
printf '%s\n' "${to_xz[@]}" | xargs -P 2 -n 1 xz -k -T1 --lzma2=preset=9,dict=128MiB
for f in "${to_xz[@]}"; do cp "$f.xz" "$DEST/"; done
chmod 644 "$DEST"/*.xz
for v in 1 2; do
  # the console log is the ground truth record; drop SeaBIOS' terminal escapes
  tr -d '\r' < out/pkram-v$v-real.console.log | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g' \
    > "$DEST/pkram-v$v-real.console.log"
done
T[compress]=$(lap "$t")
T[total]=$(lap "$T0")

python3 - "$DEST" "$WORK" <<EOF
import json, os, sys, hashlib
dest, work = sys.argv[1], sys.argv[2]
t = {$(for k in "${!T[@]}"; do printf '"%s": %s, ' "$k" "${T[$k]}"; done)}
files = {}
for root, _, names in os.walk(dest):
    for n in sorted(names):
        p = os.path.join(root, n)
        if n in ("build-info.json", "README.md"):
            continue
        files[os.path.relpath(p, dest)] = {"bytes": os.path.getsize(p),
                                           "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
debs = {}
for n in sorted(os.listdir(os.path.join(work, "debs"))):
    p = os.path.join(work, "debs", n)
    debs[n] = {"bytes": os.path.getsize(p), "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
info = {"kernel": "$KREL", "package_version": "$PKGVER", "debs": debs,
        "qemu": "$QEMU_VER", "busybox_static": "$BB_VER",
        "append_common": "$APPEND_COMMON", "mem_mb": $MEM_MB,
        "sb_pfn": {"v1": "$SB_V1", "v2": "$SB_V2"},
        "boots": {v: json.load(open(os.path.join(work, "out", f"pkram-{v}-real.timing.json"))) for v in ("v1", "v2")},
        "timings_s": t, "files": files,
        "total_committed_bytes": sum(f["bytes"] for f in files.values())}
json.dump(info, open(os.path.join(dest, "build-info.json"), "w"), indent=1)
print(json.dumps({"timings_s": t, "total_committed_bytes": info["total_committed_bytes"]}))
EOF
