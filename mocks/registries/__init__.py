"""Mock registries: population (SOAP), enterprise (REST), tax (SOAP), organisation code (REST)."""
