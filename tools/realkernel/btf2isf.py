#!/usr/bin/env python3
"""btf2isf: a Volatility 3 ISF (format 6.2.0) from a kernel's BTF and kallsyms. Stdlib only.

Input:
  --vmlinux  the ELF decompressed from vmlinuz (section .BTF gives the types,
             .rodata gives linux_banner's bytes, which Volatility matches against the image)
  --kallsyms /proc/kallsyms of the booted kernel (or a System.map: "addr type name")

Types: every BTF STRUCT/UNION/ENUM becomes an ISF user type/enum; INT/FLOAT become
base types; typedefs and CV qualifiers are resolved away (ISF has no typedefs).
Anonymous structs/unions are named after the typedef that names them, else
"unnamed_<kind>_<btf id>"; anonymous members are "unnamed_field_<n>" with
"anonymous": true. Bitfields: offset = bit offset // 8, bit_position = bit offset % 8.

Symbols: every kallsyms entry (module symbols dropped; first definition of a
duplicated name kept, a global one preferred). BTF of Debian's 6.1 kernels carries
the types of per-CPU variables only, so the types of the globals that Volatility's
Linux code reads come from TYPE_TABLE below; array lengths that the table leaves
open ("[]") are taken from the distance to the next symbol.

This is a minimal converter for test fixtures, good enough for LinuxIntelStacker /
LinuxIntelVMCOREINFOStacker, linux.pslist and friends, and `saved_command_line`.
"""

import argparse
import base64
import hashlib
import json
import lzma
import re
import struct
import sys

BTF_KINDS = {1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD",
             8: "TYPEDEF", 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC",
             13: "FUNC_PROTO", 14: "VAR", 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG",
             18: "TYPE_TAG", 19: "ENUM64"}
QUALIFIERS = {"TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"}

# C type of the globals Volatility's Linux support reads (BTF has no types for them).
TYPE_TABLE = {
    "init_task": "struct task_struct",
    "init_mm": "struct mm_struct",
    "init_files": "struct files_struct",
    "init_fs": "struct fs_struct",
    "init_top_pgt": "pgd_t[512]",
    "init_nsproxy": "struct nsproxy",
    "init_uts_ns": "struct uts_namespace",
    "init_pid_ns": "struct pid_namespace",
    "init_net": "struct net",
    "saved_command_line": "char *",
    "boot_command_line": "char[]",
    "linux_banner": "char[]",
    "modules": "struct list_head",
    "mod_tree": "struct mod_tree_root",
    "prb": "struct printk_ringbuffer *",
    "idt_table": "gate_desc[256]",
    "sys_call_table": "sys_call_ptr_t[]",
    "ia32_sys_call_table": "sys_call_ptr_t[]",
    "__per_cpu_offset": "unsigned long[]",
    "nr_cpu_ids": "unsigned int",
    "page_offset_base": "unsigned long",
    "vmemmap_base": "unsigned long",
    "vmalloc_base": "unsigned long",
    "phys_base": "unsigned long",
    "max_pfn": "unsigned long",
    "mem_section": "struct mem_section **",
    "jiffies": "unsigned long",
    "jiffies_64": "u64",
    "init_cred": "struct cred",
    "keyboard_notifier_list": "struct atomic_notifier_head",
    "net_namespace_list": "struct list_head",
    "super_blocks": "struct list_head",
    "tty_drivers": "struct list_head",
    "module_kset": "struct kset *",
    "mount_hashtable": "struct hlist_head *",
    "dentry_hashtable": "struct hlist_head *",
    "vmap_area_list": "struct list_head",
    "pid_max": "int",
    "ftrace_ops_list": "struct ftrace_ops *",
    "nf_hook_ops": "struct list_head",
    "taint_flags": "struct taint_flag[19]",          # TAINT_FLAGS_COUNT in 6.1
    "iomem_resource": "struct resource",
    "prog_idr": "struct idr",
    "socket_file_ops": "struct file_operations",
    "sockfs_dentry_operations": "struct dentry_operations",
    "ftrace_list_end": "struct ftrace_ops",
    "node_data": "struct pglist_data *[]",
    "kallsyms_num_syms": "unsigned int",
    "log_buf": "char *",
    "log_buf_len": "unsigned int",
    "cap_last_cap": "int",
}
# Struct types Volatility's Linux support names directly (set_type_class and plugins):
# kept by --trim together with everything reachable from them and from typed symbols.
ROOT_TYPES = """file list_head hlist_head mm_struct super_block task_struct vm_area_struct qstr
dentry fs_struct files_struct kobject cred inode idr address_space page module bpf_prog
bpf_prog_aux kernel_cap_struct kernel_cap_t scatterlist module_sect_attr bin_attribute
timespec64 timespec vfsmount mount mnt_namespace rb_root net socket sock inet_sock unix_sock
netlink_sock vsock_sock packet_sock bt_sock xdp_sock maple_tree latch_tree_root kernel_symbol
taint_flag module_sect_attrs module_layout mod_tree_root timekeeper tk_read_base
pid_namespace pid upid nsproxy uts_namespace new_utsname net_device in_device in_ifaddr
inet6_dev inet6_ifaddr tty_driver tty_struct seq_operations file_operations
fdtable vm_struct vmap_area resource linux_binfmt kset kobj_type
printk_ringbuffer prb_desc_ring prb_data_ring prb_desc printk_info""".split()
C_INT_NAMES = {"unsigned long": "long unsigned int", "long": "long int",
               "unsigned int": "unsigned int", "int": "int", "char": "char",
               "unsigned char": "unsigned char", "u64": "long long unsigned int",
               "unsigned long long": "long long unsigned int"}


class BTF:
    def __init__(self, data):
        magic, ver, flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack_from("<HBBIIIII", data, 0)
        if magic != 0xEB9F:
            raise ValueError("not BTF (magic %#x)" % magic)
        self.strs = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self.types = [None]          # id 0 = void
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind = BTF_KINDS[(info >> 24) & 0x1F]
            vlen, kflag = info & 0xFFFF, info >> 31
            t = {"kind": kind, "name": self.str(name_off), "vlen": vlen, "kflag": kflag,
                 "size": size_type, "type": size_type}
            if kind == "INT":
                (enc,) = struct.unpack_from("<I", data, pos); pos += 4
                t.update(encoding=(enc >> 24) & 0xF, bits_offset=(enc >> 16) & 0xFF, nr_bits=enc & 0xFF)
            elif kind == "ARRAY":
                t["elem"], _, t["nelems"] = struct.unpack_from("<III", data, pos); pos += 12
            elif kind in ("STRUCT", "UNION"):
                t["members"] = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos); pos += 12
                    if kflag:
                        t["members"].append((self.str(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        t["members"].append((self.str(m_name), m_type, m_off, 0))
            elif kind == "ENUM":
                t["values"] = []
                for _ in range(vlen):
                    n, v = struct.unpack_from("<Ii", data, pos); pos += 8
                    t["values"].append((self.str(n), v))
            elif kind == "ENUM64":
                t["values"] = []
                for _ in range(vlen):
                    n, lo, hi = struct.unpack_from("<III", data, pos); pos += 12
                    v = (hi << 32) | lo
                    if kflag and v >= 1 << 63:
                        v -= 1 << 64
                    t["values"].append((self.str(n), v))
            elif kind == "FUNC_PROTO":
                pos += 8 * vlen
            elif kind == "VAR":
                pos += 4
            elif kind == "DATASEC":
                t["vars"] = [struct.unpack_from("<III", data, pos + 12 * i) for i in range(vlen)]
                pos += 12 * vlen
            elif kind == "DECL_TAG":
                pos += 4
            self.types.append(t)

    def str(self, off):
        return self.strs[off:self.strs.index(b"\0", off)].decode()


class Converter:
    def __init__(self, btf):
        self.btf = btf
        self.base_types = {
            "void": {"size": 0, "signed": False, "kind": "void", "endian": "little"},
            "pointer": {"size": 8, "signed": False, "kind": "int", "endian": "little"},
        }
        self.user_types, self.enums, self._desc = {}, {}, {}
        self.names = {}             # btf id -> ISF name for struct/union/enum
        self.typedefs = {}
        types = btf.types
        for tid, t in enumerate(types):
            if t and t["kind"] == "TYPEDEF" and t["name"]:
                self.typedefs.setdefault(t["name"], tid)
        taken = set()
        for tid, t in enumerate(types):          # named aggregates first: they own their names
            if t and t["kind"] in ("STRUCT", "UNION", "ENUM", "ENUM64") and t["name"]:
                if t["name"] not in taken or t.get("members") or t.get("values"):
                    self.names[tid] = t["name"]
                    taken.add(t["name"])
        for name, tid in self.typedefs.items():  # typedef struct { ... } name_t;
            tgt = types[tid]["type"]
            t = types[tgt]
            if t and t["kind"] in ("STRUCT", "UNION", "ENUM", "ENUM64") and not t["name"] \
                    and tgt not in self.names and name not in taken:
                self.names[tgt] = name
                taken.add(name)
        for tid, t in enumerate(types):
            if t and t["kind"] in ("STRUCT", "UNION", "ENUM", "ENUM64") and tid not in self.names:
                self.names[tid] = "unnamed_%s_%d" % (t["kind"].lower(), tid)
        for tid, t in enumerate(types):
            if not t:
                continue
            if t["kind"] == "INT":
                self.base_types[t["name"]] = self._int(t)
            elif t["kind"] == "FLOAT":
                self.base_types[t["name"]] = {"size": t["size"], "signed": True, "kind": "float",
                                              "endian": "little"}
        for tid, t in enumerate(types):
            if t and t["kind"] in ("STRUCT", "UNION"):
                name = self.names[tid]
                if name in self.user_types and not t["members"]:
                    continue
                self.user_types[name] = self._struct(t)
            elif t and t["kind"] in ("ENUM", "ENUM64"):
                self.enums[self.names[tid]] = self._enum(t)

    @staticmethod
    def _int(t):
        enc = t["encoding"]
        kind = "bool" if enc & 4 else "char" if (enc & 2 or "char" in t["name"]) else "int"
        return {"size": t["size"], "signed": bool(enc & 1), "kind": kind, "endian": "little"}

    def _base(self, name, size, signed):
        if name not in self.base_types:
            self.base_types[name] = {"size": size, "signed": signed, "kind": "int", "endian": "little"}
        return name

    def _enum(self, t):
        values = t["values"]
        signed = any(v < 0 for _, v in values)
        size = t["size"]
        base = {1: ("signed char", "unsigned char"), 2: ("short int", "short unsigned int"),
                4: ("int", "unsigned int"), 8: ("long int", "long unsigned int")}[size][0 if signed else 1]
        return {"size": size, "base": self._base(base, size, signed),
                "constants": {n: v for n, v in values}}

    def resolve(self, tid):
        while tid and self.btf.types[tid]["kind"] in QUALIFIERS:
            tid = self.btf.types[tid]["type"]
        return tid

    def desc(self, tid):
        tid = self.resolve(tid)
        if tid in self._desc:
            return self._desc[tid]
        if tid == 0:
            d = {"kind": "base", "name": "void"}
        else:
            t = self.btf.types[tid]
            k = t["kind"]
            if k in ("INT", "FLOAT"):
                d = {"kind": "base", "name": t["name"]}
            elif k == "PTR":
                d = {"kind": "pointer", "subtype": self.desc(t["type"])}
            elif k == "ARRAY":
                d = {"kind": "array", "count": t["nelems"], "subtype": self.desc(t["elem"])}
            elif k in ("STRUCT", "UNION"):
                d = {"kind": k.lower(), "name": self.names[tid]}
            elif k in ("ENUM", "ENUM64"):
                d = {"kind": "enum", "name": self.names[tid]}
            elif k == "FWD":
                kind = "union" if t["kflag"] else "struct"
                self.user_types.setdefault(t["name"], {"kind": kind, "size": 0, "fields": {}})
                d = {"kind": kind, "name": t["name"]}
            else:                               # FUNC_PROTO, FUNC, ...
                d = {"kind": "function"}
        self._desc[tid] = d
        return d

    def _struct(self, t):
        fields, anon = {}, 0
        for name, mtype, bit_off, bitsize in t["members"]:
            rt = self.resolve(mtype)
            rtt = self.btf.types[rt] if rt else None
            if not bitsize and rtt and rtt["kind"] == "INT" and rtt["nr_bits"] != rtt["size"] * 8:
                bitsize, bit_off = rtt["nr_bits"], bit_off + rtt["bits_offset"]
            if bitsize:
                inner = self.desc(rt)
                if inner["kind"] not in ("base", "enum"):
                    inner = {"kind": "base", "name": "unsigned int"}
                ftype = {"kind": "bitfield", "bit_position": bit_off % 8, "bit_length": bitsize,
                         "type": inner}
            else:
                ftype = self.desc(mtype)
            field = {"type": ftype, "offset": bit_off // 8}
            if not name:
                name = "unnamed_field_%d" % anon
                anon += 1
                field["anonymous"] = True
            fields[name] = field
        return {"kind": "union" if t["kind"] == "UNION" else "struct", "size": t["size"],
                "fields": fields}

    def size_of(self, d):
        k = d["kind"]
        if k == "pointer":
            return 8
        if k == "base":
            return self.base_types[d["name"]]["size"]
        if k == "array":
            return d["count"] * self.size_of(d["subtype"])
        if k in ("struct", "union"):
            return self.user_types[d["name"]]["size"]
        if k == "enum":
            return self.enums[d["name"]]["size"]
        return 0

    def parse_c_type(self, spec):
        """'struct x', 'char *', 'pgd_t[512]', 'unsigned long[]' -> (descriptor, count or None)."""
        m = re.fullmatch(r"\s*([\w ]+?)\s*(\**)\s*(?:\[(\d*)\])?\s*", spec)
        base, stars, count = m.group(1), m.group(2), m.group(3)
        if base.startswith(("struct ", "union ")):
            kind, name = base.split(None, 1)
            if name not in self.user_types:
                return None
            d = {"kind": kind, "name": name}
        elif base in C_INT_NAMES and C_INT_NAMES[base] in self.base_types:
            d = {"kind": "base", "name": C_INT_NAMES[base]}
        elif base in self.typedefs:
            d = self.desc(self.typedefs[base])
        else:
            return None
        for _ in stars:
            d = {"kind": "pointer", "subtype": d}
        return d, (None if count is None else (int(count) if count else 0))


class Elf:
    def __init__(self, data):
        self.data = data
        e_shoff, = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        secs = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        strtab = secs[e_shstrndx]
        names = data[strtab[4]: strtab[4] + strtab[5]]
        self.sections = {}
        for s in secs:
            name = names[s[0]: names.index(b"\0", s[0])].decode()
            self.sections[name] = {"addr": s[3], "offset": s[4], "size": s[5], "type": s[1]}

    def section(self, name):
        s = self.sections[name]
        return self.data[s["offset"]: s["offset"] + s["size"]]

    def read_va(self, va, n):
        for s in self.sections.values():
            if s["type"] != 8 and s["addr"] and s["addr"] <= va < s["addr"] + s["size"]:
                off = s["offset"] + va - s["addr"]
                return self.data[off: off + n]
        return None


def read_kallsyms(path):
    syms = {}
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3 or len(parts) > 3:    # 4th column "[module]": not vmlinux
                continue
            addr, typ, name = int(parts[0], 16), parts[1], parts[2]
            if name in syms and not (syms[name][1].islower() and typ.isupper()):
                continue
            syms[name] = (addr, typ)
    return syms


def trim(isf):
    """Keep the struct/union/enum types reachable from ROOT_TYPES and typed symbols."""
    users, enums = isf["user_types"], isf["enums"]
    keep_u, keep_e, stack = set(), set(), []

    def walk(d):
        k = d["kind"]
        if k in ("struct", "union"):
            if d["name"] not in keep_u and d["name"] in users:
                keep_u.add(d["name"])
                stack.append(d["name"])
        elif k == "enum":
            keep_e.add(d["name"])
        elif k in ("pointer", "array"):
            walk(d["subtype"])
        elif k == "bitfield":
            walk(d["type"])

    for sym in isf["symbols"].values():
        if "type" in sym:
            walk(sym["type"])
    for name in ROOT_TYPES:
        walk({"kind": "struct", "name": name})
    while stack:
        for f in users[stack.pop()]["fields"].values():
            walk(f["type"])
    isf["user_types"] = {n: users[n] for n in sorted(keep_u)}
    isf["enums"] = {n: enums[n] for n in sorted(keep_e) if n in enums}


def convert(vmlinux_path, kallsyms_path):
    with open(vmlinux_path, "rb") as fh:
        elf = Elf(fh.read())
    btf_data = elf.section(".BTF")
    conv = Converter(BTF(btf_data))
    syms = read_kallsyms(kallsyms_path)
    addrs = sorted({a for a, _ in syms.values()})
    import bisect

    def next_addr(a):
        i = bisect.bisect_right(addrs, a)
        return addrs[i] if i < len(addrs) else None

    symbols = {name: {"address": addr} for name, (addr, _) in syms.items()}
    # per-CPU variables: BTF DATASEC .data..percpu has their types
    for t in conv.btf.types:
        if t and t["kind"] == "DATASEC" and t["name"] == ".data..percpu":
            for var_id, _off, _size in t["vars"]:
                v = conv.btf.types[var_id]
                if v["name"] in symbols:
                    symbols[v["name"]]["type"] = conv.desc(v["type"])
    banner = None
    for name, spec in TYPE_TABLE.items():
        if name not in symbols:
            continue
        parsed = conv.parse_c_type(spec)
        if not parsed:
            continue
        d, count = parsed
        addr = symbols[name]["address"]
        if name == "linux_banner":
            raw = elf.read_va(addr, 1024)
            banner = raw[: raw.index(b"\0") + 1]
            count = len(banner)
            symbols[name]["constant_data"] = base64.b64encode(banner).decode()
        elif count == 0:
            nxt = next_addr(addr)
            esize = conv.size_of(d)
            count = (nxt - addr) // esize if nxt and esize else 1
        if count is not None:
            d = {"kind": "array", "count": max(count, 1), "subtype": d}
        symbols[name]["type"] = d
    if banner is None:
        raise SystemExit("linux_banner not found in kallsyms/ELF")
    isf = {
        "metadata": {
            "format": "6.2.0",
            "producer": {"name": "volatility_pkram tools/realkernel/btf2isf.py", "version": "1"},
            "linux": {
                "symbols": [{"kind": "system-map", "name": "kallsyms",
                             "hash_type": "sha256",
                             "hash_value": hashlib.sha256(open(kallsyms_path, "rb").read()).hexdigest()}],
                "types": [{"kind": "symtab", "name": ".BTF",
                           "hash_type": "sha256", "hash_value": hashlib.sha256(btf_data).hexdigest()}],
            },
        },
        "base_types": conv.base_types,
        "user_types": conv.user_types,
        "enums": conv.enums,
        "symbols": symbols,
    }
    return isf, banner


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vmlinux", required=True, help="ELF decompressed from vmlinuz")
    ap.add_argument("--kallsyms", required=True, help="/proc/kallsyms (or System.map)")
    ap.add_argument("--out", required=True, help="ISF path; .xz is compressed")
    ap.add_argument("--trim", action="store_true",
                    help="keep only types reachable from typed symbols and ROOT_TYPES "
                         "(Volatility validates an ISF with jsonschema on first use: ~55 s untrimmed)")
    args = ap.parse_args()
    isf, banner = convert(args.vmlinux, args.kallsyms)
    if args.trim:
        trim(isf)
    data = json.dumps(isf, separators=(",", ":"), sort_keys=True).encode()
    if args.out.endswith(".xz"):
        data = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    with open(args.out, "wb") as fh:
        fh.write(data)
    print(json.dumps({"out": args.out, "bytes": len(data), "user_types": len(isf["user_types"]),
                      "enums": len(isf["enums"]), "symbols": len(isf["symbols"]),
                      "typed_symbols": sum(1 for s in isf["symbols"].values() if "type" in s),
                      "banner": banner.decode(errors="replace").strip()}))


if __name__ == "__main__":
    sys.exit(main())
