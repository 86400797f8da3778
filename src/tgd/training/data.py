"""Training datasets of the entry points: :class:`tgd.data.PairedVolumes` (read from datalist
manifests by :func:`tgd.data.manifest.load_pairs`) as 2.5-D slices or 3-D patches."""

from __future__ import annotations

from tgd.data.factory import make_dataset


def paired_set(pairs, patch_size, seed: int, *, spatial_dims: int = 2,
               patch_depth: int | None = None, min_items: int = 0, labelled: bool = False):
    """Supervised pairs (every input level -> its target) of ``pairs`` for a network of
    ``spatial_dims`` (``tgd.data.factory.make_dataset``); ``labelled``: 2.5-D items also carry
    the class map (the task loss)."""
    return make_dataset("labelled" if labelled else "noise_adaptive", spatial_dims, pairs,
                        patch_size=patch_size, seed=seed, patch_depth=patch_depth,
                        min_items=min_items)
