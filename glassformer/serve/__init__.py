"""The playground: a local web page and an OpenAI-style API over one run (api.py, protocol.py,
views.py, limits.py, static/), and the same streaming in a terminal (chat.py)."""
