"""``tgd demo``: the main job until the full reproduction lands (placeholder, replaced soon)."""

from __future__ import annotations

import torch

import tgd
from tgd.models import DnCNN


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="plan TGD on the paper's DnCNN and show the plan")
    p.add_argument("--threshold", type=float, default=0.3)
    p.set_defaults(func=run)


def run(args) -> int:
    torch.manual_seed(0)
    model = DnCNN()
    plan = tgd.plan(model, args.threshold)
    print(plan.summary(model))
    return 0
