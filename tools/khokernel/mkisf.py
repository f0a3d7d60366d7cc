#!/usr/bin/env python3
"""ISF for the self-built KHO/LUO kernels: tools/realkernel/btf2isf.py plus the KHO/LUO types.

    mkisf.py --vmlinux OUT/vmlinux --kallsyms OUT/System.map --out symbols/linux/<release>.json.xz

Same as `btf2isf.py --trim`, but the trim also keeps the KHO/LUO structs (the ABI structs of
include/linux/kho/abi/*.h and the runtime trackers) and types the globals kho_out, kho_in,
luo_session_global, luo_flb_global and luo_dev. The vmlinux is the build's own (unstripped) ELF,
System.map the build's own symbol table (nokaslr: addresses as booted). Types Volatility binds
unconditionally but the minimal kernel lacks (no CONFIG_NET: net, socket, sock, inet_sock, unix_sock)
are added as empty structs.
"""
import argparse
import json
import lzma
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "realkernel"))
import btf2isf  # noqa: E402

KHO_TYPES = """kho_out kho_in kho_scratch kho_data kho_vmalloc kho_vmalloc_chunk kho_vmalloc_hdr
kho_radix_node kho_radix_leaf kho_radix_tree kho_kexec_metadata kho_block_header_ser kho_block_set
kho_block luo_ser luo_session_ser luo_file_set_ser luo_file_ser luo_flb_header_ser luo_flb_ser
luo_session luo_session_header luo_session_global luo_file luo_file_set luo_flb_global luo_flb_header
luo_device_state memfd_luo_ser memfd_luo_folio_ser setup_data boot_params setup_header folio page
kimage kexec_segment shmem_inode_info""".split()
KHO_SYMBOLS = {
    "kho_out": "struct kho_out",
    "kho_in": "struct kho_in",
    "luo_session_global": "struct luo_session_global",
    "luo_flb_global": "struct luo_flb_global",
    "luo_dev": "struct luo_device_state",
    "kho_scratch": "struct kho_scratch *",
    "kho_scratch_cnt": "unsigned int",
    "kexec_image": "struct kimage *",
}

# Types Volatility's LinuxKernelIntermedSymbols binds unconditionally (set_type_class); a kernel
# without CONFIG_NET has no socket types, so empty stand-ins keep the stacker from failing.
VOL_REQUIRED = """file list_head hlist_head mm_struct super_block task_struct vm_area_struct qstr dentry
fs_struct files_struct kobject cred inode idr address_space page vfsmount net socket sock inet_sock
unix_sock""".split()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vmlinux", required=True)
    ap.add_argument("--kallsyms", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    btf2isf.ROOT_TYPES.extend(KHO_TYPES)
    btf2isf.TYPE_TABLE.update(KHO_SYMBOLS)
    isf, banner = btf2isf.convert(args.vmlinux, args.kallsyms)
    btf2isf.trim(isf)
    stubs = [n for n in VOL_REQUIRED if n not in isf["user_types"]]
    for n in stubs:
        isf["user_types"][n] = {"kind": "struct", "size": 0, "fields": {}}
    data = json.dumps(isf, separators=(",", ":"), sort_keys=True).encode()
    if args.out.endswith(".xz"):
        data = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    with open(args.out, "wb") as fh:
        fh.write(data)
    print(json.dumps({"out": os.path.basename(args.out), "bytes": len(data),
                      "user_types": len(isf["user_types"]), "enums": len(isf["enums"]),
                      "symbols": len(isf["symbols"]),
                      "typed_symbols": sum(1 for s in isf["symbols"].values() if "type" in s),
                      "kho_types_present": sorted(t for t in KHO_TYPES if t in isf["user_types"]),
                      "kho_types_absent": sorted(t for t in KHO_TYPES if t not in isf["user_types"]),
                      "empty_stub_types": stubs,
                      "banner": banner.decode(errors="replace").strip()}))


if __name__ == "__main__":
    sys.exit(main())
