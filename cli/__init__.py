"""The ``laserkv`` command line (Typer + Rich); holds no logic."""
