"""The NGSI-LD HTTP API (GS CIM 009 clause 6): thin Starlette routes over the Broker."""
