"""tgd.integrations imports no framework until one of its names is used."""

import subprocess
import sys


def test_importing_tgd_integrations_imports_no_framework():
    code = (
        "import sys, tgd, tgd.integrations\n"
        "loaded = [m for m in ('lightning', 'ignite', 'monai') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from tgd.integrations import TGDSession\n"
        "assert 'lightning' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_resolve_lazily():
    import pytest

    import tgd.integrations as integrations

    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("ignite")
    from tgd.integrations.ignite import TGDHandler
    from tgd.integrations.lightning import TGDCallback

    assert integrations.TGDCallback is TGDCallback and integrations.TGDHandler is TGDHandler
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        integrations.Nope  # noqa: B018
