"""gpt-oss-deploy: plan, serve, check, benchmark and render gpt-oss deployments on vLLM and llama.cpp."""

__version__ = "0.1.0"
