"""The Feishu platform: crypto, envelope models, the Open API client and its error codes."""
