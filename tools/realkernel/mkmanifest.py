#!/usr/bin/env python3
"""Console log of a fixture boot -> manifest JSON, cross-checked against the dump. Stdlib only.

The ground truth is what pkram_fixture.ko printed (PKRAMGT lines: every page it
allocated and what for, every link entry, every file header and in-kernel
SHA-256, the super block, v2 regions) and what init printed (PKRAMFILE: busybox
sha256sum of each tmpfs file). This script turns it into the manifest schema of
the synthetic generator and then checks it against the raw image (and the ELF
core, if given) with a small independent PKRAM reader; any disagreement is fatal.

Usage: mkmanifest.py --console v1.console.log --raw v1.raw [--elf v1.elf [--no-list-elf]]
                     --name pkram-v1-real --out pkram-v1-real.manifest.json [--extra k=v ...]
"""

import argparse
import hashlib
import json
import re
import struct
import sys

PAGE = 4096
MAGIC = 0x706B726D


def runs(sorted_pfns):
    out = []
    for p in sorted_pfns:
        if out and out[-1][0] + out[-1][1] == p:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return out


def parse_console(path):
    gt, files, info = [], {}, {}
    with open(path, "rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            m = re.search(r"PKRAMGT (\{.*\})\s*$", line)
            if m:
                gt.append(json.loads(m.group(1)))
                continue
            m = re.search(r"(PKRAM[A-Z_]+) ?(.*)$", line)
            if not m:
                continue
            tag, rest = m.groups()
            if tag == "PKRAMFILE":
                mount, sha, size, name = rest.split(" ", 3)
                files[("shmem-" + mount, name)] = (sha, int(size))
            elif tag in ("PKRAMUNAME", "PKRAMCMDLINE", "PKRAMMEM"):
                info[tag] = rest.strip()
    return gt, files, info


class Image:
    def __init__(self, path):
        self.fh = open(path, "rb")
        self.fh.seek(0, 2)
        self.size = self.fh.tell()

    def read(self, phys, n):
        self.fh.seek(phys)
        data = self.fh.read(n)
        if len(data) != n:
            raise ValueError(f"read past end at {phys:#x}")
        return data

    def page(self, pfn):
        return self.read(pfn * PAGE, PAGE)


class ElfImage:
    """PT_LOAD segments of an ELF64 core, addressed by p_paddr."""

    def __init__(self, path):
        self.fh = open(path, "rb")
        hdr = self.fh.read(64)
        assert hdr[:4] == b"\x7fELF" and hdr[4] == 2, "not ELF64"
        phoff, = struct.unpack_from("<Q", hdr, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
        self.loads = []
        for i in range(phnum):
            self.fh.seek(phoff + i * phentsize)
            p_type, _flags, off, _va, pa, filesz, memsz, _al = struct.unpack("<IIQQQQQQ", self.fh.read(56))
            if p_type == 1 and filesz:
                self.loads.append((pa, filesz, off))

    def read(self, phys, n):
        for pa, size, off in self.loads:
            if pa <= phys and phys + n <= pa + size:
                self.fh.seek(off + phys - pa)
                return self.fh.read(n)
        raise ValueError(f"{phys:#x} not in any PT_LOAD")


def u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


def link_entries(img, link_pfn, seen):
    """[(link_pfn, index, [(idx, pfn, order, flags)])] in list order."""
    out = []
    while link_pfn:
        if link_pfn in seen:
            raise ValueError(f"link cycle at {link_pfn:#x}")
        seen.add(link_pfn)
        pg = img.page(link_pfn)
        idx, ents = u64(pg, 8), []
        for i in range(510):
            e = u64(pg, 16 + 8 * i)
            if not e:
                break
            order, flags = e & 0x1F, (e >> 5) & 0x7F
            ents.append((idx, e >> 12, order, flags))
            idx += 1 << order
        out.append((link_pfn, u64(pg, 8), ents))
        link_pfn = u64(pg, 0)
    return out


def walk_identity_map(img, pgd_pfn):
    """v1, 4-level: PFNs marked by the bitmaps / PSE entries (RFC v1 09/43)."""
    marked = set()
    pgd = img.page(pgd_pfn)
    for i in range(512):
        e = u64(pgd, 8 * i)
        if not e:
            continue
        pud = img.page(e >> 12)
        for j in range(512):
            e2 = u64(pud, 8 * j)
            if not e2:
                continue
            pmd = img.page(e2 >> 12)
            for k in range(512):
                e3 = u64(pmd, 8 * k)
                if not e3:
                    continue
                base = (i << 27) | (j << 18) | (k << 9)        # PFN of the 2 MiB range
                if e3 & 0x80:
                    marked.update(range(base, base + 512))
                else:
                    bm = int.from_bytes(img.read(e3 & ~0xFFF, 64), "little")
                    marked.update(base + b for b in range(512) if bm >> b & 1)
    return marked


def sha_placed(img, entries, limit=None):
    """SHA-256 of a page stream placed by index (holes zero), cut at limit bytes."""
    entries = sorted(entries)
    end = max(((i + (1 << o)) * PAGE for i, _, o, _ in entries), default=0)
    if limit is None:
        limit = end
    h, pos = hashlib.sha256(), 0
    for idx, pfn, order, _ in entries:
        start = idx * PAGE
        if start > pos:
            n = min(start, limit) - pos
            if n > 0:
                h.update(bytes(n))
                pos += n
        if pos >= limit:
            break
        n = min((1 << order) * PAGE, limit - pos)
        h.update(img.read(pfn * PAGE, n))
        pos += n
    if pos < limit:
        h.update(bytes(limit - pos))
    return h.hexdigest(), end


def entry_runs(entries):
    out = []
    for idx, pfn, order, flags in sorted(entries):
        n = 1 << order
        if out and out[-1][3] == order and out[-1][4] == flags and \
                out[-1][0] + out[-1][2] == idx and out[-1][1] + out[-1][2] == pfn:
            out[-1][2] += n
        else:
            out.append([idx, pfn, n, order, flags])
    return out


def build(console, raw, elf, name, extra, list_elf=True):
    gt, guest_files, info = parse_console(console)
    by = {}
    for r in gt:
        by.setdefault(r["t"], []).append(r)
    if "done" not in by:
        raise SystemExit(f"{console}: no PKRAMGT done line (errors: {by.get('error')})")
    start, sb = by["start"][0], by["sb"][0]
    rev = sb["rev"]
    img = Image(raw)
    problems = []

    def check(cond, msg):
        if not cond:
            problems.append(msg)

    # ---- page kinds ----
    kinds = {}
    for r in by.get("page", []):
        kinds.setdefault(r["kind"], set()).add(r["pfn"])
    obj_entries, obj_links = {}, {}
    for r in by.get("entry", []):
        obj_entries.setdefault(r["obj"], []).append((r["index"], r["pfn"], r["order"], r["flags"]))
        if r["link"] not in obj_links.setdefault(r["obj"], []):
            obj_links[r["obj"]].append(r["link"])
        kinds.setdefault("data", set()).update(range(r["pfn"], r["pfn"] + (1 << r["order"])))
    obj_bytes = {}
    for r in by.get("bentry", []):
        obj_bytes.setdefault(r["obj"], []).append(r["pfn"])
    kinds.setdefault("super_block", set()).add(sb["pfn"])
    all_kinds = {}
    for k, pfns in kinds.items():
        for p in pfns:
            check(p not in all_kinds, f"pfn {p:#x} has two kinds: {all_kinds.get(p)} and {k}")
            all_kinds[p] = k
    check(max(all_kinds) * PAGE < img.size, "a recorded page is outside the image")

    # ---- super block ----
    sbp = img.page(sb["pfn"])
    if rev == 1:
        check(u64(sbp, 0) == sb["node_pfn"] and u64(sbp, 8) == sb["pgd_pfn"], "v1 sb fields")
        check(not any(sbp[16:]), "v1 sb tail not zero")
    else:
        check(struct.unpack_from("<I", sbp, 0)[0] == MAGIC == sb["magic"], "v2 magic")
        check((u64(sbp, 8), u64(sbp, 16), u64(sbp, 24)) ==
              (sb["node_pfn"], sb["region_list_pfn"], sb["nr_regions"]), "v2 sb fields")
        check(not any(sbp[4:8]) and not any(sbp[32:]), "v2 sb padding/tail not zero")

    # ---- nodes / objects / files, walked in the image ----
    files_gt = {r["obj"]: r for r in by.get("file", [])}
    raw_gt = {r["obj"]: r for r in by.get("raw", [])}
    obj_node = {r["pfn"]: r["node"] for r in by["obj"]}
    nodes, files, raw_objects = [], [], []
    node_final = {r["pfn"]: r for r in by["nodefinal"]}
    chain, pfn, seen = [], sb["node_pfn"], set()
    while pfn:
        check(pfn not in seen, "node cycle")
        seen.add(pfn)
        chain.append(pfn)
        pfn = u64(img.page(pfn), 16)
    check(set(chain) == {p for p, r in node_final.items() if r["flags"] == 0}, "chained node set")
    for node_pfn in chain + [p for p in node_final if p not in chain]:
        np_ = img.page(node_pfn)
        nname = np_[0x18:0x118].split(b"\0")[0].decode()
        fin = node_final[node_pfn]
        check(nname == fin["name"] and struct.unpack_from("<I", np_, 0)[0] == fin["flags"],
              f"node {node_pfn:#x} name/flags")
        check(u64(np_, 8) == fin["obj_pfn"] and u64(np_, 16) == fin["node_pfn"], f"node {nname} pointers")
        check(not any(np_[0x18 + len(nname) + 1:]), f"node {nname} tail not zero")
        obj_pfns, op = [], u64(np_, 8)
        while op:
            obj_pfns.append(op)
            o = img.page(op)
            op = u64(o, 24 if rev == 1 else 40)
        created = [r["pfn"] for r in by["obj"] if r["node"] == nname]
        check(obj_pfns == created[::-1], f"node {nname}: object list is not newest-first")
        nodes.append({"name": nname, "pfn": node_pfn, "flags": fin["flags"], "chained": node_pfn in chain,
                      "consumer": "shmem" if nname.startswith("shmem-") else "unknown",
                      "nr_objs": len(obj_pfns), "obj_pfns": obj_pfns})
        for op in obj_pfns:
            o = img.page(op)
            seen_links = set()
            if rev == 1:
                data_pfn, data_len, lh = u64(o, 0), u64(o, 8), u64(o, 16)
                bytes_ = img.page(data_pfn)[:data_len] if data_pfn else b""
                byte_pages = [data_pfn] if data_pfn else []
                blinks = []
                check(not any(o[32:]), f"obj {op:#x} tail")
            else:
                ph, pt, bh, bt, data_len = (u64(o, 8 * i) for i in range(5))
                bl = link_entries(img, bh, seen_links)
                blinks = [l for l, _, _ in bl]
                byte_pages = [p for _, _, es in bl for _, p, _, _ in es]
                bytes_ = b"".join(img.page(p) for p in byte_pages)[:data_len]
                check(all(ix == 0 for _, ix, _ in bl), f"obj {op:#x}: bytes link index != 0")
                check(byte_pages == obj_bytes.get(op, []), f"obj {op:#x}: byte pages differ from GT")
                check((bt == (blinks[-1] if blinks else 0)), f"obj {op:#x}: bytes tail")
                lh = ph
                check(not any(o[48:]), f"obj {op:#x} tail")
            links = link_entries(img, lh, seen_links)
            lpfns = [l for l, _, _ in links]
            if rev == 2:
                check(pt == (lpfns[-1] if lpfns else 0), f"obj {op:#x}: pages tail")
            expect_order = obj_links.get(op, [])
            check(lpfns == (expect_order[::-1] if rev == 1 else expect_order),
                  f"obj {op:#x}: link order (v1 LIFO / v2 FIFO)")
            ents = [e for _, _, es in links for e in es]
            check(sorted(ents) == sorted(obj_entries.get(op, [])), f"obj {op:#x}: entries differ from GT")
            if op in files_gt:
                f = files_gt[op]
                fname = bytes.fromhex(f["name_hex"])
                mode, uid, gid, namelen, size, at, mt, ct = struct.unpack_from("<IIIIQqqq", bytes_, 0)
                check(bytes_[48:] == fname and namelen == len(fname) and len(bytes_) == f["bytes_len"],
                      f"file {fname!r}: byte stream name")
                check((mode, uid, gid, size, at, mt, ct) ==
                      (f["mode"], f["uid"], f["gid"], f["size"], f["atime_ns"], f["mtime_ns"], f["ctime_ns"]),
                      f"file {fname!r}: header")
                sha, _ = sha_placed(img, ents, size)
                check(sha == f["sha256"], f"file {fname!r}: content sha256 in image != module's")
                g = guest_files.get((nname, fname.decode()))
                check(g is not None and g == (sha, size), f"file {fname!r}: busybox sha256sum/size differ")
                npages = (size + PAGE - 1) // PAGE
                covered = set()
                for idx, _, order, _ in ents:
                    covered.update(range(idx, idx + (1 << order)))
                files.append({
                    "node": nname, "name": fname.decode(), "obj_pfn": op, "size": size, "sha256": sha,
                    "mode": mode, "uid": uid, "gid": gid, "atime_ns": at, "mtime_ns": mt, "ctime_ns": ct,
                    "pages_present": sum(1 << o for _, _, o, _ in ents),
                    "thp": sum(1 for _, _, o, fl in ents if o == 9 and fl & 1),
                    "copied_thp": 0,
                    "holes": sum(1 for i in range(npages) if i not in covered),
                    "pages_past_size": sum(1 for i in covered if i >= npages),
                    "link_pfns": lpfns, "bytes_pfns": byte_pages, "bytes_link_pfns": blinks,
                    "runs": entry_runs(ents),
                })
            else:
                r = raw_gt[op]
                psha, plen = sha_placed(img, ents)
                bsha = hashlib.sha256(bytes_).hexdigest()
                check((len(bytes_), bsha, plen, psha) ==
                      (r["bytes_len"], r["bytes_sha256"], r["pages_len"], r["pages_sha256"]),
                      f"raw object {op:#x}: hashes")
                raw_objects.append({
                    "node": nname, "obj_pfn": op, "bytes_len": len(bytes_), "bytes_sha256": bsha,
                    "pages_len": plen, "pages_sha256": psha,
                    "link_pfns": lpfns, "bytes_pfns": byte_pages, "bytes_link_pfns": blinks,
                    "runs": entry_runs(ents),
                })
            check(obj_node[op] == nname, f"obj {op:#x} in the wrong node")
    check(len(files) == len(files_gt) == len(guest_files), "file count")

    # ---- reserved ranges ----
    manifest_extra = {}
    if rev == 1:
        marked = walk_identity_map(img, sb["pgd_pfn"])
        expect = set(all_kinds) - {sb["pfn"], sb["pgd_pfn"]}
        check(marked == expect, f"v1 identity map marks {len(marked)} pages, GT says {len(expect)} "
                                f"(extra {sorted(marked - expect)[:5]}, missing {sorted(expect - marked)[:5]})")
        reserved_pfns = marked | {sb["pfn"], sb["pgd_pfn"]}
        check(set(all_kinds) == reserved_pfns, "v1 reserved != all recorded pages")
        pmd_pse = []
        for pfn in kinds.get("pmd", ()):
            pg = img.page(pfn)
            pmd_pse += [u64(pg, 8 * i) for i in range(512) if u64(pg, 8 * i) & 0x80]
        manifest_extra["pmd_pse_entries"] = {"bare_thp": sum(1 for e in pmd_pse if e == 0x80),
                                             "full_bitmap": sum(1 for e in pmd_pse if e != 0x80)}
    else:
        regions, rl_pfns, rl, seen = [], [], sb["region_list_pfn"], set()
        while rl and len(regions) < sb["nr_regions"]:
            check(rl not in seen, "region list cycle")
            seen.add(rl)
            rl_pfns.append(rl)
            pg = img.page(rl)
            for i in range(255):
                base, size = u64(pg, 16 + 16 * i), u64(pg, 24 + 16 * i)
                if not size or len(regions) == sb["nr_regions"]:
                    break
                regions.append([base, size])
            rl = u64(pg, 8)
        check(regions == [[r["base"], r["size"]] for r in by["region"]], "region list differs from GT")
        check(len(regions) == sb["nr_regions"], "nr_regions")
        check(all(a[0] + a[1] < b[0] for a, b in zip(regions, regions[1:])), "regions not merged/ascending")
        reserved_pfns = set()
        for base, size in regions:
            reserved_pfns.update(range(base // PAGE, (base + size) // PAGE))
        check(reserved_pfns == set(all_kinds), "v2 regions != all recorded pages")
        allocated = [r["pfn"] for r in by["page"] if r["kind"] == "region_list"]
        check(sorted(rl_pfns) == sorted(allocated) or set(rl_pfns) <= set(allocated), "region list pages")
        chain_all, p = [], allocated[-1]
        while p:
            chain_all.append(p)
            p = u64(img.page(p), 8)
        check(chain_all == allocated[::-1], "region list next_pfn chain is not last-allocated-first")
        first = img.page(allocated[-1])
        manifest_extra.update(region_list_pfns=chain_all, regions=regions,
                              region_list_prev_pfn=u64(first, 0))
        check(u64(first, 0) == sb["rl_prev_pfn"], "first region list page prev_pfn")

    # ---- ELF core holds the same bytes ----
    if elf:
        e = ElfImage(elf)
        for p in sorted(all_kinds):
            if all_kinds[p] != "data" or p % 97 == 0:
                check(e.read(p * PAGE, PAGE) == img.page(p), f"ELF and raw differ at pfn {p:#x}")

    if problems:
        raise SystemExit("manifest cross-check FAILED:\n  " + "\n  ".join(problems))

    manifest = {
        "generator": "realkernel",
        "format_version": 1,
        "kernel": info.get("PKRAMUNAME"),
        "revision": rev,
        "paging_levels": sb.get("paging_levels") if rev == 1 else None,
        "page_size": PAGE,
        "mem_size": img.size,
        "images": {"raw": f"{name}.raw", **({"elf": f"{name}.elf"} if elf and list_elf else {})},
        "compressed": {"raw": f"{name}.raw.xz", **({"elf": f"{name}.elf.xz"} if elf and list_elf else {})},
        "lime_gaps": [],
        "sb_pfn": sb["pfn"],
        "pgd_pfn": sb["pgd_pfn"] if rev == 1 else None,
        "region_list_pfn": sb["region_list_pfn"] if rev == 2 else None,
        "nr_regions": sb["nr_regions"] if rev == 2 else None,
        "cmdline": [info.get("PKRAMCMDLINE")],
        "decoys": [],
        "reserved": [[p * PAGE, n] for p, n in runs(sorted(reserved_pfns))],
        "page_kinds": {k: runs(sorted(v)) for k, v in sorted(kinds.items())},
        "nodes": nodes,
        "files": files,
        "raw_objects": raw_objects,
        "sb_in_direct_map": bool(start["direct_map"]),
        "guest_meminfo": info.get("PKRAMMEM"),
        **manifest_extra,
        **extra,
    }
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--console", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--elf", help="ELF core of the same pause: checked against the raw image")
    ap.add_argument("--no-list-elf", action="store_true",
                    help="check the ELF but do not list it under images (it is not shipped)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--extra", action="append", default=[], help="key=json value added to the manifest")
    args = ap.parse_args()
    extra = {}
    for kv in args.extra:
        k, v = kv.split("=", 1)
        extra[k] = json.loads(v)
    m = build(args.console, args.raw, args.elf, args.name, extra, not args.no_list_elf)
    with open(args.out, "w") as fh:
        json.dump(m, fh, indent=1)
        fh.write("\n")
    print(json.dumps({"manifest": args.out, "revision": m["revision"], "sb_pfn": m["sb_pfn"],
                      "nodes": len(m["nodes"]), "files": len(m["files"]),
                      "reserved_pages": sum(n for _, n in m["reserved"]),
                      "reserved_runs": len(m["reserved"]), "nr_regions": m["nr_regions"]}))


if __name__ == "__main__":
    sys.exit(main())
