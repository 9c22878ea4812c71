"""MQTT 3.1.1: the codec, an asyncio client and an embedded broker."""
