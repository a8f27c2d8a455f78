"""The console's screens: one per view, each redrawn from the app's state."""
