"""MAQ hub: human-like RL agents from demonstrations with Macro Action Quantization.

The package holds all logic; `stages/` holds one thin entry point per DVC stage. Importing it
pins portable numerics first (`pipeline.numerics`), before numpy or torch load.
"""

from pipeline import numerics

numerics.pin()

__version__ = "0.1.0"
