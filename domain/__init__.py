"""Domain rules with no I/O: phones, working hours, the follow-up ladder, batching."""
