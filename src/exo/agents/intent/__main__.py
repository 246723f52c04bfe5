"""``python -m exo.agents.intent``: train the intent model now and cache it (make setup)."""

from exo.agents.intent.model import main

main()
