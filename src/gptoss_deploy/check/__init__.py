"""`gptoss check`: gpt-oss API conformance and security probe for any OpenAI-compatible endpoint."""
