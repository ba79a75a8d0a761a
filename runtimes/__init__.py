"""Model execution, free of any transport: repository, feature schema, batcher, sessions, LLM."""
