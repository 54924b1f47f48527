"""The /invite feature: the command, its grammar, finding the meeting, inviting, the result cards and
their buttons, and the reasons shown for who was not invited."""
