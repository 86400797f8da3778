"""The paper's published numbers (Chen, Asma & Chan, MICCAI 2021): Table 1 (lesion ensemble
bias (%) and liver ensemble CoV (%) on a low-BMI v2 test study, 10 x 60-s realizations) and the
share of parameters dropped per KSE threshold (section 4)."""

TABLE1 = {
    "v1-net": {"lesion_bias_pct": -6.30, "liver_cov_pct": 6.02},
    "v2-net": {"lesion_bias_pct": -4.07, "liver_cov_pct": 8.56},
    "FT-net": {"lesion_bias_pct": -4.71, "liver_cov_pct": 7.87},
    "TGD-net": {"lesion_bias_pct": -3.77, "liver_cov_pct": 6.46},
}

CITATION = ("J. Chen, E. Asma, C. Chan. Targeted Gradient Descent: A Novel Method for "
            "Convolutional Neural Networks Fine-tuning and Online-learning. MICCAI 2021.")

# Section 4 / Fig. 4: share of the v1 DnCNN's parameters dropped at each KSE threshold (%).
THRESHOLD_FRACTION_PCT = {0.3: 51.4, 0.4: 51.6, 0.5: 53.0, 0.6: 67.3}
