"""The routes, by area: ``answers``, ``articles`` and ``openai`` under ``/v1`` (behind the API-key and
rate-limit guard, see ``v1``); ``operations`` and ``page`` at the root, without it."""
