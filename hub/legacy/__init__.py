"""Legacy department systems: the hub's schema-first SOAP department-exchange service."""
