"""Discovery's helpers: how fine HDBSCAN's clusters are (``granularity``) and UMAP's compiled-kernel cache
(``numba_cache``); the pipeline itself is :mod:`data_advisor.coverage.cluster`, its cache
:mod:`data_advisor.coverage.cluster_cache`."""
