"""pkram/choose: the locate-or-carve decision, on plain values (no image, no volatility3).

The cases the plugins meet end to end (tests/test_e2e.py, tests/test_carve.py)
are checked here at the decision itself, and so is that :func:`choose` never
edits the location, the error or the carve result it is given.
"""

import copy

from volatility_pkram.pkram import format as fmt
from volatility_pkram.pkram.carve import CarveResult, NodeCheck
from volatility_pkram.pkram.choose import (Choice, NotFound, OpenOptions, choose, from_carving,
                                           wants_carving)
from volatility_pkram.pkram.locate import Candidate, LocateError, Location, Token


def _candidate(pfn, verdict, nodes=1):
    sb = fmt.SuperBlock(pfn, 2, 0 if verdict == "empty" else pfn + 1)
    return Candidate(pfn, [Token(0x1000, "physical memory", f"pkram={pfn:x}", pfn)], verdict,
                     f"{verdict} super block", 2, sb, nodes, nodes * 3)


def _location(cand, others=()):
    return Location("pkram= in physical memory", cand, [cand, *others],
                    [Token(0x2000, "physical memory", "pkram=zz", None, "not hex")], ["scan note"], [])


def _failure():
    bad = Candidate(9, verdict="rejected", reason="not a super block")
    return LocateError("no valid PKRAM super block found: 1 pkram= token(s) examined; give --sb-pfn",
                       Location("none", None, [bad], []))


def _carved_super_block(pfn=0x50):
    return CarveResult(hits={"super block v2/v3": 1}, super_blocks=[_candidate(pfn, "valid", 2)])


def _carved_runtime():
    node = fmt.Node(0x70, 0, 0x71, 0, b"shmem-a")
    return CarveResult(hits={"node": 1}, nodes=[NodeCheck(node, 2, 4, 4, True, "4 objects")])


def test_wants_carving():
    valid, empty = _location(_candidate(5, "valid")), _location(_candidate(5, "empty"))
    assert not wants_carving(OpenOptions(), valid)
    assert wants_carving(OpenOptions(), empty) and wants_carving(OpenOptions(), None)
    assert wants_carving(OpenOptions(carve="always"), valid)
    assert not wants_carving(OpenOptions(carve="never"), None)
    assert not wants_carving(OpenOptions(sb_pfn=5), None)


def test_a_valid_super_block_is_kept_and_kernel_notes_come_first():
    loc = _location(_candidate(5, "valid"))
    got = choose(OpenOptions(), loc, None, None, notes_first=["kernel note"])
    assert isinstance(got, Choice) and not got.runtime
    assert got.sb is loc.chosen.sb and got.location.chosen is loc.chosen
    assert got.location.notes == ["kernel note", "scan note"]
    assert loc.notes == ["scan note"]


def test_an_empty_super_block_gives_way_to_carving():
    loc = _location(_candidate(5, "empty"))
    got = choose(OpenOptions(), loc, None, _carved_super_block())
    assert got.sb.pfn == 0x50
    assert got.location.candidates[0] is loc.chosen
    assert got.location.warnings[-1] == ("the pkram= super block 0x5 is empty; "
                                         "using what page carving found instead")


def test_carve_always_keeps_the_same_super_block():
    loc = _location(_candidate(0x50, "valid"))
    got = choose(OpenOptions(carve="always"), loc, None, _carved_super_block(0x50))
    assert got.location.route == loc.route and got.location.warnings == []


def test_nothing_valid_then_the_runtime_state():
    failure = _failure()
    got = choose(OpenOptions(), None, failure, _carved_runtime())
    assert got.runtime and got.node_pfns == [0x70] and got.sb.pfn == 0 and got.sb.revision == 2
    assert got.location.candidates[0].pfn == 9
    assert got.location.warnings[-1] == ("no valid pkram= super block (1 pkram= token(s) examined); "
                                         "the result comes from page carving")
    assert got.location.notes[-1].startswith("no consistent identity-map root")


def test_nothing_at_all():
    got = choose(OpenOptions(), None, _failure(), CarveResult())
    assert isinstance(got, NotFound) and [c.pfn for c in got.rejected] == [9]
    assert got.message.endswith("; page carving found no super block and no valid node page either")
    never = choose(OpenOptions(carve="never"), None, _failure(), None)
    assert never.message == str(_failure())


def test_inputs_are_not_edited():
    for options, loc, failure, carved in [
            (OpenOptions(), _location(_candidate(5, "empty")), None, _carved_super_block()),
            (OpenOptions(), None, _failure(), _carved_runtime()),
            (OpenOptions(carve="always"), _location(_candidate(5, "valid")), None, _carved_super_block())]:
        before = copy.deepcopy((loc, failure.location if failure else None, carved))
        choose(options, loc, failure, carved, notes_first=["kernel"])
        assert (loc, failure.location if failure else None, carved) == before


def test_from_carving_prefers_a_super_block():
    res = _carved_super_block()
    res.nodes = _carved_runtime().nodes
    got = from_carving(res)
    assert got.sb.pfn == 0x50 and not got.runtime
    assert got.location.warnings[0].startswith("1 valid node page(s) are not chained")
