"""`smolalign pretrain`: the command (command.py), the stage plan and WSD schedule (stages.py), the trainer over token
blocks (trainer.py). Imports train's run machinery, data, model and leaves."""
