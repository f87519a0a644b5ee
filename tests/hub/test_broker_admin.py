"""Who manages the partners' RabbitMQ users (issue 13): in the compose shape the hub's own AMQP user has no
management access, so `hub bootstrap` and `hub partners …` use the broker administrator named in
HUB_RABBITMQ_MANAGEMENT_URL with the password from HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE (a compose secret)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.exchange.provisioning import broker_of
from hub.settings import SecretFileRefused, Settings


def secret(tmp_path: Path, value: str, mode: int = 0o600) -> Path:
    path = tmp_path / "rabbitmq_admin_password"
    path.write_text(value + "\n", encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_the_administrator_of_the_management_url_signs_in_with_the_password_from_its_file(tmp_path: Path) -> None:
    settings = Settings(amqp_url="amqp://hub:hub-password@rabbitmq:5672/hub",
                        rabbitmq_management_url="http://admin@rabbitmq:15672",
                        rabbitmq_management_password_file=secret(tmp_path, "the-admins-password"))
    broker = broker_of(settings)
    assert broker is not None
    assert (broker.management_url, broker.admin_user, broker.admin_password, broker.vhost) == (
        "http://rabbitmq:15672", "admin", "the-admins-password", "hub")


def test_without_the_file_nothing_changes(tmp_path: Path) -> None:
    plain = broker_of(Settings(amqp_url="amqp://hub:hub-password@rabbitmq:5672/hub"))
    assert plain is not None and (plain.admin_user, plain.admin_password) == ("hub", "hub-password")
    named = broker_of(Settings(amqp_url="amqp://hub:x@rabbitmq:5672/hub",
                               rabbitmq_management_url="http://ops:ops-password@rabbitmq:15672"))
    assert named is not None and (named.admin_user, named.admin_password) == ("ops", "ops-password")


@pytest.mark.parametrize(("url", "mode", "names"), [
    ("http://rabbitmq:15672", 0o600, "naming its user"),  # whose password would it be?
    ("http://admin:inline@rabbitmq:15672", 0o600, "no password"),  # both forms at once
    ("http://admin@rabbitmq:15672", 0o644, "open to other users"),
])
def test_a_password_file_that_cannot_be_used_is_refused_naming_the_variable(tmp_path: Path, url: str, mode: int,
                                                                            names: str) -> None:
    settings = Settings(amqp_url="amqp://hub:x@rabbitmq:5672/hub", rabbitmq_management_url=url,
                        rabbitmq_management_password_file=secret(tmp_path, "pw", mode))
    with pytest.raises(SecretFileRefused, match="HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE") as refused:
        broker_of(settings)
    assert names in str(refused.value)
