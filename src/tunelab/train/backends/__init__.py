"""Training backends: how one launch setup (one process, DDP, FSDP2, DeepSpeed ZeRO) prepares,
steps and gathers the model. ``base.py`` holds the interface, ``registry.py`` picks one from
the launch environment; the loop (``tunelab.train.loop``) only calls the interface."""
