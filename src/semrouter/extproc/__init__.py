"""Envoy external processing (ext_proc): the routing pipeline inside an Envoy gateway."""
