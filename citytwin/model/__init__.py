"""Pure NGSI-LD logic: @context terms, entity forms, validation, updates. No I/O."""
