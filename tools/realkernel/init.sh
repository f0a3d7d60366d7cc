#!/bin/busybox sh
# /init of the fixture guest (busybox initramfs built by build.sh).
#
# Creates real tmpfs files, remounts the two "preserved" tmpfs read-only
# (as `mount -o remount,preserve,ro` would), prints their sha256 as computed
# by busybox, optionally exports /proc/kallsyms on ttyS1, then insmods
# pkram_fixture.ko, which performs the PKRAM save in this kernel and prints
# the PKRAMGT ground truth. Kernel parameters the kernel does not know
# (pkgt_rev=, pkgt_export=) arrive here as environment variables.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

say() { echo "$@" > /dev/console; }

rev=${pkgt_rev:-1}
say "PKRAMUNAME $(uname -r)"
say "PKRAMCMDLINE $(cat /proc/cmdline)"

mkdir -p /pk/files /pk/huge /pk/scratch
mount -t tmpfs -o size=48m,mode=0755 pkfiles /pk/files
mount -t tmpfs -o size=16m,mode=0755,huge=always pkhuge /pk/huge
mount -t tmpfs -o size=8m scratch /pk/scratch

cd /pk/files
# 1. text file, other owner, mode 0600, atime past 2038, mtime on a leap day
printf 'Hello from a real kernel.\nThis file was saved by pkram_fixture (rev %s).\n' "$rev" > hello.txt
i=0; while [ $i -lt 40 ]; do echo "hello line $i: the quick brown fox jumps over the lazy dog" >> hello.txt; i=$((i+1)); done
chown 1000:1000 hello.txt
chmod 0600 hello.txt
touch -m -d '2024-02-29 12:34:56' hello.txt
touch -a -d '2038-01-19 03:14:09' hello.txt

# 2. a copied ELF binary
cp /bin/busybox busybox
chmod 0755 busybox

# 3. a sparse file: pages 0, 3, 10, 11 and a trailing hole (size 200000 = 49 pages)
printf 'sparse page 0\n' | dd of=sparse.bin bs=4096 seek=0 conv=notrunc 2>/dev/null
printf 'sparse page 3\n' | dd of=sparse.bin bs=4096 seek=3 conv=notrunc 2>/dev/null
dd if=hello.txt of=sparse.bin bs=4096 seek=10 count=2 conv=notrunc 2>/dev/null
printf 'sparse page 11 tail\n' | dd of=sparse.bin bs=1 seek=$((11*4096+3000)) conv=notrunc 2>/dev/null
truncate -s 200000 sparse.bin
chmod 0640 sparse.bin
chown 0:100 sparse.bin
touch -m -d '1969-07-20 20:17:40' sparse.bin
touch -a -d '1970-01-01 00:00:01' sparse.bin

# 4. a file > 2 MiB (about 3.2 MB of distinct lines)
awk 'BEGIN { for (i = 0; i < 50000; i++) printf "big.bin line %07d: pack my box with five dozen jugs\n", i }' > big.bin

# 5. a physically fragmented file: 400 pages, each allocated between two
#    pages of a file in a tmpfs that is not preserved (shell builtin printf:
#    no fork in between, so the two files take turns on the free page list),
#    which gives the v2 region list more than 255 regions (two list pages)
exec 3> frag.bin 4> /pk/scratch/filler
i=0; while [ $i -lt 400 ]; do
  printf '%-4095s\n' "frag page $i" >&3
  printf '%-4095s\n' "scratch page $i" >&4
  i=$((i+1))
done
exec 3>&- 4>&-

# 6. an empty file (no page stream) and a name with a space
: > empty.txt
echo 'a file name with a space' > 'read me.txt'
chmod 0444 'read me.txt'

# huge=always mount: THPs
cd /pk/huge
dd if=/pk/files/big.bin of=thp.bin bs=1M count=4 2>/dev/null
echo 'small file in a huge=always tmpfs: one THP, mostly past EOF' > small.txt
cd /

mount -o remount,ro /pk/files
mount -o remount,ro /pk/huge
say "PKRAMMEM $(grep -E 'ShmemHugePages|MemFree' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"

for m in files huge; do
  for f in /pk/$m/*; do
    h=$(sha256sum "$f" | cut -d' ' -f1)
    s=$(stat -c %s "$f")
    say "PKRAMFILE $m $h $s ${f##*/}"
  done
done

if [ "${pkgt_export:-0}" = 1 ]; then
  # kallsyms for the ISF (before insmod: no module symbols)
  gzip -c /proc/kallsyms | base64 > /dev/ttyS1
  say "PKRAMEXPORTED"
fi

addr=$(awk '$3 == "saved_command_line" { print $1 }' /proc/kallsyms)
echo 7 > /proc/sys/kernel/printk
if insmod /pkram_fixture.ko rev=$rev cmdline_addr=0x$addr mounts=files:/pk/files,huge:/pk/huge; then
  say "PKRAM_READY"
else
  say "PKRAM_FAIL insmod"
fi
while true; do sleep 3600; done
