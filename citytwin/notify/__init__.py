"""Notifications: tail the change log, match subscriptions, deliver (5.8.6)."""
