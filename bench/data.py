"""Smart-Data-Model-like entities for benchmarks: about 20 attributes each, spread over a city."""

from __future__ import annotations

import random
from typing import Any

TYPES = ["AirQualityObserved", "WeatherObserved", "NoiseLevelObserved", "TrafficFlowObserved"]
# Shanghai's central districts, roughly (lon/lat box)
WEST, SOUTH, EAST, NORTH = 121.30, 31.10, 121.65, 31.35


def entity_id(n: int) -> str:
    return f"urn:ngsi-ld:{TYPES[n % len(TYPES)]}:{n:07d}"


def entity(n: int, rng: random.Random) -> dict[str, Any]:
    def measure(value: float, unit: str) -> dict[str, Any]:
        return {
            "type": "Property",
            "value": round(value, 2),
            "unitCode": unit,
            "observedAt": "2026-11-29T08:00:00Z",
        }

    return {
        "id": entity_id(n),
        "type": TYPES[n % len(TYPES)],
        "name": {"type": "Property", "value": f"Station {n}"},
        "description": {"type": "Property", "value": "Street-level sensor cabinet"},
        "location": {
            "type": "GeoProperty",
            "value": {
                "type": "Point",
                "coordinates": [rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)],
            },
        },
        "address": {
            "type": "Property",
            "value": {"addressLocality": "Shanghai", "streetAddress": f"{n} Nanjing Road"},
        },
        "pm25": measure(rng.uniform(5, 150), "GQ"),
        "pm10": measure(rng.uniform(10, 200), "GQ"),
        "no2": measure(rng.uniform(5, 100), "GQ"),
        "o3": measure(rng.uniform(10, 120), "GQ"),
        "co": measure(rng.uniform(0, 5), "GP"),
        "so2": measure(rng.uniform(0, 20), "GQ"),
        "temperature": measure(rng.uniform(-5, 38), "CEL"),
        "relativeHumidity": measure(rng.uniform(0.2, 1.0), "C62"),
        "windSpeed": measure(rng.uniform(0, 20), "MTS"),
        "windDirection": measure(rng.uniform(0, 360), "DD"),
        "precipitation": measure(rng.uniform(0, 30), "MMT"),
        "airQualityLevel": {"type": "Property", "value": rng.choice(["good", "moderate", "poor"])},
        "reliability": {"type": "Property", "value": round(rng.random(), 2)},
        "dataProvider": {"type": "Property", "value": "citytwin-bench"},
        "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{n:07d}"},
        "refPointOfInterest": {"type": "Relationship", "object": f"urn:ngsi-ld:POI:{n % 500}"},
    }


def entities(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [entity(n, rng) for n in range(count)]
