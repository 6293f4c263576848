"""Errors a user can fix. The CLI prints their message as one line, never a traceback."""

from __future__ import annotations

import argparse


class SaelabError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 1


class ConfigError(SaelabError):
    """A config file or value is malformed, unknown or impossible."""

    exit_code = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too (pointing at --help), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
