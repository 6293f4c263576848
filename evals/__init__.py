"""Evaluation suites for trained SAEs."""
