"""How pynenc-ray's own processes log: the format the CLI sets up, which the
process runners' workers take too, so a worker's lines read like its parent's
(time, level, logger)."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
