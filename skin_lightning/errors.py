"""One exception type for every mistake a user can make, so entry points can print it without a trace."""

import difflib


class UserError(Exception):
    """A problem with the user's data, files or configuration; the message says what to do."""


class SettingError(UserError):
    """A part's constructor rejects one of its settings; the builder adds the config key it sits under."""

    def __init__(self, setting: str, value, expected: str):
        super().__init__(f"{setting}={value} is invalid: expected {expected}")
        self.setting, self.value, self.expected = setting, value, expected


def did_you_mean(name: str, names) -> str:
    """"; did you mean X?" for the closest of `names` to a misspelt `name`, else a pointer to the list."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"; did you mean {close[0]}?" if close else f" (it takes {', '.join(names)})"


def require(condition: bool, setting: str, value, expected: str) -> None:
    if not condition:
        raise SettingError(setting, value, expected)
