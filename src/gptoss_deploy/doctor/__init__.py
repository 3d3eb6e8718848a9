"""`gptoss doctor`: read-only host preflight. `facts.gather` reads the machine; `checks.run` judges the readings
(pure, so tests drive it with captured sysfs/proc/NVML readings from the seeds' machines)."""
