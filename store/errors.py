"""Errors of the store package: one root, pymongo exceptions mapped at the adapter."""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error raised by the store package."""


class StoreUnavailable(StoreError):
    """The database could not be reached."""


class NotFound(StoreError):
    """No document with that id."""


class Conflict(StoreError):
    """A document with that key exists already."""


class Fenced(StoreError):
    """A newer owner of the partition has written: this owner must stop writing."""
