"""The ``poet`` console script (:mod:`.cli`), one module per sub-command, and their argument parsing."""
