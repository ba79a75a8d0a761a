"""`leadgw bench`: load generation, floors, peers and reports."""
