"""The reproduction of the TGD paper (and of TOD-Net, seed 002) on simulated data: PET and CT
simulators (:mod:`tgd.repro.sim`), the study format (:mod:`tgd.repro.studies`), experiments,
findings and statistics, presets, replicates and the report. It uses only the library's public
API (``tests/test_architecture.py`` enforces it); the library imports nothing of it."""
