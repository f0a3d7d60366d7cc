"""pkram= tokens are parsed exactly as the kernel's kstrtoul(arg, 16) would."""

import pytest

from volatility_pkram.pkram.locate import kstrtoul_hex, tokens_in_text


@pytest.mark.parametrize("raw, value", [
    (b"12345", 0x12345), (b"0x12345", 0x12345), (b"0X1a2B", 0x1A2B), (b"+ff", 0xFF),
    (b"abcdef\n", 0xABCDEF), (b"0", 0), (b"ffffffffffffffff", 2**64 - 1),
])
def test_kstrtoul_accepts(raw, value):
    assert kstrtoul_hex(raw) == value


@pytest.mark.parametrize("raw", [
    b"", b"0x", b"xyz", b"12g", b"-1", b"12 ", b"1\n\n", b"10000000000000000", b"+", b"0x0x1",
])
def test_kstrtoul_rejects(raw):
    with pytest.raises(ValueError):
        kstrtoul_hex(raw)


def test_tokens_respect_parameter_boundaries():
    text = b'root=/dev/vda pkram=0x1f00 xpkram=1234 "pkram=abc" -o pkram=mytmpfs pkram=$(cat'
    toks = tokens_in_text(text, "test")
    got = [(t.text, t.value) for t in toks]
    assert got == [("pkram=0x1f00", 0x1F00), ("pkram=1234", None), ("pkram=abc", 0xABC),
                   ("pkram=mytmpfs", None), ("pkram=$(cat", None)]
    assert "preceded by" in toks[1].reject


def test_scan_finds_tokens_across_chunk_and_stage_boundaries():
    from volatility_pkram.pkram.locate import LOW_MEMORY, find_pkram_tokens
    from volatility_pkram.core.physmem import BytesMemory

    size = LOW_MEMORY + (1 << 20)
    buf = bytearray(size)
    spots = [0x20000, (4 << 20) - 3, LOW_MEMORY - 8, LOW_MEMORY + 100]
    for i, off in enumerate(spots):
        buf[off - 1:off + 20] = b" pkram=0x%04x quiet" % (0x1000 + i)
    mem = BytesMemory(bytes(buf))
    whole = [(t.offset, t.value) for t in find_pkram_tokens(mem, chunk=4 << 20)]
    assert whole == [(off, 0x1000 + i) for i, off in enumerate(spots)]
    low = list(find_pkram_tokens(mem, chunk=4 << 20, end=LOW_MEMORY))
    high = list(find_pkram_tokens(mem, chunk=4 << 20, start=LOW_MEMORY))
    assert [(t.offset, t.value) for t in low + high] == whole
