"""Edge agent for bioreactors: I2C sensors -> durable journal -> HTTP API."""

__version__ = "0.1.0"
