"""Workflows that chain training and inference: online learning (adapt a net to one study with
TGD-N2N, then denoise it). This layer sits above ``tgd.training`` and ``tgd.inference`` and
beside ``tgd.repro.experiments``."""

from tgd.workflows.online import adapt_online, online_denoise

__all__ = ["adapt_online", "online_denoise"]
