"""The idle guard: a forgotten cluster stops itself (run on the master, not the laptop)."""
