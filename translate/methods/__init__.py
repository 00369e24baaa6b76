"""The methods: one LightningModule per method, its config dataclass, and what it trains with (losses, optimizers,
LR schedules, augmentations, image grids). `registry.METHODS` names them all. Nothing here knows about run
directories, checkpoints on disk or the command line (translate.train does)."""
