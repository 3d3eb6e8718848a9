"""Models: the gpt-oss catalog, config.json / safetensors index / GGUF header readers, and name resolution."""
