"""`smolalign demo`: the whole pipeline end to end (pipeline.py) and its report (report.py), calling the same plain
functions as the commands. The top floor: it may import every command, and nothing imports it."""
