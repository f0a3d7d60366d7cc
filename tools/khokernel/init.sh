#!/bin/busybox sh
# /init of the KHO/LUO fixture guest (both boots use the same script).
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
# Large folios for shmem only where madvise(MADV_HUGEPAGE) asks for them (luo_guest's thp4m file).
SHM=/sys/kernel/mm/transparent_hugepage/shmem_enabled
[ -w $SHM ] && echo advise > $SHM
echo "LUOGT BOOT uname=$(uname -r) cmdline=$(cat /proc/cmdline)"
echo "LUOGT SHMEM_ENABLED $(cat $SHM 2>/dev/null)"
case " $(cat /proc/cmdline) " in
*" luogt_stage=B "*)
	sh /luogt_info.sh B
	/luo_guest b
	;;
*)
	sh /luogt_info.sh A0
	BCMD="$(cat /proc/cmdline) luogt_stage=B"
	/luo_guest a /boot/bzImage /boot/initrd-b.cpio.gz "$BCMD"
	;;
esac
echo "LUOGT IDLE"
while true; do sleep 3600; done
