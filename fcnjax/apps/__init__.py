"""Entry points: flags and one library call each (the console scripts)."""
