"""pyim: instant messaging over SIP and MSRP."""

__version__ = "0.1.0"
