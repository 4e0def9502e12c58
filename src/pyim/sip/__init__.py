"""pyim.sip: the SIP engine (sans-IO core + asyncio adapter)."""
