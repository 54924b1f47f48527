"""feishu-invite-bot: invites the people you mention into your Feishu meeting, as you."""
