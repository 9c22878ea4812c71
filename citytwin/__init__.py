"""citytwin: a digital twin platform for cities, speaking ETSI NGSI-LD (GS CIM 009 V1.9.1)."""

from __future__ import annotations

__version__ = "0.1.0"
