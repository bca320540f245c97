"""The command line: one small typer file per command, each calling one library function."""
