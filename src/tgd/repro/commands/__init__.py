"""The reproduction's sub-commands of ``tgd`` (registered through the entry-point group
``tgd.commands``; shape as :data:`tgd.commands.COMMANDS`)."""

COMMANDS = {
    "simulate": ("tgd.repro.commands.simulate",
                 "simulate PET studies as NIfTI + JSON, with datalist manifests"),
    "simulate-ct": ("tgd.repro.commands.simulate_ct",
                    "simulate CT studies (normal/quarter/tenth dose) as NIfTI in HU"),
    "reproduce": ("tgd.repro.commands.reproduce",
                  "run every experiment of the paper and write a report"),
    "experiment": ("tgd.repro.commands.reproduce",
                   "run one experiment (fine-tuning, threshold, online, tod)"),
    "report": ("tgd.repro.commands.report",
               "write a report folder (Markdown, self-contained HTML, figures) from results.json"),
}
