"""Execution engines for the embarrassingly parallel stages (embedding + anchor assignment).

The default engine is the local process (``data_advisor.coverage.audit.run_audit``). ``ray_engine`` runs the same
code as Ray Data ``map_batches`` over sharded inputs, on a local Ray or an existing cluster (``ray`` extra).
"""
