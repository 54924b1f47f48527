"""User authorization: each sender's own user_access_token, obtained by OAuth, kept sealed and fresh."""
