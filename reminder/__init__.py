"""Notifications: instruction mails and the bi-weekly reminder digest (see issue 4)."""
