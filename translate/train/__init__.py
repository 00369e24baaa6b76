"""The training driver: run configs (YAML + overrides -> dataclasses), the loggers, and the runner that builds the
data module, the method and Lightning's Trainer and calls fit / validate / test / export."""
