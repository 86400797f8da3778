"""The library's sub-commands: ``name -> (module, one-line help)``. Each module defines
``add_parser(subparsers)``, which registers its sub-command(s) and sets ``func`` (called with
the parsed args, returns an exit code). Other packages add commands through the entry-point
group ``tgd.commands`` (an object of this shape); only the module of the command being run is
imported."""

COMMANDS = {
    "train": ("tgd.commands.train", "train a DnCNN or U-Net from scratch on input/target pairs"),
    "train-segmenter": ("tgd.commands.train_segmenter",
                        "train a segmenter (the task network of --loss tod)"),
    "finetune": ("tgd.commands.finetune",
                 "fine-tune a pre-trained net: --method tgd | ft | ewc | l2sp | lora"),
    "online": ("tgd.commands.online",
               "TGD-N2N: adapt a net to one study from two half-count realizations"),
    "denoise": ("tgd.commands.denoise",
                "denoise a NIfTI file or DICOM series with a checkpoint"),
    "kse": ("tgd.commands.kse",
            "KSE report of a checkpoint and a kernel-dropping threshold sweep"),
}
