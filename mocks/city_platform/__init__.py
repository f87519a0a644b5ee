"""City platform simulator: a municipal approval platform that reports its cases to the province over AMQP.

It stands where a city's own approval system stands and knows nothing of hub/, adapters/ or workflow/: it
speaks only the published exchange specification (docs/exchange.md) with pika, json and uuid.

* It publishes ``case-record.v1`` documents (the whole case with its step history; ``record_version`` grows as
  the case progresses) and ``case-event.v1`` documents (one new step) to the exchange ``hub.inbound`` with the
  routing key ``<partner>.<type>.v1``: persistent, ``mandatory``, with publisher confirms, and with ``user_id``
  = its AMQP user, so the broker vouches for the sender. A message whose confirm is lost to a broker restart
  is published again with the same ``message_id`` (the hub deduplicates), so nothing is lost.
* Applicants carry valid GB 11643 citizen ID numbers or GB 32100 credit codes; item codes come from the
  hub's public catalogue (``--catalogue-url``), from ``--item`` arguments, or from the demo catalogue copy
  in ``mocks.city_data``.
* On request it sends faulty messages (``--fault KIND=N``): ``schema`` (envelope or payload breaks its
  schema), ``wrong_region`` (another city's region), ``duplicate`` (a message sent again with its
  message_id), ``out_of_order`` (a step published before its predecessor — valid, the hub holds it),
  ``bad_json`` (truncated, GBK-encoded or XML bodies), ``unknown_item`` (a well-formed item code that is
  not in the catalogue) and ``identifier`` (an ID number whose check character is wrong).
* It counts what it sent by category and knows exactly which message ids the hub should apply, which it
  should dead-letter and why, and how many cases and steps the hub should end up with (``SimulationReport``).
* It consumes the hub's events: its own queue ``partner.<code>.events`` bound to ``hub.events``
  (``case.#``, ``catalog.#``), counted by type and message id.

API: ``run(amqp_url, partner, count, faults={"schema": 10}, seed=1) -> SimulationReport``, or
``CityPlatform`` for finer control (the tests use it). Modules: ``spec`` (what the specification fixes),
``identifiers``, ``catalogue``, ``cases``, ``planner`` (what to send), ``report`` (what the hub should make of
it), ``wire`` (AMQP both ways), ``simulator`` (``CityPlatform``, ``run``), ``cli``. CLI::

    python -m mocks.city_platform --partner shenyang --count 1000 --fault schema=5 --fault duplicate=20 \\
        --amqp-url amqp://127.0.0.1:5672/%2F --catalogue-url http://127.0.0.1:8000
"""

from mocks.city_platform.cases import ExpectedCase, Planned
from mocks.city_platform.catalogue import fetch_catalogue, items_for
from mocks.city_platform.cli import main, parse_faults
from mocks.city_platform.identifiers import citizen_id, credit_code
from mocks.city_platform.planner import Planner
from mocks.city_platform.report import SimulationReport
from mocks.city_platform.simulator import CityPlatform, run
from mocks.city_platform.spec import (
    APPLY,
    DEAD,
    DEFAULT_SECRET,
    EVENTS_EXCHANGE,
    FAULT_KINDS,
    FAULT_REASONS,
    INBOUND_EXCHANGE,
    VALID_KINDS,
    BrokerRefused,
    SimulatorError,
)
from mocks.city_platform.wire import EventListener, PartnerPublisher, partner_url

__all__ = [
    "APPLY", "DEAD", "DEFAULT_SECRET", "EVENTS_EXCHANGE", "FAULT_KINDS", "FAULT_REASONS", "INBOUND_EXCHANGE",
    "VALID_KINDS", "BrokerRefused", "CityPlatform", "EventListener", "ExpectedCase", "PartnerPublisher", "Planned",
    "Planner", "SimulationReport", "SimulatorError", "citizen_id", "credit_code", "fetch_catalogue", "items_for",
    "main", "parse_faults", "partner_url", "run",
]
