"""The paper's experiments on simulated PET data: fine-tuning (Table 1 / Fig. 5), kernel
dropping (Fig. 4) and online learning (Fig. 6), and the end-to-end reproduction."""
