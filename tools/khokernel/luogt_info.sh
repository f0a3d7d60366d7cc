#!/bin/sh
# Print KHO/LUO state as LUOGT lines: debugfs kho blobs (hex), scratch, setup_data, iomem, dmesg.
T=$1
echo "LUOGT INFO-BEGIN tag=$T"
if [ -d /sys/kernel/debug/kho ]; then
	find /sys/kernel/debug/kho | sort | while read -r f; do
		if [ -d "$f" ]; then echo "LUOGT DIR tag=$T path=$f"; continue; fi
		case "$f" in
		*/scratch_phys|*/scratch_len)
			cat "$f" | while read -r l; do echo "LUOGT TEXT tag=$T path=$f line=$l"; done ;;
		*)
			n=$(wc -c < "$f")
			echo "LUOGT BLOB tag=$T path=$f len=$n hex=$(od -An -tx1 -v "$f" | tr -d ' \n')" ;;
		esac
	done
else
	echo "LUOGT WARN tag=$T no /sys/kernel/debug/kho"
fi
for d in /sys/kernel/boot_params/setup_data/*; do
	[ -d "$d" ] || continue
	echo "LUOGT SETUP_DATA tag=$T entry=${d##*/} type=$(cat $d/type) data=$(od -An -tx1 -v $d/data | tr -d ' \n')"
done
[ -f /sys/kernel/boot_params/data ] && echo "LUOGT BOOT_PARAMS_VERSION tag=$T $(cat /sys/kernel/boot_params/version)"
cat /proc/iomem | while read -r l; do echo "LUOGT IOMEM tag=$T $l"; done
dmesg | grep -iE 'kho|luo|liveupdate|memfd|scratch|kexec|handover|flb' | while read -r l; do echo "LUOGT DMESG tag=$T $l"; done
grep -E 'MemTotal|MemFree|Shmem|CmaTotal|CmaFree|FileHugePages|ShmemHugePages' /proc/meminfo | while read -r l; do echo "LUOGT MEMINFO tag=$T $l"; done
echo "LUOGT INFO-END tag=$T"
