"""`leadgw bench`: load generation, floors, peers and reports.

A library as well as a command: a target is a name, a preflight and an async request factory
(``benchmarks.targets.Target``); ``benchmarks.runner.run_load`` drives one with a closed or open
loop from several processes, ``benchmarks.sweep.run_sweep`` finds the highest rate under a p99
SLO, and ``benchmarks.suite.run_bench`` runs a whole bench and writes its report.
"""
