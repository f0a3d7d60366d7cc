"""The deterministic content luo_guest.c writes (keep in sync with fill_page() there).

Page p of file f: 64 lines of 64 bytes; line l = b"LUOGT f%02d p%08x l%02d " padded with
chr(ord('A') + f) to 63 bytes, then b"\\n". Only the file's written extents (byte ranges,
printed as "LUOGT EXTENT" lines and stored in the manifest) hold pattern bytes; every
other byte of the file (holes, the tail of the last page) is zero.
"""

PAGE = 4096


def pattern_page(fid, page):
    pad = bytes([ord("A") + fid])
    out = bytearray()
    for line in range(64):
        head = b"LUOGT f%02d p%08x l%02d " % (fid, page, line)
        out += head + pad * (63 - len(head)) + b"\n"
    return bytes(out)


def expected_page(fid, page, extents):
    """The 4096 bytes page `page` of file `fid` must hold; extents = [(start, end), ...] in bytes."""
    full = pattern_page(fid, page)
    buf = bytearray(PAGE)
    lo, hi = page * PAGE, (page + 1) * PAGE
    for start, end in extents:
        a, b = max(lo, start), min(hi, end)
        if a < b:
            buf[a - lo:b - lo] = full[a - lo:b - lo]
    return bytes(buf)


def expected_content(fid, size, extents):
    """Whole file content (size bytes)."""
    npages = (size + PAGE - 1) // PAGE
    return b"".join(expected_page(fid, p, extents) for p in range(npages))[:size]
