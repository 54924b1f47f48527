"""Commands: their grammar, what they do, and what the bot says back."""
