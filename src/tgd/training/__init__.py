"""Training: one loop for every method (scratch, ft, tgd, ewc, online), checkpoints, resume, DDP.

    from tgd.training import TrainConfig, prepare, train
    cfg = TrainConfig(method="tgd", iterations=500, threshold=0.3)
    setup = prepare("tgd", pretrained_model, cfg)
    result = train(setup, cfg, dataset)        # dataset items: (input (3,H,W), target (1,H,W))
                                               # or, for 3-D nets, (1,D,H,W) pairs
    model = setup.finish()                     # plain DnCNN with the adapted weights

What the commands do, as library calls (options named as the command-line flags):

    from tgd.training import adapt, train_from_scratch
    train_from_scratch("pairs.json", out="v1net", iterations=500)
    adapt("v1net", "new_scanner.json", method="tgd", threshold="auto",
          val_data=["new_scanner_val.json"], out="tgd1", iterations=200)

``threshold="auto"`` with validation data chooses phi by probe adaptations
(:func:`select_by_probe`, the rule in :mod:`tgd.targeting.probe`), without by the drop
criterion (:mod:`tgd.targeting.auto_threshold`).
"""

from tgd.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tgd.training.config import METHODS, TrainConfig, load_toml
from tgd.training.driver import adapt, train_from_scratch
from tgd.training.ewc import EWCPenalty, estimate_fisher
from tgd.training.loop import TrainResult, evaluate, train
from tgd.training.methods import MethodSetup, conv_blocks, prepare
from tgd.training.model_io import load_fisher, load_model, save_fisher, save_model
from tgd.training.probe import select_by_probe

__all__ = [
    "METHODS",
    "Checkpoint",
    "EWCPenalty",
    "MethodSetup",
    "TrainConfig",
    "TrainResult",
    "adapt",
    "conv_blocks",
    "estimate_fisher",
    "evaluate",
    "load_checkpoint",
    "load_fisher",
    "load_model",
    "load_toml",
    "prepare",
    "save_checkpoint",
    "save_fisher",
    "save_model",
    "select_by_probe",
    "train",
    "train_from_scratch",
]
