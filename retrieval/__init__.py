"""Lead notes by meaning, free of any transport: embedder, Qdrant store, ingestion."""
