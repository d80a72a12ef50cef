"""The ``ecg-bench`` commands: each a function ``cmd_NAME(args) -> exit status`` and the config dataclass its flags
fill (``ecg_bench.cli.COMMANDS`` is the table). ``args`` holds the command's preset, ``--config FILE`` and the flags
as dotted overrides; a command builds its config with ``config.build`` (preset < file < flags)."""
