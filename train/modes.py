"""The training modes by name (docs/training.md), importable without torch so that
`python -m train.fit --help` lists them at once."""

__all__ = ["MODES", "NESTED_MODES", "DYNAMIC_MODES"]

MODES = ("fp32", "static", "lsq", "dqnet", "dqt")
#: Modes whose codes nest exactly and export to the integer graph.
NESTED_MODES = ("static", "dqt")
#: Modes with a controller that picks bit-widths per image.
DYNAMIC_MODES = ("dqnet", "dqt")
