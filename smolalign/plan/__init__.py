"""`smolalign plan`: a training run's tokens, steps, FLOPs, memory per device and time, before it starts.

run.py is the command's plain function; memory.py (the formulas), model.py (the architecture on the meta device),
shape.py (a recipe's micro-batch as the estimate sees it), size.py (stages and epochs), gpus.py (GPU table, launch)
and show.py (the table). Imports the config loader, the model definition, the data layer and the run lifecycle
(train/run.py); train/speed.py in turn uses memory.py, model.py and shape.py to fit the micro-batch. The commands
themselves are handed in by the CLI (a `Command` object), never imported.
"""
