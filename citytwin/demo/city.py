"""The demo city: science and innovation sites of Shanghai, air-quality stations at some of them,
and guide robots in the Shanghai Science and Technology Museum.

Coordinates are the sites' public locations (WGS 84, rounded to about 50 m; the Xuhui large-model
space and the exhibit positions inside the museum are approximate). Entities are shaped like the
Smart Data Models PointOfInterest, AirQualityObserved and Device/Robot models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APIKEY_AIR = "demo-air"
APIKEY_ROBOTS = "demo-robots"
PROVIDER = "citytwin demo simulator (simulated values)"


@dataclass(frozen=True)
class Place:
    key: str
    name: str
    name_zh: str
    category: str
    lat: float
    lon: float
    description: str


PLACES = [
    Place("sstm", "Shanghai Science and Technology Museum", "上海科技馆", "museum",
          31.2196, 121.5447, "Science museum on Century Avenue, Pudong"),
    Place("zhangjiang", "Zhangjiang Science City", "张江科学城", "science-park",
          31.2040, 121.5910, "Pudong's science city: labs, chip and biomedicine companies"),
    Place("ssrf", "Shanghai Synchrotron Radiation Facility", "上海光源", "research-facility",
          31.1990, 121.5870, "Third-generation light source in Zhangjiang"),
    Place("songjiang", "Songjiang University Town", "松江大学城", "university",
          31.0500, 121.2150, "Seven universities in Songjiang district"),
    Place("modelspace", "Large-model incubation space, Xuhui", "徐汇大模型孵化空间",
          "incubator", 31.1780, 121.4570, "Incubator for large AI model companies (approximate)"),
    Place("fudan", "Fudan University (Handan campus)", "复旦大学", "university",
          31.2990, 121.5010, "University in Yangpu district"),
    Place("tongji", "Tongji University (Siping campus)", "同济大学", "university",
          31.2840, 121.5010, "University in Yangpu district"),
    Place("sjtu", "Shanghai Jiao Tong University (Minhang campus)", "上海交通大学", "university",
          31.0260, 121.4370, "University in Minhang district"),
    Place("caohejing", "Caohejing Hi-Tech Park", "漕河泾开发区", "science-park",
          31.1690, 121.3970, "High-technology park in Xuhui and Minhang"),
    Place("astronomy", "Shanghai Astronomy Museum", "上海天文馆", "museum",
          30.9160, 121.9190, "Astronomy museum in Lingang"),
]  # fmt: skip

STATIONS = ["sstm", "zhangjiang", "songjiang", "modelspace", "fudan", "caohejing"]

# exhibit halls of the museum, around its centre (positions inside the building are approximate)
EXHIBITS: dict[str, tuple[float, float]] = {
    "entrance": (31.21905, 121.54470),
    "Spectrum of Life": (31.21985, 121.54400),
    "Earth Exploration": (31.21995, 121.54530),
    "Light of Wisdom": (31.21935, 121.54385),
    "Robot World": (31.21945, 121.54555),
    "Space Navigation": (31.22020, 121.54470),
    "Information Era": (31.21965, 121.54470),
    "dock": (31.21915, 121.54510),
}
ROBOTS = ["guide-1", "guide-2", "guide-3"]
COMMANDS = ["goTo", "greet", "dock"]


def place_id(key: str) -> str:
    return f"urn:ngsi-ld:PointOfInterest:shanghai-{key}"


def station_id(key: str) -> str:
    return f"urn:ngsi-ld:AirQualityObserved:shanghai-{key}"


def robot_id(key: str) -> str:
    return f"urn:ngsi-ld:Robot:sstm-{key}"


def point(lat: float, lon: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def places() -> list[dict[str, Any]]:
    """The sites as NGSI-LD entities (normalized), for a batch upsert."""
    return [
        {
            "id": place_id(p.key),
            "type": "PointOfInterest",
            "name": {"type": "Property", "value": p.name},
            "alternateName": {"type": "Property", "value": p.name_zh},
            "category": {"type": "Property", "value": [p.category]},
            "description": {"type": "Property", "value": p.description},
            "location": {"type": "GeoProperty", "value": point(p.lat, p.lon)},
            "address": {
                "type": "Property",
                "value": {"addressLocality": "Shanghai", "addressCountry": "CN"},
            },
        }
        for p in PLACES
    ]


def station_group() -> dict[str, Any]:
    """The air-quality stations' service group: pollutants in µg/m³ (GQ), as the model has."""
    units = {"pm25": "GQ", "pm10": "GQ", "no2": "GQ", "o3": "GQ"}
    return {
        "apikey": APIKEY_AIR,
        "entity_type": "AirQualityObserved",
        "attributes": [
            {"object_id": k, "name": k, "type": "Number",
             "metadata": {"unitCode": {"type": "Text", "value": u}}}
            for k, u in units.items()
        ] + [{"object_id": "aqi", "name": "airQualityIndex", "type": "Integer"},
             {"object_id": "level", "name": "airQualityLevel", "type": "Text"},
             {"object_id": "temp", "name": "temperature", "type": "Number",
              "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}}],
        "static_attributes": [{"name": "dataProvider", "type": "Text", "value": PROVIDER}],
    }  # fmt: skip


def station_devices() -> list[dict[str, Any]]:
    by_key = {p.key: p for p in PLACES}
    return [
        {
            "device_id": f"air-{key}",
            "entity_name": station_id(key),
            "static_attributes": [
                {
                    "name": "location",
                    "type": "geo:point",
                    "value": f"{by_key[key].lat},{by_key[key].lon}",
                },
                {"name": "refPointOfInterest", "type": "Relationship", "value": place_id(key)},
                {"name": "name", "type": "Text", "value": f"Air quality, {by_key[key].name}"},
            ],
        }  # fmt: skip
        for key in STATIONS
    ]


def robot_group() -> dict[str, Any]:
    return {
        "apikey": APIKEY_ROBOTS,
        "entity_type": "Robot",
        "attributes": [
            {"object_id": "pos", "name": "location", "type": "geo:point"},
            {"object_id": "bat", "name": "batteryLevel", "type": "Number",
             "metadata": {"unitCode": {"type": "Text", "value": "P1"}}},
            {"object_id": "state", "name": "state", "type": "Text"},
            {"object_id": "task", "name": "currentTask", "type": "Text"},
            {"object_id": "at", "name": "nearExhibit", "type": "Text"},
        ],
        "commands": [{"name": c, "type": "command"} for c in COMMANDS],
        "static_attributes": [
            {"name": "category", "type": "Property", "value": ["humanoid", "guide"]},
            {"name": "refPointOfInterest", "type": "Relationship", "value": place_id("sstm")},
            {"name": "dataProvider", "type": "Text", "value": PROVIDER},
        ],
    }  # fmt: skip


def robot_devices() -> list[dict[str, Any]]:
    return [
        {
            "device_id": key,
            "entity_name": robot_id(key),
            "static_attributes": [
                {"name": "name", "type": "Text", "value": f"Guide robot {n + 1}"}
            ],
        }
        for n, key in enumerate(ROBOTS)
    ]
