"""The Bioreactor integration: edge agents' reactors as Home Assistant devices."""
