"""Imports every domain's tables so that metadata (and Alembic) sees all of them."""

from hub.auth.models import Officer
from hub.calendar.models import CalendarOverride
from hub.cases.models import Case, CaseEvent, Material, TrackingSequence
from hub.catalog.models import Item, ItemType
from hub.db import Base
from hub.deliveries.models import Delivery
from hub.exchange.models import DeadLetter, InboxMessage, Partner, PartnerRejection, PendingEvent
from hub.idempotency.models import IdempotencyKey
from hub.org.models import Department, Region
from hub.outbox.models import OutboxMessage
from hub.payments.models import (
    CaseFee,
    PaymentNotification,
    PaymentOrder,
    PaymentOrderEvent,
    PaymentRefund,
    ReconciliationReport,
)
from hub.supervision.models import Alert, Rating, SupervisionThreshold
from hub.throttle.models import AttemptCounter, SeenNonce
from hub.verification.models import CaseVerification, ManualVerification, RegistryAccess

__all__ = [
    "Alert",
    "AttemptCounter",
    "Base",
    "CalendarOverride",
    "Case",
    "CaseEvent",
    "CaseFee",
    "CaseVerification",
    "DeadLetter",
    "Delivery",
    "Department",
    "IdempotencyKey",
    "InboxMessage",
    "Item",
    "ItemType",
    "ManualVerification",
    "Material",
    "Officer",
    "OutboxMessage",
    "Partner",
    "PartnerRejection",
    "PaymentNotification",
    "PaymentOrder",
    "PaymentOrderEvent",
    "PaymentRefund",
    "PendingEvent",
    "Rating",
    "ReconciliationReport",
    "Region",
    "RegistryAccess",
    "SeenNonce",
    "SupervisionThreshold",
    "TrackingSequence",
]
