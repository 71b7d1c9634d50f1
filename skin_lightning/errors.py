"""One exception type for every mistake a user can make, so entry points can print it without a trace."""


class UserError(Exception):
    """A problem with the user's data, files or configuration; the message says what to do."""


class SettingError(UserError):
    """A part's constructor rejects one of its settings; the builder adds the config key it sits under."""

    def __init__(self, setting: str, value, expected: str):
        super().__init__(f"{setting}={value} is invalid: expected {expected}")
        self.setting, self.value, self.expected = setting, value, expected


def require(condition: bool, setting: str, value, expected: str) -> None:
    if not condition:
        raise SettingError(setting, value, expected)
