"""`gptoss try`: a ranked ladder of serving attempts (seed 000's experiment list, made executable)."""
