"""The trip a recipe takes through the code of one SFT run, call by call: how far a reader must follow it.

A stop is a call into a smolalign function that receives the recipe (its name, or the Recipe object once loaded) as
an argument; the trip is those stops in order. Printed: the stops, the files they are in, and how many stops return
to a file the trip had already left (each one is a reader jumping back). The run is `smolalign sft debug/sft` cut
short (one step, nothing saved): the recipe's whole path from the command to the trainer is walked.

    python bench/recipe_trip.py [--list]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PACKAGE = str(REPO / "smolalign")


def trip(out: Path) -> list[tuple[str, str]]:
    from smolalign.config import Recipe
    from smolalign.quiet import quiet_output
    from smolalign.train.sft import run_sft

    quiet_output()
    name = "debug/sft"
    stops: list[tuple[str, str]] = []

    def carries_recipe(frame) -> bool:
        for value in frame.f_locals.values():
            if value is name or isinstance(value, Recipe):
                return True
        return False

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE) and carries_recipe(frame):
            path = str(Path(frame.f_code.co_filename).relative_to(REPO / "smolalign"))
            stops.append((path, frame.f_code.co_name))
        return None

    sys.settrace(tracer)
    try:
        run_sft(name, [f"training.output_dir={out}", "training.max_steps=1", "training.save_strategy=no",
                       "training.report_to=[]", "training.eval_strategy=no"])
    finally:
        sys.settrace(None)
    return stops


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--list", action="store_true", help="print every stop")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stops = trip(Path(tmp) / "run")
    if options.list:
        for number, (path, function) in enumerate(stops, start=1):
            print(f"{number:3d} {path}::{function}")
    summary("recipe trip from run_sft", stops)
    # the Recipe's own accessors (value, writes, to_dict...) read a field: a reader does not follow them
    summary("without the Recipe's methods", [(path, function) for path, function in stops
                                              if not (path == "config/schema.py" and function in RECIPE_METHODS)])


RECIPE_METHODS = {name for name in dir(__import__("smolalign.config.schema", fromlist=["Recipe"]).Recipe)
                  if not name.startswith("__")}


def summary(title: str, stops: list[tuple[str, str]]) -> None:
    left, returns, current = set(), 0, None
    for path, _ in stops:
        if path != current:
            if path in left:
                returns += 1
            if current is not None:
                left.add(current)
            current = path
    files = sorted({path for path, _ in stops})
    print(f"{title}: {len(stops)} stops over {len(files)} files, {returns} returns to a file already left")
    print("  files: " + ", ".join(files))


if __name__ == "__main__":
    main()
