"""edgekv's command line (``edgekv ...``)."""
