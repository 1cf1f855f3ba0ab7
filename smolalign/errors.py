"""The one exception type for bad input: the CLI turns it into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix, in one line."""

    exit_code = 2


class NotImplementedYet(Exception):
    """A command that a later release builds: it says so plainly and exits non-zero, never a fake success."""

    exit_code = 3
