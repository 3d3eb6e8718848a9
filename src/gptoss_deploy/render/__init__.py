"""One validated Plan -> deployment artifacts (docker run, compose, systemd, Kubernetes, RunPod, monitoring).

Every artifact is built from the same `Deployment` (the engine argv list and env from the plan, the image for the
GPU vendor/arch, ports, mounts, secrets by reference) so what was planned and checked is what gets deployed.
Secrets are never written: artifacts name files (docker/compose secrets, systemd credentials, Kubernetes Secrets).
"""
