"""A service file that does not import (the serving tests' bad-input case)."""

import a_module_that_does_not_exist  # noqa: F401

import leptonkit as lk


class Broken(lk.Service):
    @lk.endpoint()
    def run(self, text: str) -> str:
        return text
