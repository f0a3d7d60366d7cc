"""pkram.bulk against the entry-by-entry readers it stands in for.

The fast paths may decline a page, never read it differently: wherever one
accepts a page, its result must equal the reference's, and the reference must
have recorded no finding for that page.
"""

import random
from array import array

import pytest

from volatility_pkram.core.problems import Diagnostics
from volatility_pkram.core.streams import PageStream
from volatility_pkram.pkram import bulk
from volatility_pkram.pkram import format as fmt
from volatility_pkram.pkram.lists import _Skipped, link_entries
from volatility_pkram.pkram.regions import _ListReader, RegionListPage

MAX_PFN = 1 << 16


def _link(rng, kind):
    """A link page of 510 entries: clean order-0 pages, or with one kind of damage."""
    used = rng.choice([0, 1, 7, 300, fmt.LINK_ENTRIES_MAX])
    entries = [rng.randrange(1, MAX_PFN) << 12 for _ in range(used)]
    if used and kind != "clean":
        i = rng.randrange(used)
        entries[i] = {"zeroed": 0,
                      "order": (rng.randrange(1, MAX_PFN) << 12) | 9,
                      "flags": (rng.randrange(1, MAX_PFN) << 12) | (1 << 5),
                      "outside": (MAX_PFN + rng.randrange(1000)) << 12,
                      "pfn0": 0 << 12 | 0,
                      "bad-order": (rng.randrange(1, MAX_PFN) << 12) | 17}[kind]
        if kind == "zeroed" and i == used - 1:
            entries[i] = 1 << 12     # a zero at the end is not inside the link
    entries += [0] * (fmt.LINK_ENTRIES_MAX - len(entries))
    index = rng.choice([0, 5, 1 << 20, (1 << 52) - 3])
    return fmt.Link(0x1234, 0, index, array("Q", entries))


@pytest.mark.parametrize("kind", ["clean", "zeroed", "order", "flags", "outside", "pfn0", "bad-order"])
def test_bulk_link_reading_equals_the_reference(kind):
    rng = random.Random(kind)
    accepted = 0
    for _ in range(200):
        link = _link(rng, kind)
        ref, diag, skipped = PageStream(), Diagnostics(), _Skipped()
        ref_end = link_entries(link, MAX_PFN, ref, skipped, diag)
        fast = PageStream()
        end = bulk.link_entries_bulk(link, MAX_PFN, fast)
        if end is None:
            assert len(fast) == 0          # declined: nothing appended
            continue
        accepted += 1
        assert not len(diag) and skipped == _Skipped() and not ref.outside
        assert end == ref_end
        for col in ("index", "pfn", "order", "flags"):
            assert getattr(fast, col) == getattr(ref, col)
    if kind == "clean":
        assert accepted > 100
    elif kind not in ("order", "flags"):
        assert accepted < 200


def _region_page(rng, kind, last_end):
    n = rng.choice([0, 1, 50, 255])
    bases, sizes = [], []
    pos = max(last_end, 0) + rng.randrange(0, 3) * 4096
    for _ in range(n):
        size = rng.randrange(1, 64) * 4096
        bases.append(pos)
        sizes.append(size)
        pos += size + rng.choice([0, 4096, 8192])
    if n and kind != "clean":
        i = rng.randrange(n)
        if kind == "unaligned":
            sizes[i] += 100
        elif kind == "unsorted":
            bases[i] = max(bases[i] - 10 * 4096 * 64, 0)
        elif kind == "beyond":
            bases[i] = (1 << 52) - 4096
        elif kind == "empty":
            sizes[i] = 0
    bases += [0] * (255 - n)
    sizes += [0] * (255 - n)
    return RegionListPage(0x77, 0, 0, array("Q", bases), array("Q", sizes))


@pytest.mark.parametrize("kind", ["clean", "unaligned", "unsorted", "beyond", "empty"])
def test_bulk_region_page_equals_the_reference(kind):
    rng = random.Random(kind)
    accepted = 0
    for _ in range(200):
        last_end = rng.choice([-1, 0, 1 << 30])
        remaining = rng.choice([0, 3, 100, 10**6])
        page = _region_page(rng, kind, last_end)
        verdict = bulk.page_regions_bulk(page.bases, page.sizes, remaining, last_end)
        sb = fmt.SuperBlock(1, 2, 5, nr_regions=remaining)
        ref = _ListReader(sb, Diagnostics())
        ref.last_end = last_end
        ref_done = ref._one_by_one(page)
        if verdict is None:
            continue
        accepted += 1
        count, disjoint = verdict
        assert not len(ref.diag)
        assert list(ref.result.bases) == list(page.bases[:count])
        assert list(ref.result.sizes) == list(page.sizes[:count])
        assert ref.remaining == remaining - count
        # the reference ends the list on this page exactly when the bulk path stops short of it
        assert ref_done == (count < len(page.sizes))
        ends = [b + s for b, s in zip(page.bases[:count], page.sizes[:count])]
        strictly = all(b > e for b, e in zip(page.bases[1:count], ends)) and (
            not count or page.bases[0] > last_end)
        assert disjoint == strictly
    if kind == "clean":
        assert accepted > 100
