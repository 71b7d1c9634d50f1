"""One exception type for every mistake a user can make, so entry points can print it without a trace."""


class UserError(Exception):
    """A problem with the user's data, files or configuration; the message says what to do."""
