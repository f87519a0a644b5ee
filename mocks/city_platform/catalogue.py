"""Which items a city reports cases of: given codes, the hub's public catalogue, or the demo copy."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote
from urllib.request import Request, urlopen

from mocks.city_data import (
    DEMO_ITEMS,
    CatalogueItem,
    City,
)
from mocks.city_platform.spec import SimulatorError


def fetch_catalogue(base_url: str, city: City, *, timeout_s: float = 5.0) -> list[CatalogueItem]:
    """The items of ``city`` (its own region and its districts) from the hub's public catalogue API."""
    base = base_url.rstrip("/")
    prefix = city.region[:4]
    found: list[CatalogueItem] = []
    offset = 0
    while True:
        page = _get_json(f"{base}/api/v1/items?limit=100&offset={offset}", timeout_s)
        for row in page["items"]:
            if row["region"].startswith(prefix):
                detail = _get_json(f"{base}/api/v1/items/{quote(row['code'])}", timeout_s)
                found.append(CatalogueItem(row["code"], row["region"], row["name"],
                                           tuple(detail.get("applicant_types") or ("1",)),
                                           int(row.get("promised_limit_days") or 0)))
        offset += len(page["items"])
        if not page["items"] or offset >= int(page["total"]):
            return found


def _get_json(url: str, timeout_s: float) -> Any:
    with urlopen(Request(url, headers={"Accept": "application/json"}), timeout=timeout_s) as response:
        return json.loads(response.read())


def items_for(city: City, items: Iterable[str | CatalogueItem] | None = None,
              catalogue_url: str | None = None) -> list[CatalogueItem]:
    """Item codes given (their region is the code's first six digits), else the hub's catalogue, else the demo
    copy; only those of the city's own region tree."""
    if items:
        chosen = [i if isinstance(i, CatalogueItem) else CatalogueItem(i, i[:6], f"事项{i[-6:]}", ("1", "2"), 5)
                  for i in items]
    elif catalogue_url:
        chosen = fetch_catalogue(catalogue_url, city)
    else:
        chosen = list(DEMO_ITEMS)
    chosen = [i for i in chosen if i.region[:4] == city.region[:4]]
    if not chosen:
        raise SimulatorError(f"no catalogue item of region {city.region} to report cases of")
    return chosen
