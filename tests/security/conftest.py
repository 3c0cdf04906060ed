"""Reproductions of attacks on the services a client can reach; each runs against the real local stack."""
