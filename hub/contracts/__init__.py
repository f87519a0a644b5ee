"""The contracts the hub serves to partners: its JSON Schemas at the URL of their ``$id`` and an AsyncAPI 3.0
document of the AMQP side, both generated from what the code really uses (schemas/, adapters/amqp/topology.py)."""
