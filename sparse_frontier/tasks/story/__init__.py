"""Story tasks on a synthetic narrative (retrieval, multi-hop, filtering)."""
