"""One short entry point per DVC stage: read params, call `pipeline`, write the declared outs."""
