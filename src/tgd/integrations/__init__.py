"""Integrations: TGD inside other training frameworks, and checkpoints of the plain network.

- ``tgd.integrations.lightning``: ``TGDCallback`` for a PyTorch Lightning ``Trainer``
  (``pip install 'tgd[lightning]'``);
- ``tgd.integrations.ignite``: ``TGDHandler`` and ``PlainStateView`` for MONAI's
  ``SupervisedTrainer`` or any PyTorch-Ignite ``Engine`` (``pip install 'tgd[monai]'``);
- ``tgd.integrations.session``: ``TGDSession``, the framework-free run both build on.

A framework is imported only when its module (or a name from it, here) is first used, so
``import tgd`` needs neither. Saving only what TGD retrained (``tgd.save_adaptation``) is in
the TGD core, ``tgd.targeting.adaptation``.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TGDCallback": "tgd.integrations.lightning",
    "TGDHandler": "tgd.integrations.ignite",
    "PlainStateView": "tgd.integrations.ignite",
    "TGDSession": "tgd.integrations.session",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # lazy: importing tgd.integrations must not import Lightning or Ignite
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tgd.integrations' has no attribute {name!r}")
