"""Embedding: texts → L2-normalised float32 vectors, every backend behind one protocol and one registry.

Modules, one job each (import the one you need; this ``__init__`` imports nothing, so loading a submodule never
drags in the others):

- :mod:`.base` — the :class:`~.base.Embedder` protocol with every hook the audit uses, and :class:`~.base.EmbedderBase`
  (the hooks' defaults) that every backend extends.
- :mod:`.models` — what ``--embedding-model`` names (the bundled MiniLM, a local folder, a hub name) and the scoped
  offline switch used only while a local model loads.
- :mod:`.sentence` — the exact transformer: the light loader (:mod:`.light`) or sentence-transformers, chosen
  explicitly.
- :mod:`.static`, :mod:`.onnx`, :mod:`.cascade` — the faster backends; :mod:`.artefacts` builds and checks their
  on-disk model folders.
- :mod:`.cache` (the vector store) and :mod:`.cached` (the wrapper that reads it first); :mod:`.anchor_seed` is the
  filler the registry injects into it.
- :mod:`.batching` — canonical batches: why a vector never depends on the texts embedded with it.
- :mod:`.backends` — the one list of ``--embedder`` backends, read by the CLI, the Python API and the Ray engine
  (standard library only, so ``--help`` stays instant); :mod:`.registry` builds them:
  :func:`~.registry.make_embedder`.
"""
