"""Hardware: detect the host (NVIDIA via NVML, AMD via sysfs/amdsmi, CPU) or build it from a named profile."""
