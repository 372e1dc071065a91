"""Emulated networks (Mininet topologies) and the controller configurations derived from them."""
