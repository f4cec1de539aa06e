"""MAQ hub: human-like RL agents from demonstrations with Macro Action Quantization.

The package holds all logic; `stages/` holds one thin entry point per DVC stage.
"""

__version__ = "0.1.0"
