"""recipe-embed core: config, schemas, synthesis, validation, training, evaluation, tracking, registry.

This package never imports prefect (``tests/unit/test_layering.py`` proves it) and has no
import-time side effects: functions take data plus a config slice and return values or paths.
"""

__version__ = "0.1.0"
