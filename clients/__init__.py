"""Clients of outside services (Wappi, Gemini), each with typed errors and an injected transport."""
