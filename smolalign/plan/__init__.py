"""`smolalign plan`: a training run's tokens, steps, FLOPs, memory per device and time, before it starts.

run.py is the command's plain function; model.py sizes a recipe's model (also one that a shipped recipe will only
write later), gpus.py holds the GPU table and reads the launch, show.py prints the tables. What is a training
command's own (its memory shape, size and FLOPs) comes from the command's module, handed in by the CLI; the memory
formulas are model/memory.py's. Imports the config loader, the model floor, the data layer and train/'s speed
choices and run checks.
"""
