"""Inference: fast denoising of whole volumes with a trained 2.5-D or 3-D network."""

from tgd.inference.denoise import denoise_volume, fold_batchnorm, prepare_for_inference

__all__ = ["denoise_volume", "fold_batchnorm", "prepare_for_inference"]
