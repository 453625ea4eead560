"""The ``torchtally`` command line and the model sources it builds models from."""

__version__ = "0.1.0"
