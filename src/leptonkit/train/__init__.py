"""Training: the shared loop, the recipe schema, PEFT methods and the task recipes."""
