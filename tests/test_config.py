"""install-config merges into vol.json and never clobbers what is there."""

import json

from volatility_pkram import PLUGIN_DIR
from volatility_pkram.vol3 import config


def test_install_merges_and_remove_restores(tmp_path):
    path = tmp_path / "vol.json"
    path.write_text(json.dumps({"plugin_dirs": "/opt/other", "offline": True}))
    _, changed = config.install(str(path))
    assert changed
    data = json.loads(path.read_text())
    assert data["plugin_dirs"].split(";") == ["/opt/other", PLUGIN_DIR]
    assert data["offline"] is True
    assert config.install(str(path))[1] is False          # idempotent
    assert config.remove(str(path))[1] is True
    assert json.loads(path.read_text()) == {"plugin_dirs": "/opt/other", "offline": True}


def test_install_creates_missing_file(tmp_path):
    path = tmp_path / "sub" / "vol.json"
    config.install(str(path))
    assert json.loads(path.read_text()) == {"plugin_dirs": PLUGIN_DIR}
    config.remove(str(path))
    assert json.loads(path.read_text()) == {}
