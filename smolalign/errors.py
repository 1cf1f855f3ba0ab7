"""The exceptions the CLI turns into one line: bad input (exit code 2), a command not built yet (3), a run that
diverged (1)."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix, in one line."""

    exit_code = 2


class NotImplementedYet(Exception):
    """A command that a later release builds: it says so plainly and exits non-zero, never a fake success."""

    exit_code = 3


class TrainingDiverged(Exception):
    """The loss or the gradient norm stopped being a number: every later step would train on NaN weights, and a
    checkpoint or `--overwrite` swap would keep them. The run stops before that and says so in one line."""

    exit_code = 1
