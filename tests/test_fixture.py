"""The committed demo image (README quick start) reads back as its manifest says."""

import json
from pathlib import Path

from test_e2e import check_extract, check_ranges

DATA = Path(__file__).resolve().parents[1] / "testdata"


def test_committed_demo_image(vol):
    manifest = json.loads((DATA / "pkram-v1-demo.manifest.json").read_text())
    image = DATA / manifest["images"]["raw"]
    check_ranges(vol, image, manifest)
    check_extract(vol, image, manifest)
