"""tgd: Targeted Gradient Descent for fine-tuning and online-learning of denoising ConvNets."""

__version__ = "0.1.0"
