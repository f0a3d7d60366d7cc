#!/bin/bash
# Rebuild the KHO/LUO real-kernel fixtures in testdata/kho-real end to end:
#   private apt config -> linux-source-7.x .deb -> allnoconfig+fragments -> bzImage ->
#   static guest (luo_guest.c against that tree's uapi) -> initramfs -> QEMU TCG boot, kexec,
#   two QMP dumps -> ground-truth manifests -> ISF from BTF + System.map -> xz -> testdata/kho-real.
#
# usage: tools/khokernel/build.sh [7.3] [7.2]       (default: both, 7.3 first)
# env:   DEST=testdata/kho-real (where the fixtures go)
#        KBUILD=/work/kbuild (scratch: apt state, sources, build trees, uncompressed dumps)
#        JOBS=2  MEM_MB=(256 for 7.3, 512 for 7.2)  SKIP_BUILD=1 (reuse an existing bzImage)  NO_DEPS=1 (skip apt-get install)
# Needs root once for apt-get install of the build/boot tools. Never touches the system's apt sources.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${KBUILD:-/work/kbuild}
DEST=${DEST:-$REPO/testdata/kho-real}
JOBS=${JOBS:-2}
APPEND_BASE="console=ttyS0 kho=on liveupdate=on nokaslr init_on_free=1"
VERSIONS=("$@"); [ ${#VERSIONS[@]} -eq 0 ] && VERSIONS=(7.3 7.2)
# source package per version (both from trixie-backports; sid's Release file was expired when this was written)
declare -A PKG=([7.3]="linux-source-7.3=7.3.4-1~bpo13+1" [7.2]="linux-source-7.2=7.2.12-1~bpo13+1")
declare -A ELF=([7.3]="B" [7.2]="")          # moments that also get an ELF dump
# guest RAM: 7.2's bigger kernel gets ~192 MiB of KHO scratch (CMA); with 256 MiB the pinned memfds
# leave too little non-CMA memory and kexec_file_load is OOM-killed, so 7.2 runs with 512 MiB
declare -A MEM=([7.3]=256 [7.2]=512)
mkdir -p "$W" "$DEST/symbols/linux"
T() { date +%s; }

# ---- 0. tools ----
if [ "${NO_DEPS:-0}" != 1 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends flex bison libelf-dev dwarves bc libssl-dev \
    qemu-system-x86 busybox-static cpio xz-utils make gcc libc6-dev python3 >/dev/null
fi

# ---- 1. private apt configuration (APT_CONFIG), never the system's sources ----
A=$W/apt
mkdir -p "$A/state/lists/partial" "$A/cache/archives/partial" "$A/etc/sources.list.d" "$A/etc/apt.conf.d" "$A/etc/preferences.d"
touch "$A/state/status"
cat > "$A/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main
EOF
cat > "$A/apt.conf" <<EOF
Dir::State "$A/state";
Dir::State::status "$A/state/status";
Dir::Cache "$A/cache";
Dir::Etc::SourceList "$A/sources.list";
Dir::Etc::SourceParts "$A/etc/sources.list.d";
Dir::Etc::Parts "$A/etc/apt.conf.d";
Dir::Etc::Preferences "$A/etc/preferences";
Dir::Etc::PreferencesParts "$A/etc/preferences.d";
APT::Architecture "amd64";
EOF
export APT_CONFIG=$A/apt.conf
apt-get update -qq

for V in "${VERSIONS[@]}"; do
  echo "=== kernel $V ==="
  SRC=$W/linux-source-$V; OUT=$W/out-$V; G=$W/guest-$V; D=$W/dumps-$V
  mkdir -p "$W/debs" "$G/inc/linux" "$D"
  # ---- 2. source ----
  if [ ! -f "$SRC/Makefile" ]; then
    t0=$(T)
    (cd "$W/debs" && apt-get download "${PKG[$V]}")
    deb=$(ls "$W"/debs/linux-source-${V}_*.deb | tail -1)
    rm -rf "$W/debs/x-$V"; dpkg-deb -x "$deb" "$W/debs/x-$V"
    (cd "$W" && tar xf "$W/debs/x-$V/usr/src/linux-source-$V.tar.xz")
    echo "source $V: $(( $(T) - t0 )) s"
  fi
  # ---- 3. config + bzImage ----
  if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$OUT/arch/x86/boot/bzImage" ]; then
    "$HERE/mkconfig.sh" "$SRC" "$OUT"
    t0=$(T)
    nice -n 10 make -C "$SRC" O="$OUT" ARCH=x86_64 -j"$JOBS" bzImage > "$W/build-$V.log" 2>&1
    echo "bzImage $V: $(( $(T) - t0 )) s"
  fi
  KREL=$(cat "$OUT/include/config/kernel.release")
  # ---- 4. guest + initramfs ----
  cp "$SRC/include/uapi/linux/liveupdate.h" "$G/inc/linux/"
  gcc -O2 -Wall -static -I"$G/inc" -o "$G/luo_guest" "$HERE/luo_guest.c"
  "$HERE/mkinitrd.sh" "$G/luo_guest" "$OUT/arch/x86/boot/bzImage" "$G"
  # ---- 5. boot, kexec, dumps ----
  NAME=kho-$V
  python3 "$HERE/run_guest.py" --kernel "$OUT/arch/x86/boot/bzImage" --initrd "$G/initrd-a.cpio.gz" \
    --append "$APPEND_BASE" --mem-mb "${MEM_MB:-${MEM[$V]}}" --out "$D" --name "$NAME" --elf "${ELF[$V]}"
  # ---- 6. ground truth ----
  python3 "$HERE/mkmanifest.py" --console "$D/$NAME.console.log" --raw-a "$D/$NAME-A.raw" --raw-b "$D/$NAME-B.raw" \
    --name-a "$NAME-A" --name-b "$NAME-B" --kernel-version "$KREL" --out "$D"
  # ---- 7. ISF from BTF + System.map of the build ----
  python3 "$HERE/mkisf.py" --vmlinux "$OUT/vmlinux" --kallsyms "$OUT/System.map" \
    --out "$DEST/symbols/linux/$KREL.json.xz" > "$D/isf.json"
  # ---- 8. compress + copy ----
  t0=$(T)
  for f in "$D/$NAME"-A.raw "$D/$NAME"-B.raw "$D/$NAME"-*.elf; do
    [ -f "$f" ] || continue
    chmod 644 "$f"
    xz -9 -T2 -k -f "$f"
    cp "$f.xz" "$DEST/"
  done
  echo "xz $V: $(( $(T) - t0 )) s"
  cp "$D/$NAME.console.log" "$D/$NAME-A.manifest.json" "$D/$NAME-B.manifest.json" "$DEST/"
  cp "$OUT/.config" "$DEST/config-$KREL"
  python3 - "$DEST" "$V" "$KREL" "$D" "$OUT" "${PKG[$V]}" <<'EOF'
import json, os, subprocess, sys
dest, v, krel, d, out, pkg = sys.argv[1:]
p = os.path.join(dest, "build-info.json")
info = json.load(open(p)) if os.path.exists(p) else {}
def ver(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return None
info[v] = {
    "kernel_release": krel, "source_package": pkg,
    "config_y_count": sum(1 for l in open(os.path.join(out, ".config")) if l.rstrip().endswith("=y")),
    "gcc": ver(["gcc", "--version"]), "pahole": ver(["pahole", "--version"]),
    "qemu": ver(["qemu-system-x86_64", "--version"]),
    "timing": json.load(open(os.path.join(d, f"kho-{v}.timing.json"))),
    "isf": json.load(open(os.path.join(d, "isf.json"))) if os.path.getsize(os.path.join(d, "isf.json")) else None,
}
json.dump(info, open(p, "w"), indent=1)
EOF
done
ls -l "$DEST" "$DEST/symbols/linux"
