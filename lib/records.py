"""A flat dataclass row as a dict, for tables and CSVs."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def as_row(record: DataclassInstance) -> dict[str, Any]:
    """The record's fields by name. ``dataclasses.asdict`` deep-copies every value (each
    timestamp too), several times the cost for rows whose fields are plain values."""
    return {field.name: getattr(record, field.name) for field in fields(record)}
