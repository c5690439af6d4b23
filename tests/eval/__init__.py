"""Evaluation of the moderator prompt on labelled synthetic dialogues (`make eval`)."""
