#!/usr/bin/env python3
"""Ground-truth manifests for the KHO/LUO fixtures, from the guest's console log and the raw dumps.

    mkmanifest.py --console X.console.log --raw-a X-A.raw --raw-b X-B.raw --kernel-version 7.3.4 \
                  --name-a kho-7.3-A --name-b kho-7.3-B --out DIR [--mem-mb 256]

Writes DIR/<name>.manifest.json for each moment. Stdlib only; it does NOT import volatility_pkram.

Every PFN the guest printed is checked against the dump: the page at pfn*4096 in the raw
image must equal the page the deterministic pattern (luogt_pattern.py) says the file holds
at that index. Mismatches are recorded with where the expected page really is (found by
content). The KHO blobs the guest read from debugfs are located in the dump by content and
decoded (FDT: compatible and properties; LUO: struct luo_ser) so the manifest states where
they are; the LUO sessions -> files -> memfd records -> folio arrays are followed in the dump
with an independent ~100-line decoder and compared with the ground truth.
"""

import argparse
import collections
import hashlib
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from luogt_pattern import PAGE, expected_content, expected_page  # noqa: E402

KV = re.compile(r'(\w+)=("([^"]*)"|\S+)')


def kv(line):
    d = {}
    for m in KV.finditer(line):
        d[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return d


def num(s):
    return int(s, 0)


# ---------------------------------------------------------------- console
def parse_console(path):
    text = open(path, "rb").read().decode("utf-8", "replace").replace("\r", "")
    lines = text.split("\n")
    boots = [[]]
    for ln in lines:
        boots[-1].append(ln)
        if "LUOGT KEXEC-REBOOT" in ln:
            boots.append([])
    return boots


def luogt(lines):
    for ln in lines:
        i = ln.find("LUOGT ")
        if i >= 0:
            yield ln[i + 6:]


def kernel_lines(lines, pat=re.compile(r"kho|luo|liveupdate|memfd|scratch|kexec|handover|flb", re.I)):
    return [ln for ln in lines if ln.startswith("[") and pat.search(ln)]


def collect_files(boot_a):
    files = collections.OrderedDict()
    pages = collections.defaultdict(lambda: collections.defaultdict(dict))   # phase -> fid -> idx -> pfn/None
    folios = collections.defaultdict(lambda: collections.defaultdict(list))
    extents = collections.defaultdict(list)
    preserved = {}
    for ln in luogt(boot_a):
        tag, _, rest = ln.partition(" ")
        d = kv(rest)
        if tag == "EXTENT":
            extents[int(d["fid"])].append((int(d["start"]), int(d["end"])))
        elif tag == "FILE":
            fid = int(d["fid"])
            f = files.setdefault(fid, {"fid": fid, "name": d["name"], "session": d["session"],
                                       "token": num(d["token"])})
            f[d["stage"]] = {"size": int(d["size"]), "pos": int(d["pos"]), "seals": num(d["seals"]),
                             "sha256": d["sha256"]}
        elif tag in ("RUN", "HOLE"):
            fid, idx, n = int(d["fid"]), int(d["idx"]), int(d["n"])
            for k in range(n):
                pages[d["phase"]][fid][idx + k] = (num(d["pfn"]) + k) if tag == "RUN" else None
        elif tag == "FOLIO":
            folios[d["phase"]][int(d["fid"])].append(
                {"index": int(d["idx"]), "pfn": num(d["pfn"]), "pages": int(d["pages"]),
                 "kpageflags": d["kpageflags"]})
        elif tag == "PRESERVED":
            preserved[int(d["fid"])] = True
        elif tag == "PRESERVE-FAILED":
            preserved[int(d["fid"])] = "failed errno=%s" % d.get("errno")
    for fid, f in files.items():
        f["extents"] = extents.get(fid, [])
        f["preserved"] = preserved.get(fid, False)
    return files, pages, folios


def collect_info(lines, tag):
    info = {"blobs": {}, "dirs": [], "text": collections.defaultdict(list), "setup_data": [],
            "iomem": [], "dmesg": [], "meminfo": []}
    for ln in luogt(lines):
        t, _, rest = ln.partition(" ")
        if f"tag={tag} " not in rest + " ":
            continue
        rest = rest.replace(f"tag={tag} ", "", 1) if f"tag={tag} " in rest else rest.replace(f"tag={tag}", "")
        if t == "BLOB":
            d = kv(rest)
            data = bytes.fromhex(d.get("hex", ""))
            info["blobs"][d["path"]] = {"len": int(d["len"]), "data": data,
                                        "complete": len(data) == int(d["len"])}
        elif t == "DIR":
            info["dirs"].append(kv(rest)["path"])
        elif t == "TEXT":
            d = kv(rest)
            info["text"][d["path"]].append(rest.split("line=", 1)[1])
        elif t == "SETUP_DATA":
            d = kv(rest)
            info["setup_data"].append({"entry": d["entry"], "type": int(d["type"], 0),
                                       "data": bytes.fromhex(d["data"])})
        elif t == "IOMEM":
            info["iomem"].append(rest)
        elif t == "DMESG":
            info["dmesg"].append(rest)
        elif t == "MEMINFO":
            info["meminfo"].append(rest)
    return info


# ---------------------------------------------------------------- FDT
def parse_fdt(buf):
    magic, total, off_struct, off_strings, off_rsv, version, last_comp, cpu, sz_strings, sz_struct = \
        struct.unpack_from(">10I", buf, 0)
    if magic != 0xD00DFEED:
        raise ValueError("not an FDT")

    def string(off):
        s = buf[off_strings + off:buf.index(b"\0", off_strings + off)]
        return s.decode()

    pos = off_struct
    root = None
    stack = []
    while True:
        tok, = struct.unpack_from(">I", buf, pos)
        pos += 4
        if tok == 1:
            end = buf.index(b"\0", pos)
            node = {"name": buf[pos:end].decode(), "props": collections.OrderedDict(), "children": []}
            pos = (end + 1 + 3) & ~3
            if stack:
                stack[-1]["children"].append(node)
            else:
                root = node
            stack.append(node)
        elif tok == 2:
            stack.pop()
        elif tok == 3:
            ln, nameoff = struct.unpack_from(">II", buf, pos)
            pos += 8
            node = stack[-1]
            node["props"][string(nameoff)] = bytes(buf[pos:pos + ln])
            pos = (pos + ln + 3) & ~3
        elif tok == 4:
            continue
        elif tok == 9:
            break
        else:
            raise ValueError(f"bad FDT token {tok}")
    return {"totalsize": total, "version": version, "last_comp_version": last_comp}, root


def prop_repr(name, val):
    if val.endswith(b"\0") and all(32 <= c < 127 for c in val[:-1]) and len(val) > 1:
        return {"string": val[:-1].decode()}
    r = {"hex": val.hex(), "len": len(val)}
    if len(val) == 8:
        r["u64_le"] = hex(struct.unpack("<Q", val)[0])
    elif len(val) == 4:
        r["u32_le"] = hex(struct.unpack("<I", val)[0])
    return r


def fdt_json(node):
    return {"name": node["name"],
            "props": {k: prop_repr(k, v) for k, v in node["props"].items()},
            "children": [fdt_json(c) for c in node["children"]]}


def find_all(mem, needle, limit=16, align=1):
    out, i = [], 0
    while len(out) < limit:
        i = mem.find(needle, i)
        if i < 0:
            break
        if i % align == 0:
            out.append(i)
        i += 1
    return out


# ---------------------------------------------------------------- independent LUO walk (7.2/7.3 layout)
def rd(mem, pa, n):
    if pa <= 0 or pa + n > len(mem):
        raise ValueError(f"phys 0x{pa:x}+{n} outside the dump")
    return mem[pa:pa + n]


def walk_blocks(mem, head, entry_size, limit=10000):
    """kho_block_header_ser { u64 next; u64 count; } then entries, one page per block."""
    blocks, pa = [], head
    while pa and len(blocks) < limit:
        nxt, cnt = struct.unpack("<QQ", rd(mem, pa, 16))
        entries = [rd(mem, pa + 16 + i * entry_size, entry_size) for i in range(min(cnt, (PAGE - 16) // entry_size))]
        blocks.append({"pa": hex(pa), "next": hex(nxt), "count": cnt, "entries": entries})
        pa = nxt
    return blocks


def walk_vmalloc(mem, first, total_pages, order):
    """kho_vmalloc_chunk: u64 next; u64 phys[511] zero terminated. Returns the page phys list."""
    pages, pa, chunks = [], first, []
    while pa:
        chunks.append(hex(pa))
        nxt = struct.unpack("<Q", rd(mem, pa, 8))[0]
        for i in range(511):
            p = struct.unpack("<Q", rd(mem, pa + 8 + 8 * i, 8))[0]
            if not p:
                break
            pages.append(p)
        pa = nxt
    return pages, chunks


def walk_luo(mem, luo_pa):
    comp, num_, sessions_pa, flbs_pa = struct.unpack("<8sQQQ", rd(mem, luo_pa, 32))
    out = {"luo_ser_pa": hex(luo_pa), "compatible": comp.rstrip(b"\0").decode("ascii", "replace"),
           "liveupdate_num": num_, "sessions_pa": hex(sessions_pa), "flbs_pa": hex(flbs_pa), "sessions": []}
    if not sessions_pa:
        return out
    walked = walk_luo_sessions_at(mem, sessions_pa)
    out["sessions"] = walked["sessions"]
    out["session_blocks"] = walked["session_blocks"]
    return out


def walk_memfd(mem, pa):
    """memfd_luo_ser (7.2/7.3, 'memfd-v2'): u64 pos, u64 size, u32 seals, u32 flags, u64 nr_folios,
    kho_vmalloc { u64 first; u32 total_pages; u16 flags; u16 order } = 48 bytes packed."""
    pos, size, seals, flags, nr, first, total_pages, vflags, order = \
        struct.unpack("<QQIIQQIHH", rd(mem, pa, 48))
    r = {"ser_pa": hex(pa), "pos": pos, "size": size, "seals": hex(seals), "flags": hex(flags),
         "nr_folios": nr, "folios_vmalloc": {"first_chunk_pa": hex(first), "total_pages": total_pages,
                                              "flags": hex(vflags), "order": order}}
    if nr and first:
        vpages, chunks = walk_vmalloc(mem, first, total_pages, order)
        r["folios_vmalloc"]["chunk_pas"] = chunks
        r["folios_vmalloc"]["page_pas"] = [hex(p) for p in vpages]
        arr = b"".join(rd(mem, p, PAGE << order) for p in vpages)
        recs = []
        for i in range(nr):
            w, idx = struct.unpack_from("<QQ", arr, 16 * i)
            recs.append([idx, w & ((1 << 52) - 1), w >> 52])
        r["folio_records"] = recs            # [index, pfn, flags]
    return r


def walk_radix(mem, root_pa):
    """KHO radix tree (kho-v4, 7.2/7.3): 5 levels of 512 u64 phys tables, then a 32768-bit leaf.
    key bits 59:51 / 50:42 / 41:33 / 32:24 / 23:15 index levels 5..1, bits 14:0 the leaf bit;
    the key is (1 << (52 - order)) | (pfn >> order). Returns {(pfn, order)} and the node pages."""
    out, nodes = set(), {"tables": 0, "leaves": 0}

    def rec(pa, level, prefix):
        if level == 0:
            nodes["leaves"] += 1
            bm = rd(mem, pa, PAGE)
            for wi in range(PAGE // 8):
                w = struct.unpack_from("<Q", bm, wi * 8)[0]
                while w:
                    b = (w & -w).bit_length() - 1
                    w &= w - 1
                    key = prefix | (wi * 64 + b)
                    top = key.bit_length() - 1
                    order = 52 - top
                    out.add(((key & ((1 << top) - 1)) << order, order))
            return
        nodes["tables"] += 1
        tab = rd(mem, pa, PAGE)
        for i in range(512):
            child = struct.unpack_from("<Q", tab, 8 * i)[0]
            if child:
                rec(child, level - 1, prefix | (i << (15 + 9 * (level - 1))))

    rec(root_pa, 5, 0)
    return out, nodes


def scan_session_blocks(mem, names):
    """Pages that look like a kho_block of luo_session_ser entries holding one of `names`."""
    found = []
    for nm in names:
        i = 0
        needle = nm.encode() + b"\0"
        while True:
            i = mem.find(needle, i)
            if i < 0:
                break
            if i % PAGE == 16 and i - 16 not in found:
                found.append(i - 16)
            i += 1
    return found


def scan_memfd_ser(mem, f):
    """Locate memfd_luo_ser {pos, size, seals, flags, nr_folios, kho_vmalloc} by its pos/size/seals."""
    st = f["post"]
    if not st["size"]:
        return []
    needle = struct.pack("<QQI", st["pos"], st["size"], st["seals"])
    return [x for x in find_all(mem, needle, limit=8, align=8)]


# ---------------------------------------------------------------- verification
def verify(mem, files, pagemap, label):
    """pagemap: fid -> idx -> pfn/None. Compares each page with the pattern."""
    index = None
    report = {"phase": label, "pages_checked": 0, "pages_ok": 0, "mismatches": []}
    for fid, f in files.items():
        ext = f["extents"]
        for idx, pfn in sorted(pagemap.get(fid, {}).items()):
            if pfn is None:
                continue
            want = expected_page(fid, idx, ext)
            got = mem[pfn * PAGE:(pfn + 1) * PAGE]
            report["pages_checked"] += 1
            if got == want:
                report["pages_ok"] += 1
                continue
            if index is None:
                index = collections.defaultdict(list)
                for p in range(len(mem) // PAGE):
                    pg = mem[p * PAGE:(p + 1) * PAGE]
                    if pg[:5] == b"LUOGT":
                        index[hashlib.sha1(pg).digest()].append(p)
            where = index.get(hashlib.sha1(want).digest(), []) if want[:5] == b"LUOGT" else "zero page (not searched)"
            report["mismatches"].append({"fid": fid, "index": idx, "pfn": hex(pfn), "found_at_pfns": where
                                         if isinstance(where, str) else [hex(x) for x in where]})
    return report


def pfn_list(pm, npages):
    return [(hex(pm[i]) if pm.get(i) is not None else None) for i in range(npages)]


def runs(pm, npages):
    out, i = [], 0
    while i < npages:
        p = pm.get(i)
        j = i + 1
        if p is None:
            while j < npages and pm.get(j) is None:
                j += 1
            out.append({"index": i, "count": j - i, "hole": True})
        else:
            while j < npages and pm.get(j) == p + (j - i):
                j += 1
            out.append({"index": i, "count": j - i, "pfn": hex(p)})
        i = j
    return out


def build(args):
    boots = parse_console(args.console)
    boot_a, boot_b = boots[0], (boots[1] if len(boots) > 1 else [])
    files, pages, folios = collect_files(boot_a)
    retrieved_files, rpages, rfolios = collect_files(boot_b)
    boot_lines = {"A": [l for l in luogt(boot_a) if l.startswith("BOOT ")],
                  "B": [l for l in luogt(boot_b) if l.startswith("BOOT ")]}
    results = {}
    for moment, raw, name, lines, tags in (("A", args.raw_a, args.name_a, boot_a, ("A0", "A")),
                                           ("B", args.raw_b, args.name_b, boot_b, ("B",))):
        if not raw:
            continue
        mem = open(raw, "rb").read()
        m = {"image": f"{name}.raw.xz", "format": "raw (QMP pmemsave: file offset = guest physical address)",
             "kernel_version": args.kernel_version, "moment": moment,
             "moment_description": {
                 "A": "first kernel (cold boot), all memfds preserved in their LUO sessions, "
                      "before kexec_file_load/reboot: LUO sessions not yet serialised (that happens in "
                      "liveupdate_reboot() during the kexec)",
                 "B": "second kernel (booted by kexec_file_load from the first), KHO data found, "
                      "before userspace retrieved any session or fd"}[moment],
             "mem_bytes": len(mem),
             "boot": boot_lines[moment],
             "sessions": [], "files": []}
        sess = collections.OrderedDict()
        for fid, f in files.items():
            sess.setdefault(f["session"], []).append(hex(f["token"]))
        m["sessions"] = [{"name": k, "tokens": v} for k, v in sess.items()]
        post = pages["post"]
        for fid, f in files.items():
            size = f["post"]["size"]
            npg = (size + PAGE - 1) // PAGE
            exp = expected_content(fid, size, f["extents"])
            fe = {"fid": fid, "name": f["name"], "session": f["session"], "token": hex(f["token"]),
                  "size": size, "pos": f["post"]["pos"], "seals": hex(f["post"]["seals"]),
                  "sha256": f["post"]["sha256"],
                  "sha256_of_pattern": hashlib.sha256(exp).hexdigest(),
                  "written_extents": [list(e) for e in f["extents"]],
                  "preserved": f["preserved"],
                  "pfn_by_index": pfn_list(post.get(fid, {}), npg),
                  "runs": runs(post.get(fid, {}), npg),
                  "compound_folios": folios["post"].get(fid, []),
                  "pre_preserve": {"sha256": f["pre"]["sha256"], "runs": runs(pages["pre"].get(fid, {}), npg),
                                   "moved_at_preserve": sum(1 for i, p in pages["pre"].get(fid, {}).items()
                                                            if p is not None and post.get(fid, {}).get(i) != p),
                                   "holes_filled_at_preserve": sum(1 for i, p in pages["pre"].get(fid, {}).items()
                                                                   if p is None and post.get(fid, {}).get(i) is not None),
                                   "compound_folios": folios["pre"].get(fid, [])}}
            fe["pattern_sha_matches_guest"] = fe["sha256_of_pattern"] == fe["sha256"]
            if moment == "B" and fid in retrieved_files:
                rf = retrieved_files[fid].get("retrieved", {})
                fe["after_retrieval_in_B"] = {
                    "sha256": rf.get("sha256"), "size": rf.get("size"), "seals": hex(rf.get("seals", 0)),
                    "pos": rf.get("pos"),
                    "same_pfns_as_A_post": rpages["retrieved"].get(fid, {}) == post.get(fid, {}),
                    "runs": runs(rpages["retrieved"].get(fid, {}), npg),
                    "compound_folios": rfolios["retrieved"].get(fid, [])}
            m["files"].append(fe)
        m["verification"] = {"post_preserve_pfns": verify(mem, files, post, "post"),
                             "pre_preserve_pfns_informational": verify(mem, files, pages["pre"], "pre")}
        # KHO / LUO facts
        kho = {}
        infos = {t: collect_info(lines, t) for t in tags}
        if moment == "A":
            infos["A2_after_kexec_file_load"] = collect_info(lines, "A2")
        for t, info in infos.items():
            ent = {"debugfs_dirs": info["dirs"], "debugfs_text": dict(info["text"]), "blobs": {},
                   "setup_data": [], "dmesg": info["dmesg"], "iomem": info["iomem"], "meminfo": info["meminfo"]}
            for path, b in info["blobs"].items():
                data = b["data"]
                be = {"len": b["len"], "complete_in_log": b["complete"], "sha256": hashlib.sha256(data).hexdigest(),
                      "found_in_dump_at": [hex(x) for x in find_all(mem, data, align=8)] if len(data) >= 16 else "too short to locate"}
                if data[:4] == b"\xd0\x0d\xfe\xed":
                    try:
                        total = struct.unpack_from(">I", data, 4)[0]
                        if total > len(data):
                            # the debugfs blob keeps the size the FDT had when it was registered
                            be["note"] = (f"debugfs blob is {len(data)} bytes but fdt_totalsize is {total}: "
                                          "FDT parsed from the dump at the address where the blob was found")
                            locs = find_all(mem, data, align=PAGE)
                            data = mem[locs[0]:locs[0] + total] if locs else data
                        hdr, root = parse_fdt(data)
                        be["fdt_header"] = hdr
                        be["fdt"] = fdt_json(root)
                    except Exception as exc:                 # noqa: BLE001
                        be["fdt_error"] = repr(exc)
                elif path.endswith("/LUO") and len(data) >= 32:
                    c, n, s, fl = struct.unpack_from("<8sQQQ", data)
                    be["luo_ser"] = {"compatible": c.rstrip(b"\0").decode("ascii", "replace"), "liveupdate_num": n,
                                     "sessions_pa": hex(s), "flbs_pa": hex(fl)}
                else:
                    be["hex"] = data.hex() if len(data) <= 256 else data[:256].hex() + "..."
                ent["blobs"][path] = be
            for sd in info["setup_data"]:
                e = {"entry": sd["entry"], "type": sd["type"], "len": len(sd["data"])}
                if sd["type"] == 10 and len(sd["data"]) >= 32:
                    fa, fs, sa, ss = struct.unpack_from("<QQQQ", sd["data"])
                    e["kho_data"] = {"fdt_addr": hex(fa), "fdt_size": hex(fs), "scratch_addr": hex(sa),
                                     "scratch_size": hex(ss)}
                    try:
                        hdr, root = parse_fdt(mem[fa:fa + fs])
                        e["fdt_at_fdt_addr"] = fdt_json(root)
                    except Exception as exc:                 # noqa: BLE001
                        e["fdt_at_fdt_addr_error"] = repr(exc)
                    e["scratch_array_at_scratch_addr"] = [
                        {"addr": hex(a), "size": hex(s)}
                        for a, s in (struct.unpack_from("<QQ", mem, sa + 16 * i) for i in range(ss // 16))]
                else:
                    e["hex"] = sd["data"][:128].hex()
                ent["setup_data"].append(e)
            kho[t] = ent
        m["kho_guest_view"] = kho
        # independent LUO walk in the dump, starting at the LUO blob the KHO FDT points to
        walk = {}
        for t, ent in kho.items():
            for path, be in ent["blobs"].items():
                fdt = be.get("fdt")
                if not fdt:
                    continue
                for child in fdt["children"]:
                    pd = child["props"].get("preserved-data", {})
                    if child["name"] == "LUO" and "u64_le" in pd:
                        key = f"{t}:{path}"
                        try:
                            walk[key] = walk_luo(mem, int(pd["u64_le"], 16))
                        except Exception as exc:             # noqa: BLE001
                            walk[key] = {"error": repr(exc)}
        sblocks = scan_session_blocks(mem, [x["name"] for x in m["sessions"]])
        for pa in sblocks:
            try:
                w = walk_luo_sessions_at(mem, pa)
                walk[f"scan:session_block@{hex(pa)}"] = w
            except Exception as exc:                         # noqa: BLE001
                walk[f"scan:session_block@{hex(pa)}"] = {"error": repr(exc)}
        m["luo_walk_in_dump"] = walk
        memfd_found = {}
        for fid, f in files.items():
            locs = scan_memfd_ser(mem, f)
            recs = []
            for pa in locs:
                try:
                    recs.append(walk_memfd(mem, pa))
                except Exception as exc:                     # noqa: BLE001
                    recs.append({"ser_pa": hex(pa), "error": repr(exc)})
            memfd_found[hex(f["token"])] = recs
        m["memfd_luo_ser_found_by_content"] = memfd_found
        m["memfd_luo_ser_vs_truth"] = compare_memfd(memfd_found, files, post)
        radix = {}
        for t, ent in kho.items():
            for path, be in ent["blobs"].items():
                mm = (be.get("fdt") or {}).get("props", {}).get("preserved-memory-map", {})
                if "u64_le" in mm and mm["u64_le"] not in radix:
                    try:
                        pres, nodes = walk_radix(mem, int(mm["u64_le"], 16))
                        radix[mm["u64_le"]] = radix_summary(pres, nodes, files, post, folios["post"])
                    except Exception as exc:                 # noqa: BLE001
                        radix[mm["u64_le"]] = {"error": repr(exc)}
        m["kho_radix_tree"] = radix
        fdts = []
        for off in range(0, len(mem), PAGE):
            if mem[off:off + 4] != b"\xd0\x0d\xfe\xed":
                continue
            try:
                total = struct.unpack_from(">I", mem, off + 4)[0]
                hdr, root = parse_fdt(mem[off:off + min(total, 1 << 20)])
            except Exception:                                # noqa: BLE001
                continue
            fj = fdt_json(root)
            comp = fj["props"].get("compatible", {}).get("string", "")
            fdts.append({"phys": hex(off), "totalsize": total, "root_compatible": comp, "fdt": fj})
        m["fdts_in_dump_page_aligned"] = fdts
        if moment == "B":
            m["kho_radix_tree_note"] = ("in B the next kernel has already consumed the old radix tree "
                                        "(kho_mem_deserialize, pages freed and zeroed by init_on_free); "
                                        "the preserved blocks are marked in the memmap instead, see khop_marked_pages")
            m["khop_marked_pages"] = scan_khop(mem, files, post, folios["post"])
        m["luo_walk_vs_truth"] = compare_walk(walk, files, post)
        m["kernel_log"] = kernel_lines(lines)
        results[moment] = m
        with open(os.path.join(args.out, f"{name}.manifest.json"), "w") as fh:
            fh.write(dumps_compact(m) + "\n")
        v = m["verification"]["post_preserve_pfns"]
        print(f"{name}: files={len(m['files'])} pages_checked={v['pages_checked']} ok={v['pages_ok']} "
              f"mismatches={len(v['mismatches'])} walk={json.dumps(m['luo_walk_vs_truth'])[:300]}")
    return results


KHOP = 0x4B484F50


def scan_khop(mem, files, post, folios_post):
    """page->private = (KHO_PAGE_MAGIC 'KHOP' << 32) | order, written by the next kernel into the head
    page of every preserved block (kho_mem_deserialize). struct page is 64 bytes, private at +0x28.
    Finds them by value, then the memmap base that maps the ground-truth folio heads onto them."""
    hits = {}
    i = 0
    while True:
        i = mem.find(b"POHK", i)
        if i < 0:
            break
        if i % 8 == 4:
            order = struct.unpack_from("<I", mem, i - 4)[0]
            if order <= 20:
                hits[i - 4] = order
        i += 1
    out = {"marked_pages": len(hits),
           "by_order": {str(k): v for k, v in sorted(collections.Counter(hits.values()).items())}}
    if not hits:
        return out
    truth = []
    for fid, f in files.items():
        heads = {fo["index"]: fo["pages"] for fo in folios_post.get(fid, [])}
        skip = set()
        for idx, pfn in sorted(post.get(fid, {}).items()):
            if pfn is None or idx in skip:
                continue
            n = heads.get(idx, 1)
            skip.update(range(idx, idx + n))
            truth.append((pfn, n.bit_length() - 1))
    # vmemmap is mapped in 2 MiB blocks: each block holds the struct pages of 32768 PFNs and may
    # sit anywhere in physical memory, so the base is inferred per 32768-PFN group
    groups = collections.defaultdict(list)
    for pfn, order in truth:
        groups[pfn >> 15].append((pfn, order))
    bases, marked = {}, 0
    for g, items in sorted(groups.items()):
        p0, o0 = items[0]
        cands = {addr - 0x28 - 64 * (p0 & 0x7FFF) for addr, order in hits.items() if order == o0}
        best, best_n = None, -1
        for base in cands:
            n = sum(1 for pfn, order in items if hits.get(base + 64 * (pfn & 0x7FFF) + 0x28) == order)
            if n > best_n:
                best, best_n = base, n
        bases[hex(g << 15)] = {"memmap_block_phys": hex(best) if best is not None else None,
                               "truth_folios": len(items), "marked": best_n}
        marked += max(best_n, 0)
    out.update({"struct_page_size": 64, "private_offset": 0x28,
                "memmap_block_per_32768_pfns_inferred": bases,
                "truth_folios": len(truth), "truth_folios_marked": marked,
                "marked_pages_not_in_truth": len(hits) - marked})
    return out


def walk_luo_sessions_at(mem, pa):
    """The session walk of walk_luo(), started at a session block found by content."""
    out = {"sessions_pa": hex(pa), "sessions": []}
    sblocks = walk_blocks(mem, pa, 80)
    out["session_blocks"] = [{k: b[k] for k in ("pa", "next", "count")} for b in sblocks]
    for b in sblocks:
        for e in b["entries"]:
            name = e[:64].split(b"\0")[0].decode("ascii", "replace")
            files_pa, count = struct.unpack("<QQ", e[64:80])
            s = {"name": name, "files_pa": hex(files_pa), "file_count": count, "files": []}
            if files_pa:
                fblocks = walk_blocks(mem, files_pa, 64)
                s["file_blocks"] = [{k: fb[k] for k in ("pa", "next", "count")} for fb in fblocks]
                for fb in fblocks:
                    for fe in fb["entries"]:
                        fcomp = fe[:48].split(b"\0")[0].decode("ascii", "replace")
                        data, token = struct.unpack("<QQ", fe[48:64])
                        f = {"compatible": fcomp, "data_pa": hex(data), "token": hex(token)}
                        if fcomp.startswith("memfd") and data:
                            try:
                                f["memfd"] = walk_memfd(mem, data)
                            except ValueError as exc:
                                f["memfd_error"] = str(exc)
                        s["files"].append(f)
            out["sessions"].append(s)
    return out


def dumps_compact(obj, ind=0):
    """JSON with one key per line, but lists of scalars (and short dicts) on a single line."""
    pad = " " * ind
    if isinstance(obj, dict):
        flat = json.dumps(obj)
        if len(flat) <= 100 or not obj:
            return flat
        items = [f'{pad} {json.dumps(k)}: {dumps_compact(v, ind + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(x, (dict, list)) for x in obj) or len(json.dumps(obj)) <= 100:
            return json.dumps(obj)
        items = [f"{pad} {dumps_compact(v, ind + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def compare_memfd(found, files, post):
    res = {}
    for fid, f in files.items():
        tok = hex(f["token"])
        recs = [r for r in found.get(tok, []) if "folio_records" in r]
        if not f["post"]["size"]:
            res[tok] = "size 0: no folio array; not located by content"
            continue
        if not recs:
            res[tok] = "not found"
            continue
        want = post.get(fid, {})
        r = recs[0]
        got = {idx: pfn for idx, pfn, _fl in r["folio_records"]}
        heads = sorted(got)
        ok = True
        for i, p in want.items():
            h = max([x for x in heads if x <= i], default=None)
            if h is None or got[h] + (i - h) != p:
                ok = False
                break
        res[tok] = {"ser_pa": r["ser_pa"], "nr_folios": r["nr_folios"], "candidates": len(found.get(tok, [])),
                    "every_truth_page_covered_by_a_record": ok,
                    "record_flags": sorted({fl for _i, _p, fl in r["folio_records"]})}
    return res


def radix_summary(pres, nodes, files, post, folios_post):
    by_order = collections.Counter(o for _p, o in pres)
    pres_set = set(pres)
    missing = []
    for fid, f in files.items():
        heads = {fo["index"]: fo["pages"] for fo in folios_post.get(fid, [])}
        pm = post.get(fid, {})
        i = 0
        idxs = sorted(pm)
        skip = set()
        for idx in idxs:
            if idx in skip or pm[idx] is None:
                continue
            if idx in heads:
                order = heads[idx].bit_length() - 1
                skip.update(range(idx, idx + heads[idx]))
            else:
                order = 0
            if (pm[idx], order) not in pres_set:
                missing.append({"fid": fid, "index": idx, "pfn": hex(pm[idx]), "order": order})
    return {"preserved_blocks": len(pres), "by_order": {str(k): v for k, v in sorted(by_order.items())},
            "node_pages": nodes, "truth_folios_missing_from_tree": missing[:50],
            "truth_folios_missing_count": len(missing)}


def compare_walk(walk, files, post):
    """For each walk: does every token's folio records cover exactly the ground-truth PFNs?"""
    res = {}
    by_token = {f["token"]: (fid, f) for fid, f in files.items()}
    for key, w in walk.items():
        r = {"sessions": len(w.get("sessions", [])), "files": 0, "files_matching_truth": 0, "problems": []}
        for s in w.get("sessions", []):
            for f in s["files"]:
                r["files"] += 1
                tok = int(f["token"], 16)
                if tok not in by_token:
                    r["problems"].append(f"unknown token {f['token']}")
                    continue
                fid, gt = by_token[tok]
                md = f.get("memfd")
                if not md:
                    r["problems"].append(f"token {f['token']}: no memfd record")
                    continue
                want = post.get(fid, {})
                got = {}
                for idx, pfn, flags in md.get("folio_records", []):
                    # a folio record covers the folio's pages; take them from the ground truth's sizes
                    got[idx] = pfn
                ok = all(want.get(i) == p for i, p in got.items()) and md["size"] == gt["post"]["size"]
                # every truth page is either a record or inside a folio that starts at a record
                heads = sorted(got)
                covered = True
                for i, p in want.items():
                    h = max([x for x in heads if x <= i], default=None)
                    if h is None or got[h] + (i - h) != p:
                        covered = False
                        break
                if ok and covered and md["seals"] == hex(gt["post"]["seals"]) and md["pos"] == gt["post"]["pos"]:
                    r["files_matching_truth"] += 1
                else:
                    r["problems"].append(f"token {f['token']}: records/size/seals/pos differ from truth")
        res[key] = r
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--console", required=True)
    ap.add_argument("--raw-a")
    ap.add_argument("--raw-b")
    ap.add_argument("--name-a", required=True)
    ap.add_argument("--name-b", required=True)
    ap.add_argument("--kernel-version", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    build(args)


if __name__ == "__main__":
    main()
