"""The PostgreSQL store's temporal reads and edits (issue 8): to be written."""

from __future__ import annotations


class TimelineMixin:
    """history, history_entities, history_attrs, aggregate, delete_history, modify_instance,
    delete_instance, prune_history."""
