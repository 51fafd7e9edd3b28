"""The entry points behind the console scripts, one module each: flags and one
library call. `python -m fcnjax.main` and the other top-level names are aliases."""
